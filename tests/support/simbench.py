"""What the install benchmarks share (tests/bench/bench_install.py, bench_mac.py): where the
test assets and the prebuilt boot chain are, and the bytes of a simulated Mac's stub files."""

from __future__ import annotations

from pathlib import Path

from installer.platform.simstate import sidecar

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / ".cache" / "test-assets"
PREBUILT = ROOT / "bootchain" / "prebuilt"
#: Sidecar files that are not stub contents: the sim's state, the install journal, and the
#: mac-standin's command log (its own folder is skipped as a whole).
_NOT_STUB = ("state.json", "journal.json", "standin-argv.log")


def stub_bytes(sim: Path) -> int:
    """Stub volume contents in the sidecar (the macOS volumes there are empty folders)."""
    return sum(p.stat().st_size for p in sidecar(sim).rglob("*") if p.is_file()
               and "standin" not in p.parts and p.name not in _NOT_STUB)
