"""Profile `ser-serve` under load: where each thread of the server's main process spends its time.

Usage: .venv/bin/python benchmarks/profile_serve.py [--streams 150] [--seconds 30]
       [--model default] [--py-spy PATH] [--gil]

Needs py-spy (`pip install py-spy`, not a dependency of ser). Starts `ser-serve --no-mqtt` as in
benchmarks/serve.py, drives N real-time RAVDESS streams at it, and samples the server's main
process with `py-spy record --threads --idle --format raw` (200 Hz) meanwhile. Prints Markdown:
the load level's latency, then per thread the share of samples busy (not waiting in a selector,
a condition or an idle executor), and the main thread's and the inference thread's largest
inclusive functions as shares of all their samples. `--gil`: only samples of the thread that
holds the GIL (`py-spy --gil`): each thread's samples are then its Python work, out of
200 x (seconds - 6) possible. BENCHMARKS.md quotes its output.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import serve as bench  # benchmarks/serve.py: the server and the load generator

# leaf frames of a thread that waits: a selector, a condition, an idle thread-pool worker
IDLE_LEAVES = ("select (selectors.py", "Condition.wait", "_worker (concurrent/futures/thread.py")


def summarize(raw: Path, top: int = 25) -> list[str]:
    """py-spy's raw (collapsed) stacks -> Markdown lines."""
    samples: collections.Counter[str] = collections.Counter()
    busy: collections.Counter[str] = collections.Counter()
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[-1]
        n = int(count)
        samples[thread] += n
        if not any(idle in frames[-1] for idle in IDLE_LEAVES):
            busy[thread] += n
        for name in {f.split(" (")[0] for f in frames[1:]}:
            inclusive[thread][name] += n
    out = ["| thread | samples | busy |", "|---|---|---|"]
    out += [f"| {t} | {n} | {busy[t] / n:.0%} |" for t, n in samples.most_common()]
    for thread in ("MainThread", "QueueFeederThread", "ser-infer_0"):
        if thread not in samples:
            continue
        out += ["", f"| {thread}: function (inclusive) | share of samples |", "|---|---|"]
        # frames under (nearly) every sample are the thread's own loop, not where time goes
        below = [(k, n) for k, n in inclusive[thread].most_common() if n < 0.95 * samples[thread]]
        out += [f"| {name} | {n / samples[thread]:.1%} |" for name, n in below[:top]]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/ravdess"))
    p.add_argument("--streams", type=int, default=150)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--model", default=None)
    p.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    p.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL")
    args = p.parse_args()
    if shutil.which(args.py_spy) is None:
        sys.exit("profile_serve: py-spy not found: pip install py-spy, or pass --py-spy PATH")
    if args.model:
        bench.MODEL_ARGS[:] = ["--model", args.model]
    port = bench.free_port()
    server = bench.start_server(port, args.workers, ["--config", bench._config(args.streams)])
    streams = bench.speech_streams(args.data, args.streams, args.seconds)
    raw = Path(tempfile.mkdtemp()) / "profile.txt"
    spy = subprocess.Popen(
        [
            *(args.py_spy, "record", "--pid", str(server.pid), "--threads"),
            "--gil" if args.gil else "--idle",
            *("--rate", "200", "--duration", str(max(1, int(args.seconds - 6)))),
            *("--format", "raw", "-o", str(raw)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"ws://127.0.0.1:{port}/v1/stream"
    out: dict[str, tuple[list[float], float]] = {}

    async def all_streams() -> None:
        rng = random.Random(1)
        await asyncio.gather(
            *(
                bench._one_stream(url, f"s{i}", a, rng.uniform(0, 2.0), out)
                for i, a in enumerate(streams)
            )
        )

    try:
        asyncio.run(all_streams())
        spy.wait(timeout=120)
    finally:
        server.terminate()
        server.wait(timeout=30)
        bench.show_log(server)
    latencies = [x for lat, _ in out.values() for x in lat]
    p50, p95 = np.percentile(latencies, [50, 95])
    print(
        f"{args.streams} streams, {len(latencies)} utterances, p50 / p95 {p50:.0f} / {p95:.0f} ms"
    )
    print()
    print("\n".join(summarize(raw)))


if __name__ == "__main__":
    main()
