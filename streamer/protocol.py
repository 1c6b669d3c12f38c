"""The `ser-serve` WebSocket protocol on `/v1/stream` (pure: parsing and message building).

    client -> {"type": "start", "stream": "call-17", "sample_rate": 16000, "format": "s16le",
               "channels": 1}                      (stream optional: the server names it)
    server -> {"type": "ready", "stream": "call-17", "model": "default"}
    client -> binary frames of PCM (any size up to max_frame_bytes)
    server -> {"type": "result", ...the --json result..., "source": stream, "seq": 0, 1, ...}
    client -> {"type": "reset"}                    (a new speaker starts: speaker history and
                                                    trend forgotten from here on; any time)
    client -> {"type": "stop"}
    server -> its last results, {"type": "end", "utterances": N}, close 1000

Errors: {"type": "error", "message": "..."} then a close code (`CLOSE_*` below).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from streamer.messages import Result
from streamer.pcm import FORMATS, PcmFormat

PATH = "/v1/stream"
HEALTH_PATH = "/healthz"

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # the server drains (SIGTERM)
CLOSE_POLICY = 1008  # bad or missing start message, unknown format, results not read
CLOSE_TOO_BIG = 1009  # a frame over max_frame_bytes
CLOSE_TRY_LATER = 1013  # max_streams are open
CLOSE_UNAUTHORIZED = 4401  # missing or wrong token

_STREAM_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 32


class ProtocolError(Exception):
    """A client broke the protocol; `code` is the WebSocket close code to answer with."""

    def __init__(self, message: str, code: int = CLOSE_POLICY) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Start:
    """A validated start message."""

    stream: str
    pcm: PcmFormat


def _json_object(message: str, what: str, expected_type: str) -> dict[str, Any]:
    """A text message that must be a JSON object of `{"type": expected_type}`."""
    try:
        data = json.loads(message)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"{what} is not JSON ({exc.msg})") from None
    if not isinstance(data, dict) or data.get("type") != expected_type:
        raise ProtocolError(f'{what} must be {{"type": "{expected_type}", ...}}')
    return data


def _int_in(data: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ProtocolError(f"start: {key!r} must be an integer {low}-{high}, got {value!r}")
    return value


def parse_start(message: str | bytes) -> Start:
    """The client's first message -> Start, or ProtocolError naming what is wrong. A start
    without `stream` gets a server-made name (`stream-` and 12 hex digits)."""
    if isinstance(message, bytes):
        raise ProtocolError('the first message must be a text start message: {"type": "start"}')
    data = _json_object(message, "the start message", "start")
    stream = data.get("stream")
    if stream is None:
        stream = f"stream-{uuid.uuid4().hex[:12]}"
    if not isinstance(stream, str) or not _STREAM_ID.match(stream):
        raise ProtocolError(
            "start: 'stream' must be 1-128 characters of letters, digits and _.:@- "
            f"(it becomes the result's source), got {stream!r}"
        )
    fmt = data.get("format", "s16le")
    if fmt not in FORMATS:
        raise ProtocolError(f"start: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    rate = _int_in(data, "sample_rate", 16000, 8000, MAX_SAMPLE_RATE)
    channels = _int_in(data, "channels", 1, 1, MAX_CHANNELS)
    return Start(stream, PcmFormat(fmt, rate, channels))


CONTROL_TYPES = ("stop", "reset")


def parse_control(message: str) -> str:
    """A text message after start -> its type (one of CONTROL_TYPES); ProtocolError
    otherwise."""
    try:
        data = json.loads(message)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"a text message after start is not JSON ({exc.msg})") from None
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in CONTROL_TYPES:
        raise ProtocolError(
            'a text message after start must be {"type": "stop"} or {"type": "reset"}'
        )
    return str(kind)


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


def start_message(stream: str, pcm: PcmFormat) -> str:
    return _dumps(
        {
            "type": "start",
            "stream": stream,
            "sample_rate": pcm.sample_rate,
            "format": pcm.format,
            "channels": pcm.channels,
        }
    )


def ready_message(stream: str, model: str) -> str:
    return _dumps({"type": "ready", "stream": stream, "model": model})


def result_message(result: Result) -> str:
    return _dumps({"type": "result", **result.to_dict()})


def end_message(utterances: int, reason: str = "stop") -> str:
    return _dumps({"type": "end", "utterances": utterances, "reason": reason})


def error_message(message: str) -> str:
    return _dumps({"type": "error", "message": message})


STOP_MESSAGE = _dumps({"type": "stop"})
RESET_MESSAGE = _dumps({"type": "reset"})
