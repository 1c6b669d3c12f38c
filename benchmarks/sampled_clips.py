"""`--data FOLDER:N` for the benchmarks that read every Nth clip of the corpora the shipped
bundle was trained on (`encoder_view.py`, `tail_cut.py`): only changes between readings count."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from typing import Any

DEFAULT = ("../shared/data/ravdess:6", "../shared/data/nemo:18")


def add_data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        action="append",
        default=None,
        help=f"FOLDER:N, every Nth clip (default {', '.join(DEFAULT)})",
    )


def sampled(specs: Sequence[str] | None) -> Iterator[tuple[str, list[Any]]]:
    """(folder, every Nth of its clips, `ser_train.corpora.Clip`) for each `FOLDER:N`."""
    from ser_train.corpora import scan

    for spec in specs or DEFAULT:
        folder, _, every = spec.rpartition(":")
        yield folder, scan(folder).clips[:: int(every)]
