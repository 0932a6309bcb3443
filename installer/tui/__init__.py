"""The Textual TUI of ``pippin install`` (STYLE.md §3)."""
