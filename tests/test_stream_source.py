"""`StreamSource`'s idle timeout and stop over a real WebSocket (server and client in one event
loop): audio keeps a stream alive past `idle_timeout_s`, quiet ends it, `stop` interrupts a
receive, and a cancellation from outside is never taken for either."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from ser import protocol
from ser.server import StreamSource
from ser.sources import EndOfStream

FRAME = b"\x01\x00" * 1600  # 100 ms of 16 kHz s16le
ended_at: list[float] = []  # when the last `_with_source` stream ended (time.monotonic)


async def _with_source(
    idle_timeout_s: float, client, on_source=None, busy_after_first_s: float = 0.0
) -> tuple[Any, list[Any]]:
    """Run `client(ws)` against a server whose one stream is read by a StreamSource; returns
    (the source, the items its `blocks()` gave). `busy_after_first_s`: the consumer takes
    this long over the first item (the pipeline behind, say)."""
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
                if len(items) == 1:
                    await asyncio.sleep(busy_after_first_s)
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


def test_audio_that_came_while_the_stream_was_busy_past_its_idle_timeout_is_taken():
    """The idle timeout runs out while the stream is not receiving (its consumer busy for 0.8
    s after the first frame, the timeout 0.5 s): the frames the client sent meanwhile are
    taken, and only then does quiet end the stream."""

    async def client(ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):  # a stream ended too soon: counted below
            for _ in range(10):
                await asyncio.sleep(0.1)
                await ws.send(FRAME)
            await asyncio.sleep(2.0)

    source, items = asyncio.run(_with_source(0.5, client, busy_after_first_s=0.8))
    assert len([i for i in items if not isinstance(i, EndOfStream)]) == 10
    assert source.end_reason == "idle" and isinstance(items[-1], EndOfStream)


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
