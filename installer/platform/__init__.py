"""Platform backends that execute plans: ``macos`` (diskutil & co.) and ``sim`` (disk image)."""
