"""Benchmark: a full demo install (`pippin install --yes`, demo catalog over loopback HTTP)
onto a fresh 512 GB simulated Mac, wall time split by stage, against the bytes it must write.

Baseline, in the same run: a plain sequential write (+ fsync) of the same number of bytes to a
file on the same filesystem: the floor for "write what the install must write". Ratios are
install time / baseline time. The demo site is generated once beforehand (not timed).
Run: .venv/bin/python tests/bench/bench_install.py [--quick] [--os NAME]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from installer.answers import Answers  # noqa: E402
from installer.demo.site import DEMO_LINUX, UEFI_ONLY, ensure_site  # noqa: E402
from installer.install import InstallDeps, InstallRequest, install  # noqa: E402
from installer.net.session import NetConfig, make_session  # noqa: E402
from installer.platform.base import SubprocessRunner  # noqa: E402
from installer.platform.simmac import SimMac, image_allocated  # noqa: E402
from installer.sizes import GB, format_size  # noqa: E402
from tests.support.simbench import ASSETS, PREBUILT, stub_bytes  # noqa: E402


def baseline(dirpath: Path, nbytes: int) -> float:
    block = os.urandom(1 << 20)
    t0 = time.perf_counter()
    with open(dirpath / "baseline.bin", "wb") as f:
        left = nbytes
        while left > 0:
            f.write(block[:min(left, len(block))])
            left -= len(block)
        f.flush()
        os.fsync(f.fileno())
    dt = time.perf_counter() - t0
    (dirpath / "baseline.bin").unlink()
    return dt


def run(os_name: str, disk_size: int, workdir: Path) -> None:
    cache = workdir / "cache"
    assets = ASSETS if (ASSETS / ".complete").exists() else None
    site = ensure_site(cache, prebuilt=PREBUILT, assets=assets, assets_missing="no assets")
    if os_name not in site.entries:
        print(f"skip {os_name!r}: {'; '.join(site.notes)}")
        return
    sim = workdir / f"mac-{len(os_name)}.img"
    t0 = time.perf_counter()
    # the sim's default macOS (200 GB used) does not fit the --quick 64 GB disk
    SimMac.create(sim, disk_size=disk_size, macos_used=min(200 * GB, disk_size // 2))
    create_s = time.perf_counter() - t0
    session = make_session(NetConfig(no_proxy=("127.0.0.1",)))
    deps = InstallDeps(session=session, runner=SubprocessRunner(), cache_dir=cache,
                       prebuilt=PREBUILT, demo_assets=assets)
    allocated = image_allocated(sim)
    t0 = time.perf_counter()
    res = install(InstallRequest(Answers(target=f"sim:{sim}", os=os_name), auto_space=True),
                  deps)
    total = time.perf_counter() - t0
    # What reached the image (new allocated blocks: FAT, ESP files, images, APFS headers)
    # plus the stub's files: the bytes this install had to write.
    nbytes = max(0, image_allocated(sim) - allocated) + stub_bytes(sim)
    base = baseline(workdir, nbytes)
    print(f"\n{os_name!r} on a {format_size(disk_size)} sim (created in {create_s:.2f} s)")
    print(f"  {'stage':<16}{'pippin s':>10}")
    for stage, secs in res.seconds.items():
        print(f"  {stage:<16}{secs:>10.2f}")
    print(f"  {'total':<16}{total:>10.2f}")
    print(f"  bytes it wrote (image blocks + stub files) {format_size(nbytes)}; downloaded "
          f"{format_size(res.bytes_downloaded)}")
    print(f"  baseline: plain write+fsync of {format_size(nbytes)}: {base:.2f} s; "
          f"install / baseline = {total / max(base, 1e-6):.1f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="64 GB sim, UEFI entry only")
    ap.add_argument("--os", dest="os_name")
    a = ap.parse_args()
    names = [a.os_name] if a.os_name else [UEFI_ONLY] if a.quick else [UEFI_ONLY, DEMO_LINUX]
    size = 64 * GB if a.quick else 512 * GB
    work = Path(tempfile.mkdtemp(prefix="bench-install-", dir=ROOT / ".cache"))
    try:
        for n in names:
            run(n, size, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
