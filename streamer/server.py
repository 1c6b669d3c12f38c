"""`ser-serve`'s core: many WebSocket audio streams through one process's pipeline pieces.

Every stream runs its own `Pipeline` (own VAD segmenter, speaker adaptation, trend and `seq`)
over a `StreamSource` that reads the stream's socket; all streams share the feature worker
processes, one `BatchedInference` (utterances ready at the same time are classified in one hop)
and one MQTT connection. Results go back on the stream's socket through a bounded outbox and to
MQTT (`source` = the stream id).

Back-pressure: a stream's source reads its socket only as fast as its pipeline takes audio
(utterances in flight are bounded by `pipeline.max_pending` and a stream waits, never drops), so
a client sending faster than real time is slowed by TCP, not by memory. A client that stops
reading its results fills its outbox (`serve.outbox_results`); the stream is then closed with
1008 ("results not read"); its utterances still reach MQTT. Draining (SIGTERM): /healthz
answers 503, new streams are refused, every stream's utterance in progress is finished and sent,
then each stream is closed with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import socket
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer import protocol
from streamer.bundle import Bundle
from streamer.classifier import Classifier
from streamer.config import Config, ConfigError
from streamer.inference import BatchedInference
from streamer.messages import AudioBlock, Result
from streamer.pcm import PcmDecoder
from streamer.pipeline import Pipeline, Sink
from streamer.sources import EndOfStream, SourceItem, SpeakerReset
from streamer.state import LiveState
from streamer.workers import FeatureWorkers

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0  # a client must say start within this long after connecting


class ServeError(Exception):
    """The server cannot run (e.g. its port is taken); the message says what to change."""


def resolve_token(config: Config) -> str | None:
    """The token from the environment variable named by `serve.token_env` (None: no auth)."""
    name = config.serve.token_env
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise ConfigError(
            f"config key serve.token_env names ${name}, which is not set or empty: export it, "
            "or clear serve.token_env"
        )
    return value


def tls_context(config: Config) -> ssl.SSLContext | None:
    cert, key = config.serve.tls_cert_file, config.serve.tls_key_file
    if not cert:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"config keys serve.tls_cert_file/tls_key_file: cannot load them ({exc})"
        ) from exc
    return context


class StreamSource:
    """The `Source` of one WebSocket stream: PCM frames -> AudioBlocks, until stop, idle
    timeout, disconnect, drain or a protocol error (`end_reason`, `error`)."""

    live = False  # wait for the pipeline, never drop: the socket slows the client down

    def __init__(
        self,
        ws: Any,
        start: protocol.Start,
        sample_rate: int,
        *,
        max_frame_bytes: int,
        idle_timeout_s: float,
    ) -> None:
        self.ws = ws
        self.name = start.stream
        self.overflows = 0
        self.dropped_blocks = 0
        self.end_reason = "disconnect"
        self.error: protocol.ProtocolError | None = None
        self._decoder = PcmDecoder(start.pcm, sample_rate)
        self._sample_rate = sample_rate
        self._emitted = 0  # samples so far: the stream's clock
        self._max_frame_bytes = max_frame_bytes
        self._idle_timeout_s = idle_timeout_s or None
        self._stop_reason: str | None = None
        self._timeout: asyncio.Timeout | None = None

    def stop(self, reason: str = "drain") -> None:
        """End the stream now (after the audio already taken)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._timeout is not None:
            self._timeout.reschedule(asyncio.get_running_loop().time())

    async def _next_message(self) -> str | bytes | None:
        """The next message, or None when the stream ends (reason in `end_reason`)."""
        from websockets.exceptions import ConnectionClosed

        if self._stop_reason is not None:
            self.end_reason = self._stop_reason
            return None
        try:
            async with asyncio.timeout(self._idle_timeout_s) as timeout:
                self._timeout = timeout
                message: str | bytes = await self.ws.recv()
        except TimeoutError:
            self.end_reason = self._stop_reason or "idle"
            return None
        except ConnectionClosed:
            self.end_reason = "disconnect"
            return None
        finally:
            self._timeout = None
        return message

    async def blocks(self) -> AsyncIterator[SourceItem]:
        while (message := await self._next_message()) is not None:
            if isinstance(message, str):
                try:
                    kind = protocol.parse_control(message)
                except protocol.ProtocolError as exc:
                    self.error, self.end_reason = exc, "error"
                    break
                if kind == "reset":  # after the audio before it, as the client sent them
                    yield SpeakerReset(self.name)
                    continue
                self.end_reason = "stop"
                break
            if len(message) > self._max_frame_bytes:
                self.error = protocol.ProtocolError(
                    f"frame of {len(message)} bytes is over the limit of "
                    f"{self._max_frame_bytes} (serve.max_frame_bytes): send smaller frames",
                    protocol.CLOSE_TOO_BIG,
                )
                self.end_reason = "error"
                break
            block = self._block(self._decoder.decode(message))
            if block is not None:
                yield block
        block = self._block(self._decoder.decode(b"", last=True))
        if block is not None:
            yield block
        yield EndOfStream(self.name)

    def _block(self, samples: npt.NDArray[np.int16]) -> AudioBlock | None:
        """What one message brought, as one block: the segmenter takes any length, and cutting
        a frame into 30 ms blocks would only cost time (its audio arrived at once)."""
        if not samples.size:
            return None
        block = AudioBlock(
            self.name,
            samples,
            self._sample_rate,
            self._emitted / self._sample_rate,
            time.monotonic(),
        )
        self._emitted += samples.size
        return block


class Outbox:
    """A stream's results waiting to be sent on its socket (a pipeline `Sink`; never blocks).
    Full: the client is not reading; `overflowed` is set."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(size)
        self.overflowed = asyncio.Event()
        self.sent = 0

    def emit(self, result: Result) -> None:
        try:
            self.queue.put_nowait(protocol.result_message(result))
        except asyncio.QueueFull:
            self.overflowed.set()

    async def send_all(self, ws: Any) -> None:
        """Send results as they come, until cancelled (or the connection is gone)."""
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            while True:
                text = await self.queue.get()
                await ws.send(text)
                self.sent += 1
                self.queue.task_done()


@dataclass
class _Shared:
    """What all streams of the process share."""

    config: Config
    bundle: Bundle
    workers: FeatureWorkers
    inference: BatchedInference
    classifier: Classifier
    mqtt: Sink | None


class StreamServer:
    """The WebSocket endpoint and health check; `run()` serves until `stop()`, then drains."""

    def __init__(self, config: Config, bundle: Bundle, mqtt: Sink | None) -> None:
        self.config = config
        self.bundle = bundle
        self.mqtt = mqtt
        self.token = resolve_token(config)
        self.tls = tls_context(config)
        self.state = "starting"  # -> "accepting" -> "draining"
        self.port: int | None = None
        self.streams: dict[asyncio.Task[None], StreamSource | None] = {}
        self.totals = {"streams": 0, "utterances": 0, "refused": 0}
        self._stop = asyncio.Event()
        self._shared: _Shared | None = None

    def stop(self) -> None:
        self._stop.set()

    # ---- HTTP: health check, and refusing what is not a stream ----

    def _process_request(self, connection: Any, request: Any) -> Any:
        path = urllib.parse.urlsplit(request.path).path
        if path == protocol.HEALTH_PATH:
            if self.state == "accepting":
                return connection.respond(HTTPStatus.OK, "ok\n")
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, f"{self.state}\n")
        if path != protocol.PATH:
            return connection.respond(
                HTTPStatus.NOT_FOUND, f"not found: streams are at {protocol.PATH}\n"
            )
        return None

    def _authorized(self, request: Any) -> bool:
        if self.token is None:
            return True
        offered = ""
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            offered = header[len("Bearer ") :].strip()
        else:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
            offered = (query.get("token") or [""])[0]
        return hmac.compare_digest(offered.encode(), self.token.encode())

    # ---- one stream ----

    async def _refuse(self, ws: Any, message: str, code: int) -> None:
        from websockets.exceptions import ConnectionClosed

        self.totals["refused"] += 1
        with contextlib.suppress(ConnectionClosed):
            await ws.send(protocol.error_message(message))
            await ws.close(code, message[:120])

    async def _handle(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        task = asyncio.current_task()
        assert task is not None and self._shared is not None
        _bound_send_buffer(ws)
        shared = self._shared
        serve = self.config.serve
        if not self._authorized(ws.request):
            logger.warning("refused a stream from %s: missing or wrong token", _peer(ws))
            await self._refuse(ws, "missing or wrong token", protocol.CLOSE_UNAUTHORIZED)
            return
        if self.state != "accepting":
            await self._refuse(ws, f"server is {self.state}", protocol.CLOSE_TRY_LATER)
            return
        if len(self.streams) >= serve.max_streams:
            await self._refuse(
                ws,
                f"{serve.max_streams} streams are open (serve.max_streams): try again later",
                protocol.CLOSE_TRY_LATER,
            )
            return
        self.streams[task] = None
        try:
            try:
                first = await asyncio.wait_for(ws.recv(), START_TIMEOUT_S)
                start = protocol.parse_start(first)
            except TimeoutError:
                await self._refuse(
                    ws, f"no start message within {START_TIMEOUT_S:.0f} s", protocol.CLOSE_POLICY
                )
                return
            except ConnectionClosed:
                return
            except protocol.ProtocolError as exc:
                await self._refuse(ws, str(exc), exc.code)
                return
            await ws.send(protocol.ready_message(start.stream, shared.bundle.name))
            await self._run_stream(ws, start, task)
        finally:
            del self.streams[task]

    async def _run_stream(self, ws: Any, start: protocol.Start, task: asyncio.Task[None]) -> None:
        from websockets.exceptions import ConnectionClosed

        shared = self._shared
        assert shared is not None
        serve = self.config.serve
        source = StreamSource(
            ws,
            start,
            shared.bundle.sample_rate,
            max_frame_bytes=serve.max_frame_bytes,
            idle_timeout_s=serve.idle_timeout_s,
        )
        self.streams[task] = source
        if self.state != "accepting":
            source.stop()
        outbox = Outbox(serve.outbox_results)
        sinks: list[Sink] = [outbox] + ([shared.mqtt] if shared.mqtt is not None else [])
        state = LiveState(shared.bundle.name, shared.bundle.accuracy, shared.bundle.labels)
        pipeline = Pipeline(
            self.config,
            shared.classifier,
            shared.workers,
            sinks,
            state,
            inference=shared.inference,
            meter_levels=False,
        )
        self.totals["streams"] += 1
        logger.info("stream %s opened from %s (%s)", start.stream, _peer(ws), start.pcm)
        sender = asyncio.create_task(outbox.send_all(ws), name=f"ser-send-{start.stream}")

        async def watch_outbox() -> None:
            await outbox.overflowed.wait()
            source.stop("unread")

        watcher = asyncio.create_task(watch_outbox())
        try:
            await pipeline.run(source)
        finally:
            watcher.cancel()
        self.totals["utterances"] += state.utterances
        reason = source.end_reason
        try:
            if reason in ("stop", "idle", "drain"):
                # every result is in the outbox now: let the sender finish, then say goodbye
                await asyncio.wait_for(outbox.queue.join(), serve.drain_timeout_s)
                await ws.send(protocol.end_message(state.utterances, reason))
                code = protocol.CLOSE_GOING_AWAY if reason == "drain" else protocol.CLOSE_NORMAL
                await ws.close(code, reason)
            elif reason == "unread":
                await ws.close(protocol.CLOSE_POLICY, "results not read")
            elif source.error is not None:
                await ws.send(protocol.error_message(str(source.error)))
                await ws.close(source.error.code, str(source.error)[:120])
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        logger.info(
            "stream %s closed (%s): %d utterances, %d results sent on the socket",
            start.stream,
            "error: " + str(source.error) if source.error else reason,
            state.utterances,
            outbox.sent,
        )

    # ---- the process ----

    async def run(self, host: str, port: int, started_s: float) -> int:
        """Serve until `stop()`, then drain; returns the exit code."""
        from websockets.asyncio.server import serve

        config = self.config
        n_workers = config.serve.feature_workers or os.cpu_count() or 1
        classifier = Classifier(self.bundle)
        workers = FeatureWorkers(n_workers, encoder=self.bundle.encoder)
        inference = BatchedInference(classifier)
        self._shared = _Shared(config, self.bundle, workers, inference, classifier, self.mqtt)
        max_frame = config.serve.max_frame_bytes
        try:
            try:
                listening = await serve(
                    self._handle,
                    host,
                    port,
                    process_request=self._process_request,
                    ssl=self.tls,
                    # frames a little over the limit get our error message and 1009; far over
                    # it, websockets closes with 1009 itself before buffering them
                    max_size=max_frame * 4 + 1024,
                    server_header=None,
                    # PCM hardly compresses: per-message deflate would cost CPU on every frame
                    # and a zlib context per stream (memory), for nothing
                    compression=None,
                )
            except OSError as exc:
                raise ServeError(
                    f"cannot listen on {host}:{port} ({exc}): pick another --port or --host"
                ) from exc
            async with listening as server:
                sockets = server.sockets
                self.port = int(sockets[0].getsockname()[1]) if sockets else port
                await workers.start()
                self.state = "accepting"
                scheme = "wss" if self.tls else "ws"
                logger.info(
                    "serving on %s://%s:%d%s (%d feature workers; ready in %.2f s)",
                    scheme,
                    host,
                    self.port,
                    protocol.PATH,
                    n_workers,
                    time.monotonic() - started_s,
                )
                await self._stop.wait()
                await self._drain()
        finally:
            workers.close()
            await inference.aclose()
        logger.info(
            "served %d streams, %d utterances (%d inference batches), refused %d",
            self.totals["streams"],
            self.totals["utterances"],
            inference.batches,
            self.totals["refused"],
        )
        return 0

    async def _drain(self) -> None:
        self.state = "draining"
        grace = self.config.serve.drain_grace_s
        if grace:
            logger.info("draining: refusing new streams, finishing the open ones in %.1f s", grace)
            await asyncio.sleep(grace)
        open_streams = list(self.streams)
        logger.info("draining: finishing %d streams", len(open_streams))
        for source in self.streams.values():
            if source is not None:
                source.stop("drain")
        if open_streams:
            _, late = await asyncio.wait(open_streams, timeout=self.config.serve.drain_timeout_s)
            for task in late:
                task.cancel()


SEND_BUFFER_BYTES = 65536


def _bound_send_buffer(ws: Any) -> None:
    """Cap the kernel's send buffer of a stream's socket (Linux grows it to 4 MB for a client
    that does not read): results are small, and a stalled client then fills its outbox soon."""
    sock = ws.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


def _peer(ws: Any) -> str:
    try:
        address = ws.remote_address
        return f"{address[0]}:{address[1]}"
    except (AttributeError, IndexError, TypeError):
        return "?"


__all__ = ["Outbox", "StreamServer", "StreamSource"]
