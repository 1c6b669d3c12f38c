"""Single-key commands on the dashboard's terminal (r: a new speaker starts).

Reads stdin in cbreak mode through the event loop (no thread); does nothing when stdin is not a
terminal (a pipe, `--input -`, a service) or the platform has no termios. The terminal's
settings are restored on exit, however the block is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def key_commands(handlers: Mapping[str, Callable[[], None]]) -> Iterator[bool]:
    """Call `handlers[key]` for each key pressed while inside; yields whether keys are read."""
    try:
        import termios
        import tty
    except ImportError:  # not a POSIX terminal
        yield False
        return
    stdin = sys.stdin
    if stdin is None or not stdin.isatty():
        yield False
        return
    fd = stdin.fileno()
    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        yield False
        return
    loop = asyncio.get_running_loop()

    def on_readable() -> None:
        try:
            data = os.read(fd, 64)
        except OSError:
            return
        for char in data.decode(errors="ignore").lower():
            handler = handlers.get(char)
            if handler is not None:
                handler()

    tty.setcbreak(fd)
    loop.add_reader(fd, on_readable)
    try:
        yield True
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
