"""What one call to the feature workers costs the server's main process (all its threads), apart
from the work itself, which runs in the worker.

Usage: .venv/bin/python benchmarks/pool_overhead.py [--calls 1500] [--every-ms 4]

Calls spaced `--every-ms` apart (4 ms: about the rate of 200 real-time streams through a storm,
each utterance handing the workers 3.5-4 calls, `ser_feature_worker_calls_total`: its pitch in
parts, its early encoder run, its analysis), each
sending 1 s of int16 audio (32 kB) and getting a small array back, through:
- ser's `FeatureWorkers` (`f0_frames` of one frame: the real path, fair line included);
- a bare `ProcessPoolExecutor` (what `FeatureWorkers` is built on: a manager thread, a queue
  feeder thread, a wake-up pipe per call);
- one socket pair per worker read by the event loop itself (a sketch, not ser code: the least a
  process pool could cost).
Prints Markdown: the main process's CPU per call (ms) and the calls' mean round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import pickle
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

SAMPLES = (np.sin(np.arange(16_000) * 0.05) * 8000).astype(np.int16)  # 1 s at 16 kHz


def small(samples: np.ndarray) -> np.ndarray:
    """The worker's side of the bare pool and the pipes: a small array back."""
    return np.full(64, float(samples[0]), np.float32)


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def _timed(
    calls: int, every_s: float, one: Callable[[], Awaitable[Any]]
) -> tuple[float, float]:
    """(main process CPU ms per call, mean round trip ms) of `calls` calls `every_s` apart."""
    trips: list[float] = []

    async def at(k: int) -> None:
        await asyncio.sleep(k * every_s)
        t = time.perf_counter()
        await one()
        trips.append(time.perf_counter() - t)

    for _ in range(8):
        await one()  # warm
    cpu0 = _cpu_s()
    await asyncio.gather(*(at(k) for k in range(calls)))
    return (_cpu_s() - cpu0) / calls * 1e3, float(np.mean(trips)) * 1e3


async def ser_workers(calls: int, every_s: float) -> tuple[float, float]:
    from ser.workers import FeatureWorkers

    workers = FeatureWorkers(2)
    await workers.start()
    try:
        return await _timed(calls, every_s, lambda: workers.f0_frames(SAMPLES, 0, 1, 0))
    finally:
        await asyncio.to_thread(workers.close)


async def bare_pool(calls: int, every_s: float) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    try:
        return await _timed(calls, every_s, lambda: loop.run_in_executor(pool, small, SAMPLES))
    finally:
        pool.shutdown()


def _serve(sock: socket.socket) -> None:
    """A pipe worker: length-prefixed pickles in, the same out."""
    with sock, sock.makefile("rb") as reader:
        while header := reader.read(4):
            (n,) = struct.unpack("!I", header)
            out = pickle.dumps(small(pickle.loads(reader.read(n))), protocol=5)
            sock.sendall(struct.pack("!I", len(out)) + out)


async def pipes(calls: int, every_s: float) -> tuple[float, float]:
    context = multiprocessing.get_context("spawn")
    ends, processes = [], []
    for _ in range(2):
        mine, theirs = socket.socketpair()
        process = context.Process(target=_serve, args=(theirs,), daemon=True)
        process.start()
        theirs.close()
        reader, writer = await asyncio.open_connection(sock=mine)
        ends.append((reader, writer, asyncio.Lock()))
        processes.append(process)
    turn = 0

    async def one() -> np.ndarray:
        nonlocal turn
        reader, writer, lock = ends[turn % 2]
        turn += 1
        async with lock:
            data = pickle.dumps(SAMPLES, protocol=5)
            writer.write(struct.pack("!I", len(data)) + data)
            (n,) = struct.unpack("!I", await reader.readexactly(4))
            return pickle.loads(await reader.readexactly(n))  # type: ignore[no-any-return]

    try:
        return await _timed(calls, every_s, one)
    finally:
        for _, writer, _ in ends:
            writer.close()
        for process in processes:
            process.join(5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=1500)
    p.add_argument("--every-ms", type=float, default=4.0)
    args = p.parse_args()
    print(
        f"{args.calls} calls, {args.every_ms:g} ms apart, 1 s of int16 audio each\n\n"
        "| through | main process CPU per call (ms) | round trip, mean (ms) |\n|---|---|---|"
    )
    for label, run in (
        ("ser's FeatureWorkers (f0_frames, one frame)", ser_workers),
        ("bare ProcessPoolExecutor", bare_pool),
        ("a socket pair per worker, read by the event loop (sketch)", pipes),
    ):
        cpu_ms, trip_ms = asyncio.run(run(args.calls, args.every_ms / 1000))
        print(f"| {label} | {cpu_ms:.3f} | {trip_ms:.2f} |", flush=True)


if __name__ == "__main__":
    main()
