"""Wi-Fi (brcmfmac) firmware from ``<firmware>/wifi`` (formats.md §7).

Each kept file's path encodes its dimensions (chip, revision, board, module, vendor,
version, antenna). Files go into a tree extension → chip → revision → board → module →
vendor → version → antenna, identical variants are pruned bottom-up (the kernel falls back
from the most to the least specific name), and the survivors get their Linux names.
A dimension a path does not give is a ``None`` key at that level, so ``P-x_m-1.txt`` sits
at version level under module ``None`` and vendor ``None`` (``…apple,x-1.txt`` unless
pruning moves it up).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from vendorfw.collectors import Result, by_name
from vendorfw.model import Content, FirmwareFile, Problem
from vendorfw.source import FirmwareSource, Tree, join

log = logging.getLogger(__name__)

SKIP_DIRS = frozenset({"perf", "assert", "C-4388__s-C2"})
EXTENSIONS = {".trx": "bin", ".txt": "txt", ".clmb": "clm_blob", ".txcb": "txcap_blob",
              ".sig": "sig"}
# Tree levels below the extension, in order; board level is index 2 here (3 with the ext).
LEVELS = ("C", "s", "P", "M", "V", "m", "A")
_BOARD_DEPTH = 3  # depth of the board level counting the extension level as 0
# values go into file names and manifest lines: printable ASCII without space, '/' or '\\'
_VALUE = re.compile(r"[\x21-\x2e\x30-\x5b\x5d-\x7e]+")


@dataclass(frozen=True, slots=True)
class _Content:
    digest: bytes
    data: bytes | None
    source: Content | None


@dataclass(slots=True)
class _Node:
    content: _Content | None = None
    origin: str = ""
    children: dict[str | None, _Node] = field(default_factory=dict)


def collect(source: FirmwareSource) -> Result:
    """Collect the Wi-Fi firmware of ``source`` (nothing without a firmware/wifi dir)."""
    tree, firmware = source.tree, source.firmware
    if tree is None or firmware is None or not tree.is_dir(join(firmware, "wifi")):
        return [], []
    wifi = join(firmware, "wifi")
    problems: list[Problem] = []
    root = _Node()
    for rel in _candidates(tree, wifi):
        path = join(wifi, rel)
        shown = tree.shown(path)
        if tree.escapes(path, firmware):
            problems.append(Problem(shown, f"link leads outside {tree.shown(firmware)}"))
            continue
        relp = PurePosixPath(rel)
        try:
            dims = parse_dimensions(relp)
        except ValueError as exc:
            problems.append(Problem(shown, str(exc)))
            continue
        try:
            content = _read(tree, path)
        except OSError as exc:
            problems.append(Problem(shown, f"cannot read: {exc.strerror or exc}"))
            continue
        node = root
        for key in _tree_path(relp.suffix, dims):
            node = node.children.setdefault(key, _Node())
        if node.content is not None:
            problems.append(Problem(shown, f"same Linux name as {node.origin}, skipped"))
            continue
        node.content, node.origin = content, shown
    for ext_node in root.children.values():
        _prune(ext_node, 0)
    files: list[FirmwareFile] = []
    _emit(root, [], files)
    log.info("wifi: %d files, %d problems", len(files), len(problems))
    return by_name(files), problems


def _candidates(tree: Tree, wifi: str) -> list[str]:
    """Kept files below ``wifi``, as paths relative to it, in byte order."""
    out: list[str] = []
    for dirpath, dirnames, filenames in tree.walk(wifi):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        rel_dir = dirpath[len(wifi) + 1 :]
        for name in filenames:
            if os.path.splitext(name)[1] not in EXTENSIONS:
                continue
            rel = join(rel_dir, name)
            if "_gen" in rel or not tree.is_file(join(wifi, rel)):
                continue
            out.append(rel)
    return sorted(out, key=os.fsencode)


def parse_dimensions(rel: PurePosixPath) -> dict[str, str]:
    """Dimensions encoded in ``<dir>/<file>``; ``ValueError`` says what is wrong."""
    parts: list[str] = []
    for d in rel.parent.parts:
        parts.extend(d.split("_"))
    if rel.suffix == ".txt":
        parts.extend(rel.stem.split("_"))
    else:
        parts.append("P-" + rel.stem)  # a non-.txt file is named by its bare platform
    dims: dict[str, str] = {}
    for part in parts:
        if not part:
            continue
        key, sep, value = part.partition("-")
        if not sep or not value:
            raise ValueError(f"name part {part!r} is not key-value")
        if key not in LEVELS:
            raise ValueError(f"unknown dimension key {key!r} in {part!r}")
        pairs: list[tuple[str, str]] = [(key, value)]
        if key == "P":
            board, sep, antenna = value.partition("-")
            pairs = [("P", board)] + ([("A", antenna)] if sep else [])
        for k, v in pairs:
            if _VALUE.fullmatch(v) is None:
                raise ValueError(f"dimension {k!r} in {part!r} is empty or not plain ASCII")
            if k in dims:
                raise ValueError(f"dimension {k!r} given twice")
            dims[k] = v
    for k, what in (("C", "chip"), ("s", "revision"), ("P", "platform")):
        if k not in dims:
            raise ValueError(f"no {what} ({k}-…) in the name")
    return dims


def linux_name(ext: str, dims: Mapping[str, str | None]) -> str:
    """``brcm/brcmfmac<C><s>-pcie.apple,<P>[-<M>][-<V>][-<m>][-<A>].<ext>``."""
    extra = "".join(f"-{dims[k]}" for k in ("M", "V", "m", "A") if dims.get(k))
    chip, rev = dims["C"], (dims["s"] or "").lower()
    return f"brcm/brcmfmac{chip}{rev}-pcie.apple,{dims['P']}{extra}.{EXTENSIONS[ext]}"


def clean_nvram(data: bytes) -> bytes:
    """Drop empty (or blank) lines; strip whitespace around the key only; end lines with \\n."""
    out: list[bytes] = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        key, eq, value = line.partition(b"=")
        out.append(key.strip() + eq + value + b"\n")
    return b"".join(out)


def _read(tree: Tree, path: str) -> _Content:
    if path.endswith(".txt"):
        data = clean_nvram(tree.read(path))
        return _Content(hashlib.sha256(data).digest(), data, None)
    content = tree.hashed(path)
    assert content.digest is not None  # hashed() fills it in
    return _Content(content.digest, None, content)


def _tree_path(suffix: str, dims: dict[str, str]) -> list[str | None]:
    keys: list[str | None] = [suffix, *(dims.get(k) for k in LEVELS)]
    while keys[-1] is None:
        keys.pop()
    return keys


def _same(a: _Node, b: _Node) -> bool:
    """Same content and same subtrees."""
    da = a.content.digest if a.content else None
    db = b.content.digest if b.content else None
    if da != db or a.children.keys() != b.children.keys():
        return False
    return all(_same(c, b.children[k]) for k, c in a.children.items())


def _all_equal(node: _Node, digest: bytes) -> bool:
    """``node`` has a file with ``digest`` and no file below it differs."""
    if node.content is None or node.content.digest != digest:
        return False
    return all(_nothing_differs(c, digest) for c in node.children.values())


def _nothing_differs(node: _Node, digest: bytes) -> bool:
    if node.content is not None and node.content.digest != digest:
        return False
    return all(_nothing_differs(c, digest) for c in node.children.values())


def _prune(node: _Node, depth: int) -> None:
    for child in node.children.values():
        _prune(child, depth + 1)
    kids = list(node.children.values())
    if not kids:
        return
    # (a) a board-or-deeper node without a file whose children are all identical
    if depth >= _BOARD_DEPTH and node.content is None and all(
        _same(kids[0], k) for k in kids[1:]
    ):
        node.content, node.origin = kids[0].content, kids[0].origin
    # (b) children that all carry this node's content, with nothing differing below them
    # ((Pippin): the reference also drops differing grandchildren; we keep them)
    if node.content is not None and all(_all_equal(k, node.content.digest) for k in kids):
        node.children.clear()


def _emit(node: _Node, path: list[str | None], out: list[FirmwareFile]) -> None:
    if node.content is not None and len(path) > _BOARD_DEPTH:
        ext = path[0]
        assert ext is not None
        dims = dict(zip(LEVELS, path[1:], strict=False))
        name = linux_name(ext, dims)
        c = node.content
        out.append(FirmwareFile(name, data=c.data) if c.data is not None
                   else FirmwareFile(name, source=c.source))
    for key, child in node.children.items():
        _emit(child, [*path, key], out)
