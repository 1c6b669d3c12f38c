"""Waiting, inside an event loop, for a state the code under test reaches on its own: polled,
with a deadline that fails the test naming what never happened."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from ser.workers import FeatureWorkers


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Poll `condition` every millisecond; not true within `timeout_s`: fail, naming `what`."""
    deadline_s = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline_s:
            pytest.fail(f"waited {timeout_s:.0f} s for {what}")
        await asyncio.sleep(0.001)


async def until_running(workers: FeatureWorkers, calls: int) -> None:
    """Until `workers`' pool has handed `calls` calls to its processes (CPython's pool:
    "running", no longer cancellable)."""
    pending = workers._executor._pending_work_items
    await until(
        lambda: len(pending) == calls and all(i.future.running() for i in pending.values()),
        f"the pool to hand {calls} call(s) to its workers",
    )
