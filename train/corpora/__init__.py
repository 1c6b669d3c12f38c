"""Emotional-speech corpora the training side reads (one module per corpus).

A corpus knows the layouts users download it in, its speakers, its label map onto our eight
`LABELS`, the labels it lacks and its speaker-independent folds. `scan` finds the clips under a
folder; `detect` names the corpus a folder holds; `parse_data_arg` reads `--data [NAME=]PATH`.
"""

from __future__ import annotations

from pathlib import Path

from ser_train.corpora.base import Clip, Corpus, DataError, Scan
from ser_train.corpora.nemo import NEMO
from ser_train.corpora.ravdess import RAVDESS

__all__ = [
    "CORPORA",
    "Clip",
    "Corpus",
    "DataError",
    "Scan",
    "detect",
    "parse_data_arg",
    "scan",
]

CORPORA: dict[str, Corpus] = {corpus.name: corpus for corpus in (RAVDESS, NEMO)}


def detect(root: Path) -> Corpus:
    """The corpus whose layout `root` holds. Raises DataError naming the layouts looked for."""
    if not root.exists():
        raise DataError(f"data folder {root} does not exist: pass --data pointing at a corpus")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: pass --data pointing at a corpus folder")
    for corpus in CORPORA.values():
        if corpus.looks_like(root):
            return corpus
    layouts = "; ".join(f"{c.name}: {c.layout_hint}" for c in CORPORA.values())
    raise DataError(
        f"no known corpus under {root} (looked for {layouts}); name it with --data NAME=PATH"
    )


def parse_data_arg(text: str) -> tuple[Corpus | None, Path]:
    """`PATH` or `NAME=PATH` (NAME one of CORPORA) -> (corpus or None: detect it, path)."""
    name, sep, rest = text.partition("=")
    if sep and name in CORPORA:
        return CORPORA[name], Path(rest)
    if sep and name.isidentifier() and not Path(text).exists():
        raise DataError(
            f"--data {text!r}: unknown corpus {name!r}; known: {', '.join(CORPORA)} "
            "(or give just a folder and let the layout decide)"
        )
    return None, Path(text)


def scan(text: str | Path) -> Scan:
    """The clips under a `--data` value (see `parse_data_arg`)."""
    corpus, root = parse_data_arg(str(text))
    if corpus is None:
        corpus = detect(root)
    elif not root.is_dir():
        raise DataError(f"data folder {root} does not exist: pass --data {corpus.name}=FOLDER")
    return corpus.scan(root)
