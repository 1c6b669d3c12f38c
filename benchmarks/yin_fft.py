"""Would another FFT make the statistics cheaper? YIN's autocorrelation FFTs with numpy
(float64, as `ser.features` runs them) against scipy.fft in float64 and float32: time per
utterance and how far F0 and the feature vector move.

Usage: .venv/bin/python benchmarks/yin_fft.py [--data ../shared/data/ravdess] [--every 12]

Needs scipy (the `train` extra; not in the base install). Pin it to one core for stable
numbers (`taskset -c 1`). Prints Markdown; BENCHMARKS.md quotes it.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from unittest import mock

import numpy as np
import scipy.fft
import soundfile as sf

from ser import features

SPEC = features.FEATURE_SPEC


def fft_as(dtype: type | None) -> contextlib.AbstractContextManager[object]:
    """A context in which `ser.features` runs its FFTs with scipy.fft in `dtype` (None: as
    shipped, numpy's)."""
    if dtype is None:
        return contextlib.nullcontext()

    def rfft(a: np.ndarray, n: int | None = None, axis: int = -1) -> np.ndarray:
        return np.asarray(scipy.fft.rfft(np.asarray(a, dtype), n, axis=axis))

    def irfft(a: np.ndarray, n: int | None = None, axis: int = -1) -> np.ndarray:
        return np.asarray(scipy.fft.irfft(a, n, axis=axis))

    return mock.patch.multiple(features.np.fft, rfft=rfft, irfft=irfft)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/ravdess"))
    p.add_argument("--every", type=int, default=12, help="every Nth clip (default: 120 clips)")
    args = p.parse_args()
    clips = sorted(args.data.glob("Actor_*/*.flac"))[:: args.every]
    xs = [features._prepare(sf.read(c, dtype="int16")[0], 16_000, SPEC) for c in clips]
    reference_f0 = [features._yin(x, SPEC) for x in xs]
    reference = [features.extract(x, 16_000) for x in xs]
    print(f"{len(xs)} clips, mean {np.mean([x.size for x in xs]) / 16_000:.2f} s\n")
    print(
        "| FFT | YIN per utterance, every frame (ms) | frames whose F0 moved > 0.01 Hz | "
        "largest F0 change (Hz) | largest feature change |\n|---|---|---|---|---|"
    )
    for name, dtype in (
        ("numpy float64 (shipped)", None),
        ("scipy float64", np.float64),
        ("scipy float32", np.float32),
    ):
        with fft_as(dtype):
            started = time.perf_counter()
            f0 = [features._yin(x, SPEC) for x in xs]
            ms = (time.perf_counter() - started) / len(xs) * 1000
            vectors = [features.extract(x, 16_000) for x in xs]
        moved = np.concatenate([np.abs(a - b) for a, b in zip(f0, reference_f0, strict=True)])
        change = max(float(np.max(np.abs(a - b))) for a, b in zip(vectors, reference, strict=True))
        print(
            f"| {name} | {ms:.2f} | {int((moved > 0.01).sum())} of {moved.size} | "
            f"{moved.max():.3g} | {change:.3g} |"
        )


if __name__ == "__main__":
    main()
