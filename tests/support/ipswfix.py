"""Pytest fixtures for the restore-image tests: generated images served by a real nginx.

``served`` is registered in tests/conftest.py (one instance per test session); bind
``session`` in a module with ``session = ipswfix.session``.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from installer.ipsw.fetch import FetchOptions
from installer.ipsw.ranges import PlanOptions
from installer.net.session import NetConfig, make_session
from tests.support import ipswgen, nginx


@dataclass
class Served:
    root: Path
    server: nginx.Nginx
    ipsw: ipswgen.GeneratedImage
    ota: ipswgen.GeneratedImage


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A synthetic IPSW (ZIP64, 4.5 GiB sparse decoy) and OTA, served by nginx."""
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.fail("nginx not found: scripts/test installs it (nginx-light)")
    root = tmp_path_factory.mktemp("www")
    ipsw = ipswgen.make_image(root / "UniversalMac_13.5_22G90_Restore.ipsw", seed=1)
    ota = ipswgen.make_image(root / "ota.zip", seed=2, ota=True, size=8 << 20,
                             decoy_size=1100 << 20)
    with nginx.serve(root, tmp_path_factory.mktemp("nginx")) as srv:
        yield Served(root, srv, ipsw, ota)


@pytest.fixture
def session():
    s = make_session(NetConfig(read_timeout=5.0))
    yield s
    s.close()


def fast_options(connections: int = 4, **kw: object) -> FetchOptions:
    """Small pieces (many requests, so fault schedules bite) and quick backoff."""
    return FetchOptions(plan=PlanOptions(connections=connections, min_piece=256 << 10),
                        timeout=(5.0, 2.0), backoff=0.01, max_backoff=0.05,
                        **kw)  # type: ignore[arg-type]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_identical(out: Path, image: ipswgen.GeneratedImage, names: list[str]) -> None:
    for n in names:
        assert sha256_file(out / n) == image.sha256[n], n
