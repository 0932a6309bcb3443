"""Which stage-1 image an install registers (the catalog's ``boot_object``), checked before
anything is written.

Pippin's own stage 1 (``bootchain/prebuilt/stage1.bin``) runs where its platform exists: the
simulated Mac (booted in QEMU). On a real Mac it has no Apple platform yet, so an install
there needs an m1n1-format stage-1 image given by the user (``--stage1 PATH`` or
``stage1 = "PATH"`` in the answers file): an arm64 Image header, a version marker Pippin
reads (``##m1n1_ver##`` or ``##pippin_ver##``), a sane size, and no variables or payloads
already appended. The variables (formats.md §2) are added by the installer as always.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from installer.bootobj import assemble, version
from installer.errors import BootObjectError

MIN_SIZE = 0x800 + 4  # at least the header area and the instruction at the entry
MAX_SIZE = 64 << 20
HINT = ("pass --stage1 PATH (an m1n1 stage-1 image, e.g. m1n1.bin) or stage1 = \"PATH\" in "
        "the answers file")


@dataclass(frozen=True, slots=True)
class Stage1Image:
    data: bytes
    source: str  # "pippin prebuilt" or the file given
    version: str


def check_stage1(data: bytes, where: str) -> Stage1Image:
    """An image fit to become the stage-1 boot object; ``BootObjectError`` otherwise."""
    if not MIN_SIZE <= len(data) <= MAX_SIZE:
        raise BootObjectError(
            f"stage 1 {where}: {len(data)} bytes is not a loader image "
            f"({MIN_SIZE}..{MAX_SIZE} bytes expected)", hint=HINT)
    try:
        assemble.check_stage_image(data, f"stage 1 {where}")
    except BootObjectError as exc:
        raise BootObjectError(exc.message, hint=exc.hint or HINT) from None
    found = version.read_version(data)
    assert found is not None  # check_stage_image requires a marker
    if found.kind is version.LoaderKind.M1N1 and not data.endswith(version.IMAGE_END):
        raise BootObjectError(
            f"stage 1 {where}: m1n1 image does not end with STACKBOT (variables or payloads "
            "already appended?)", hint="give the bare m1n1 image, not an installed boot object")
    if found.kind is version.LoaderKind.PIPPIN and found.stage is version.Stage.STAGE2:
        raise BootObjectError(f"stage 1 {where}: this is Pippin's stage 2, not a stage 1",
                              hint=HINT)
    return Stage1Image(data, where, f"{found.kind} {found.version}")


def read_stage1_file(path: Path) -> Stage1Image:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BootObjectError(f"cannot read stage 1 {path}: {exc.strerror}", hint=HINT) from exc
    return check_stage1(data, str(path))


def resolve_stage1(*, boot_object: str | None, entry_name: str, real_mac: bool,
                   given: Path | None, prebuilt: Path) -> Stage1Image:
    """The stage-1 image for this install (see the module doc)."""
    if given is not None:
        return read_stage1_file(given)
    if real_mac:
        wants = f" ({boot_object})" if boot_object else ""
        raise BootObjectError(
            f"{entry_name!r} needs an m1n1-format stage 1{wants} on a real Mac; Pippin's own "
            "stage 1 has no Apple platform yet", hint=HINT)
    path = prebuilt / "stage1.bin"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BootObjectError(f"cannot read {path}: {exc.strerror}",
                              hint="run from a Pippin checkout (bootchain/prebuilt/)") from exc
    img = check_stage1(data, "pippin prebuilt")
    return Stage1Image(img.data, "pippin prebuilt", img.version)
