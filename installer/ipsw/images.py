"""The pinned restore images and the macOS minimums for each chip (formats.md §11).

A stub needs a restore image that (a) is at least as new as the chip's first supported
macOS, and (b) the installed macOS can boot alongside: the running macOS must be at least
the image's ``min_macos``. The table is data; selection is a pure function.
"""

from __future__ import annotations

from dataclasses import dataclass

from installer.errors import RestoreImageError

_CDN = "https://updates.cdn-apple.com"


@dataclass(frozen=True, slots=True)
class RestoreImage:
    version: str
    min_macos: str
    iboot: str
    url: str | None  # None: not pinned; supply a URL or an IPSW_BASE mirror
    ota: bool = False
    chips: frozenset[int] | None = None  # None: every chip that meets its minimum


M3_CHIPS = frozenset({0x8122, 0x6030, 0x6031, 0x6034})

IMAGES: tuple[RestoreImage, ...] = (
    RestoreImage("12.3.1", "12.1", "iBoot-7459.101.3",
                 f"{_CDN}/2022SpringFCS/fullrestores/002-79219/851BEDF0-19DB-4040-B765-"
                 "0F4089D1530D/UniversalMac_12.3.1_21E258_Restore.ipsw"),
    RestoreImage("12.3", "12.1", "iBoot-7459.101.2",
                 f"{_CDN}/2022SpringFCS/fullrestores/071-08757/74A4F2A1-C747-43F9-A22A-"
                 "C0AD5FB4ECB6/UniversalMac_12.3_21E230_Restore.ipsw"),
    RestoreImage("13.5", "13.0", "iBoot-8422.141.2",
                 f"{_CDN}/2023SummerFCS/fullrestores/032-69606/D3E05CDF-E105-434C-A4A1-"
                 "4E3DC7668DD0/UniversalMac_13.5_22G74_Restore.ipsw"),
    RestoreImage("14.8.3", "14.6", "iBoot-10151.140.19", None, ota=True, chips=M3_CHIPS),
)

#: First macOS version each chip shipped with.
CHIP_MIN_MACOS: dict[int, str] = {
    0x8103: "11.0", 0x6000: "12.0", 0x6001: "12.0", 0x6002: "12.3", 0x8112: "12.4",
    0x6020: "13.1", 0x6021: "13.1", 0x6022: "13.4",
    0x8122: "14.8.3", 0x6030: "14.8.3", 0x6031: "14.8.3", 0x6034: "14.8.3",
}


def parse_version(v: str) -> tuple[int, ...]:
    try:
        parts = tuple(int(p) for p in v.strip().split("."))
    except ValueError as exc:
        raise RestoreImageError(f"bad macOS version {v!r}") from exc
    return parts + (0,) * (3 - len(parts))


def usable_images(chip_id: int, macos_version: str) -> list[RestoreImage]:
    """Images usable on this chip with this installed macOS, newest first."""
    if chip_id not in CHIP_MIN_MACOS:
        raise RestoreImageError(f"unknown chip 0x{chip_id:04X}",
                                hint="known: " + ", ".join(f"0x{c:04X}" for c in CHIP_MIN_MACOS))
    chip_min = parse_version(CHIP_MIN_MACOS[chip_id])
    have = parse_version(macos_version)
    ok = [img for img in IMAGES
          if parse_version(img.version) >= chip_min
          and parse_version(img.min_macos) <= have
          and (img.chips is None or chip_id in img.chips)]
    return sorted(ok, key=lambda i: parse_version(i.version), reverse=True)


def choose_image(chip_id: int, macos_version: str) -> RestoreImage:
    """The newest usable image, or an error naming what would be needed."""
    ok = usable_images(chip_id, macos_version)
    if not ok:
        raise RestoreImageError(
            f"no pinned restore image supports chip 0x{chip_id:04X} with macOS "
            f"{macos_version}",
            hint=f"this chip needs macOS ≥ {CHIP_MIN_MACOS[chip_id]}; update macOS first")
    return ok[0]
