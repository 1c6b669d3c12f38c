"""Soak `ser-serve`: many real-time streams for a long time, its memory sampled from outside.

Usage: .venv/bin/python benchmarks/soak.py [--streams 100] [--minutes 50] [--warmup 4]
       [--every 30] [--workers 2] [--data ../shared/data/ravdess]

Starts `ser-serve --no-mqtt` and drives it from this process: each stream sends real RAVDESS
speech (one actor's clips with pauses, ~60 s, looped) as 100 ms frames paced in real time for
the whole run, reading its results. Every `--every` seconds the RSS of all of the server's
processes (main process and feature workers, from /proc) is sampled. Reported (Markdown): RSS
at the end of the warm-up, at the end, the growth after warm-up (least-squares slope, MB per
hour) and the results' latency p95 over the last 5 minutes; a leak shows as a growth that does
not flatten. BENCHMARKS.md records the output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np
from serve import FRAME_S, RATE, _config, _rss_mb, free_port, show_log, speech_streams, start_server


async def _stream(url: str, name: str, audio: np.ndarray, until: float, out: dict) -> None:
    from websockets.asyncio.client import connect

    frame = int(FRAME_S * RATE)
    frames = [audio[i : i + frame].astype("<i2").tobytes() for i in range(0, audio.size, frame)]
    latencies: list[tuple[float, float]] = []
    async with connect(url, max_size=2**20, open_timeout=60) as ws:
        await ws.send(json.dumps({"type": "start", "stream": name}))
        assert json.loads(await ws.recv())["type"] == "ready"

        async def receive() -> None:
            async for message in ws:
                data = json.loads(message)
                if data["type"] == "result":
                    latencies.append((time.monotonic(), data["latency_ms"]))
                elif data["type"] == "end":
                    return

        receiver = asyncio.create_task(receive())
        t0 = time.monotonic()
        k = 0
        while time.monotonic() < until:
            due = t0 + k * FRAME_S
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            await ws.send(frames[k % len(frames)])
            k += 1
        await ws.send(json.dumps({"type": "stop"}))
        await asyncio.wait_for(receiver, 60)
    out[name] = latencies


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/ravdess"))
    p.add_argument("--streams", type=int, default=100)
    p.add_argument("--minutes", type=float, default=50.0)
    p.add_argument("--warmup", type=float, default=4.0, help="minutes before growth is measured")
    p.add_argument("--every", type=float, default=30.0, help="seconds between RSS samples")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()

    port = free_port()
    server = start_server(port, args.workers, ["--config", _config(args.streams)])
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not stop.wait(0 if not samples else args.every):
            samples.append(((time.monotonic() - started) / 60.0, _rss_mb(server.pid)))
            print(f"  {samples[-1][0]:6.1f} min  {samples[-1][1]:7.1f} MB", file=sys.stderr)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    audio = speech_streams(args.data, args.streams, 60.0)
    until = time.monotonic() + args.minutes * 60.0
    out: dict[str, list[tuple[float, float]]] = {}

    async def everything() -> None:
        rng = random.Random(1)

        async def one(i: int, a: np.ndarray) -> None:
            await asyncio.sleep(rng.uniform(0, 2.0))
            await _stream(f"ws://127.0.0.1:{port}/v1/stream", f"s{i}", a, until, out)

        await asyncio.gather(*(one(i, a) for i, a in enumerate(audio)))

    try:
        asyncio.run(everything())
    finally:
        stop.set()
        sampler.join(timeout=5)
        server.terminate()
        server.wait(timeout=60)
        show_log(server)
    after = [(t, rss) for t, rss in samples if t >= args.warmup]
    slope = 0.0
    if len(after) > 2:  # MB per hour, least squares over the samples after the warm-up
        slope = float(np.polyfit([t for t, _ in after], [r for _, r in after], 1)[0] * 60)
    end = time.monotonic()
    recent = [ms for lat in out.values() for when, ms in lat if when > end - 300]
    utterances = sum(len(lat) for lat in out.values())
    print(
        f"| streams | minutes | RSS after {args.warmup:g} min | RSS at the end | growth after "
        "warm-up | utterances | p95 latency, last 5 min |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.streams} | {args.minutes:g} | {after[0][1] if after else 0:.0f} MB | "
        f"{samples[-1][1]:.0f} MB | {slope:+.1f} MB/hour | {utterances} | "
        f"{np.percentile(recent, 95) if recent else float('nan'):.0f} ms |"
    )


if __name__ == "__main__":
    main()
