"""One module per ``pippin`` lifecycle verb: argument parsing and printing only; what the
verbs do lives in :mod:`installer.lifecycle` (the TUI calls the same functions)."""
