"""`config.toml` -> nested frozen dataclasses, validated once with errors that name the key."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A config file or value is unusable; the message names the key and what is expected."""


@dataclass(frozen=True)
class AudioConfig:
    device: str = ""
    """Input device name (substring) or index; empty: the system default."""
    block_ms: int = 30
    """Capture block length in milliseconds (10, 20 or 30)."""
    capture_rate: int = 0
    """Capture rate in Hz; 0: 16000 when the device supports it, else its default rate. Audio
    not at 16 kHz is resampled."""
    queue_blocks: int = 200
    """Blocks queued between the audio callback and the loop (200 x 30 ms = 6 s); oldest dropped."""


@dataclass(frozen=True)
class VadConfig:
    aggressiveness: int = 2
    """webrtcvad mode, 0 (keeps most) to 3 (strictest)."""
    frame_ms: int = 30
    """VAD frame length: 10, 20 or 30 ms."""
    pre_roll_ms: int = 300
    """Audio kept from before speech starts."""
    start_ms: int = 90
    """Voiced audio in a row needed to start an utterance."""
    hangover_ms: int = 300
    """Silence that ends an utterance."""
    min_utterance_ms: int = 400
    """Shorter utterances (voiced span) are dropped and counted."""
    max_utterance_ms: int = 8000
    """Longer speech is cut and classified in pieces."""
    boundary_db: float = 35.0
    """Reported boundaries leave out edge frames this far below the utterance's loudest frame."""


@dataclass(frozen=True)
class PipelineConfig:
    model: str = "default"
    """Model bundle folder (relative paths: to the working directory), or the name of a bundle
    shipped with ser ("default")."""
    feature_workers: int = 1
    """Processes computing features."""
    max_pending: int = 16
    """Utterances in flight; when full a live source drops the newest (counted), files wait."""
    early_pitch: bool = True
    """Compute an utterance's pitch (YIN, most of the statistics' cost) in the feature workers
    while it is still being spoken, when they have nothing else to do: less work once it ends,
    the same results (16 kHz input). No effect with a bundle that reads no statistics
    (`ser-train --no-statistics-network` with its speech detector on the embedding: no pitch is
    computed at all)."""
    encoder_tail_ms: int = 150
    """Of the silence that ends an utterance (`vad.hangover_ms`), a bundle with an encoder
    reads the first `encoder_tail_ms`: its encoder reads the rest as the utterance's first
    samples (background before speech), its statistics leave the rest out, so the utterance is
    analysed while the rest of the hangover is still being waited for: results sooner under
    load (ser-serve storms and bursts), slightly different readings (BENCHMARKS.md). Rounded up
    to whole VAD frames, one at least; `vad.hangover_ms` or more: the whole utterance, read once
    it ends."""
    min_confidence: float | str = "auto"
    """Results with a top probability below this are marked uncertain (0 disables); "auto":
    the bundle's threshold, below which its held-out results were right less than half the
    time (manifest: calibration.uncertainty)."""
    min_speech: float | str = "auto"
    """Utterances whose speech probability (the bundle's speech detector) is below this are
    reported as "not_speech" and get no emotion (0 disables); "auto": the bundle's threshold."""
    adaptation: str = "speaker"
    """"speaker": each utterance is read beside the same speaker's earlier ones, as far as the
    bundle's history gate trusts them (a held mood is not erased; a new speaker: `reset` on
    ser-serve, the r key on the dashboard); "always": the history without the gate, every
    utterance read by the speaker-adapted networks, a first one too (best on sessions that mix
    every emotion, as acted corpora do; erases a held mood); "off": every
    utterance stands on its own, as the bundle's "first" session scores."""
    adaptation_scope: str = "source"
    """Speaker adaptation history: "source" (each file / stream / microphone session) or "run"
    (all inputs of this run are one speaker)."""


@dataclass(frozen=True)
class DashboardConfig:
    refresh_hz: float = 4.0
    """Dashboard redraws per second."""
    history: int = 12
    """Recent utterances listed."""
    timeline: int = 40
    """Utterances shown in the emotion timeline and the arousal/valence sparklines."""


@dataclass(frozen=True)
class TrendConfig:
    window_utterances: int = 5
    """Span of the exponential moving average over a source's utterances (weight of the newest
    2 / (window + 1))."""
    reset_after_s: float = 300.0
    """A pause longer than this (stream time) starts the trend afresh; 0: never."""


@dataclass(frozen=True)
class ServeConfig:
    """`ser-serve`: WebSocket streams."""

    host: str = "127.0.0.1"
    port: int = 8765
    """0: any free port (logged)."""
    max_streams: int = 200
    """Open streams at most; more are refused with close code 1013."""
    max_frame_bytes: int = 65536
    """Largest binary frame a client may send (1 s of 16 kHz stereo s16le is 64000 bytes)."""
    idle_timeout_s: float = 60.0
    """A stream that sends nothing for this long is ended (0: never)."""
    token_env: str = ""
    """Name of the environment variable holding the bearer token clients must present."""
    tls_cert_file: str = ""
    """Serve wss:// with this certificate (PEM) and `tls_key_file`."""
    tls_key_file: str = ""
    """Its private key (PEM); empty: the key is in `tls_cert_file`."""
    outbox_results: int = 256
    """Results waiting to be sent on a stream's socket; a stream whose client stops reading is
    closed (1008) when this many are waiting."""
    feature_workers: int = 0
    """Feature processes shared by all streams; 0: one per CPU core."""
    drain_grace_s: float = 0.0
    """On SIGTERM, time during which /healthz answers 503 and new streams are refused while open
    streams go on (lets a load balancer notice) before they are finished."""
    drain_timeout_s: float = 10.0
    """On SIGTERM, time allowed (after the grace) to finish the streams' utterances in flight."""
    max_unstarted: int = 64
    """Connections that have not yet sent their start message, at most (counted apart from
    streams; each has 10 s to start); more are refused with 1013."""
    max_unstarted_per_address: int = 16
    """The same per client address (0: no limit). Behind a load balancer every client shares
    its address: raise it there, or limit per client in the load balancer."""
    max_speed: float = 8.0
    """A stream's audio is taken at most this many times faster than real time (after a burst
    of `burst_s`): a fast client is slowed by not reading, and cannot hold the shared workers
    ahead of everyone else. 0: no limit."""
    burst_s: float = 30.0
    """Audio a stream may send at once above `max_speed` (e.g. a thin client's buffer after a
    reconnect)."""
    insecure: bool = False
    """Allow listening on a non-loopback address without a token (`--insecure`)."""


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool | str = "auto"
    """true: publish, and keep what could not be sent; false: off; "auto": publish when a broker
    is there, but a file or stdin run that never reached one neither waits for it nor keeps the
    results (a live microphone run behaves as with true)."""
    host: str = "localhost"
    """Broker host name or address."""
    port: int = 1883
    """Broker port (usually 8883 with TLS)."""
    node_id: str = ""
    """Topic segment naming this recognizer; empty: the host name."""
    topic_prefix: str = "ser"
    """First topic level(s): results go to `<topic_prefix>/<node_id>/emotion`."""
    qos: int = 1
    """MQTT quality of service of the results (0, 1 or 2)."""
    keepalive_s: int = 30
    """Seconds between keep-alive pings; a dead broker is noticed within about 1.5 times this."""
    username: str = ""
    """Broker user name; empty: none."""
    password_env: str = ""
    """Name of the environment variable holding the password (never the password itself)."""
    tls: bool = False
    """Use TLS with the system CAs (or `ca_file`)."""
    ca_file: str = ""
    """CA certificate (PEM) the broker's certificate is checked against; empty: the system's."""
    cert_file: str = ""
    """Client certificate (PEM) for brokers that ask for one."""
    key_file: str = ""
    """The client certificate's private key (PEM)."""
    queue_size: int = 10_000
    """Results kept while the broker is away; oldest dropped (counted) when full."""
    flush_timeout_s: float = 5.0
    """On shutdown, time allowed to publish what is still queued."""
    home_assistant: bool = False
    """Publish Home Assistant MQTT discovery config."""
    discovery_prefix: str = "homeassistant"
    """Home Assistant's discovery topic prefix (its MQTT integration's setting)."""


@dataclass(frozen=True)
class Config:
    audio: AudioConfig = field(default_factory=AudioConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    trend: TrendConfig = field(default_factory=TrendConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)


def _check_type(key: str, value: Any, expected: Any) -> Any:
    if isinstance(expected, types.UnionType):  # e.g. float | str: checked by `validate`
        for option in typing.get_args(expected):
            if option is float and isinstance(value, int) and not isinstance(value, bool):
                return float(value)
        if isinstance(value, expected):
            return value
        names = " or ".join(t.__name__ for t in typing.get_args(expected))
        raise ConfigError(
            f"config key {key}: expected {names}, got {type(value).__name__} {value!r}"
        )
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise ConfigError(
            f"config key {key}: expected {expected.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def all_keys() -> list[str]:
    """Every config key as "section.key"."""
    return [
        f"{section.name}.{f.name}"
        for section in dataclasses.fields(Config)
        for f in dataclasses.fields(typing.get_type_hints(Config)[section.name])
    ]


def _suggestion(prefix: str, key: str, known: set[str]) -> str:
    """ " (did you mean pipeline.min_confidence?)": the same key in another section first, else
    the nearest name; else the keys this section knows."""
    import difflib

    everywhere = all_keys()
    same_leaf = [k for k in everywhere if k.rsplit(".", 1)[-1] == key]
    if same_leaf:
        return f" (did you mean {' or '.join(same_leaf)}?)"
    near = difflib.get_close_matches(f"{prefix}{key}", everywhere, n=1, cutoff=0.75)
    near = near or difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    if near:
        guess = near[0] if "." in near[0] or not prefix else f"{prefix}{near[0]}"
        return f" (did you mean {guess}?)"
    return f" (known: {', '.join(sorted(known))})"


def apply_overrides(config: Config, assignments: list[str]) -> Config:
    """`--set section.key=value` (repeatable) on top of `config`: the value is read as a TOML
    value (`400`, `0.6`, `true`, `"auto"`), else as a string; checked like the config file."""
    data = dataclasses.asdict(config)
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(
                f"--set {assignment!r}: expected section.key=value, e.g. vad.hangover_ms=400"
            )
        if section not in data:
            raise ConfigError(
                f"--set {assignment!r}: unknown config section {section!r}"
                f"{_suggestion('', key.strip(), set(data))}"
            )
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        data[section][name] = value
    return validate(_build(Config, data, ""))


def _build(cls: type[Any], data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown config key {prefix}{key}{_suggestion(prefix, key, known)}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        hint = hints[f.name]
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hint):
            sub = data[f.name]
            if not isinstance(sub, dict):
                raise ConfigError(f"config key {key}: expected a [{key}] table")
            values[f.name] = _build(typing.cast(type[Any], hint), sub, f"{key}.")
        else:
            values[f.name] = _check_type(key, data[f.name], hint)
    return cls(**values)


def _require(ok: bool, key: str, expected: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"config key {key}: expected {expected}, got {value!r}")


def validate(config: Config) -> Config:
    """Range checks; raises ConfigError naming the key."""
    a, v, p, d, m = config.audio, config.vad, config.pipeline, config.dashboard, config.mqtt
    t, s = config.trend, config.serve
    _require(a.block_ms in (10, 20, 30), "audio.block_ms", "10, 20 or 30", a.block_ms)
    _require(a.queue_blocks >= 1, "audio.queue_blocks", "an integer >= 1", a.queue_blocks)
    _require(
        a.capture_rate == 0 or 8000 <= a.capture_rate <= 192_000,
        "audio.capture_rate",
        "0 (automatic) or 8000-192000 (Hz)",
        a.capture_rate,
    )
    _require(0 <= v.aggressiveness <= 3, "vad.aggressiveness", "0-3", v.aggressiveness)
    _require(v.frame_ms in (10, 20, 30), "vad.frame_ms", "10, 20 or 30", v.frame_ms)
    for name in ("pre_roll_ms", "start_ms", "hangover_ms", "min_utterance_ms"):
        value = getattr(v, name)
        _require(0 <= value <= 60_000, f"vad.{name}", "0-60000 (ms)", value)
    _require(
        v.max_utterance_ms >= max(v.min_utterance_ms, 1000),
        "vad.max_utterance_ms",
        "at least 1000 and at least vad.min_utterance_ms",
        v.max_utterance_ms,
    )
    _require(0 < v.boundary_db <= 120, "vad.boundary_db", "0-120 (dB)", v.boundary_db)
    _require(bool(p.model), "pipeline.model", "a bundle folder", p.model)
    _require(1 <= p.feature_workers <= 16, "pipeline.feature_workers", "1-16", p.feature_workers)
    _require(p.max_pending >= 1, "pipeline.max_pending", "an integer >= 1", p.max_pending)
    _require(
        p.encoder_tail_ms >= 0, "pipeline.encoder_tail_ms", "an integer >= 0", p.encoder_tail_ms
    )
    _require(
        p.min_confidence == "auto"
        or (isinstance(p.min_confidence, float) and 0.0 <= p.min_confidence <= 1.0),
        "pipeline.min_confidence",
        '"auto" or 0.0-1.0',
        p.min_confidence,
    )
    _require(
        p.min_speech == "auto" or (isinstance(p.min_speech, float) and 0.0 <= p.min_speech <= 1.0),
        "pipeline.min_speech",
        '"auto" or 0.0-1.0',
        p.min_speech,
    )
    _require(
        p.adaptation in ("speaker", "always", "off"),
        "pipeline.adaptation",
        '"speaker", "always" or "off"',
        p.adaptation,
    )
    _require(
        p.adaptation_scope in ("source", "run"),
        "pipeline.adaptation_scope",
        '"source" or "run"',
        p.adaptation_scope,
    )
    _require(0.5 <= d.refresh_hz <= 30, "dashboard.refresh_hz", "0.5-30", d.refresh_hz)
    _require(1 <= d.history <= 200, "dashboard.history", "1-200", d.history)
    _require(1 <= d.timeline <= 200, "dashboard.timeline", "1-200", d.timeline)
    _require(
        1 <= t.window_utterances <= 1000, "trend.window_utterances", "1-1000", t.window_utterances
    )
    _require(t.reset_after_s >= 0, "trend.reset_after_s", "a number >= 0", t.reset_after_s)
    _require(m.enabled in (True, False, "auto"), "mqtt.enabled", 'true, false or "auto"', m.enabled)
    _require(0 <= s.port <= 65535, "serve.port", "0-65535", s.port)
    _require(bool(s.host), "serve.host", "an address or host name", s.host)
    _require(1 <= s.max_streams <= 100_000, "serve.max_streams", "1-100000", s.max_streams)
    _require(
        1024 <= s.max_frame_bytes <= 16 * 2**20,
        "serve.max_frame_bytes",
        "1024-16777216 (bytes)",
        s.max_frame_bytes,
    )
    _require(s.idle_timeout_s >= 0, "serve.idle_timeout_s", "a number >= 0", s.idle_timeout_s)
    _require(s.outbox_results >= 1, "serve.outbox_results", "an integer >= 1", s.outbox_results)
    _require(0 <= s.feature_workers <= 64, "serve.feature_workers", "0-64", s.feature_workers)
    _require(s.drain_timeout_s >= 0, "serve.drain_timeout_s", "a number >= 0", s.drain_timeout_s)
    _require(s.drain_grace_s >= 0, "serve.drain_grace_s", "a number >= 0", s.drain_grace_s)
    _require(s.max_unstarted >= 1, "serve.max_unstarted", "an integer >= 1", s.max_unstarted)
    _require(
        s.max_unstarted_per_address >= 0,
        "serve.max_unstarted_per_address",
        "an integer >= 0",
        s.max_unstarted_per_address,
    )
    _require(s.max_speed >= 0, "serve.max_speed", "a number >= 0 (0: no limit)", s.max_speed)
    _require(s.burst_s >= 0, "serve.burst_s", "a number >= 0 (s)", s.burst_s)
    _require(
        bool(s.tls_cert_file) or not s.tls_key_file,
        "serve.tls_key_file",
        "set together with serve.tls_cert_file",
        s.tls_key_file,
    )
    _require(1 <= m.port <= 65535, "mqtt.port", "1-65535", m.port)
    _require(m.qos in (0, 1, 2), "mqtt.qos", "0, 1 or 2", m.qos)
    _require(m.keepalive_s >= 5, "mqtt.keepalive_s", "an integer >= 5", m.keepalive_s)
    _require(m.queue_size >= 1, "mqtt.queue_size", "an integer >= 1", m.queue_size)
    _require(m.flush_timeout_s >= 0, "mqtt.flush_timeout_s", "a number >= 0", m.flush_timeout_s)
    check_topic_segment(m.node_id, "mqtt.node_id", allow_empty=True)
    check_topic_segment(m.topic_prefix, "mqtt.topic_prefix", allow_empty=False, allow_slash=True)
    check_topic_segment(
        m.discovery_prefix, "mqtt.discovery_prefix", allow_empty=False, allow_slash=True
    )
    return config


def check_topic_segment(
    value: str, key: str, *, allow_empty: bool, allow_slash: bool = False
) -> None:
    """MQTT topic part: no wildcards, spaces or control characters, no empty level, no '/'
    unless allowed; raises ConfigError."""
    bad = set("+# ") | (set() if allow_slash else {"/"})
    if (
        (not value and not allow_empty)
        or any(ch in bad or ord(ch) < 32 or ord(ch) == 127 for ch in value)
        or (value and "" in value.split("/"))
    ):
        forbidden = "'+', '#', spaces, control characters" + (
            ", empty levels" if allow_slash else ", '/'"
        )
        raise ConfigError(
            f"config key {key}: expected a non-empty name without {forbidden}, got {value!r}"
        )


def load_config(path: Path | None) -> Config:
    """Read `path` (None: built-in defaults) into a validated Config."""
    if path is None:
        return validate(Config())
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc})") from exc
    return validate(_build(Config, data, ""))


def replace(config: Config, **sections: dict[str, Any]) -> Config:
    """Copy with some fields of some sections replaced, re-validated (for CLI overrides)."""
    changed = {
        name: dataclasses.replace(getattr(config, name), **values)
        for name, values in sections.items()
        if values
    }
    return validate(dataclasses.replace(config, **changed))


__all__ = [
    "AudioConfig",
    "Config",
    "ConfigError",
    "DashboardConfig",
    "MqttConfig",
    "PipelineConfig",
    "ServeConfig",
    "TrendConfig",
    "VadConfig",
    "load_config",
    "replace",
]
