"""`ser-serve` against any client: malformed messages (fuzzed with hypothesis) get an error
message and 1008/1009, never 1011 or a traceback, while a good stream beside them keeps every
result; connection limits, duplicate names, empty frames, and the exposure check."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from ser import protocol

from .serve import ServeProcess, encode, run_stream
from .test_serve import COMPARED, _serve_config, expected, stream_audio  # noqa: F401

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
start_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["start", "stop", "reset", "START", ""]) | json_values},
    optional={
        "stream": st.text(max_size=140) | json_values,
        "sample_rate": st.integers(-(10**12), 10**12) | json_values,
        "format": st.sampled_from(["s16le", "f32le", "mp3", ""]) | json_values,
        "channels": st.integers(-5, 64) | json_values,
    },
)
hostile_text = st.sampled_from(
    [
        "[" * 9000,  # over the frame limit: closed unread
        '{"type": "start", "sample_rate": ' + "9" * 4000 + "}",
        '{"type": "start", "sample_rate": ' + "9" * 5000 + "}",
        '{"type": "start", "format": []}',
        '{"type": "start", "stream": "a\\n"}',
        '{"type": "start", "stream": "' + "x" * 129 + '"}',
        "\x00",
        "",
        "{" * 9 + "}" * 9,
    ]
)


def test_parsers_raise_only_protocol_errors():
    """Every text is a Start/control type or a ProtocolError with a close code 1008/1009."""

    @settings(max_examples=400, deadline=None)
    @given(st.one_of(start_like.map(json.dumps), st.text(max_size=200), hostile_text))
    def check(message: str) -> None:
        for parse in (protocol.parse_start, protocol.parse_control):
            try:
                parse(message)
            except protocol.ProtocolError as exc:
                assert exc.code in (protocol.CLOSE_POLICY, protocol.CLOSE_TOO_BIG)
                assert len(str(exc)) < 400

    check()


def _exchange(url: str, messages: list[str | bytes]) -> tuple[list[dict[str, Any]], int | None]:
    """Send `messages`, read until the close: (what came back, the close code)."""
    got: list[dict[str, Any]] = []
    with connect(url, open_timeout=10, close_timeout=5, max_size=2**24) as ws:
        try:
            for message in messages:
                ws.send(message)
        except ConnectionClosed:
            pass  # refused before all was sent: what it said is still to be read
        try:
            while True:
                got.append(json.loads(ws.recv(timeout=20)))
        except ConnectionClosed:
            pass
        return got, ws.close_code


def _check_refused(got: list[dict[str, Any]], code: int | None) -> None:
    if code == protocol.CLOSE_NORMAL:  # a valid start and stop
        assert got[0]["type"] == "ready" and got[-1]["type"] == "end"
        return
    assert code in (protocol.CLOSE_POLICY, protocol.CLOSE_TOO_BIG), (got, code)
    if code == protocol.CLOSE_TOO_BIG and not got:
        return  # a frame over twice max_frame_bytes: closed by the WebSocket layer, unread
    assert got and got[-1]["type"] == "error" and got[-1]["message"], got


def test_fuzzed_clients_beside_a_good_stream(stream_audio, expected):  # noqa: F811
    config = _serve_config("max_frame_bytes = 4096\nmax_speed = 0\n")
    with ServeProcess("--no-mqtt", "--workers", "1", "--config", config) as server:
        good: dict[str, Any] = {}
        pcm = encode(stream_audio, "s16le")

        def run_good() -> None:
            start = {"type": "start", "stream": "good", "sample_rate": 16000}
            good["run"] = run_stream(server.url, pcm, start=start, pace_s=0.02)

        thread = threading.Thread(target=run_good)
        thread.start()

        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            first=st.one_of(start_like.map(json.dumps), hostile_text, st.binary(max_size=64)),
            then=st.lists(
                st.one_of(
                    st.binary(max_size=9000),
                    start_like.map(json.dumps),
                    hostile_text,
                    st.just(protocol.RESET_MESSAGE),
                ),
                max_size=3,
            ),
        )
        def fuzz(first: str | bytes, then: list[str | bytes]) -> None:
            got, code = _exchange(server.url, [first, *then, protocol.STOP_MESSAGE])
            _check_refused(got, code)

        fuzz()
        # the cases an operator hit, one by one
        for messages in (
            ["[" * 100_000],
            ['{"type": "start", "sample_rate": ' + "9" * 5000 + "}"],
            ['{"type": "start", "format": []}'],
            ['{"type": "start", "stream": "name\\n"}'],
            ['{"type": "start"}', "x" * 5000],
            ['{"type": "start"}', '{"type": ' * 20],
        ):
            _check_refused(*_exchange(server.url, list(messages)))
        # a client that closes right after start: no error, no task left
        with connect(server.url) as ws:
            ws.send(json.dumps({"type": "start", "stream": "hasty"}))
        thread.join(timeout=180)
        time.sleep(0.5)
    log = "\n".join(server.stderr)
    assert "Traceback" not in log and "failed" not in log, log[-3000:]
    run = good["run"]
    assert run.close_code == 1000
    assert [{k: r[k] for k in COMPARED} for r in run.results] == [
        {k: r[k] for k in COMPARED} for r in expected
    ]


def test_a_refused_client_that_sent_ahead_is_let_go_at_once():
    """A client refused after sending more frames than the server queues unread (its reading
    paused): the server still reads the client's closing frame and ends the connection, rather
    than holding it for websockets' 10 s close timeout."""
    config = _serve_config("max_frame_bytes = 4096\n")
    ahead: list[str | bytes] = [b"\x01\x02", *[protocol.RESET_MESSAGE] * 8, protocol.STOP_MESSAGE]
    with ServeProcess("--no-mqtt", "--workers", "1", "--config", config) as server:
        for refused_first in (b"\x01\x02", '{"type": "start", "format": []}'):
            with connect(server.url, open_timeout=10, close_timeout=5) as ws:
                for message in [refused_first, *ahead]:
                    ws.send(message)
                assert json.loads(ws.recv(timeout=5))["type"] == "error"
                with pytest.raises(ConnectionClosed):
                    ws.recv(timeout=5)  # the close completes well within the 10 s timeout
                assert ws.close_code == protocol.CLOSE_POLICY
    log = "\n".join(server.stderr)
    assert "Traceback" not in log, log[-3000:]


def test_duplicate_names_empty_frames_and_unstarted_limits():
    config = _serve_config(
        "idle_timeout_s = 1.5\nmax_unstarted = 4\nmax_unstarted_per_address = 2\n"
    )
    with ServeProcess("--no-mqtt", "--workers", "1", "--config", config) as server:
        with connect(server.url) as first:
            first.send(json.dumps({"type": "start", "stream": "call-1"}))
            assert json.loads(first.recv(timeout=10))["type"] == "ready"
            got, code = _exchange(server.url, [json.dumps({"type": "start", "stream": "call-1"})])
            assert code == 1013 and "already open" in got[-1]["message"]  # try again later
            # empty frames are not audio: sent every 0.2 s, the stream still ends as idle
            # (idle_timeout_s 1.5 from its start) and the connection closes
            started = time.monotonic()
            ended: dict[str, Any] | None = None
            with contextlib.suppress(ConnectionClosed):
                while time.monotonic() - started < 10:
                    first.send(b"")
                    with contextlib.suppress(TimeoutError):
                        message = json.loads(first.recv(timeout=0.2))
                        if message["type"] == "end":
                            ended = message
            assert ended == {"type": "end", "utterances": 0, "reason": "idle"}
            assert time.monotonic() - started < 5
        # connections that never start: two per address, then 1013; a started stream goes on
        with connect(server.url) as started:
            started.send(json.dumps({"type": "start", "stream": "started"}))
            assert json.loads(started.recv(timeout=10))["type"] == "ready"
            with contextlib.ExitStack() as silent:
                for _ in range(2):
                    silent.enter_context(connect(server.url))
                got, code = _exchange(server.url, [])
                assert code == 1013 and "max_unstarted_per_address" in got[-1]["message"]
                started.send(b"\0" * 3200)
                started.send(protocol.STOP_MESSAGE)
                assert json.loads(started.recv(timeout=10))["type"] == "end"
        assert run_stream(server.url, b"\0" * 3200).close_code == 1000  # room again


def test_a_public_address_needs_a_token_or_insecure():
    address = _outward_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address")
    refused = ServeProcess("--no-mqtt", "--workers", "1", "--host", address)
    assert refused.proc.wait(timeout=60) == 1
    refused._thread.join(timeout=5)
    line = [x for x in refused.stderr if "error" in x]
    assert len(line) == 1 and "--insecure" in line[0] and "serve.token_env" in line[0]
    with ServeProcess("--no-mqtt", "--workers", "1", "--host", address, "--insecure") as server:
        assert any("no token" in x for x in server.stderr)


def _outward_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent: picks the outward interface
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else str(address)
