"""What the VAD segmenter costs the server's main process per received frame.

Usage: .venv/bin/python benchmarks/segmenter.py [--data ../shared/data/ravdess] [--streams 200]
       [--seconds 30] [--repeat 3]

The streams of `benchmarks/serve.py` (each one RAVDESS actor's clips joined by pauses, 16 kHz
int16), cut into its 100 ms frames, pushed through one `VadSegmenter` per stream in the order a
server receives them (every stream's first frame, then every stream's second, ...), as
`ser-serve` hands each received frame to its stream's segmenter. One thread, no I/O. Prints
Markdown: the CPU per 100 ms block (best of `--repeat` runs, µs) and what that is for N
real-time streams (% of one core), for the speech streams and for the same number of streams of
quiet room noise (-60 dBFS white noise: a microphone nobody speaks into).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import serve as bench  # benchmarks/serve.py: the load generator's streams

from ser.config import VadConfig
from ser.messages import AudioBlock
from ser.segmenter import VadSegmenter


def cost_us(streams: list[np.ndarray], frame: int, rate: int) -> tuple[float, int]:
    """CPU µs per block of `frame` samples and the utterances found, all streams in turn."""
    n_blocks = min(s.size for s in streams) // frame
    blocks = [
        [
            AudioBlock(f"s{i}", s[k * frame : (k + 1) * frame], rate, k * 0.1, 1e3 + k * 0.1)
            for k in range(n_blocks)
        ]
        for i, s in enumerate(streams)
    ]
    segmenters = [VadSegmenter(VadConfig(), f"s{i}", rate) for i in range(len(streams))]
    utterances = 0
    start = time.process_time()
    for k in range(n_blocks):
        for i, segmenter in enumerate(segmenters):
            utterances += len(segmenter.push(blocks[i][k]))
    return (time.process_time() - start) / (n_blocks * len(streams)) * 1e6, utterances


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/ravdess"))
    p.add_argument("--streams", type=int, default=200)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    rate, frame = bench.RATE, int(bench.FRAME_S * bench.RATE)
    speech = bench.speech_streams(args.data, args.streams, args.seconds)
    rng = np.random.default_rng(0)
    noise = [
        (rng.standard_normal(s.size) * 32768 * 10 ** (-60 / 20)).astype(np.int16) for s in speech
    ]
    print(
        f"{args.streams} streams, {args.seconds:.0f} s, {frame}-sample blocks, best of", args.repeat
    )
    print("\n| streams | µs per 100 ms block | % of one core, all in real time | utterances |")
    print("|---|---|---|---|")
    for name, streams in (("speech", speech), ("room noise", noise)):
        runs = [cost_us(streams, frame, rate) for _ in range(args.repeat)]
        best = min(us for us, _ in runs)
        share = best * 1e-6 * args.streams / bench.FRAME_S * 100
        print(f"| {name} | {best:.1f} | {share:.1f} | {runs[0][1]} |")


if __name__ == "__main__":
    main()
