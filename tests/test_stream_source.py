"""`StreamSource`'s idle timeout and stop over a real WebSocket (server and client in one event
loop): audio keeps a stream alive past `idle_timeout_s`, quiet ends it, `stop` interrupts a
receive, and a cancellation from outside is never taken for either."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from ser import protocol
from ser.server import StreamSource
from ser.sources import EndOfStream

FRAME = b"\x01\x00" * 1600  # 100 ms of 16 kHz s16le
ended_at: list[float] = []  # when the last `_with_source` stream ended (time.monotonic)


async def _with_source(idle_timeout_s: float, client, on_source=None) -> tuple[Any, list[Any]]:
    """Run `client(ws)` against a server whose one stream is read by a StreamSource; returns
    (the source, the items its `blocks()` gave)."""
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    done: asyncio.Future[tuple[Any, list[Any]]] = asyncio.get_running_loop().create_future()
    ended_at.clear()

    async def handler(ws: Any) -> None:
        start = protocol.parse_start('{"type": "start", "stream": "s"}')
        source = StreamSource(
            ws, start, 16_000, max_frame_bytes=1 << 20, idle_timeout_s=idle_timeout_s
        )
        items: list[Any] = []
        task = asyncio.current_task()
        if on_source is not None:
            on_source(source, task)
        try:
            async for item in source.blocks():
                items.append(item)
        except asyncio.CancelledError:
            done.set_result((source, [*items, "cancelled"]))
            raise
        ended_at.append(time.monotonic())
        done.set_result((source, items))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            await client(ws)
            return await asyncio.wait_for(done, 10)


def test_audio_keeps_a_stream_past_its_idle_timeout_and_quiet_ends_it():
    async def client(ws: Any) -> None:
        for _ in range(15):  # 1.5 s of audio in real time: three idle timeouts of 0.5 s
            await asyncio.sleep(0.1)
            await ws.send(FRAME)
            quiet_from[0] = time.monotonic()  # the last audio: it arrives after this
        await asyncio.sleep(0.1)
        await ws.send(b"")  # an empty frame is not audio
        await asyncio.sleep(2.0)

    quiet_from = [0.0]
    source, items = asyncio.run(_with_source(0.5, client))
    blocks = [i for i in items if not isinstance(i, EndOfStream)]
    assert len(blocks) == 15 and isinstance(items[-1], EndOfStream)
    assert source.end_reason == "idle"
    # it ended 0.5 s after the last audio arrived, not at the client's close 2 s later
    assert 0.49 < ended_at[0] - quiet_from[0] < 1.5


def test_stop_interrupts_a_receive_and_a_cancel_from_outside_is_not_taken_for_it():
    async def stop_while_waiting(ws: Any) -> None:
        await ws.send(FRAME)
        await asyncio.sleep(0.3)  # the source now waits in recv
        held[0].stop("drain")
        await asyncio.sleep(0.3)

    held: list[Any] = []
    source, items = asyncio.run(
        _with_source(30.0, stop_while_waiting, lambda s, _t: held.append(s))
    )
    assert source.end_reason == "drain" and isinstance(items[-1], EndOfStream)
    assert len(items) == 2  # the block, then the end

    async def cancel_while_waiting(ws: Any) -> None:
        await ws.send(FRAME)
        await asyncio.sleep(0.3)
        tasks[0].cancel()  # e.g. the server's shutdown: not an idle end, not a stop
        await asyncio.sleep(0.3)

    tasks: list[asyncio.Task[Any]] = []
    source, items = asyncio.run(
        _with_source(30.0, cancel_while_waiting, lambda _s, t: tasks.append(t))
    )
    assert items[-1] == "cancelled" and len(items) == 2


@pytest.mark.parametrize("first", ["idle", "outside"])
def test_an_idle_end_and_a_cancel_from_outside_at_once_is_a_cancel(first):
    """Both in the same loop tick: the outside cancellation wins (the task is cancelled)."""

    async def both(ws: Any) -> None:
        await ws.send(FRAME)
        await asyncio.sleep(0.3)
        source, task = held[0]
        if first == "idle":
            source.stop("idle")
            task.cancel()
        else:
            task.cancel()
            source.stop("idle")
        await asyncio.sleep(0.3)

    held: list[Any] = []
    _, items = asyncio.run(_with_source(30.0, both, lambda s, t: held.append((s, t))))
    assert items[-1] == "cancelled"
