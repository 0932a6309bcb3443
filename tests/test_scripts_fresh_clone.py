"""Every script in scripts/ works from a fresh clone: one that runs .venv's Python sets the
venv up first (scripts/_env.sh `pippin_venv`), as scripts/pippin and scripts/test do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
USES_VENV = re.compile(r"\$PIPPIN_PY|\.venv/bin/")


def _scripts():
    return sorted(p for p in SCRIPTS.iterdir()
                  if p.is_file() and not p.name.startswith("_")
                  and p.read_text(errors="replace").startswith("#!/bin/sh"))


@pytest.mark.parametrize("script", _scripts(), ids=lambda p: p.name)
def test_bug_build_bootchain_needed_scripts_test_first(script):
    """scripts/build-bootchain stopped with `.venv/bin/python: not found` on a fresh clone
    until scripts/test had built .venv once."""
    text = script.read_text()
    if not USES_VENV.search(text):
        return
    assert '. "$(dirname -- "$0")/_env.sh"' in text, f"{script.name} must source _env.sh"
    # at top level, or inside the function that then runs $PIPPIN_PY
    setup = re.search(r"^\s*pippin_venv requirements(-dev)?\.lock\b", text, re.M)
    assert setup, f"{script.name} uses .venv but never calls pippin_venv"
    # The venv is set up before the script's own work starts (its last top-level line).
    body_call = [m.start() for m in re.finditer(r"^(exec |pippin_\w+ \"\$@\"|main )", text,
                                                re.M)]
    assert all(setup.start() < pos for pos in body_call), script.name
