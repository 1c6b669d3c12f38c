"""The `ser-serve` WebSocket protocol on `/v1/stream` (pure: parsing and message building).

    client -> {"type": "start", "stream": "call-17", "sample_rate": 16000, "format": "s16le",
               "channels": 1}                      (stream optional: the server names it)
    server -> {"type": "ready", "stream": "call-17", "model": "default",
               "accuracy": "80% acted, same corpora; 47% other corpora"}
    client -> binary frames of PCM (any size up to max_frame_bytes)
    server -> {"type": "result", ...the --json result..., "source": stream, "seq": 0, 1, ...}
    client -> {"type": "reset"}                    (a new speaker starts: speaker history and
                                                    trend forgotten from here on; any time)
    client -> {"type": "stop"}
    server -> its last results, {"type": "end", "utterances": N}, close 1000

Errors: {"type": "error", "message": "..."} then a close code (`CLOSE_*` below). Every
malformed message (not JSON, nested too deep, numbers too long, wrong types, over
`MAX_CONTROL_BYTES`) is a `ProtocolError`, never another exception.

Authentication happens before the WebSocket upgrade (HTTP 401 otherwise): the token in an
`Authorization: Bearer TOKEN` header or, from a browser (which cannot set headers), as a
subprotocol `TOKEN_SUBPROTOCOL_PREFIX + TOKEN` offered beside `SUBPROTOCOL`
(`new WebSocket(url, ["ser.v1", "ser.token." + token])`); never in the URL.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from ser.messages import Result
from ser.pcm import FORMATS, PcmFormat

PATH = "/v1/stream"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
AUTH_PATH = "/v1/auth"  # GET: 204 when the request's credentials would open a stream, else 401

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # the server drains (SIGTERM)
CLOSE_POLICY = 1008  # bad or missing start message, unknown format, results not read
CLOSE_TOO_BIG = 1009  # a frame over max_frame_bytes
CLOSE_TRY_LATER = 1013  # max_streams are open
CLOSE_UNAUTHORIZED = 4401  # missing or wrong token

SUBPROTOCOL = "ser.v1"  # what the server answers when a client offers subprotocols
TOKEN_SUBPROTOCOL_PREFIX = "ser.token."
MAX_CONTROL_BYTES = 4096  # a text message (start, stop, reset) longer than this: 1009
MAX_JSON_DEPTH = 8  # brackets nested deeper than this are refused before parsing

_STREAM_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
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


def _too_deep(message: str) -> bool:
    """More than MAX_JSON_DEPTH open brackets at once (counted outside strings, cheaply)."""
    depth, in_string, escaped = 0, False, False
    for char in message:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


def loads(message: str, what: str) -> Any:
    """JSON text -> value, or ProtocolError (size, depth, syntax, numbers too long)."""
    if len(message) > MAX_CONTROL_BYTES:
        raise ProtocolError(
            f"{what} is {len(message)} characters, over the limit of {MAX_CONTROL_BYTES}",
            CLOSE_TOO_BIG,
        )
    if _too_deep(message):
        raise ProtocolError(f"{what} nests more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(message)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"{what} is not JSON ({exc.msg})") from None
    except (ValueError, RecursionError):  # e.g. an integer of thousands of digits
        raise ProtocolError(f"{what} is not JSON this server takes (a number too long?)") from None


def _json_object(message: str, what: str, expected_type: str) -> dict[str, Any]:
    """A text message that must be a JSON object of `{"type": expected_type}`."""
    data = loads(message, what)
    if not isinstance(data, dict) or data.get("type") != expected_type:
        raise ProtocolError(f'{what} must be {{"type": "{expected_type}", ...}}')
    return data


def _int_in(data: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ProtocolError(
            f"start: {key!r} must be an integer {low}-{high}, got {_short_repr(value)}"
        )
    return value


def _short_repr(value: Any, limit: int = 60) -> str:
    """A client's value as quoted in an error message: never more than `limit` characters."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**limit else "a long int"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_start(message: str | bytes) -> Start:
    """The client's first message -> Start, or ProtocolError naming what is wrong. A start
    without `stream` gets a server-made name (`stream-` and 12 hex digits)."""
    if isinstance(message, bytes):
        raise ProtocolError('the first message must be a text start message: {"type": "start"}')
    data = _json_object(message, "the start message", "start")
    stream = data.get("stream")
    if stream is None:
        stream = f"stream-{uuid.uuid4().hex[:12]}"
    if not isinstance(stream, str) or not _STREAM_ID.fullmatch(stream):
        raise ProtocolError(
            "start: 'stream' must be 1-128 characters of letters, digits and _.:@- "
            f"(it becomes the result's source), got {_short_repr(stream)}"
        )
    fmt = data.get("format", "s16le")
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ProtocolError(
            f"start: unknown format {_short_repr(fmt)}; use one of {', '.join(FORMATS)}"
        )
    rate = _int_in(data, "sample_rate", 16000, 8000, MAX_SAMPLE_RATE)
    channels = _int_in(data, "channels", 1, 1, MAX_CHANNELS)
    return Start(stream, PcmFormat(fmt, rate, channels))


CONTROL_TYPES = ("stop", "reset")


def parse_control(message: str) -> str:
    """A text message after start -> its type (one of CONTROL_TYPES); ProtocolError
    otherwise."""
    data = loads(message, "a text message after start")
    kind = data.get("type") if isinstance(data, dict) else None
    if not isinstance(kind, str) or kind not in CONTROL_TYPES:
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


def ready_message(stream: str, model: str, accuracy: str = "") -> str:
    """`accuracy`: the model's accuracy with its condition, as the dashboard shows it."""
    message = {"type": "ready", "stream": stream, "model": model}
    if accuracy:
        message["accuracy"] = accuracy
    return _dumps(message)


def result_message(result: Result) -> str:
    return _dumps({"type": "result", **result.to_dict()})


def end_message(utterances: int, reason: str = "stop") -> str:
    return _dumps({"type": "end", "utterances": utterances, "reason": reason})


def error_message(message: str) -> str:
    return _dumps({"type": "error", "message": message})


STOP_MESSAGE = _dumps({"type": "stop"})
RESET_MESSAGE = _dumps({"type": "reset"})
