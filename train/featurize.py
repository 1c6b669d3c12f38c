"""Feature extraction for training: decode, `streamer.features.analyse`, cache on disk.

The cache is keyed by the file's content hash and the feature spec's digest, so a renamed or
moved file still hits and a changed spec never reuses stale vectors. Vectors (and, when asked
for, the log-mel sequences the CNN reads) are stored as `.npy` (loaded with allow_pickle=False).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from ser.audio_io import AudioReadError, read_audio
from ser.features import FEATURE_SPEC, analyse
from ser.workers import exit_with_parent
from ser_train.robustness import make_variant, statistics_variant

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
    log_mel: npt.NDArray[np.float32] | None = None  # (n_frames, n_mels), when asked for


def _cache_path(cache_dir: Path, digest: str, variant: str, kind: str = "") -> Path:
    suffix = ("" if variant == "clean" else f".{variant}") + kind
    return cache_dir / FEATURE_SPEC.digest() / digest[:2] / f"{digest}{suffix}.npy"


def _load(
    path: Path | None, ok: Callable[[npt.NDArray[np.float32]], bool]
) -> npt.NDArray[np.float32] | None:
    if path is None or not path.exists():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        logger.warning("ignoring unreadable cache entry %s", path)
        return None
    return array.astype(np.float32) if ok(array) else None


def save_array(path: Path, array: npt.NDArray[np.float32]) -> None:
    """Write `array` to `path` atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, array, allow_pickle=False)
    tmp.replace(path)


def featurize_file(
    path: Path, cache_dir: Path | None, variant: str = "clean", log_mel: bool = False
) -> Extracted:
    """Read, hash and featurize one file (runs in a worker process); `variant`: see
    train/robustness.py; `log_mel`: also return the log-mel sequence."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    vec_path = mel_path = None
    if cache_dir is not None:  # keyed by the audio the statistics read ("vadview": "vadhead")
        source = statistics_variant(variant)
        vec_path = _cache_path(cache_dir, digest, source)
        mel_path = _cache_path(cache_dir, digest, source, ".logmel")
    vec = _load(vec_path, lambda a: a.shape == (FEATURE_SPEC.dim,))
    mel = _load(mel_path, lambda a: a.ndim == 2 and a.shape[1] == FEATURE_SPEC.n_mels)
    if vec is not None and (mel is not None or not log_mel):
        return Extracted(path, digest, vec, None, cached=True, log_mel=mel)
    try:
        audio = read_audio(path, FEATURE_SPEC.sample_rate)
    except AudioReadError as exc:
        return Extracted(path, digest, None, str(exc), cached=False)
    audio = make_variant(audio, statistics_variant(variant), seed=int(digest[:8], 16))
    analysis = analyse(audio)
    if vec_path is not None and mel_path is not None:
        save_array(vec_path, analysis.vector)
        if log_mel:
            save_array(mel_path, analysis.log_mel)
    return Extracted(
        path,
        digest,
        analysis.vector,
        None,
        cached=False,
        log_mel=analysis.log_mel if log_mel else None,
    )


def featurize_all(
    paths: Sequence[Path],
    cache_dir: Path | None,
    workers: int,
    *,
    on_done: Callable[[Extracted], None] | None = None,
    variant: str = "clean",
    log_mel: bool = False,
    pool: Executor | None = None,
) -> list[Extracted]:
    """Featurize `paths` in `workers` processes (those of `pool` when given); results in the
    order of `paths`."""
    n = len(paths)
    return map_in_processes(
        featurize_file,
        (paths, [cache_dir] * n, [variant] * n, [log_mel] * n),
        workers,
        on_done,
        pool=pool,
    )


T = TypeVar("T")


@contextlib.contextmanager
def process_pool(workers: int) -> Iterator[Executor | None]:
    """`workers` spawned processes for `map_in_processes` calls to share (each exits with its
    parent; one BLAS thread each); None for one worker or fewer (work in this process). One pool
    for many calls spares each call the workers' start (about a second: imports)."""
    if workers <= 1:
        yield None
        return
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    # BLAS threads fight each other across worker processes (small numpy calls jump to
    # 8-16 ms); spawned workers read this from the environment they inherit.
    saved = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=exit_with_parent) as pool:
            yield pool
    finally:
        if saved is None:
            del os.environ["OPENBLAS_NUM_THREADS"]
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = saved


def map_in_processes(
    fn: Callable[..., T],
    columns: tuple[Sequence[Any], ...],
    workers: int,
    on_done: Callable[[T], None] | None,
    *,
    pool: Executor | None = None,
) -> list[T]:
    """`fn(*row)` for each row of the argument `columns`, in `pool` or else in `workers`
    processes of their own (`process_pool`), results in order, `on_done` after each."""
    if pool is None and workers > 1:
        with process_pool(workers) as own:
            return map_in_processes(fn, columns, workers, on_done, pool=own)
    results: list[T] = []
    rows = zip(*columns, strict=True)
    items = (fn(*args) for args in rows) if pool is None else pool.map(fn, *columns, chunksize=8)
    for item in items:
        results.append(item)
        if on_done:
            on_done(item)
    return results
