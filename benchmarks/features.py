"""Benchmark the feature function (ms per second of audio on one core, first-call cost) and the
shipped model's LiteRT inference (ms per utterance).

Usage: .venv/bin/python benchmarks/features.py [--data ../shared/data/ravdess] [--clips 120] [--cnn]
Prints a Markdown table row set; BENCHMARKS.md records the output. `--cnn` adds the log-mel
sequence and the LiteRT cost of the log-mel CNN of EXPERIMENTS.md (its graph with untrained
weights: the cost does not depend on the weights; needs TensorFlow to convert it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

FIRST_CALL = (
    "import time; t=time.perf_counter(); from streamer.features import warm_up; warm_up(); "
    "print(time.perf_counter()-t)"
)


def first_call_s() -> float:
    """Import + first extraction in a fresh interpreter (what a feature worker pays at start)."""
    out = subprocess.run(
        [sys.executable, "-c", FIRST_CALL], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=Path("../shared/data/ravdess"))
    p.add_argument("--clips", type=int, default=120)
    p.add_argument("--cnn", action="store_true", help="also time the log-mel CNN experiment")
    args = p.parse_args()

    import numpy as np

    from streamer.audio_io import list_audio_files, read_audio
    from streamer.features import FEATURE_SPEC, extract, warm_up

    os.sched_setaffinity(0, {0})  # one core
    paths = list_audio_files(args.data)[:: max(1, 1440 // args.clips)][: args.clips]
    clips = [read_audio(path) for path in paths]
    warm_up()
    per_clip = []
    for clip in clips:
        t = time.perf_counter()
        extract(clip, FEATURE_SPEC.sample_rate)
        per_clip.append((time.perf_counter() - t) * 1000 / (clip.size / FEATURE_SPEC.sample_rate))
    ms_per_s = np.array(per_clip)
    first_s = sorted(first_call_s() for _ in range(5))[2]
    from streamer.classifier import Classifier

    clf = Classifier.from_dir(Path("models/default"))
    vectors = [extract(clip) for clip in clips[:20]]
    t = time.perf_counter()
    for _ in range(50):
        for v in vectors:
            clf.predict(v)
    infer_ms = (time.perf_counter() - t) * 1000 / (50 * len(vectors))
    print(
        f"clips: {len(clips)} RAVDESS files, mean {np.mean([c.size for c in clips]) / 16000:.2f} s"
    )
    print("| measure | value |")
    print("|---|---|")
    print(f"| features, ms per second of audio (mean) | {ms_per_s.mean():.2f} |")
    print(f"| features, ms per second of audio (p95) | {np.percentile(ms_per_s, 95):.2f} |")
    print(f"| import + first call in a new process, median of 5 (s) | {first_s:.2f} |")
    print(f"| LiteRT inference, models/default, one utterance (ms) | {infer_ms:.3f} |")
    if args.cnn:
        for name, value in cnn_costs(clips).items():
            print(f"| {name} | {value:.2f} |")


def cnn_costs(clips: list[Any]) -> dict[str, float]:
    """Log-mel sequence (ms per second of audio) and LiteRT inference of the CNN (ms)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from streamer.features import FEATURE_SPEC, log_mel_frames
    from train.logmel_cnn import FRAMES, build_cnn
    from train.model import to_tflite

    per_s = []
    for clip in clips:
        t = time.perf_counter()
        log_mel_frames(clip)
        per_s.append((time.perf_counter() - t) * 1000 / (clip.size / FEATURE_SPEC.sample_rate))
    interpreter = Interpreter(
        model_content=to_tflite(build_cnn(FEATURE_SPEC.n_mels, 8, 100, 0)), num_threads=1
    )
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    x = np.random.default_rng(0).normal(size=(1, FRAMES, FEATURE_SPEC.n_mels, 1))
    interpreter.set_tensor(index, x.astype(np.float32))
    interpreter.invoke()
    t = time.perf_counter()
    for _ in range(50):
        interpreter.set_tensor(index, x.astype(np.float32))
        interpreter.invoke()
    return {
        "log-mel sequence alone, ms per second of audio (mean)": float(np.mean(per_s)),
        "LiteRT inference, log-mel CNN (EXPERIMENTS row 16), 3 s input (ms)": (
            (time.perf_counter() - t) * 1000 / 50
        ),
    }


if __name__ == "__main__":
    main()
