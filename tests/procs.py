"""The process table from /proc: who is alive, whose child, to check that nothing is left."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str  # "R", "S", ..., "Z" for a zombie (dead, not yet reaped)
    cmdline: str


def table() -> dict[int, Proc]:
    """Every process readable now."""
    procs = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue  # exited meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        procs[int(entry.name)] = Proc(int(entry.name), int(ppid), state, cmdline)
    return procs


def alive(pid: int) -> bool:
    """Running or sleeping (a zombie has exited)."""
    proc = table().get(pid)
    return proc is not None and proc.state != "Z"


def descendants(pid: int) -> set[int]:
    """Children, grandchildren, ... of `pid` now."""
    procs = table()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p.pid for p in procs.values() if p.ppid in frontier} - found
        found |= frontier
    return found


def ancestors(pid: int | None = None) -> set[int]:
    """`pid` (default: this process) and its parents up to the root."""
    pid = os.getpid() if pid is None else pid
    procs = table()
    chain = set()
    while pid in procs and pid not in chain:
        chain.add(pid)
        pid = procs[pid].ppid
    return chain


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process the child subreaper of everything it starts (Linux prctl): an
    orphaned descendant is re-parented to it instead of PID 1, so `left_behind` can count
    the suite's own processes only. False where the kernel does not offer it."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def left_behind(before: set[int], subreaper: bool = True) -> list[Proc]:
    """Processes started since `before` was taken that are still alive and belong to this
    process. As child subreaper (`become_subreaper`) that is exactly its descendants: a process
    someone else starts on a shared machine is never counted. Without it, orphans re-parented
    to PID 1 count too (they may be ours). This process's own multiprocessing helpers are left
    out: they end with it."""
    procs = table()
    me = os.getpid()
    mine = ancestors(me)
    found = []
    for p in procs.values():
        if p.pid in before or p.pid in mine or p.state == "Z" or not p.cmdline:
            continue
        if p.ppid == me and "multiprocessing.resource_tracker" in p.cmdline:
            continue
        q, ours = p, False
        while True:
            if q.ppid == me or (q.ppid <= 1 and not subreaper):
                ours = True
                break
            if q.ppid <= 1 or q.ppid in before or q.ppid not in procs:
                break
            q = procs[q.ppid]
        if ours:
            found.append(p)
    return found
