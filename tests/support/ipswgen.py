"""Synthetic restore images for tests: a re-export of installer/demo/restoreimage.py (the
demo install serves one too), plus the command line of scripts/make-test-ipsw.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from installer.demo.restoreimage import (  # noqa: E402
    BUILD,
    DEFAULT_DECOY,
    DEFAULT_SIZE,
    DEVICES,
    VERSION,
    Device,
    GeneratedImage,
    MiB,
    bxdiff50,
    make_image,
)

__all__ = ["BUILD", "DEFAULT_DECOY", "DEFAULT_SIZE", "DEVICES", "VERSION", "Device",
           "GeneratedImage", "MiB", "bxdiff50", "make_image", "main"]


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="make-test-ipsw",
        description="Write a synthetic Apple restore image (IPSW, or OTA with --ota): "
                    "realistic member names and BuildManifest, random contents (fixed seed), "
                    "a sparse decoy OS image that makes it ZIP64.")
    ap.add_argument("out", type=Path, help="the .ipsw/.zip to write (replaced atomically)")
    ap.add_argument("--size", type=_size, default=DEFAULT_SIZE,
                    help="approximate size of the real (non-sparse) content, e.g. 300M")
    ap.add_argument("--decoy-size", type=_size, default=DEFAULT_DECOY,
                    help="size of the sparse OS-image decoy (default 4.5G: > 4 GiB, so "
                         "members after it need ZIP64 offsets)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    ap.add_argument("--ota", action="store_true", help="OTA layout (AssetData/…, BXDIFF50)")
    a = ap.parse_args(argv)
    tmp = a.out.with_name(f".{a.out.name}.tmp")
    try:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        img = make_image(tmp, size=a.size, seed=a.seed, ota=a.ota, decoy_size=a.decoy_size)
        os.replace(tmp, a.out)  # never a half-written image under the real name
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        print(f"make-test-ipsw: error: cannot write {a.out}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    print(f"{a.out}: {len(img.sha256) + 1} members, decoys {', '.join(img.decoys)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
