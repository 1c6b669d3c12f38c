"""`--json`: one JSON object per result on stdout, nothing else."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TextIO

from ser.messages import Result

logger = logging.getLogger(__name__)


class JsonLinesSink:
    """Writes `Result.to_json()` lines, flushed per line so pipes see them at once.

    When the reader goes away (`ser-live --json | head -1`: EPIPE) nothing more is written,
    the stream is pointed at /dev/null (so the interpreter's last flush stays quiet too) and
    `on_closed` is called once (ser-live stops reading its input)."""

    def __init__(
        self, stream: TextIO | None = None, on_closed: Callable[[], None] | None = None
    ) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._on_closed = on_closed
        self.closed = False

    def emit(self, result: Result) -> None:
        if self.closed:
            return
        try:
            self._stream.write(result.to_json() + "\n")
            self._stream.flush()
        except BrokenPipeError:
            self.closed = True
            self._silence()
            logger.debug("stdout closed by its reader: stopping")
            if self._on_closed is not None:
                self._on_closed()

    def _silence(self) -> None:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):  # not a real file: nothing to silence
            pass
