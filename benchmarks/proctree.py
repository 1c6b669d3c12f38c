"""Shared by the benchmark scripts: a process and its children from /proc, and start-up time."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pids
    for child in children:
        pids += tree(int(child))
    return pids


def seconds_to_listening(cmd: list[str], **popen: object) -> tuple[float, subprocess.Popen[bytes]]:
    """Start `cmd` (ser-live) and return the seconds until its "listening on" line on stderr,
    with the still running process (stdout discarded)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **popen)  # type: ignore[call-overload]
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith(b"listening on"):
            return time.monotonic() - t0, proc
    raise RuntimeError(f"{cmd} ended without listening")
