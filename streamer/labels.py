"""Emotion labels and RAVDESS file-name parsing (pure, no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass

LABELS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)

_RAVDESS_NAME = re.compile(
    r"^(?P<modality>0[1-3])-(?P<channel>0[12])-(?P<emotion>0[1-8])-(?P<intensity>0[12])-"
    r"(?P<statement>0[12])-(?P<repetition>0[12])-(?P<actor>\d{2})$"
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
    match = _RAVDESS_NAME.match(stem)
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
