"""`--json`: one JSON object per result on stdout, nothing else."""

from __future__ import annotations

import sys
from typing import TextIO

from streamer.messages import Result


class JsonLinesSink:
    """Writes `Result.to_json()` lines, flushed per line so pipes see them at once."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout

    def emit(self, result: Result) -> None:
        self._stream.write(result.to_json() + "\n")
        self._stream.flush()
