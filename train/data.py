"""Find RAVDESS recordings under a folder, in any of the layouts users download.

Handles the official `Actor_NN/03-01-EE-II-SS-RR-AA.wav` (48 kHz), the 16 kHz FLAC copy, and the
Kaggle copy that nests every file twice (de-duplicated by file name). Only audio-only speech
(modality 03, channel 01) is used; anything else is counted and reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from streamer.audio_io import list_audio_files
from streamer.labels import RavdessName, parse_ravdess_name

logger = logging.getLogger(__name__)


class DataError(Exception):
    """The data folder cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Clip:
    """One RAVDESS recording on disk."""

    path: Path
    meta: RavdessName

    @property
    def label(self) -> str:
        return self.meta.emotion

    @property
    def actor(self) -> int:
        return self.meta.actor


@dataclass(frozen=True)
class Scan:
    """What was found under a data folder."""

    clips: tuple[Clip, ...]
    duplicates_dropped: int
    not_ravdess: tuple[Path, ...]  # audio files whose names are not RAVDESS names
    not_speech: tuple[Path, ...]  # RAVDESS song or video-modality files


def scan(root: Path) -> Scan:
    """List the usable RAVDESS speech clips under `root`, sorted by file name.

    Raises DataError when `root` does not exist or holds no RAVDESS speech audio.
    """
    if not root.exists():
        raise DataError(f"data folder {root} does not exist: pass --data pointing at RAVDESS")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: pass --data pointing at the RAVDESS folder")
    by_name: dict[str, Clip] = {}
    duplicates = 0
    not_ravdess: list[Path] = []
    not_speech: list[Path] = []
    # Shorter paths first, so the Kaggle copy keeps Actor_NN/x over audio_speech_actors_01-24/...
    for path in sorted(list_audio_files(root), key=lambda p: (len(p.parts), str(p))):
        meta = parse_ravdess_name(path.stem)
        if meta is None:
            not_ravdess.append(path)
            continue
        if meta.modality != 3 or meta.channel != 1:
            not_speech.append(path)
            continue
        if path.stem in by_name:
            duplicates += 1
            continue
        by_name[path.stem] = Clip(path=path, meta=meta)
    if not by_name:
        raise DataError(
            f"no RAVDESS speech audio under {root}: expected files named like "
            "Actor_01/03-01-05-02-01-01-01.wav (download from https://zenodo.org/records/1188976)"
        )
    if duplicates:
        logger.info("dropped %d duplicate files (same RAVDESS name twice)", duplicates)
    if not_ravdess:
        logger.info(
            "ignored %d audio files without a RAVDESS name, e.g. %s",
            len(not_ravdess),
            ", ".join(p.name for p in not_ravdess[:3]),
        )
    clips = tuple(sorted(by_name.values(), key=lambda c: c.path.stem))
    return Scan(clips, duplicates, tuple(not_ravdess), tuple(not_speech))
