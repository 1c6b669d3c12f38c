"""The training data set: every clip of every `--data` corpus, featurized and aligned.

`load_dataset` scans each corpus, keeps the wanted speakers, and featurizes the clean audio and
each named variant (train/robustness.py) through the feature cache (train/featurize.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ser.labels import LABELS
from ser_train.corpora import CORPORA, Clip, DataError, Scan, scan
from ser_train.corpora.base import fingerprint
from ser_train.embed import embed_all
from ser_train.featurize import Extracted, featurize_all, process_pool

logger = logging.getLogger(__name__)

Mels = list[npt.NDArray[np.float32]]
# (description, n) -> a callback advanced once per featurized clip
ProgressFactory = Callable[[str, int], Callable[[Any], None]]


@dataclass(frozen=True)
class EncoderChoice:
    """Which encoder file embeds the clips, and which of its pooled layers the head reads."""

    path: Path
    layers: tuple[int, ...]


@dataclass(frozen=True)
class Dataset:
    """Clips of all corpora with aligned arrays (n rows).

    y: (n,) int64 indices into LABELS; speakers: (n,) speaker keys ("nemo:EB0"); corpus: (n,)
    corpus names; features[variant]: (n, dim) float32; mels[variant]: n x (frames, n_mels).
    """

    scans: tuple[Scan, ...]
    clips: tuple[Clip, ...]
    digests: tuple[str, ...]
    y: npt.NDArray[np.int64]
    speakers: npt.NDArray[np.str_]
    corpus: npt.NDArray[np.str_]
    features: dict[str, npt.NDArray[np.float32]]
    mels: dict[str, Mels] | None
    unreadable: tuple[str, ...] = ()  # why each skipped file was skipped
    # embeddings[variant]: (n, len(layers) * 2 * width) pooled encoder statistics (train/embed.py)
    embeddings: dict[str, npt.NDArray[np.float32]] | None = None

    @property
    def corpora(self) -> tuple[str, ...]:
        return tuple(s.corpus.name for s in self.scans)

    @property
    def label_mask(self) -> npt.NDArray[np.bool_]:
        """(n, len(LABELS)): the labels each row's corpus has."""
        has = {name: np.isin(LABELS, CORPORA[name].labels) for name in self.corpora}
        return np.stack([has[c] for c in self.corpus.tolist()])

    def fingerprint(self, rows: npt.NDArray[np.bool_] | None = None) -> str:
        """sha256 over the (selected) clips' corpus, name and content."""
        keep = np.ones(len(self.clips), bool) if rows is None else rows
        chosen = [i for i in range(len(self.clips)) if keep[i]]
        return fingerprint([self.clips[i] for i in chosen], [self.digests[i] for i in chosen])


def parse_speakers(text: str | None, actors: str | None = None) -> dict[str, set[str]]:
    """`--speakers nemo:EB0,ravdess:1` and `--actors 1,4` (RAVDESS) -> {corpus: speaker ids};
    a corpus not named keeps all its speakers."""
    wanted: dict[str, set[str]] = {}
    for item in (actors or "").split(","):
        if item.strip():
            if not item.strip().isdigit() or not 1 <= int(item) <= 24:
                raise DataError(f"--actors {actors!r}: expected comma-separated numbers 1-24")
            wanted.setdefault("ravdess", set()).add(str(int(item)))
    for item in (text or "").split(","):
        corpus, sep, speaker = item.strip().partition(":")
        if not item.strip():
            continue
        if not sep or corpus not in CORPORA or not speaker:
            raise DataError(
                f"--speakers {text!r}: expected CORPUS:ID items such as ravdess:12,nemo:EB0 "
                f"(corpora: {', '.join(CORPORA)})"
            )
        wanted.setdefault(corpus, set()).add(str(int(speaker)) if speaker.isdigit() else speaker)
    return wanted


def load_dataset(
    data: Sequence[str | Path],
    *,
    speakers: dict[str, set[str]],
    cache_dir: Path | None,
    workers: int,
    variants: Sequence[str],
    log_mel: bool,
    progress: ProgressFactory | None = None,
    on_scan: Callable[[Scan, int], None] | None = None,
    check: Callable[[Sequence[Clip]], None] | None = None,
    encoder: EncoderChoice | None = None,
) -> Dataset:
    """Scan, filter and featurize. `variants`: audio variants besides "clean" to featurize;
    `on_scan(scan, n_kept)` reports each corpus; `check(clips)` runs before any featurizing
    (to fail fast: it may raise DataError); `encoder`: also embed every clip and variant with it.
    Raises DataError when nothing is usable."""
    scans: list[Scan] = []
    clips: list[Clip] = []
    for text in data:
        found = scan(text)
        if any(s.corpus.name == found.corpus.name for s in scans):
            raise DataError(f"--data names {found.corpus.name} twice; give each corpus once")
        wanted = speakers.get(found.corpus.name)
        kept = [c for c in found.clips if wanted is None or c.speaker in wanted]
        if not kept:
            raise DataError(
                f"none of the {found.corpus.name} speakers {sorted(wanted or [])} found under "
                f"{found.root}"
            )
        scans.append(found)
        clips += kept
        if on_scan is not None:
            on_scan(found, len(kept))
    unknown = set(speakers) - {s.corpus.name for s in scans}
    if unknown:
        raise DataError(f"speakers of {', '.join(sorted(unknown))} asked for, but no --data for it")
    if check is not None:
        check(clips)

    # one pool of worker processes for every variant (and the encoder), started once
    with process_pool(max(1, workers)) as pool:
        return _featurize(
            tuple(scans),
            clips,
            cache_dir=cache_dir,
            workers=workers,
            variants=variants,
            log_mel=log_mel,
            progress=progress,
            encoder=encoder,
            pool=pool,
        )


def _featurize(
    scans: tuple[Scan, ...],
    clips: list[Clip],
    *,
    cache_dir: Path | None,
    workers: int,
    variants: Sequence[str],
    log_mel: bool,
    progress: ProgressFactory | None,
    encoder: EncoderChoice | None,
    pool: Executor | None,
) -> Dataset:
    """`load_dataset`'s features of the scanned `clips`, in `pool` (None: in this process)."""

    def run(variant: str, paths: list[Path]) -> list[Extracted]:
        callback = progress(f"features of {variant} audio", len(paths)) if progress else None
        return featurize_all(
            paths,
            cache_dir,
            max(1, workers),
            on_done=callback,
            variant=variant,
            log_mel=log_mel,
            pool=pool,
        )

    extracted = run("clean", [c.path for c in clips])
    bad = [e for e in extracted if e.vector is None]
    keep = [(c, e) for c, e in zip(clips, extracted, strict=True) if e.vector is not None]
    if not keep:
        raise DataError("no usable audio: every file was unreadable")
    clips = [c for c, _ in keep]
    features = {"clean": np.stack([e.vector for _, e in keep if e.vector is not None])}
    mels: dict[str, Mels] | None = None
    if log_mel:
        mels = {"clean": [e.log_mel for _, e in keep if e.log_mel is not None]}
    for variant in dict.fromkeys(v for v in variants if v != "clean"):
        done = run(variant, [c.path for c in clips])
        failed = [e for e in done if e.vector is None or (log_mel and e.log_mel is None)]
        if failed:  # rows must stay aligned with the clean clips
            raise DataError(
                f"features of {variant} audio failed for {len(failed)} clips, e.g. "
                f"{failed[0].path}: {failed[0].error}; leave {variant} out of --augment"
            )
        features[variant] = np.stack([e.vector for e in done if e.vector is not None])
        if mels is not None:
            mels[variant] = [e.log_mel for e in done if e.log_mel is not None]
    embeddings = (
        None
        if encoder is None
        else _embed(
            clips,
            variants,
            encoder,
            cache_dir=cache_dir,
            workers=workers,
            progress=progress,
            pool=pool,
        )
    )
    return Dataset(
        scans=scans,
        clips=tuple(clips),
        digests=tuple(e.content_sha256 for _, e in keep),
        y=np.array([LABELS.index(c.label) for c in clips], dtype=np.int64),
        speakers=np.array([c.speaker_key for c in clips]),
        corpus=np.array([c.corpus for c in clips]),
        features={k: v.astype(np.float32) for k, v in features.items()},
        mels=mels,
        unreadable=tuple(str(e.error) for e in bad),
        embeddings=embeddings,
    )


def _embed(
    clips: Sequence[Clip],
    variants: Sequence[str],
    encoder: EncoderChoice,
    *,
    cache_dir: Path | None,
    workers: int,
    progress: ProgressFactory | None,
    pool: Executor | None = None,
) -> dict[str, npt.NDArray[np.float32]]:
    """Each variant's (n, len(layers) * 2 * width) encoder statistics, rows aligned to clips."""
    out = {}
    for variant in dict.fromkeys(["clean", *variants]):
        callback = progress(f"encoder on {variant} audio", len(clips)) if progress else None
        done = embed_all(
            [c.path for c in clips],
            encoder.path,
            cache_dir,
            max(1, workers),
            variant=variant,
            on_done=callback,
            pool=pool,
        )
        failed = [e for e in done if e.embedding is None]
        if failed:
            raise DataError(
                f"the encoder failed on {variant} audio of {len(failed)} clips, e.g. "
                f"{failed[0].path}: {failed[0].error}"
            )
        stacked = np.stack([e.embedding for e in done if e.embedding is not None])
        if max(encoder.layers) >= stacked.shape[1]:
            raise DataError(
                f"{encoder.path} has {stacked.shape[1]} pooled layers (0-{stacked.shape[1] - 1}); "
                f"--encoder-layers asks for {max(encoder.layers)}"
            )
        out[variant] = stacked[:, list(encoder.layers)].reshape(len(clips), -1)
    return out
