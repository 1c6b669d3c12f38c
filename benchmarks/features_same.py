"""Does this checkout's feature function compute what an earlier revision's did, bit for bit,
and how much faster or slower is it? A check for changes meant to leave the features as they
are (bundles are trained on them: a changed value needs a new `FeatureSpec` version).

Usage: .venv/bin/python benchmarks/features_same.py REV [--data ../shared/data/ravdess
        --data ../shared/data/nemo] [--every 4]

Loads `streamer/features.py` as it was at git revision REV (`git show`) beside the current
`ser.features`, and runs both on every `--every`-th clip of the first `--data` folder and
every (1 + 2k) x `--every`-th of the k-th after it (by default RAVDESS, then nEMO's every
12th), each clip as int16 (as the live pipeline has it), alone and with a pitch
prefix computed as the live pipeline does (`f0_frames` of its first frames), and on three
synthetic inputs (a short silence, noise, a long silence). Prints how many analyses differ
(vector or log-mel, any bit) and the mean time per clip of each, on one core. Exit status 1
when any differs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def load_revision(rev: str) -> ModuleType:
    """`streamer/features.py` at `rev`, imported as module `ser.features_at_rev`."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{rev}:streamer/features.py"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "features_at_rev.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("ser.features_at_rev", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rev", help="git revision to compare with (e.g. HEAD~1)")
    p.add_argument("--data", type=Path, action="append", default=None)
    p.add_argument("--every", type=int, default=4)
    args = p.parse_args()
    data = args.data or [Path("../shared/data/ravdess"), Path("../shared/data/nemo")]

    from ser import features as new
    from ser.audio_io import float_to_int16, list_audio_files, read_audio

    old = load_revision(args.rev)
    os.sched_setaffinity(0, {0})  # one core
    clips = []
    for i, folder in enumerate(data):
        every = args.every * (1 + 2 * i)
        clips += [float_to_int16(read_audio(f)) for f in list_audio_files(folder)[::every]]
    rng = np.random.default_rng(0)
    synthetic = [
        np.zeros(800, np.int16),
        (3000 * rng.standard_normal(30_000)).astype(np.int16),
        np.zeros(40_000, np.int16),
    ]
    differ = n = 0
    took = {"old": 0.0, "new": 0.0}

    def both(y: np.ndarray, prefix_frames: int = 0) -> bool:
        """Whether both revisions analyse `y` alike (with the pitch of its first frames known)."""
        out = []
        for name, module in (("old", old), ("new", new)):
            prefix = None
            if prefix_frames:
                end = prefix_frames * 160 + 512
                prefix = module.f0_frames(y[:end], 0, prefix_frames, 0)
            t = time.perf_counter()
            out.append(module.analyse(y, 16_000, f0_prefix=prefix))
            took[name] += time.perf_counter() - t
        a, b = out
        return bool(np.array_equal(a.vector, b.vector) and np.array_equal(a.log_mel, b.log_mel))

    for y in clips:
        k = int(rng.integers(1, 200))
        for frames in (0, k) if y.size > k * 160 + 512 else (0,):
            n += 1
            differ += not both(y, frames)
    for y in synthetic:
        n += 1
        differ += not both(y)
    print(f"| revision | analyses | differ | ms per clip, {args.rev} / this checkout |")
    print("|---|---|---|---|")
    old_ms, new_ms = (took[k] * 1e3 / n for k in ("old", "new"))
    print(f"| {args.rev} | {n} | {differ} | {old_ms:.2f} / {new_ms:.2f} |")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
