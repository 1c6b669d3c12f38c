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

# One distinct letter and colour per label, the same in the terminal dashboard and on the web
# page (sUrprised: S is sad). Colours are never the only carrier of meaning: the letter is.
LETTERS: dict[str, str] = {
    "neutral": "N",
    "calm": "C",
    "happy": "H",
    "sad": "S",
    "angry": "A",
    "fearful": "F",
    "disgust": "D",
    "surprised": "U",
}
COLOURS: dict[str, str] = {  # Rich colour names; the web page uses the same hues
    "neutral": "white",
    "calm": "cyan",
    "happy": "yellow",
    "sad": "blue",
    "angry": "red",
    "fearful": "magenta",
    "disgust": "green",
    "surprised": "bright_yellow",
}


def letter(label: str) -> str:
    """The label's one-letter code (its first letter, upper case, for labels not above)."""
    return LETTERS.get(label, label[:1].upper())
