"""Benchmark `ser-live`: start-up, fast-mode throughput, real-time latency, peak memory.

Usage: .venv/bin/python benchmarks/live.py [--data ../shared/data/ravdess] [--realtime-clips 16]
    [--model small]

Runs `ser-live --json --no-mqtt` as a subprocess (as a user would) on RAVDESS audio and prints
Markdown tables; BENCHMARKS.md records the output.
- start-up: process launch to the "listening on" line, median of 5 (warm OS caches).
- throughput: all 240 clips of actors 1-4 in fast mode; real-time factor = audio seconds per
  second of processing after "listening".
- latency: one stream of N clips separated by 1-2 s of silence, played with --realtime; the
  `latency_ms` field (end of speech to result ready).
- memory: peak of the summed RSS and PSS of ser-live and all its child processes, sampled
  every 50 ms during the throughput run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from proctree import tree

CMD = [sys.executable, "-m", "ser.cli", "--json", "--no-mqtt"]


def _memory_mb(pid: int) -> tuple[float, float]:
    rss = pss = 0.0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) / 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) / 1024
        except OSError:
            continue
    return rss, pss


def run(args: list[str], sample_memory: bool = False) -> dict[str, object]:
    """Run ser-live; returns results, seconds to 'listening', total seconds, peak memory."""
    t0 = time.monotonic()
    proc = subprocess.Popen([*CMD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    listening: list[float] = []
    stderr: list[str] = []
    peak = [0.0, 0.0]

    def read_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace")
            stderr.append(line)
            if line.startswith("listening on") and not listening:
                listening.append(time.monotonic() - t0)

    def sample() -> None:
        while proc.poll() is None:
            rss, pss = _memory_mb(proc.pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            time.sleep(0.05)

    threads = [threading.Thread(target=read_stderr)]
    if sample_memory:
        threads.append(threading.Thread(target=sample))
    for t in threads:
        t.start()
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.wait()
    total = time.monotonic() - t0
    for t in threads:
        t.join()
    if proc.returncode != 0:
        raise SystemExit(f"ser-live failed: {''.join(stderr)}")
    results = [json.loads(line) for line in out.decode().splitlines()]
    return {
        "results": results,
        "listening_s": listening[0],
        "total_s": total,
        "rss_mb": peak[0],
        "pss_mb": peak[1],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=Path("../shared/data/ravdess"))
    p.add_argument("--realtime-clips", type=int, default=16)
    p.add_argument("--model", default=None, help="bundle folder or shipped name (default: default)")
    args = p.parse_args()
    if args.model:
        CMD.extend(["--model", args.model])

    import soundfile as sf

    from ser.audio_io import read_audio

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        short = tmp / "short.wav"
        sf.write(short, read_audio(args.data / "Actor_01" / "03-01-01-01-01-01-01.flac"), 16_000)
        starts = sorted(run(["--input", str(short)])["listening_s"] for _ in range(5))  # type: ignore[type-var]

        fast_dir = tmp / "fast"
        fast_dir.mkdir()
        audio_s = 0.0
        for actor in (1, 2, 3, 4):
            for clip in sorted((args.data / f"Actor_{actor:02d}").glob("*.flac")):
                (fast_dir / clip.name).symlink_to(clip.resolve())
                audio_s += sf.info(str(clip)).duration
        fast = run(["--input", str(fast_dir)], sample_memory=True)
        processing_s = float(fast["total_s"]) - float(fast["listening_s"])  # type: ignore[arg-type]

        rng = np.random.default_rng(0)
        clips = sorted(args.data.glob("Actor_*/*.flac"))
        parts = [np.zeros(16_000, np.float32)]
        for index in rng.choice(len(clips), args.realtime_clips, replace=False):
            parts.append(read_audio(clips[index]))
            parts.append(np.zeros(int(rng.uniform(1.0, 2.0) * 16_000), np.float32))
        stream = np.concatenate(parts)
        stream += rng.normal(0, 10 ** (-70 / 20), stream.size).astype(np.float32)
        sf.write(tmp / "stream.wav", stream, 16_000)
        realtime = run(["--input", str(tmp / "stream.wav"), "--realtime"])
        latencies = np.array([r["latency_ms"] for r in realtime["results"]])  # type: ignore[union-attr]

    print("| measure | value | goal |")
    print("|---|---|---|")
    print(f"| start to listening, median of 5 (s) | {starts[2]:.2f} | 1.5 |")
    print(f"| fast mode: audio | {audio_s:.0f} s in 240 files | |")
    print(f"| fast mode: processing after start-up (s) | {processing_s:.1f} | |")
    print(f"| fast mode: real-time factor | {audio_s / processing_s:.0f}x | 100x |")
    print(f"| fast mode: results | {len(fast['results'])} | 240 |")  # type: ignore[arg-type]
    print(f"| peak memory, all processes, RSS (MB) | {fast['rss_mb']:.0f} | 300 |")
    print(f"| peak memory, all processes, PSS (MB) | {fast['pss_mb']:.0f} | |")
    print(f"| real-time: utterances | {latencies.size} (of {args.realtime_clips} clips) | |")
    print(f"| real-time latency p50 (ms) | {np.percentile(latencies, 50):.0f} | |")
    print(f"| real-time latency p95 (ms) | {np.percentile(latencies, 95):.0f} | 350 |")
    print(f"| real-time latency max (ms) | {latencies.max():.0f} | |")


if __name__ == "__main__":
    main()
