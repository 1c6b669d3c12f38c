"""What a microphone nobody speaks into costs `ser-serve`: CPU per stream of room noise.

Usage: .venv/bin/python benchmarks/quiet_streams.py [--streams 200] [--seconds 25]
       [--level-db -60] [--repeat 2]

Most always-on microphones hear a quiet room most of the time; each still sends a 100 ms frame
ten times a second, which the server reads, decodes and runs through the VAD. This starts
`ser-serve --no-mqtt` (as `benchmarks/serve.py` does), drives N real-time streams of white noise
at `--level-db` dBFS (no utterance), and measures the server's CPU over the middle of the run,
after every stream has started; then the same streams against a bare `websockets` server that
reads and discards every frame (what the WebSocket library alone costs). Prints Markdown: % of
one core for the N streams, µs per frame, and streams per core at that cost, each of `--repeat`
runs alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import threading
import time
import typing

import numpy as np
import serve as bench  # benchmarks/serve.py: the server, its config, CPU from /proc


def _bare_server(port: int, ready: typing.Any) -> None:
    """A websockets server that reads every message and discards it."""
    from websockets.asyncio.server import serve

    async def handler(ws: typing.Any) -> None:
        async for _ in ws:
            pass

    async def run() -> None:
        async with serve(handler, "127.0.0.1", port, compression=None, max_size=2**20):
            ready.set()
            await asyncio.Future()

    asyncio.run(run())


async def _streams(url: str, n: int, seconds: float, level_db: float, handshake: bool) -> None:
    """N real-time streams of noise, 100 ms frames, starts spread over 2 s."""
    from websockets.asyncio.client import connect

    rng = np.random.default_rng(0)
    frame = int(bench.FRAME_S * bench.RATE)
    scale = 32768 * 10 ** (level_db / 20)
    noise = (rng.standard_normal(int(seconds * bench.RATE)) * scale).astype("<i2")

    async def one(i: int) -> None:
        await asyncio.sleep(i * 2.0 / n)
        async with connect(url, max_size=2**20, open_timeout=60) as ws:
            if handshake:
                await ws.send(json.dumps({"type": "start", "stream": f"q{i}"}))
                assert json.loads(await ws.recv())["type"] == "ready"
            t0 = time.monotonic()
            for k, j in enumerate(range(0, noise.size - frame + 1, frame)):
                due = t0 + k * bench.FRAME_S
                if due > (now := time.monotonic()):
                    await asyncio.sleep(due - now)
                await ws.send(noise[j : j + frame].tobytes())

    await asyncio.gather(*(one(i) for i in range(n)))


def _measure(pid: int, url: str, args: argparse.Namespace, handshake: bool) -> float:
    """CPU of `pid` and its children over the run's middle (from 4 s to 4 s before the end),
    in cores."""
    result: list[float] = []
    window_s = args.seconds - 8.0

    def sample() -> None:
        time.sleep(4.0)
        cpu0, t0 = bench._cpu_s(pid), time.monotonic()
        time.sleep(window_s)
        result.append((bench._cpu_s(pid) - cpu0) / (time.monotonic() - t0))

    sampler = threading.Thread(target=sample)
    sampler.start()
    asyncio.run(_streams(url, args.streams, args.seconds, args.level_db, handshake))
    sampler.join()
    return result[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=200)
    p.add_argument("--seconds", type=float, default=25.0)
    p.add_argument("--level-db", type=float, default=-60.0)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    if args.seconds < 10:
        p.error("--seconds: at least 10 (the CPU is measured from 4 s to 4 s before the end)")
    print(
        f"{args.streams} real-time streams of white noise at {args.level_db:.0f} dBFS, "
        f"100 ms frames; CPU from 4 s to {args.seconds - 4:.0f} s\n"
    )
    print("| server | % of one core | µs per frame | streams per core |")
    print("|---|---|---|---|")
    frames_per_s = args.streams / bench.FRAME_S
    for _ in range(args.repeat):
        port = bench.free_port()
        server = bench.start_server(port, 2, ["--config", bench._config(args.streams)])
        try:
            cores = _measure(server.pid, f"ws://127.0.0.1:{port}/v1/stream", args, True)
        finally:
            bench._stop(server)
        port = bench.free_port()
        ready = multiprocessing.get_context("spawn").Event()
        bare = multiprocessing.get_context("spawn").Process(
            target=_bare_server, args=(port, ready), daemon=True
        )
        bare.start()
        try:
            ready.wait(30)
            floor = _measure(bare.pid or 0, f"ws://127.0.0.1:{port}", args, False)
        finally:
            bare.kill()
            bare.join()
        for name, used in (("`ser-serve` (default bundle)", cores), ("bare websockets", floor)):
            print(
                f"| {name} | {used * 100:.1f} | {used / frames_per_s * 1e6:.0f} | "
                f"{args.streams / used if used > 0 else float('inf'):.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
