"""What the lifecycle verbs do, shared by the CLI (``installer/commands/``) and the TUI:
find installs and leftovers (:mod:`.status`), remove them (:mod:`.uninstall`), finish or
undo an interrupted install (:mod:`.interrupted`), upgrade stage 1 keeping its variables
(:mod:`.stage1`), rebuild an install's vendor firmware (:mod:`.firmware`). Each works on an
:class:`installer.targets.base.InstallTarget`, so the sim and a real Mac take the same path."""
