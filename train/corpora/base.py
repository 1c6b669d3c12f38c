"""What every corpus module provides: clips with corpus-local speakers, labels and folds."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ser.labels import LABELS


class DataError(Exception):
    """A data folder cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Clip:
    """One recording on disk with its corpus, speaker (corpus-local id) and label (in LABELS)."""

    path: Path
    corpus: str
    speaker: str
    label: str

    @property
    def speaker_key(self) -> str:
        """The speaker unique across corpora, e.g. "ravdess:12", "nemo:EB0"."""
        return f"{self.corpus}:{self.speaker}"


@dataclass(frozen=True)
class Scan:
    """What was found under one corpus folder."""

    corpus: Corpus
    root: Path
    layout: str  # e.g. "official 48 kHz WAV", "16 kHz FLAC"
    clips: tuple[Clip, ...]
    duplicates_dropped: int = 0
    ignored: tuple[Path, ...] = ()  # audio files that are not this corpus's speech clips

    def counts(self) -> dict[str, int]:
        """Clips per label, in LABELS order (labels the corpus lacks omitted)."""
        return {
            label: n
            for label in LABELS
            if (n := sum(c.label == label for c in self.clips)) or label in self.corpus.labels
        }


@dataclass(frozen=True)
class Corpus:
    """A corpus's fixed facts and its scanner.

    labels: the LABELS it has (its label map's image); folds: held-out speakers per fold.
    """

    name: str
    title: str
    labels: tuple[str, ...]
    folds: tuple[tuple[str, ...], ...]
    layout_hint: str
    looks_like: Callable[[Path], bool]
    scanner: Callable[[Corpus, Path], Scan]
    licence: str
    citation: str

    @property
    def missing_labels(self) -> tuple[str, ...]:
        return tuple(label for label in LABELS if label not in self.labels)

    def scan(self, root: Path) -> Scan:
        return self.scanner(self, root)

    def fold_of(self, speaker: str) -> int:
        """Index of the fold in which `speaker` is held out; ValueError if none."""
        for index, speakers in enumerate(self.folds):
            if speaker in speakers:
                return index
        raise ValueError(f"{self.name} speaker {speaker!r} is in no fold")


def fingerprint(clips: Sequence[Clip], digests: Sequence[str]) -> str:
    """sha256 over (corpus, file stem, content digest) of every clip, order-independent."""
    h = hashlib.sha256()
    for line in sorted(
        f"{c.corpus}:{c.path.stem}:{d}" for c, d in zip(clips, digests, strict=True)
    ):
        h.update(f"{line}\n".encode())
    return h.hexdigest()
