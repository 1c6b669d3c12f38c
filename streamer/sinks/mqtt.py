"""MQTT: every result published in order, at least once, across broker restarts.

One long-lived aiomqtt 2.x client under a supervisor task: connect, publish, on `MqttError` log
once, back off (capped exponential) and reconnect. `emit` only appends to a bounded queue, so the
pipeline never waits on the broker. A result leaves the queue only after the broker acknowledged
it (QoS 1 PUBACK), so a connection lost mid-publish re-sends it (subscribers may see a duplicate
`seq`, never a gap). When the queue is full the oldest results are dropped and counted. On
shutdown the queue is flushed within `flush_timeout_s`; what is left is written to a JSON-lines
file and reported. A sink created with `keep_unreached=False` (file runs with `mqtt.enabled =
"auto"`) that never reached its broker neither waits nor writes that file on shutdown: it reports
the count in one line and returns at once.

Topics: `<prefix>/<node_id>/emotion` (every result, QoS 1, not retained) and
`<prefix>/<node_id>/status` (retained `online`/`offline`, `offline` also as the Last Will).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import re
import secrets
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ser.backoff import retry_wait_s
from ser.config import ConfigError, MqttConfig, check_topic_segment
from ser.messages import Result
from ser.state import BrokerStatus, LiveState

logger = logging.getLogger(__name__)

_BACKOFF_MIN_S = 1.0
_BACKOFF_MAX_S = 30.0


def default_node_id() -> str:
    """The host name, made safe as a topic segment."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", socket.gethostname()).strip("-")
    return name or "ser"


def unsent_path() -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return base / "ser" / "mqtt-unsent.jsonl"


# Home Assistant sensors, by object id: what each shows of the result JSON.
_HA_SENSORS = (
    "emotion",
    "confidence",
    "speech",
    "trend_emotion",
    "trend_arousal",
    "trend_valence",
)
# an utterance the speech detector rejected: Home Assistant's "unknown" ("None" rendered)
_UNLESS_NOT_SPEECH = "None if value_json.emotion == 'not_speech' else "


@dataclass(frozen=True)
class Topics:
    emotion: str
    status: str
    ha_status: str
    ha_configs: dict[str, str]
    """Home Assistant discovery config topic of each sensor in `_HA_SENSORS`."""

    @classmethod
    def for_node(cls, config: MqttConfig, node_id: str) -> Topics:
        base = f"{config.topic_prefix}/{node_id}"
        disc = config.discovery_prefix
        return cls(
            emotion=f"{base}/emotion",
            status=f"{base}/status",
            ha_status=f"{disc}/status",
            ha_configs={k: f"{disc}/sensor/ser_{node_id}/{k}/config" for k in _HA_SENSORS},
        )


def discovery_payloads(
    topics: Topics, node_id: str, labels: tuple[str, ...], model: str
) -> dict[str, dict[str, Any]]:
    """Home Assistant MQTT discovery configs (retained), by config topic: the last utterance's
    emotion and confidence (unknown for non-speech), its speech probability, and the trend's
    emotion, arousal and valence (see README)."""
    device = {
        "identifiers": [f"ser_{node_id}"],
        "name": f"Speech emotion ({node_id})",
        "manufacturer": "ser",
        "model": f"model {model}",
    }
    common = {
        "state_topic": topics.emotion,
        "availability_topic": topics.status,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
    }
    sensors: dict[str, dict[str, Any]] = {
        "emotion": {
            "name": "Emotion",
            "device_class": "enum",
            "options": list(labels),
            "value_template": "{{ " + _UNLESS_NOT_SPEECH + "value_json.emotion }}",
            "json_attributes_topic": topics.emotion,
            "icon": "mdi:emoticon-outline",
        },
        "confidence": {
            "name": "Emotion confidence",
            "unit_of_measurement": "%",
            "state_class": "measurement",
            "value_template": "{{ "
            + _UNLESS_NOT_SPEECH
            + "(value_json.confidence * 100) | round(1) }}",
            "icon": "mdi:percent",
        },
        "speech": {
            "name": "Speech probability",
            "unit_of_measurement": "%",
            "state_class": "measurement",
            "value_template": "{{ (value_json.speech * 100) | round(1) }}",
            "icon": "mdi:account-voice",
        },
        "trend_emotion": {
            "name": "Emotion trend",
            "device_class": "enum",
            "options": list(labels),
            "value_template": "{{ value_json.trend.emotion if value_json.trend else None }}",
            "icon": "mdi:chart-timeline-variant",
        },
        "trend_arousal": {
            "name": "Arousal trend",
            "state_class": "measurement",
            "value_template": "{{ (value_json.trend.arousal | round(3)) if value_json.trend "
            "else None }}",
            "icon": "mdi:lightning-bolt-outline",
        },
        "trend_valence": {
            "name": "Valence trend",
            "state_class": "measurement",
            "value_template": "{{ (value_json.trend.valence | round(3)) if value_json.trend "
            "else None }}",
            "icon": "mdi:emoticon-happy-outline",
        },
    }
    return {
        topics.ha_configs[key]: {**common, "unique_id": f"ser_{node_id}_{key}", **sensor}
        for key, sensor in sensors.items()
    }


def resolve_password(config: MqttConfig) -> str | None:
    """The password from the environment variable named by `mqtt.password_env`."""
    if not config.password_env:
        return None
    value = os.environ.get(config.password_env)
    if value is None:
        raise ConfigError(
            f"config key mqtt.password_env names ${config.password_env}, which is not set: "
            "export it, or clear mqtt.password_env"
        )
    return value


def _tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    if not (config.tls or config.ca_file):
        return None
    try:
        context = ssl.create_default_context(cafile=config.ca_file or None)
        if config.cert_file:
            context.load_cert_chain(config.cert_file, config.key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"config keys mqtt.ca_file/cert_file/key_file: cannot load TLS files ({exc})"
        ) from exc
    return context


def _describe(exc: BaseException, config: MqttConfig) -> str:
    text = str(exc) or type(exc).__name__
    where = f"{config.host}:{config.port}"
    lowered = text.lower()
    if "not authori" in lowered or "bad user name or password" in lowered:
        return (
            f"broker {where} refused the login ({text}): check mqtt.username and mqtt.password_env"
        )
    if "certificate verify failed" in lowered or "ssl" in lowered:
        return f"TLS with broker {where} failed ({text}): check mqtt.ca_file and mqtt.tls"
    return f"broker {where} unreachable ({text})"


class MqttSink:
    """Publishes results; owns the broker connection. Create and run inside the event loop."""

    def __init__(
        self,
        config: MqttConfig,
        node_id: str,
        labels: tuple[str, ...],
        model: str,
        state: LiveState | None = None,
        *,
        keep_unreached: bool = True,
    ) -> None:
        check_topic_segment(node_id, "mqtt.node_id", allow_empty=False)
        self.keep_unreached = keep_unreached
        self.config = config
        self.node_id = node_id
        self.labels = labels
        self.model = model
        self.topics = Topics.for_node(config, node_id)
        self._password = resolve_password(config)
        self._tls = _tls_context(config)
        self._state = state
        self._queue: deque[Result] = deque()
        self._per_source: collections.Counter[str] = collections.Counter()  # queued per source
        self.dropped_by_source: collections.Counter[str] = collections.Counter()
        # unique per process: scaled replicas (all pid 1 in containers) never share an id
        self.client_id = f"ser-{node_id}-{os.getpid()}-{secrets.token_hex(3)}"
        if self.config.password_env and not self.config.tls:
            logger.warning(
                "mqtt: the password ($%s) goes to %s:%d without TLS: set mqtt.tls = true "
                "unless the network to the broker is yours",
                self.config.password_env,
                self.config.host,
                self.config.port,
            )
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.published = 0
        self._hurry = False
        self.failures = 0  # unexpected (non-MQTT) errors the supervisor survived
        self.connected_once = False
        self._first_attempt = asyncio.Event()  # set once the first connection attempt ended
        self._status = BrokerStatus("connecting")
        self._last_error: str | None = None
        self._update()

    @property
    def status(self) -> BrokerStatus:
        """Connection state and counters now."""
        return self._status

    # ---- the pipeline side: never blocks ----

    def emit(self, result: Result) -> None:
        if len(self._queue) >= self.config.queue_size:
            self._drop_fairly()
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning(
                    "mqtt: queue full (%d results), dropped %d so far, oldest of the busiest "
                    "source first (mqtt.queue_size)",
                    self.config.queue_size,
                    self.dropped,
                )
        self._queue.append(result)
        self._per_source[result.source] += 1
        self._wake.set()
        self._update()

    def _drop_fairly(self) -> None:
        """Drop the oldest queued result of the source with the most queued: while the broker
        is away one busy stream cannot push every other stream's results out."""
        busiest, _ = self._per_source.most_common(1)[0]
        for i, queued in enumerate(self._queue):
            if queued.source == busiest:
                del self._queue[i]
                break
        self._forget(busiest)
        self.dropped += 1
        self.dropped_by_source[busiest] += 1

    def _forget(self, source: str) -> None:
        self._per_source[source] -= 1
        if self._per_source[source] <= 0:
            del self._per_source[source]

    def _update(self, state: str | None = None, retry_at_s: float | None = None) -> None:
        s = self._status
        self._status = BrokerStatus(
            state=state or s.state,
            retry_at_s=retry_at_s if state is not None else s.retry_at_s,
            last_error=self._last_error,
            queued=len(self._queue),
            dropped=self.dropped,
            published=self.published,
        )
        if self._state is not None:
            self._state.broker = self._status

    # ---- the connection side ----

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="ser-mqtt")

    def hurry(self) -> None:
        """Stop at once on `aclose` (a second SIGTERM/SIGINT): no flush, what is queued is
        saved to `unsent_path()`."""
        self._hurry = True
        if self._task is not None and self._closing.is_set():
            self._task.cancel()

    async def aclose(self) -> int:
        """Flush within `flush_timeout_s`, publish `offline`, disconnect. Returns the unsent count;
        unsent results are appended to `unsent_path()`."""
        self._closing.set()
        self._wake.set()
        if self._hurry and self._task is not None:  # a second stop signal: persist, go
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not self.keep_unreached and self._task is not None:
            # a broker that is there answers the first attempt at once; give it that long
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_attempt.wait(), self.config.flush_timeout_s)
            if not self.connected_once:
                return await self._abandon()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.config.flush_timeout_s + 2)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._update("stopped")
        unsent = len(self._queue)
        if unsent:
            path = unsent_path()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a") as f:
                    for result in self._queue:
                        f.write(result.to_json() + "\n")
                where = f"saved to {path}"
            except OSError as exc:
                where = f"could not be saved ({exc})"
            logger.warning(
                "mqtt: %d results not sent (%s); %s",
                unsent,
                self._last_error or "broker unreachable",
                where,
            )
        if self.dropped:
            logger.warning("mqtt: %d results dropped while the queue was full", self.dropped)
        return unsent

    async def _abandon(self) -> int:
        """Stop without waiting for a broker this run never reached; keep nothing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._update("stopped")
        unsent = len(self._queue) + self.dropped
        logger.warning(
            "mqtt: %s; %d results not published and not kept (to keep them: --mqtt or "
            "mqtt.enabled = true; to skip MQTT: --no-mqtt)",
            self._last_error or f"broker {self.config.host}:{self.config.port} not reached",
            unsent,
        )
        return unsent

    def _client(self) -> Any:
        import aiomqtt

        return aiomqtt.Client(
            self.config.host,
            self.config.port,
            username=self.config.username or None,
            password=self._password,
            identifier=self.client_id,
            keepalive=self.config.keepalive_s,
            timeout=10.0,
            will=aiomqtt.Will(self.topics.status, "offline", qos=1, retain=True),
            tls_context=self._tls,
        )

    async def _supervise(self) -> None:
        import aiomqtt

        backoff = _BACKOFF_MIN_S
        deadline: float | None = None
        while True:
            if self._hurry:  # checked here too: Python 3.11's wait_for may swallow a cancel
                return
            if self._closing.is_set():
                if not self._queue and self._status.state != "connected":
                    return  # nothing to flush
                deadline = deadline or time.monotonic() + self.config.flush_timeout_s
                if time.monotonic() >= deadline:
                    return
            self._update("connecting")
            try:
                async with self._client() as client:
                    if self._last_error is not None:
                        logger.warning(
                            "mqtt: connected to %s:%d again", self.config.host, self.config.port
                        )
                    else:
                        logger.info("mqtt: connected to %s:%d", self.config.host, self.config.port)
                    self._last_error = None
                    self.connected_once = True
                    self._first_attempt.set()
                    backoff = _BACKOFF_MIN_S
                    self._update("connected")
                    await client.publish(self.topics.status, "online", qos=1, retain=True)
                    await self._connected(client)
                    await client.publish(self.topics.status, "offline", qos=1, retain=True)
                    return
            except Exception as exc:  # the supervisor survives anything: logged, retried
                if isinstance(exc, aiomqtt.MqttError):
                    message = _describe(exc, self.config)
                else:
                    message = f"unexpected {type(exc).__name__}: {exc}"
                    logger.exception("mqtt: publishing failed unexpectedly; reconnecting")
                    self.failures += 1
                if message != self._last_error:
                    # said once at the end instead, when this run may give up on the broker
                    quiet = not self.keep_unreached and not self.connected_once
                    logger.log(
                        logging.DEBUG if quiet else logging.WARNING,
                        "mqtt: %s; retrying with back-off",
                        message,
                    )
                self._last_error = message
                self._first_attempt.set()
            if self._closing.is_set():
                wait = 0.5
            else:
                wait, backoff = retry_wait_s(backoff), min(backoff * 2, _BACKOFF_MAX_S)
            self._update("retrying", retry_at_s=time.monotonic() + wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), wait)

    async def _connected(self, client: Any) -> None:
        """Publish the queue in order until closing and empty; raises MqttError on loss."""
        if self.config.home_assistant:
            await self._publish_discovery(client)
            await client.subscribe(self.topics.ha_status, qos=1)
        # Iterating the client's messages ends with MqttError as soon as the connection drops,
        # so a lost broker is noticed while idle too, and a publish never waits for a dead one.
        watcher = asyncio.create_task(self._watch(client), name="ser-mqtt-watch")
        try:
            while True:
                while self._queue:
                    result = self._queue[0]
                    try:
                        payload = result.to_json()
                    except Exception:  # one bad result must not stop every later one
                        logger.exception("mqtt: result %s cannot be published; skipped", result.seq)
                        self.failures += 1
                        self._queue.popleft()
                        self._forget(result.source)
                        continue
                    await self._until_lost(
                        watcher,
                        client.publish(self.topics.emotion, payload, qos=self.config.qos),
                    )
                    if self._queue and self._queue[0] is result:  # not dropped meanwhile
                        self._queue.popleft()
                        self._forget(result.source)
                    self.published += 1
                    self._update()
                if self._closing.is_set():
                    return
                self._wake.clear()
                await self._until_lost(watcher, self._wake.wait())
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher

    @staticmethod
    async def _until_lost(watcher: asyncio.Task[None], work: Any) -> None:
        """Await `work` unless the connection is lost first (then raise the watcher's error)."""
        import aiomqtt

        task = asyncio.ensure_future(work)
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        error = watcher.exception() if not watcher.cancelled() else None
        raise error if error is not None else aiomqtt.MqttError("connection lost")

    async def _watch(self, client: Any) -> None:
        async for message in client.messages:
            if message.topic.matches(self.topics.ha_status) and message.payload in (
                b"online",
                "online",
            ):
                await self._publish_discovery(client)

    async def _publish_discovery(self, client: Any) -> None:
        payloads = discovery_payloads(self.topics, self.node_id, self.labels, self.model)
        for topic, payload in payloads.items():
            await client.publish(topic, json.dumps(payload), qos=1, retain=True)
        logger.debug("mqtt: published Home Assistant discovery")
