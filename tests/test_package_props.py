"""Property: any valid file set packs into a cpio/tar that reads back to the same files,
verifies clean, and stores each distinct content exactly once."""

from __future__ import annotations

import hashlib
import io
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_package_cpio import parse_newc
from vendorfw.model import FirmwareFile
from vendorfw.package import plan_package, write_package_files
from vendorfw.readback import read_package, verify

SEGMENT = st.text(alphabet="abcxyz019,.-_+", min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..") and s != ".vendorfw.manifest"
)
NAME = st.lists(SEGMENT, min_size=1, max_size=3).map("/".join)
CONTENT = st.sampled_from([b"", b"a", b"same content", bytes(range(256)) * 5, b"\0" * 1027])


def valid(names: list[str]) -> bool:
    s = set(names)
    return all(not any("/".join(n.split("/")[:i]) in s for i in range(1, n.count("/") + 1))
               for n in names)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(NAME, CONTENT), min_size=0, max_size=12,
                unique_by=lambda t: t[0]).filter(lambda fs: valid([n for n, _ in fs])))
def test_roundtrip_any_file_set(files):
    fw = [FirmwareFile(n, data=d) for n, d in files]
    plan = plan_package(fw)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        write_package_files(plan, out)
        want = {n: hashlib.sha256(d).hexdigest() for n, d in files}
        for name in ("firmware.cpio", "firmware.tar"):
            pkg = read_package(out / name)
            assert verify(pkg) == []
            assert pkg.files() == want
        ents = parse_newc((out / "firmware.cpio").read_bytes())
        stored = [e["data"] for e in ents
                  if e["mode"] == 0o100644 and e["size"] and not e["name"].endswith(".manifest")]
        assert sorted(stored) == sorted({d for _, d in files if d})
        manifest = io.StringIO((out / "manifest.txt").read_text()).read()
        assert manifest == plan.manifest.text()
