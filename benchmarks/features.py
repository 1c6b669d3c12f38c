"""Benchmark the feature function (ms per second of audio on one core, first-call cost) and the
shipped bundle's LiteRT inference (ms per utterance: the statistics network and, when the
bundle has one, the log-mel CNN over the utterance's 3 s windows, averaged; then as the pipeline
reads an utterance, with its history and alone in one batch: familiar voices and, where the bundle
has an alone network, recordings it does not know).

Usage: .venv/bin/python benchmarks/features.py [--data ../shared/data/ravdess] [--clips 120]
        [--model default|small|DIR]
Prints a Markdown table; BENCHMARKS.md records the output.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ser.classifier import Classifier
    from ser.features import Analysis

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

FIRST_CALL = (
    "import time; t=time.perf_counter(); from ser.features import warm_up; warm_up(); "
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
    p.add_argument("--model", default="default", help="bundle folder or shipped name")
    args = p.parse_args()

    import numpy as np

    from ser.audio_io import list_audio_files, read_audio
    from ser.bundle import resolve_bundle_path
    from ser.classifier import Classifier
    from ser.features import FEATURE_SPEC, analyse, warm_up

    os.sched_setaffinity(0, {0})  # one core
    paths = list_audio_files(args.data)[:: max(1, 1440 // args.clips)][: args.clips]
    clips = [read_audio(path) for path in paths]
    warm_up()
    per_clip = []
    for clip in clips:
        t = time.perf_counter()
        analyse(clip, FEATURE_SPEC.sample_rate)
        per_clip.append((time.perf_counter() - t) * 1000 / (clip.size / FEATURE_SPEC.sample_rate))
    ms_per_s = np.array(per_clip)
    first_s = sorted(first_call_s() for _ in range(5))[2]

    clf = Classifier.from_dir(resolve_bundle_path(args.model))
    adapter = clf.adapter()
    analyses = [clf.analyse(clip, 16_000) for clip in clips[:20]]
    encoder_ms = 0.0
    if clf.has_encoder:  # the feature workers run the encoder (Whisper's log-mel included)
        t = time.perf_counter()
        for _ in range(3):
            for clip in clips[:20]:
                clf.embed(clip, 16_000)
        encoder_ms = (time.perf_counter() - t) * 1000 / (3 * 20)
    inputs = [adapter.push("bench", a) for a in analyses]
    repeats = 50
    t = time.perf_counter()
    for _ in range(repeats):
        for x in inputs:
            clf.predict(x)
    infer_ms = (time.perf_counter() - t) * 1000 / (repeats * len(inputs))
    # as the pipeline reads an utterance: with its speaker's history and alone, in one batch
    pair_ms = {"familiar": _pair_ms(clf, analyses)}
    if clf.has_alone_networks:  # a recording the bundle does not know: no alone network share
        from ser_train import nonspeech

        generated = [clf.analyse(audio, 16_000) for _, audio in nonspeech.clips(2)]
        if {clf.alone_weight(a.embedding) for a in generated} == {0.0}:
            pair_ms["unfamiliar (generated non-speech)"] = _pair_ms(clf, generated)
    networks = " + ".join(
        ["statistics"]
        + (["log-mel CNN"] if clf.bundle.cnn is not None else [])
        + (["encoder head"] if clf.has_encoder else [])
    )
    print(
        f"clips: {len(clips)} RAVDESS files, mean {np.mean([c.size for c in clips]) / 16000:.2f} s"
    )
    print("| measure | value |")
    print("|---|---|")
    print(f"| features + log-mel, ms per second of audio (mean) | {ms_per_s.mean():.2f} |")
    print(
        f"| features + log-mel, ms per second of audio (p95) | {np.percentile(ms_per_s, 95):.2f} |"
    )
    print(f"| import + first call in a new process, median of 5 (s) | {first_s:.2f} |")
    mean_s = np.mean([c.size for c in clips[:20]]) / 16000
    print(
        f"| LiteRT inference, {args.model} ({networks}), one utterance of {mean_s:.1f} s on "
        f"average (ms) | {infer_ms:.3f} |"
    )
    for kind, ms in pair_ms.items():
        print(
            f"| LiteRT inference as the pipeline reads an utterance (with its history and "
            f"alone, one batch), {kind} (ms) | {ms:.3f} |"
        )
    if clf.has_encoder:
        print(
            f"| Whisper log-mel + encoder (feature workers), one utterance of {mean_s:.1f} s on "
            f"average (ms) | {encoder_ms:.1f} |"
        )


def _pair_ms(clf: Classifier, analyses: list[Analysis], repeats: int = 50) -> float:
    """ms per utterance of `predict_many([with history, alone])`, as `ser-serve` asks."""
    adapter = clf.adapter()
    pairs = [[adapter.push("bench", a), adapter.alone(a)] for a in analyses]
    for pair in pairs[:3]:
        clf.predict_many(pair)
    t = time.perf_counter()
    for _ in range(repeats):
        for pair in pairs:
            clf.predict_many(pair)
    return (time.perf_counter() - t) * 1000 / (repeats * len(pairs))


if __name__ == "__main__":
    main()
