"""The dashboard's single-key commands, on a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import sys
import termios

from ser.keys import key_commands


def test_r_on_a_terminal_calls_its_handler_and_the_terminal_is_restored(monkeypatch):
    master, slave = pty.openpty()
    terminal = os.fdopen(slave, "r")
    monkeypatch.setattr(sys, "stdin", terminal)
    before = termios.tcgetattr(slave)
    pressed: list[str] = []

    async def session() -> bool:
        with key_commands({"r": lambda: pressed.append("r")}) as reading:
            assert not termios.tcgetattr(slave)[3] & termios.ICANON  # cbreak: keys, not lines
            os.write(master, b"xRr")  # other keys are ignored; R and r both reset
            for _ in range(50):
                await asyncio.sleep(0.01)
                if len(pressed) == 2:
                    break
            return reading

    try:
        assert asyncio.run(session()) is True
        assert pressed == ["r", "r"]
        assert termios.tcgetattr(slave) == before
    finally:
        terminal.close()
        os.close(master)


def test_not_a_terminal_reads_nothing(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("r"))

    async def session() -> bool:
        with key_commands({"r": lambda: None}) as reading:
            return reading

    assert asyncio.run(session()) is False
