"""A `pippin install` that kills itself (SIGKILL, no cleanup) at its N-th step.

Steps are the install's checkpoints (disk stage start, each operation, file steps) plus the
simulated Mac's fault points inside operations (between two GPT writes, between image
chunks). ``N = 0`` counts them: the run finishes and prints the count.

    python -m tests.support.crashinstall CACHE SIM OS N
    scripts/mac-standin --sim SIM --admin alice:pw -- \
        python -m tests.support.crashinstall CACHE disk0 OS N STAGE1

The second form takes the macOS code path (the stand-in's shims, PIPPIN_MAC_ROOT); only the
install's own checkpoints count there (each operation, each file step).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from installer.answers import Answers
from installer.install import InstallRequest, install, make_target
from installer.net.session import NetConfig, make_session
from installer.platform.base import SubprocessRunner
from installer.platform.sim import SimBackend
from installer.targets.sim import SimTarget
from tests.support.installfix import deps_for


def main(argv: list[str]) -> int:
    cache, where, os_name, n = Path(argv[0]), argv[1], argv[2], int(argv[3])
    seen: list[str] = []

    def tick(point: str) -> None:
        seen.append(point)
        if len(seen) == n:
            sys.stderr.write(f"crashinstall: killed at step {n}: {point}\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    runner = SubprocessRunner()
    session = make_session(NetConfig(read_timeout=5.0, no_proxy=("127.0.0.1",)))
    if where.startswith("disk"):  # under scripts/mac-standin
        root = Path(os.environ["PIPPIN_MAC_ROOT"])
        answers = Answers(target=where, os=os_name, admin_user="alice", stage1=argv[4])
        deps = deps_for(cache, session, target=make_target(where, runner, root),
                        checkpoint=tick, guid_seed="crash", mac_root=root)
        request = InstallRequest(answers, auto_space=True, admin_password="pw")
    else:
        sim = Path(where)
        target = SimTarget(sim, runner)
        target.backend = SimBackend(sim, runner, fault=tick)
        deps = deps_for(cache, session, target=target, checkpoint=tick, guid_seed="crash")
        request = InstallRequest(Answers(target=f"sim:{sim}", os=os_name), auto_space=True)
    install(request, deps)
    print(len(seen))
    print("\n".join(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
