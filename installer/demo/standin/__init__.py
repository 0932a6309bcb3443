"""The macOS stand-in: ``diskutil``, ``newfs_msdos``, ``bless`` & co. as PATH shims whose
state IS a simulated Mac image, so the macOS code path of the installer runs on Linux and
its result boots in QEMU (``scripts/mac-standin``).

- :mod:`.plists`: the ``-plist`` answers, in the shapes of the recorded outputs
  (tests/fixtures/diskutil), rendered from a small state dictionary (shared with the
  argv-logging fake of the macOS backend tests, tests/support/fakemac.py);
- :mod:`.machine`: that dictionary read from the image (GPT, sidecar ``state.json``), the
  mounted volumes (``<root>/Volumes``) and the raw devices (``<root>/dev/rdiskNsM``);
- :mod:`.commands`: what each command does to the image;
- :mod:`.cli`: the shim entry point (one program, dispatching on its name) and the
  ``mac-standin`` launcher.
"""
