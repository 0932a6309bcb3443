"""`fetch_package` of one catalog entry in its own process (a real process to kill -9 midway
in the resume tests), printing the result as JSON.

    python -m tests.support.pkgfetch URL SHA256 CACHE_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from installer.catalog import parse_catalog
from installer.net.session import NetConfig, make_session
from installer.ospackage import fetch_package


def entry_for(url: str, sha256: str | None):  # type: ignore[no-untyped-def]
    """A one-partition catalog entry whose package is ``url``."""
    e: dict[str, object] = {"name": "T", "package": url, "partitions": [
        {"name": "Root", "type": "Linux", "size": "16MiB", "image": "root.img"}]}
    if sha256:
        e["sha256"] = sha256
    return parse_catalog(json.dumps({"os_list": [e]}).encode(), "").entries[0]


def main(argv: list[str]) -> int:
    url, sha, cache = argv[0], argv[1], Path(argv[2])
    session = make_session(NetConfig(read_timeout=30.0, no_proxy=("127.0.0.1",)))
    got = fetch_package(entry_for(url, sha), session, cache, connections=4)
    print(json.dumps({"path": str(got.path), "network_bytes": got.network_bytes}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
