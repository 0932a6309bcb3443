"""Synthetic restore images for tests: a re-export of installer/demo/restoreimage.py (the
demo install serves one too), plus the command line of scripts/make-test-ipsw.
"""

from __future__ import annotations

import argparse
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
    ap = argparse.ArgumentParser(description="Write a synthetic restore image (IPSW or OTA).")
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", type=_size, default=DEFAULT_SIZE,
                    help="approximate size of the real (non-sparse) content, e.g. 300M")
    ap.add_argument("--decoy-size", type=_size, default=DEFAULT_DECOY)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ota", action="store_true", help="OTA layout (AssetData/…, BXDIFF50)")
    a = ap.parse_args(argv)
    img = make_image(a.out, size=a.size, seed=a.seed, ota=a.ota, decoy_size=a.decoy_size)
    print(f"{img.path}: {len(img.sha256)} members, decoys {', '.join(img.decoys)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
