"""The thin client (`ser-live --connect URL`): a local source's audio to a `ser-serve` stream,
the server's results to the local sinks (dashboard, JSON lines). No model, no feature workers.

Audio goes out as 16 kHz mono s16le frames, one per captured block. When the server goes away
the client keeps the audio it could not send in a bounded buffer (`buffer_s`; a live microphone
drops the oldest, a file waits), says so once, and reconnects with back-off (0.5 s doubling to
10 s, each wait drawn from its upper half so that the clients of one dead replica do not come
back in step), starting the same stream name again; a load balancer may send it to another
replica, where speaker adaptation starts afresh. Only the utterance the dead server was hearing
is lost. `seq` counts this client's results (the server's numbering restarts with each
connection), and `start_s`/`end_s` are in the source's time (the server's clock restarts with
each connection: the client adds the audio it had sent before).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import ssl
import time
import urllib.parse
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ser import protocol
from ser.backoff import retry_wait_s
from ser.messages import Result
from ser.pcm import PcmFormat
from ser.pipeline import Sink, emit_all
from ser.segmenter import frame_level_db
from ser.sources import EndOfStream, Source, SourceError, SpeakerReset
from ser.state import BrokerStatus, LiveState

logger = logging.getLogger(__name__)

_BACKOFF_MIN_S = 0.5
_BACKOFF_MAX_S = 10.0
# the server refused this client for good: reconnecting would not help
_FATAL_CLOSE_CODES = {protocol.CLOSE_POLICY, protocol.CLOSE_TOO_BIG, protocol.CLOSE_UNAUTHORIZED}


def redact_url(url: str) -> str:
    """`url` without user name, password, query or fragment (what may hold a secret)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class RemoteError(SourceError):
    """The server refused the stream (bad token, protocol error) or never answered."""


class RemotePipeline:
    """Runs one source through a remote `ser-serve` stream (see module docstring)."""

    def __init__(
        self,
        url: str,
        stream: str,
        sinks: Sequence[Sink],
        state: LiveState,
        *,
        sample_rate: int = 16_000,
        token: str | None = None,
        buffer_s: float = 30.0,
        give_up_s: float = 60.0,
        first_seq: int = 0,
    ) -> None:
        """`first_seq`: the `seq` of this stream's first result (the run's count so far)."""
        self.connect_url = url
        self.url = redact_url(url)  # for log lines and the screen: no password or query
        self.stream = stream
        self.sinks = list(sinks)
        self.state = state
        self.sample_rate = sample_rate
        self.token = token
        self.buffer_s = buffer_s
        self.give_up_s = give_up_s
        self.dropped_s = 0.0
        self.reconnects = 0
        # audio to send; None: a speaker reset, sent in its place among the audio
        self._buffer: deque[npt.NDArray[np.int16] | None] = deque()
        self._buffered = 0  # samples in _buffer
        self._more = asyncio.Event()  # audio (or the end of input) arrived
        self._room = asyncio.Event()  # the buffer has room again
        self._input_done = False
        self._seq = first_seq
        self._sent = 0  # samples sent over all connections
        self._offset_s = 0.0  # source time of the current connection's first sample
        self._status("connecting")

    def _status(
        self, state: str, retry_at_s: float | None = None, error: str | None = None
    ) -> None:
        self.state.remote = BrokerStatus(
            state,
            retry_at_s,
            error,
            queued=self._buffered // max(1, self.sample_rate // 10),
            published=self._seq,
        )

    # ---- input side ----

    async def _read(self, source: Source) -> None:
        limit = int(self.buffer_s * self.sample_rate)
        warned = False
        async for item in source.blocks():
            if isinstance(item, SpeakerReset):
                self.reset_speaker()
                continue
            if isinstance(item, EndOfStream):
                continue
            self.state.level_db = frame_level_db(item.samples)
            self.state.overflows = source.overflows
            self.state.dropped_blocks = source.dropped_blocks
            while self._buffered + item.samples.size > limit:
                if not source.live:
                    self._room.clear()
                    await self._room.wait()  # a file waits for the server
                    continue
                old = self._buffer.popleft()  # a microphone keeps the newest audio
                if old is None:  # a reset marker: harmless to drop, as the server is away and
                    continue  # the next connection is a new stream with a fresh history
                self._buffered -= old.size
                self._sent += old.size  # never sent, but it keeps the source's clock
                self.dropped_s += old.size / self.sample_rate
                if not warned:
                    logger.warning(
                        "server away for over %.0f s of audio: dropping the oldest", self.buffer_s
                    )
                    warned = True
            self._buffer.append(item.samples)
            self._buffered += item.samples.size
            self._more.set()
        self._input_done = True
        self._more.set()

    def reset_speaker(self) -> None:
        """A new speaker starts now: the server forgets the stream's speaker history after the
        audio read so far (a `reset` message, sent in order with the audio)."""
        self._buffer.append(None)
        self._more.set()
        self.state.resets += 1

    # ---- network side ----

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def _session(self, ws: Any) -> bool:
        """One connection: start, send the buffer and new audio, hand results on. True when
        the stream ended (stop answered with end); False when the connection was lost."""
        from websockets.exceptions import ConnectionClosed

        pcm = PcmFormat("s16le", self.sample_rate, 1)
        self._offset_s = self._sent / self.sample_rate
        await ws.send(protocol.start_message(self.stream, pcm))
        ready = json.loads(await asyncio.wait_for(ws.recv(), 10.0))
        if ready.get("type") != "ready":
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), 5.0)
            if ws.close_code in _FATAL_CLOSE_CODES:
                raise RemoteError(f"server {self.url} refused the stream: {ready.get('message')}")
            logger.warning("server %s: %s", self.url, ready.get("message", ready))
            return False  # e.g. all streams taken (1013): try again
        # the thin client's dashboard names the server's model, as ser-live names its own
        self.state.model_name = f"{ready.get('model', '?')} on {self.url}"
        self.state.model_accuracy = ready.get("accuracy") or None
        receiver = asyncio.create_task(self._receive(ws))
        try:
            while True:
                while self._buffer:
                    chunk = self._buffer[0]
                    if chunk is None:  # reset_speaker(): in order with the audio
                        await ws.send(protocol.RESET_MESSAGE)
                        self._buffer.popleft()
                        continue
                    await ws.send(chunk.astype("<i2").tobytes())
                    self._buffer.popleft()  # sent: the server has it
                    self._buffered -= chunk.size
                    self._sent += chunk.size
                    self._room.set()
                if self._input_done:
                    await ws.send(protocol.STOP_MESSAGE)
                    return await receiver
                if receiver.done():
                    return receiver.result()
                self._more.clear()
                waiter = asyncio.create_task(self._more.wait())
                await asyncio.wait({waiter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
        except ConnectionClosed:
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await receiver
            return False
        finally:
            receiver.cancel()

    async def _receive(self, ws: Any) -> bool:
        """Results until the server ends the stream (True) or the connection goes (False)."""
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in ws:
                data = json.loads(message)
                kind = data.pop("type", None)
                if kind == "result":
                    self._emit(data)
                elif kind == "end":
                    # the answer to our stop; otherwise the server ended the stream (draining,
                    # idle): the rest of the audio goes to a new connection
                    if data.get("reason") != "stop":
                        logger.warning(
                            "server %s ended the stream (%s)", self.url, data.get("reason")
                        )
                    return bool(data.get("reason") == "stop")
                elif kind == "error":
                    with contextlib.suppress(ConnectionClosed, TimeoutError):
                        await asyncio.wait_for(ws.wait_closed(), 5.0)
                    code = ws.close_code
                    if code in _FATAL_CLOSE_CODES:
                        raise RemoteError(
                            f"server {self.url} refused the stream: {data['message']}"
                        )
                    logger.warning("server %s: %s (close %s)", self.url, data["message"], code)
                    return False
        except ConnectionClosed:
            return False
        return False

    @property
    def next_seq(self) -> int:
        """The `seq` the next result would get."""
        return self._seq

    def _emit(self, data: dict[str, Any]) -> None:
        result = Result.from_dict(data)
        result = dataclasses.replace(
            result,
            seq=self._seq,
            start_s=result.start_s + self._offset_s,
            end_s=result.end_s + self._offset_s,
        )
        self._seq += 1
        self.state.record(result)
        emit_all(self.sinks, result)

    async def _connect_loop(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake, InvalidStatus, WebSocketException

        backoff = _BACKOFF_MIN_S
        last_error: str | None = None
        away_since: float | None = None
        connected_before = False
        while True:
            self._status("connecting", error=last_error)
            try:
                async with connect(
                    self.connect_url,
                    additional_headers=self._headers(),
                    open_timeout=10.0,
                    max_size=2**20,
                    compression=None,  # PCM hardly compresses; deflate would only cost CPU
                ) as ws:
                    if connected_before:
                        logger.warning(
                            "connected to %s again; sending %.1f s of buffered audio",
                            self.url,
                            self._buffered / self.sample_rate,
                        )
                        self.reconnects += 1
                    else:
                        logger.info("connected to %s as stream %s", self.url, self.stream)
                    connected_before = True
                    last_error, away_since, backoff = None, None, _BACKOFF_MIN_S
                    self._status("connected")
                    if await self._session(ws):
                        self._status("stopped")
                        return
                    last_error = f"connection closed ({ws.close_code or 'lost'})"
            except RemoteError:
                raise
            except ssl.SSLCertVerificationError as exc:  # retrying will not fix a certificate
                raise RemoteError(
                    f"server {self.url}: {exc}: trust its CA (SSL_CERT_FILE) or fix its certificate"
                ) from exc
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status == 401:
                    said = exc.response.body.decode("utf-8", "replace").strip()[:200]
                    hint = (
                        "set SER_TOKEN to the server's token"
                        if not self.token
                        else "SER_TOKEN is not the server's token"
                    )
                    raise RemoteError(
                        f"server {self.url} refused the token ({said or 'HTTP 401'}): {hint}", 1
                    ) from exc
                if status in (403, 404):
                    raise RemoteError(f"server {self.url} answered HTTP {status}", 1) from exc
                last_error = f"HTTP {status}"
            except (OSError, TimeoutError, InvalidHandshake, WebSocketException) as exc:
                last_error = str(exc) or type(exc).__name__
            now = time.monotonic()
            if away_since is None:
                away_since = now
                logger.warning(
                    "server %s unreachable (%s): buffering audio, reconnecting",
                    self.url,
                    last_error,
                )
            if now - away_since > self.give_up_s and self._input_done:
                raise RemoteError(
                    f"server {self.url} unreachable for {self.give_up_s:.0f} s ({last_error}); "
                    f"{self._buffered / self.sample_rate:.1f} s of audio not sent"
                )
            wait = retry_wait_s(backoff)
            self._status("retrying", retry_at_s=now + wait, error=last_error)
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, _BACKOFF_MAX_S)

    async def run(self, source: Source) -> None:
        """Send `source` to the server until its end (or stop), and wait for the last results."""
        self.state.source = source.name
        reader = asyncio.create_task(self._read(source), name="ser-remote-read")
        network = asyncio.create_task(self._connect_loop(), name="ser-remote-net")
        try:
            done, _ = await asyncio.wait({reader, network}, return_when=asyncio.FIRST_EXCEPTION)
            if reader in done and reader.exception() is not None:
                raise reader.exception()  # type: ignore[misc]
            await network
        finally:
            for task in (reader, network):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.dropped_s:
            logger.warning("%.1f s of audio dropped while the server was away", self.dropped_s)
