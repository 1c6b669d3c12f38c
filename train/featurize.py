"""Feature extraction for training: decode, `streamer.features.extract`, cache on disk.

The cache is keyed by the file's content hash and the feature spec's digest, so a renamed or
moved file still hits and a changed spec never reuses stale vectors. Vectors are stored as
`.npy` (loaded with allow_pickle=False).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streamer.audio_io import AudioReadError, read_audio
from streamer.features import FEATURE_SPEC, extract
from train.robustness import make_variant

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "ser" / "features"


@dataclass(frozen=True)
class Extracted:
    """Outcome for one file: a vector, or the reason it was skipped."""

    path: Path
    content_sha256: str
    vector: npt.NDArray[np.float32] | None
    error: str | None
    cached: bool


def _cache_path(cache_dir: Path, digest: str, variant: str) -> Path:
    suffix = "" if variant == "clean" else f".{variant}"
    return cache_dir / FEATURE_SPEC.digest() / digest[:2] / f"{digest}{suffix}.npy"


def featurize_file(path: Path, cache_dir: Path | None, variant: str = "clean") -> Extracted:
    """Read, hash and featurize one file (runs in a worker process); `variant`: see
    train/robustness.py."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    target = _cache_path(cache_dir, digest, variant) if cache_dir is not None else None
    if target is not None and target.exists():
        try:
            vec = np.load(target, allow_pickle=False)
            if vec.shape == (FEATURE_SPEC.dim,):
                return Extracted(path, digest, vec.astype(np.float32), None, cached=True)
        except (OSError, ValueError):
            logger.warning("ignoring unreadable cache entry %s", target)
    try:
        audio = read_audio(path, FEATURE_SPEC.sample_rate)
    except AudioReadError as exc:
        return Extracted(path, digest, None, str(exc), cached=False)
    audio = make_variant(audio, variant, seed=int(digest[:8], 16))
    vec = extract(audio, FEATURE_SPEC.sample_rate)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, vec, allow_pickle=False)
        tmp.replace(target)
    return Extracted(path, digest, vec, None, cached=False)


def featurize_all(
    paths: Sequence[Path],
    cache_dir: Path | None,
    workers: int,
    on_done: Callable[[Extracted], None] | None = None,
    variant: str = "clean",
) -> list[Extracted]:
    """Featurize `paths` in `workers` processes; results in the order of `paths`."""
    results: list[Extracted] = []
    if workers <= 1:
        for path in paths:
            item = featurize_file(path, cache_dir, variant)
            results.append(item)
            if on_done:
                on_done(item)
        return results
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    # BLAS threads fight each other across worker processes (small numpy calls jump to
    # 8-16 ms); spawned workers read this from the environment they inherit.
    saved = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            n = len(paths)
            for item in pool.map(
                featurize_file, paths, [cache_dir] * n, [variant] * n, chunksize=8
            ):
                results.append(item)
                if on_done:
                    on_done(item)
    finally:
        if saved is None:
            del os.environ["OPENBLAS_NUM_THREADS"]
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = saved
    return results
