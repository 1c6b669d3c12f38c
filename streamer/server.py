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
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np
import numpy.typing as npt
from websockets.typing import Subprotocol

from ser import metrics, protocol, web
from ser.bundle import Bundle
from ser.classifier import Classifier
from ser.config import Config, ConfigError
from ser.inference import BatchedInference
from ser.messages import AudioBlock, Result
from ser.pcm import PcmDecoder
from ser.pipeline import Pipeline, Sink
from ser.sources import EndOfStream, SourceItem, SpeakerReset
from ser.state import LiveState
from ser.workers import FeatureWorkers

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


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, "localhost")."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or "0.0.0.0"-like wildcard: reachable from elsewhere


def check_exposure(host: str, token: str | None, insecure: bool) -> None:
    """Refuse (ServeError) to serve a non-loopback address without a token, unless told."""
    if token is None and not insecure and not is_loopback(host):
        raise ServeError(
            f"refusing to listen on {host} without a token: anyone who reaches it could stream "
            "audio and read every result. Set serve.token_env to a variable holding a token "
            "(e.g. SER_TOKEN), or pass --insecure (serve.insecure = true) if the network is yours"
        )


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
        max_speed: float = 0.0,
        burst_s: float = 0.0,
    ) -> None:
        """`idle_timeout_s`: end the stream when no audio came this long (empty frames and
        control messages do not count); `max_speed` (0: no limit), `burst_s`: take audio at
        most this many times real time after a burst (the client is slowed by not reading)."""
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
        self._max_speed = max_speed
        self._burst_samples = burst_s * sample_rate
        loop = asyncio.get_running_loop()
        self._started_s = loop.time()
        self._last_audio_s = self._started_s
        # The idle timeout is one timer per stream, moved on only when it fires (not an
        # `asyncio.timeout` around every receive: a timer scheduled and cancelled per frame);
        # it and `stop` interrupt a receive by cancelling the task waiting in it.
        self._idle_timer: asyncio.TimerHandle | None = None
        self._receiving: asyncio.Task[Any] | None = None  # the task waiting in `recv`
        self._interrupted = False  # it was cancelled here, not from outside
        self._idle_expired = False  # the timer ran out while the stream was not receiving

    def stop(self, reason: str = "drain") -> None:
        """End the stream now (after the audio already taken)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._interrupt()

    def _idle_deadline_s(self) -> float:
        assert self._idle_timeout_s is not None
        return self._last_audio_s + self._idle_timeout_s

    def _arm_idle_timer(self) -> None:
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_at(self._idle_deadline_s(), self._on_idle_timer)

    def _on_idle_timer(self) -> None:
        if asyncio.get_running_loop().time() < self._idle_deadline_s():
            self._arm_idle_timer()  # audio came since it was set: move it on
            return
        self._idle_timer = None
        if self._receiving is None:  # busy with audio taken earlier: what came meanwhile
            self._idle_expired = True  # decides (`_next_message`)
            return
        if self._stop_reason is None:  # waiting for the client, and nothing came
            self._stop_reason = "idle"
        self._interrupt()

    def _interrupt(self) -> None:
        """Cancel the receive in progress, if any (the stream then ends: `_next_message`)."""
        if self._receiving is not None and not self._interrupted:
            self._interrupted = True
            self._receiving.cancel()

    def _close_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    async def _next_message(self) -> str | bytes | None:
        """The next message, or None when the stream ends (reason in `end_reason`). After the
        idle timeout ran out while the stream was busy (its pipeline behind, or pacing), only a
        message already waiting is taken: none there, the stream ends as idle."""
        from websockets.exceptions import ConnectionClosed

        if self._stop_reason is not None:
            self.end_reason = self._stop_reason
            return None
        expired, self._idle_expired = self._idle_expired, False
        task = self._receiving = None if expired else asyncio.current_task()
        try:
            if expired:
                async with asyncio.timeout(0):
                    message: str | bytes = await self.ws.recv()
                self._arm_idle_timer()  # fires at once unless the message is audio
            else:
                message = await self.ws.recv()
        except TimeoutError:  # expired, and nothing was waiting
            self.end_reason = self._stop_reason or "idle"
            return None
        except asyncio.CancelledError:
            if not self._interrupted or task is None or task.uncancel() > 0:
                raise  # cancelled from outside (too)
            self.end_reason = self._stop_reason or "idle"
            return None
        except ConnectionClosed:
            self.end_reason = "disconnect"
            return None
        finally:
            self._receiving = None
            self._interrupted = False
        return message

    async def blocks(self) -> AsyncIterator[SourceItem]:
        loop = asyncio.get_running_loop()
        if self._idle_timeout_s is not None:
            self._arm_idle_timer()
        try:
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
                    self._last_audio_s = loop.time()
                    yield block
                    await self._keep_pace()
            block = self._block(self._decoder.decode(b"", last=True))
            if block is not None:
                yield block
            yield EndOfStream(self.name)
        finally:
            self._close_idle_timer()

    async def _keep_pace(self) -> None:
        """Wait while the stream is ahead of `max_speed` x real time (beyond its burst)."""
        if not self._max_speed or self._stop_reason is not None:
            return
        rate = self._sample_rate * self._max_speed
        elapsed_s = asyncio.get_running_loop().time() - self._started_s
        ahead = self._emitted - self._burst_samples - elapsed_s * rate
        if ahead > 0:
            await asyncio.sleep(ahead / rate)

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
        self.unstarted: dict[asyncio.Task[None], str] = {}  # connection -> client address
        self.names: set[str] = set()  # the open streams' names
        self.totals = {"streams": 0, "utterances": 0, "refused": 0}
        self._stop = asyncio.Event()
        self._hurry = asyncio.Event()
        self._shared: _Shared | None = None
        self.metrics = metrics.ServeMetrics(_version(), bundle.name, self._snapshot)

    def stop(self) -> None:
        self._stop.set()

    def hurry(self) -> None:
        """Stop now (a second signal): every stream is cancelled, no drain."""
        self._stop.set()
        self._hurry.set()
        for task in list(self.streams) + list(self.unstarted):
            task.cancel()

    def _snapshot(self) -> metrics.Snapshot:
        shared, mqtt = self._shared, self.mqtt
        status = getattr(mqtt, "status", None)
        return metrics.Snapshot(
            streams=sum(1 for source in self.streams.values() if source is not None),
            unstarted=len(self.unstarted),
            feature_queue=shared.workers.in_flight if shared else 0,
            inference_queue=shared.inference.queued if shared else 0,
            workers_healthy=bool(shared and shared.workers.healthy),
            worker_restarts=shared.workers.restarts if shared else 0,
            mqtt_connected=None if mqtt is None else bool(status and status.state == "connected"),
            mqtt_queued=status.queued if status else 0,
            mqtt_dropped=status.dropped if status else 0,
            mqtt_published=status.published if status else 0,
            mqtt_failures=int(getattr(mqtt, "failures", 0)),
            inference_healthy=bool(shared is None or shared.inference.healthy),
            inference_restarts=shared.inference.restarts if shared else 0,
            worker_calls=dict(shared.workers.calls) if shared else {},
        )

    def health(self) -> str:
        """ "ok" while streams can be served; else what stops them ("starting", "draining",
        "feature workers restarting", "classifier restarting")."""
        if self.state != "accepting":
            return self.state
        if self._shared is not None and not self._shared.workers.healthy:
            return "feature workers restarting"
        if self._shared is not None and not self._shared.inference.healthy:
            return "classifier restarting"
        return "ok"

    # ---- HTTP: health check, authentication, and refusing what is not a stream ----

    def _process_request(self, connection: Any, request: Any) -> Any:
        """Answered before any WebSocket upgrade: the page, /healthz, /metrics, /v1/auth, 404,
        and 401 for a stream with a missing or wrong token (so an unauthenticated client never
        holds an open WebSocket). None: go on with the upgrade."""
        path = urllib.parse.urlsplit(request.path).path
        if path != protocol.PATH:
            return self._http(connection, path, request.headers)
        problem = self._auth_problem(request.headers)
        if problem is None:
            return None
        self.totals["refused"] += 1
        self.metrics.refused("token")
        logger.warning("refused a connection from %s: %s", _peer(connection), problem)
        response = connection.respond(HTTPStatus.UNAUTHORIZED, f"{problem}\n")
        response.headers["WWW-Authenticate"] = 'Bearer realm="ser-serve"'
        return response

    def _http(self, connection: Any, path: str, headers: Any) -> Any:
        """A plain HTTP request (not a stream)."""
        if path == protocol.HEALTH_PATH:
            status = self.health()
            code = HTTPStatus.OK if status == "ok" else HTTPStatus.SERVICE_UNAVAILABLE
            return connection.respond(code, f"{status}\n")
        if path in web.PAGES:
            body, content_type = web.PAGES[path]
            return _static_response(HTTPStatus.OK, body, content_type)
        if path in (protocol.AUTH_PATH, protocol.METRICS_PATH):
            # /v1/auth: the web page asks before it opens a WebSocket (a browser cannot read
            # why an upgrade failed); /metrics: with a token, the operator's only
            problem = self._auth_problem(headers)
            if problem is not None:
                return connection.respond(HTTPStatus.UNAUTHORIZED, f"{problem}\n")
            if path == protocol.AUTH_PATH:
                return _static_response(HTTPStatus.NO_CONTENT, b"", "text/plain")
            return _static_response(HTTPStatus.OK, self.metrics.render(), metrics.CONTENT_TYPE)
        return connection.respond(
            HTTPStatus.NOT_FOUND, f"not found: streams are at {protocol.PATH}, the page at /\n"
        )

    def _auth_problem(self, headers: Any) -> str | None:
        """None when the request may open a stream; else what is wrong with its credentials."""
        if self.token is None:
            return None
        authorization = headers.get_all("Authorization")
        if len(authorization) > 1:
            return "more than one Authorization header: send one"
        offered = [
            value.strip()[len(protocol.TOKEN_SUBPROTOCOL_PREFIX) :]
            for header in headers.get_all("Sec-WebSocket-Protocol")
            for value in header.split(",")
            if value.strip().startswith(protocol.TOKEN_SUBPROTOCOL_PREFIX)
        ]
        if authorization and authorization[0].startswith("Bearer "):
            offered.append(authorization[0][len("Bearer ") :].strip())
        if not offered:
            return "missing token: send the header 'Authorization: Bearer TOKEN'"
        if any(hmac.compare_digest(t.encode(), self.token.encode()) for t in offered[:2]):
            return None
        return "wrong token"

    # ---- one stream ----

    async def _refuse(self, ws: Any, message: str, code: int, reason: str) -> None:
        from websockets.exceptions import ConnectionClosed

        self.totals["refused"] += 1
        self.metrics.refused(reason)
        with contextlib.suppress(ConnectionClosed):
            await ws.send(protocol.error_message(message))
            await _close(ws, code, message[:120])

    async def _handle(self, ws: Any) -> None:
        """One connection, whatever it sends: a stream, or an error message and a close code.
        A bug here is logged with its traceback and closes this connection only (1011)."""
        from websockets.exceptions import ConnectionClosed

        try:
            await self._handle_connection(ws)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("stream from %s failed", _peer(ws))
            with contextlib.suppress(ConnectionClosed):
                await _close(ws, 1011, "internal error (logged)")

    async def _handle_connection(self, ws: Any) -> None:
        task = asyncio.current_task()
        assert task is not None and self._shared is not None
        _bound_send_buffer(ws)
        address = _address(ws)
        refusal = self._refusal_before_start(address)
        if refusal is not None:
            await self._refuse(ws, *refusal)
            return
        self.unstarted[task] = address
        try:
            start = await self._read_start(ws)
        finally:
            del self.unstarted[task]
        if start is None:
            return
        refusal = self._refusal_after_start(start)
        if refusal is not None:
            await self._refuse(ws, *refusal)
            return
        self.streams[task] = None
        self.names.add(start.stream)
        try:
            bundle = self._shared.bundle
            await ws.send(
                protocol.ready_message(start.stream, bundle.name, bundle.accuracy_note(short=True))
            )
            await self._run_stream(ws, start, task)
        finally:
            del self.streams[task]
            self.names.discard(start.stream)

    def _refusal_before_start(self, address: str) -> tuple[str, int, str] | None:
        serve = self.config.serve
        if self.state != "accepting":
            return f"server is {self.state}", protocol.CLOSE_TRY_LATER, self.state
        if len(self.unstarted) >= serve.max_unstarted:
            return (
                f"{serve.max_unstarted} connections are waiting to start "
                "(serve.max_unstarted): try again later",
                protocol.CLOSE_TRY_LATER,
                "max_unstarted",
            )
        per_address = serve.max_unstarted_per_address
        if per_address and sum(a == address for a in self.unstarted.values()) >= per_address:
            return (
                f"{per_address} connections from {address} are waiting to start "
                "(serve.max_unstarted_per_address): send start, or try again later",
                protocol.CLOSE_TRY_LATER,
                "max_unstarted_per_address",
            )
        return None

    async def _read_start(self, ws: Any) -> protocol.Start | None:
        """The client's start message; None when it did not send a good one (refused)."""
        try:
            first = await asyncio.wait_for(ws.recv(), START_TIMEOUT_S)
            return protocol.parse_start(first)
        except TimeoutError:
            await self._refuse(
                ws,
                f"no start message within {START_TIMEOUT_S:.0f} s",
                protocol.CLOSE_POLICY,
                "start_timeout",
            )
        except protocol.ProtocolError as exc:
            await self._refuse(ws, str(exc), exc.code, "protocol")
        return None

    def _refusal_after_start(self, start: protocol.Start) -> tuple[str, int, str] | None:
        serve = self.config.serve
        if self.state != "accepting":
            return f"server is {self.state}", protocol.CLOSE_TRY_LATER, self.state
        if len(self.streams) >= serve.max_streams:
            return (
                f"{serve.max_streams} streams are open (serve.max_streams): try again later",
                protocol.CLOSE_TRY_LATER,
                "max_streams",
            )
        if start.stream in self.names:
            return (
                f"stream {start.stream!r} is already open here: try again in a moment (a "
                "reconnecting client's old stream may still be finishing), or use another name",
                protocol.CLOSE_TRY_LATER,
                "duplicate_name",
            )
        return None

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
            max_speed=serve.max_speed,
            burst_s=serve.burst_s,
        )
        self.streams[task] = source
        if self.state != "accepting":
            source.stop()
        outbox = Outbox(serve.outbox_results)
        sinks: list[Sink] = [outbox, self.metrics]
        if shared.mqtt is not None:
            sinks.append(shared.mqtt)
        state = LiveState(
            shared.bundle.name, shared.bundle.accuracy_note(short=True), shared.bundle.labels
        )
        pipeline = Pipeline(
            self.config,
            shared.classifier,
            shared.workers,
            sinks,
            state,
            inference=shared.inference,
            meter_levels=False,
            observe=self.metrics.observe_stage,
            on_early_analysis=self.metrics.early_analysis,
        )
        self.totals["streams"] += 1
        self.metrics.streams.inc()
        pcm = start.pcm
        logger.info(
            "stream %s opened from %s (%s, %d Hz, %d channel%s)",
            start.stream,
            _peer(ws),
            pcm.format,
            pcm.sample_rate,
            pcm.channels,
            "" if pcm.channels == 1 else "s",
        )
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
                await _close(ws, code, reason)
            elif reason == "unread":
                await _close(ws, protocol.CLOSE_POLICY, "results not read")
            elif source.error is not None:
                await ws.send(protocol.error_message(str(source.error)))
                await _close(ws, source.error.code, str(source.error)[:120])
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
        check_exposure(host, self.token, config.serve.insecure)
        n_workers = config.serve.feature_workers or os.cpu_count() or 1
        classifier = Classifier(self.bundle)
        workers = FeatureWorkers(
            n_workers,
            encoder=self.bundle.encoder,
            observe=self.metrics.observe_stage,
            statistics=self.bundle.needs_statistics,
        )
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
                    # a browser that offers the token as a subprotocol gets "ser.v1" back
                    # (never the token); clients that offer none get none
                    select_subprotocol=_select_subprotocol,
                    ssl=self.tls,
                    # frames queued per stream before reading stops: memory per stream is at
                    # most max_queue x max_size (4 x 132 kB with the default max_frame_bytes)
                    max_queue=MAX_QUEUE_FRAMES,
                    # frames a little over the limit get our error message and 1009; far over
                    # it, websockets closes with 1009 itself before buffering them
                    max_size=max_frame * 2 + 1024,
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
                    "serving on %s://%s:%d%s (%s; %d feature workers; ready in %.2f s)",
                    scheme,
                    host,
                    self.port,
                    protocol.PATH,
                    f"token required: ${config.serve.token_env}" if self.token else "no token",
                    n_workers,
                    time.monotonic() - started_s,
                )
                logger.info(
                    "web page: %s://%s:%d/", "https" if self.tls else "http", host, self.port
                )
                await self._stop.wait()
                if not self._hurry.is_set():
                    await self._drain()
        finally:
            # the workers are joined in a thread: the loop goes on serving the drain's last
            # messages and signals meanwhile
            await asyncio.to_thread(workers.close)
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), grace)
            if self._hurry.is_set():
                return
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
MAX_QUEUE_FRAMES = 4


async def _close(ws: Any, code: int, reason: str) -> None:
    """Close with `code`, discarding whatever the client still sends meanwhile. A client
    that sent more than `MAX_QUEUE_FRAMES` frames nobody read has paused the socket's reading:
    its closing frame would then never be read, and the connection would hold its place for
    websockets' close timeout (10 s) before being dropped."""
    from websockets.exceptions import ConnectionClosed

    async def discard() -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.recv()

    reader = asyncio.create_task(discard())
    try:
        await ws.close(code, reason)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


def _select_subprotocol(_connection: Any, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    wanted = Subprotocol(protocol.SUBPROTOCOL)
    return wanted if wanted in offered else None


def _bound_send_buffer(ws: Any) -> None:
    """Cap the kernel's send buffer of a stream's socket (Linux grows it to 4 MB for a client
    that does not read): results are small, and a stalled client then fills its outbox soon."""
    sock = ws.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


def _static_response(status: HTTPStatus, body: bytes, content_type: str) -> Any:
    """An HTTP response with security headers (the page loads only its own files)."""
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("Content-Security-Policy", web.CONTENT_SECURITY_POLICY),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("ser")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _address(ws: Any) -> str:
    """The client's IP address ("?" when unknown)."""
    try:
        return str(ws.remote_address[0])
    except (AttributeError, IndexError, TypeError):
        return "?"


def _peer(ws: Any) -> str:
    try:
        address = ws.remote_address
        return f"{address[0]}:{address[1]}"
    except (AttributeError, IndexError, TypeError):
        return "?"


__all__ = ["Outbox", "StreamServer", "StreamSource"]
