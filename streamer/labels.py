"""The emotion labels a bundle names, in the order of RAVDESS's codes 01-08 (corpus file-name
parsing is a training concern: train/corpora/)."""

from __future__ import annotations

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
