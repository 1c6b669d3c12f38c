"""The leftover-process check itself: the suite is the child subreaper of what it starts."""

from __future__ import annotations

import subprocess
import sys
import time

from . import procs


def test_an_orphaned_grandchild_is_ours_and_counted():
    before = set(procs.table())
    # the child starts a sleeper and exits at once: the sleeper is orphaned
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], "
            "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
            "print(p.pid)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = int(child.stdout)
    try:
        # the conftest made this process the subreaper: the orphan is re-parented here
        assert procs.table()[orphan].ppid == procs.os.getpid()
        assert orphan in {p.pid for p in procs.left_behind(before)}
    finally:
        subprocess.run(["kill", str(orphan)], check=False)
        deadline = time.monotonic() + 5
        while procs.alive(orphan) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert orphan not in {p.pid for p in procs.left_behind(before)}
