"""A `pippin install` that kills itself (SIGKILL, no cleanup) at its N-th step.

Steps are the install's checkpoints (disk stage start, each operation, file steps) plus the
simulated Mac's fault points inside operations (between two GPT writes, between image
chunks). ``N = 0`` counts them: the run finishes and prints the count.

    python -m tests.support.crashinstall CACHE SIM OS N
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from installer.answers import Answers
from installer.install import InstallRequest, install
from installer.net.session import NetConfig, make_session
from installer.platform.base import SubprocessRunner
from installer.platform.sim import SimBackend
from installer.targets.sim import SimTarget
from tests.support.installfix import deps_for


def main(argv: list[str]) -> int:
    cache, sim, os_name, n = Path(argv[0]), Path(argv[1]), argv[2], int(argv[3])
    seen: list[str] = []

    def tick(point: str) -> None:
        seen.append(point)
        if len(seen) == n:
            sys.stderr.write(f"crashinstall: killed at step {n}: {point}\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    runner = SubprocessRunner()
    target = SimTarget(sim, runner)
    target.backend = SimBackend(sim, runner, fault=tick)
    session = make_session(NetConfig(read_timeout=5.0, no_proxy=("127.0.0.1",)))
    deps = deps_for(cache, session, target=target, checkpoint=tick, guid_seed="crash")
    install(InstallRequest(Answers(target=f"sim:{sim}", os=os_name), auto_space=True), deps)
    print(len(seen))
    print("\n".join(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
