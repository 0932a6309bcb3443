"""A `pippin bundle create` of the demo site that kills itself (SIGKILL, no cleanup) at a
named point: a checkpoint (``package os/…``, ``image ipsw/…``) or a progress stage once it
has made progress (``restore image``, ``thin zip``). ``package mid-file`` kills it inside the
demo Linux package's download once its partial record holds 1 MiB (the package progress is
slowed to a crawl, a slow link, so the record is written before the bytes are all there).
``-`` runs to the end and prints the result as JSON.

    python -m tests.support.crashbundle SITE_ROOT CACHE OUT POINT
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from installer.bundle.create import BundleRequest, create_bundle
from installer.demo import server
from installer.demo.site import CATALOG_NAME, DEMO_LINUX, UEFI_ONLY
from installer.net.session import NetConfig, make_session
from tests.support.installfix import deps_for

MID_FILE = "package mid-file"


def main(argv: list[str]) -> int:
    site, cache, out, point = Path(argv[0]), Path(argv[1]), Path(argv[2]), argv[3]

    def die(where: str) -> None:
        sys.stderr.write(f"crashbundle: killed at {where}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def checkpoint(name: str) -> None:
        if name == point:
            die(name)

    def progress(stage: str, done: int, total: int) -> None:
        if stage == point and 0 < done < total:
            die(f"{stage} {done}/{total}")
        if point == MID_FILE and stage == "package":
            time.sleep(0.05)  # a slow link: the watcher below kills the process

    if point == MID_FILE:
        record = out / "os" / ".pippin-demo-linux.zip.partial.json"

        def watch() -> None:
            while True:
                try:
                    n = sum(e - s for s, e in json.loads(record.read_text())["done"])
                except (OSError, ValueError, KeyError):
                    n = 0
                if n >= 1 << 20:
                    die(f"{MID_FILE}, {n} bytes recorded")
                time.sleep(0.02)

        threading.Thread(target=watch, daemon=True).start()

    session = make_session(NetConfig(read_timeout=5.0, no_proxy=("127.0.0.1",)))
    with server.serve(site) as srv:
        deps = deps_for(cache, session, env={"IPSW_BASE": srv.url})
        req = BundleRequest(out, (UEFI_ONLY, DEMO_LINUX), ("j314sap",),
                            catalog=f"{srv.url}/{CATALOG_NAME}")
        r = create_bundle(req, deps, progress, checkpoint)
    print(json.dumps({"downloaded": r.downloaded_bytes, "reused": list(r.reused),
                      "needed": r.needed_bytes, "bundle": r.bundle_bytes}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
