"""Encoder embeddings for training: decode, `streamer.encoder`, cache on disk.

Each clip's pooled encoder statistics, (n_layers, 2 * width) float32, are computed by the same
LiteRT encoder file and the same `whisper_log_mel` that `ser-live` runs, and cached keyed by the
audio file's content hash, the encoder file's hash, the encoder spec and the variant
(train/robustness.py), so a re-exported or re-quantised encoder never reuses stale rows.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ser.audio_io import AudioReadError, read_audio
from ser.encoder import ENCODER_SPEC, Encoder, whisper_log_mel
from ser_train.featurize import map_in_processes, save_array
from ser_train.robustness import make_variant

logger = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (hex)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class Embedded:
    """Outcome for one file: its pooled statistics, or the reason it was skipped."""

    path: Path
    embedding: npt.NDArray[np.float32] | None  # (n_layers, 2 * width)
    error: str | None
    cached: bool


@lru_cache(maxsize=1)
def _get_encoder(encoder_path: Path) -> Encoder:
    """One single-threaded encoder per worker process."""
    return Encoder(encoder_path, num_threads=1)


def cache_path(cache_dir: Path, encoder_path: Path, audio_digest: str, variant: str) -> Path:
    key = f"{ENCODER_SPEC.digest()}-{file_digest(encoder_path)[:16]}"
    suffix = "" if variant == "clean" else f".{variant}"
    return cache_dir / "embeddings" / key / audio_digest[:2] / f"{audio_digest}{suffix}.npy"


def embed_file(path: Path, encoder_path: Path, cache_dir: Path | None, variant: str) -> Embedded:
    """Read, hash and embed one file (runs in a worker process)."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    target = None
    if cache_dir is not None:
        target = cache_path(cache_dir, encoder_path, digest, variant)
        if target.exists():
            try:
                cached = np.load(target, allow_pickle=False)
                if cached.ndim == 2:  # the key holds the encoder file's hash
                    return Embedded(path, cached.astype(np.float32), None, cached=True)
            except (OSError, ValueError):
                logger.warning("ignoring unreadable cache entry %s", target)
    try:
        audio = read_audio(path, ENCODER_SPEC.sample_rate)
    except AudioReadError as exc:
        return Embedded(path, None, str(exc), cached=False)
    audio = make_variant(audio, variant, seed=int(digest[:8], 16))
    embedding = _get_encoder(encoder_path).embed([whisper_log_mel(audio)])[0]
    if target is not None:
        save_array(target, embedding)
    return Embedded(path, embedding, None, cached=False)


def embed_all(
    paths: Sequence[Path],
    encoder_path: Path,
    cache_dir: Path | None,
    workers: int,
    *,
    variant: str = "clean",
    on_done: Callable[[Embedded], None] | None = None,
    pool: Executor | None = None,
) -> list[Embedded]:
    """Embed `paths` in `workers` processes (those of `pool` when given; one single-threaded
    encoder each); results in the order of `paths`."""
    n = len(paths)
    return map_in_processes(
        embed_file,
        (paths, [encoder_path] * n, [cache_dir] * n, [variant] * n),
        workers,
        on_done,
        pool=pool,
    )
