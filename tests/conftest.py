"""Shared pytest fixtures. Expensive generated inputs are session-scoped."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import hypothesis.configuration
import pytest

ROOT = Path(__file__).resolve().parent.parent
REAL_CATALOG = ROOT / "tests" / "fixtures" / "catalog" / "installer_data.json"
TEST_ASSETS = ROOT / ".cache" / "test-assets"

# Hypothesis caches (example database, constants, unicode tables) go under .cache, not a
# .hypothesis/ in the tree (which its pytest plugin then warns about, an error here).
hypothesis.configuration.set_hypothesis_home_dir(ROOT / ".cache" / "hypothesis")


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """A CLI main() run in-process installs root log handlers (stderr, log file): put the
    previous ones back so they don't leak into later tests in the same worker."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
        if h not in saved:
            h.close()
    for h in saved:
        root.addHandler(h)
    root.setLevel(level)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def real_catalog() -> Path:
    """The real published catalog (AsahiLinux/asahi-installer-data, MIT), kept in the repository
    with its provenance (tests/fixtures/catalog/SOURCE.md): tests read nothing outside it."""
    return REAL_CATALOG


@pytest.fixture(scope="session")
def test_assets() -> Path:
    """Debian arm64 kernel, modules and busybox fetched by scripts/fetch-test-assets."""
    if not (TEST_ASSETS / ".complete").exists():
        pytest.fail("run scripts/fetch-test-assets (scripts/test does) before the QEMU tests")
    return TEST_ASSETS


@pytest.fixture(scope="session")
def u_boot() -> bytes:
    """The bytes of Debian's u-boot-qemu ``u-boot.bin`` (tests/support/bootobjgen.U_BOOT)."""
    from tests.support.bootobjgen import U_BOOT
    if not U_BOOT.exists():
        pytest.fail("u-boot-qemu missing: scripts/test installs it (scripts/debian-packages.txt)")
    return U_BOOT.read_bytes()


def require_tool(name: str) -> str:
    """Path of a tool scripts/test installs; a missing one is a failure, not a skip."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: scripts/test installs it (scripts/debian-packages.txt)")
    return path


# Restore-image fixture (generated IPSW + OTA behind nginx), shared by tests/test_ipsw_*.py.
from tests.support.ipswfix import served  # noqa: E402,F401
