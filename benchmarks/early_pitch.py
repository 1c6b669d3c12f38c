"""Worker time per utterance with and without the pitch computed while it is spoken
(`pipeline.early_pitch`): RAVDESS clips joined by 1 s of silence, cut by the live VAD
segmenter; the parts the pipeline would hand over (one per second of speech) replayed in this
process, then each utterance's own job.

Usage: taskset -c 1 .venv/bin/python benchmarks/early_pitch.py [--data ../shared/data/ravdess]

Prints Markdown; BENCHMARKS.md quotes it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from ser import features
from ser.config import VadConfig
from ser.messages import AudioBlock
from ser.pipeline import EARLY_STEP_FRAMES
from ser.segmenter import VadSegmenter


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/ravdess"))
    args = p.parse_args()
    clips = sorted(args.data.glob("Actor_0[1-4]/*.flac"))[::4][:40]
    gap = np.zeros(16_000, np.int16)
    audio = np.concatenate([np.concatenate([sf.read(c, dtype="int16")[0], gap]) for c in clips])
    segmenter = VadSegmenter(VadConfig(), "bench")
    utterances, parts, current = [], [], []
    for i in range(0, audio.size, 1_600):  # 100 ms blocks, as a stream sends them
        block = AudioBlock("bench", audio[i : i + 1_600], 16_000, i / 16_000, 0.0)
        for utterance in segmenter.push(block):
            utterances.append(utterance)
            parts.append(current)
            current = []
        tracker = segmenter.tracker
        if tracker.in_speech:
            ready = features.f0_frames_ready(tracker.pending_samples)
            done = current[-1][1] if current else 0
            if ready - done >= EARLY_STEP_FRAMES:
                current.append((tracker.pending_audio(), ready, done))
    started = time.perf_counter()
    for utterance in utterances:
        features.analyse(utterance.samples)
    whole = (time.perf_counter() - started) / len(utterances) * 1000
    early = final = 0.0
    for utterance, pieces in zip(utterances, parts, strict=True):
        started = time.perf_counter()
        f0 = []
        for so_far, ready, done in pieces:
            offset, end = features.f0_span(done, ready)
            f0.append(features.f0_frames(so_far[offset:end], done, ready, offset))
        early += time.perf_counter() - started
        started = time.perf_counter()
        features.analyse(utterance.samples, f0_prefix=np.concatenate(f0) if f0 else None)
        final += time.perf_counter() - started
    n = len(utterances)
    mean_s = np.mean([u.samples.size for u in utterances]) / 16_000
    print(f"{n} utterances, {mean_s:.2f} s on average\n")
    print("| statistics per utterance (ms) | early pitch off | on |\n|---|---|---|")
    print(f"| while it is spoken (parts) | 0 | {early / n * 1000:.1f} |")
    print(f"| once it has ended | {whole:.1f} | {final / n * 1000:.1f} |")


if __name__ == "__main__":
    main()
