"""RAVDESS (Livingstone & Russo 2018): 24 actors, 8 emotions, two English sentences.

Layouts: the official `Actor_NN/03-01-EE-II-SS-RR-AA.wav` (48 kHz), the 16 kHz FLAC copy, and
the Kaggle copy that nests every file twice (de-duplicated by file name, shallower copy kept).
Only audio-only speech (modality 03, channel 01) is used; anything else is counted and reported.
Folds: EmoBox's 6 actor folds (Ma et al., Interspeech 2024).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from ser.audio_io import list_audio_files
from ser.labels import LABELS
from ser_train.corpora.base import Clip, Corpus, DataError, Scan

logger = logging.getLogger(__name__)

_NAME = re.compile(
    r"^(?P<modality>0[1-3])-(?P<channel>0[12])-(?P<emotion>0[1-8])-(?P<intensity>0[12])-"
    r"(?P<statement>0[12])-(?P<repetition>0[12])-(?P<actor>\d{2})$"
)

# Held-out actors per fold, exactly as EmoBox splits RAVDESS.
TEST_ACTORS: tuple[tuple[int, ...], ...] = (
    (1, 11, 20, 21),
    (4, 10, 12, 14),
    (8, 9, 19, 23),
    (3, 5, 7, 24),
    (2, 15, 16, 18),
    (6, 13, 17, 22),
)


@dataclass(frozen=True)
class RavdessName:
    """The fields of a RAVDESS file name `MM-CC-EE-II-SS-RR-AA`."""

    modality: int  # 1 audio-video, 2 video-only, 3 audio-only
    channel: int  # 1 speech, 2 song
    emotion: str
    intensity: int  # 1 normal, 2 strong
    statement: int
    repetition: int
    actor: int  # 1..24; odd male, even female


def parse_ravdess_name(stem: str) -> RavdessName | None:
    """Parse a file stem such as `03-01-05-02-01-01-12`; None when it is not a RAVDESS name."""
    match = _NAME.match(stem)
    if match is None:
        return None
    actor = int(match["actor"])
    if not 1 <= actor <= 24:
        return None
    return RavdessName(
        modality=int(match["modality"]),
        channel=int(match["channel"]),
        emotion=LABELS[int(match["emotion"]) - 1],
        intensity=int(match["intensity"]),
        statement=int(match["statement"]),
        repetition=int(match["repetition"]),
        actor=actor,
    )


def _looks_like(root: Path) -> bool:
    return any(parse_ravdess_name(p.stem) is not None for p in list_audio_files(root))


def _scan(corpus: Corpus, root: Path) -> Scan:
    """The usable RAVDESS speech clips under `root`, sorted by file name."""
    by_name: dict[str, Clip] = {}
    duplicates = 0
    ignored: list[Path] = []
    suffixes: set[str] = set()
    # Shorter paths first, so the Kaggle copy keeps Actor_NN/x over audio_speech_actors_01-24/...
    for path in sorted(list_audio_files(root), key=lambda p: (len(p.parts), str(p))):
        meta = parse_ravdess_name(path.stem)
        if meta is None or meta.modality != 3 or meta.channel != 1:
            ignored.append(path)  # not a RAVDESS name, or song / video-modality
            continue
        if path.stem in by_name:
            duplicates += 1
            continue
        suffixes.add(path.suffix.lower())
        by_name[path.stem] = Clip(path, corpus.name, str(meta.actor), meta.emotion)
    if not by_name:
        raise DataError(
            f"no RAVDESS speech audio under {root}: expected files named like "
            "Actor_01/03-01-05-02-01-01-01.wav (download from https://zenodo.org/records/1188976)"
        )
    if duplicates:
        logger.info("dropped %d duplicate files (same RAVDESS name twice)", duplicates)
    if ignored:
        logger.info(
            "ignored %d audio files that are not RAVDESS speech, e.g. %s",
            len(ignored),
            ", ".join(p.name for p in ignored[:3]),
        )
    layout = "Kaggle double copy" if duplicates else "/".join(sorted(suffixes)) + " files"
    clips = tuple(sorted(by_name.values(), key=lambda c: c.path.stem))
    return Scan(corpus, root, layout, clips, duplicates, tuple(ignored))


RAVDESS = Corpus(
    name="ravdess",
    title="RAVDESS speech (English, 24 actors)",
    labels=LABELS,
    folds=tuple(tuple(str(a) for a in fold) for fold in TEST_ACTORS),
    layout_hint="Actor_NN/03-01-EE-II-SS-RR-AA.wav or .flac",
    looks_like=_looks_like,
    scanner=_scan,
    licence="CC BY-NC-SA 4.0",
    citation="Livingstone & Russo (2018), PLoS ONE 13(5): e0196391",
)
