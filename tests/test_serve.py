"""`ser-serve` over real WebSockets: the protocol, results equal to `ser-live --json`, formats,
bad clients beside good ones, health, draining, MQTT, and the thin client `ser-live --connect`."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

from ser.bundle import load_bundle

from .broker import Subscriber, broker, broker_factory, free_port  # noqa: F401 (fixtures)
from .conftest import DEFAULT_MODEL
from .live import LiveProcess, parse_results, run_live
from .serve import ServeProcess, SilentClient, encode, env_with, run_stream, speech
from .test_mqtt import tls_files  # noqa: F401 (fixture)

CLIPS = ["03-01-05-02-01-01-05", "03-01-03-02-02-01-05", "03-01-04-01-01-02-05"]
COMPARED = ("start_s", "end_s", "emotion", "confidence", "probabilities", "arousal", "valence")


def _health(port: int, path: str = "/healthz") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def stream_audio(ravdess):
    return speech(ravdess, CLIPS)


@pytest.fixture(scope="module")
def expected(stream_audio):
    """What `ser-live --input - --json` says of the same samples (one source, one speaker)."""
    proc = run_live("--input", "-", "--json", stdin=stream_audio.astype("<i2").tobytes())
    assert proc.returncode == 0, proc.stderr.decode()
    results = parse_results(proc.stdout)
    assert len(results) == len(CLIPS)
    return results


@pytest.fixture(scope="module")
def server():
    with ServeProcess("--no-mqtt", "--workers", "1") as s:
        yield s


def test_protocol_and_results_equal_the_json_output(server, stream_audio, expected):
    status, body = _health(server.port)
    assert (status, body) == (200, "ok\n")
    assert _health(server.port, "/elsewhere")[0] == 404
    start = {"type": "start", "stream": "call-17", "sample_rate": 16000, "format": "s16le"}
    run = run_stream(server.url, encode(stream_audio, "s16le"), start=start, frame_bytes=3333)
    assert run.first == {
        "type": "ready",
        "stream": "call-17",
        "model": "default",
        "accuracy": load_bundle(DEFAULT_MODEL).accuracy_note(short=True),
    }
    assert "acted, same corpora" in run.first["accuracy"]
    assert run.extensions is None  # the client offered per-message deflate; PCM is not worth it
    assert [r["seq"] for r in run.results] == list(range(len(expected)))
    for got, want in zip(run.results, expected, strict=True):
        assert got["type"] == "result" and got["source"] == "call-17"
        assert {k: got[k] for k in COMPARED} == {k: want[k] for k in COMPARED}
        assert got["trend"] == want["trend"]  # same adaptation and trend scope: the stream
    assert run.end == {"type": "end", "utterances": len(expected), "reason": "stop"}
    assert run.close_code == 1000


@pytest.fixture(scope="module")
def history_server():
    """A server reading with the speaker history ungated: its effect shows from the second
    utterance on (the default gate reads a speaker's first few utterances alone)."""
    with ServeProcess("--no-mqtt", "--workers", "1", "--set", "pipeline.adaptation=always") as s:
        yield s


def test_reset_message_starts_a_new_speaker(history_server, ravdess):
    server = history_server

    def aligned(names: list[str]) -> np.ndarray:  # whole 30 ms VAD frames: same cut anywhere
        audio = speech(ravdess, names)
        return np.pad(audio, (0, -audio.size % 480))

    first, second = aligned(CLIPS[:1]), aligned(CLIPS[1:2])
    fresh = run_stream(server.url, encode(first, "s16le")).results
    pieces: list[bytes | dict] = [encode(first, "s16le"), encode(second, "s16le")]
    kept = run_stream(server.url, [*pieces, encode(first, "s16le")]).results
    reset = run_stream(server.url, [*pieces, {"type": "reset"}, encode(first, "s16le")])
    assert len(fresh) == 1 and len(kept) == len(reset.results) == 3
    assert reset.end is not None and reset.end["utterances"] == 3 and reset.close_code == 1000
    after = reset.results[2]
    # after the reset the clip is read with no history, exactly as in a fresh stream
    assert after["probabilities"] == fresh[0]["probabilities"]
    assert after["trend"]["utterances"] == 1
    # without it, the same clip is read beside the two before it
    assert kept[2]["probabilities"] != fresh[0]["probabilities"]
    assert kept[2]["trend"]["utterances"] == 3
    assert [r["seq"] for r in reset.results] == [0, 1, 2]  # one stream throughout


class _ListSource:
    """A Source playing int16 pieces and speaker resets (`None`) in order, as fast as taken."""

    live = False
    overflows = 0
    dropped_blocks = 0

    def __init__(self, pieces: list[np.ndarray | None]) -> None:
        self.name = "list"
        self.pieces = pieces

    async def blocks(self):  # type: ignore[no-untyped-def]
        from ser.messages import AudioBlock
        from ser.sources import EndOfStream, SpeakerReset

        at = 0
        for piece in self.pieces:
            if piece is None:
                yield SpeakerReset(self.name)
                continue
            for i in range(0, piece.size, 1600):
                block = piece[i : i + 1600]
                yield AudioBlock(self.name, block, 16000, at / 16000, time.monotonic())
                at += block.size
        yield EndOfStream(self.name)

    def stop(self) -> None:
        pass


def test_thin_client_sends_a_speaker_reset_in_order(history_server, ravdess):
    server = history_server
    import asyncio

    from ser.labels import LABELS
    from ser.remote import RemotePipeline
    from ser.state import LiveState

    def aligned(names: list[str]) -> np.ndarray:
        audio = speech(ravdess, names)
        return np.pad(audio, (0, -audio.size % 480))

    first, second = aligned(CLIPS[:1]), aligned(CLIPS[1:2])

    class Collect:
        def __init__(self) -> None:
            self.results: list = []

        def emit(self, result) -> None:  # type: ignore[no-untyped-def]
            self.results.append(result)

    def run(pieces: list[np.ndarray | None]) -> tuple[list, LiveState]:
        sink, state = Collect(), LiveState("remote", None, LABELS)
        remote = RemotePipeline(server.url, "reset-test", [sink], state)
        asyncio.run(remote.run(_ListSource(pieces)))
        return sink.results, state

    fresh, _ = run([first])
    reset, state = run([first, second, None, first])
    assert len(fresh) == 1 and len(reset) == 3 and state.resets == 1
    assert reset[2].probabilities == fresh[0].probabilities
    assert reset[2].trend is not None and reset[2].trend.utterances == 1


def test_unnamed_stream_is_named_by_the_server(server, stream_audio):
    run = run_stream(server.url, encode(stream_audio[: 16000 * 4], "s16le"))
    assert run.first is not None and run.first["type"] == "ready"
    name = run.first["stream"]
    assert name.startswith("stream-") and all(r["source"] == name for r in run.results)


def test_f32le_and_48_khz_stereo(server, stream_audio, expected):
    from ser.audio_io import resample

    f32 = run_stream(
        server.url,
        encode(stream_audio, "f32le"),
        start={"type": "start", "stream": "f32", "sample_rate": 16000, "format": "f32le"},
    )
    # float samples of exactly the int16 values: the same audio, the same results
    assert [{k: r[k] for k in COMPARED} for r in f32.results] == [
        {k: r[k] for k in COMPARED} for r in expected
    ]
    hi = resample(stream_audio.astype(np.float32) / 32768.0, 16000, 48000)
    stereo = run_stream(
        server.url,
        encode(hi, "s16le", channels=2),
        start={
            "type": "start",
            "stream": "st",
            "sample_rate": 48000,
            "format": "s16le",
            "channels": 2,
        },
        frame_bytes=48000 * 4 // 10,
    )
    assert [r["emotion"] for r in stereo.results] == [r["emotion"] for r in expected]
    for got, want in zip(stereo.results, expected, strict=True):
        assert abs(got["start_s"] - want["start_s"]) <= 0.03
        assert abs(got["end_s"] - want["end_s"]) <= 0.03


def test_bad_clients_beside_good_ones(stream_audio, expected):
    token = "tk-8c1e"
    config_env = env_with(SER_TEST_TOKEN=token)
    with ServeProcess(
        "--no-mqtt",
        "--workers",
        "1",
        "--config",
        _serve_config('max_streams = 3\nmax_frame_bytes = 4096\ntoken_env = "SER_TEST_TOKEN"\n'),
        env=config_env,
    ) as server:
        auth = {"Authorization": f"Bearer {token}"}
        good_runs: list = []
        pcm = encode(stream_audio, "s16le")

        def good(name: str) -> None:
            start = {"type": "start", "stream": name, "sample_rate": 16000, "format": "s16le"}
            good_runs.append(run_stream(server.url, pcm, start=start, headers=auth))

        threads = [threading.Thread(target=good, args=(f"good-{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        # a third client leaves without stop (token as a browser sends it): its stream ends
        gone = threading.Thread(
            target=run_stream,
            args=(server.url, pcm),
            kwargs={"read": False, "stop": False, "subprotocols": ["ser.v1", f"ser.token.{token}"]},
        )
        gone.start()
        time.sleep(0.5)
        bad = {
            "not JSON": run_stream(server.url, b"", start="hello", headers=auth),
            "format": run_stream(
                server.url,
                b"",
                start={"type": "start", "format": "mp3", "sample_rate": 16000},
                headers=auth,
            ),
            "frame": run_stream(server.url, b"\0" * 8192, frame_bytes=8192, headers=auth),
            "token": run_stream(server.url, pcm, headers={"Authorization": "Bearer wrong"}),
            "no token": run_stream(server.url, pcm),
            "query": run_stream(server.url + f"?token={token}", pcm),
            "two headers": run_stream(
                server.url,
                pcm,
                headers=[("Authorization", f"Bearer {token}"), ("Authorization", "Bearer x")],
            ),
            "subprotocol": run_stream(server.url, pcm, subprotocols=["ser.v1", "ser.token.wrong"]),
        }
        for t in threads:
            t.join(timeout=120)
        gone.join(timeout=120)
    codes = {
        k: (r.close_code, r.errors[0]["message"] if r.errors else None) for k, r in bad.items()
    }
    assert codes["not JSON"][0] == 1008 and "not JSON" in codes["not JSON"][1]
    assert codes["format"][0] == 1008 and "mp3" in codes["format"][1]
    assert codes["frame"][0] == 1009 and "serve.max_frame_bytes" in codes["frame"][1]
    # refused before the upgrade: HTTP 401 saying what is wrong, no WebSocket opened
    http = {k: (r.http_status, r.http_body) for k, r in bad.items() if r.http_status}
    assert http["token"] == (401, "wrong token\n")
    assert http["subprotocol"] == (401, "wrong token\n")
    assert http["no token"][0] == 401 and "Authorization: Bearer" in http["no token"][1]
    assert http["query"][0] == 401  # a token in the URL is never read
    assert http["two headers"] == (401, "more than one Authorization header: send one\n")
    assert token not in "\n".join(server.stderr)  # never logged
    for run in good_runs:
        assert [{k: r[k] for k in COMPARED} for r in run.results] == [
            {k: r[k] for k in COMPARED} for r in expected
        ]
        assert run.close_code == 1000


def test_max_streams_refuses_with_1013():
    from websockets.sync.client import connect

    with (
        ServeProcess(
            "--no-mqtt", "--workers", "1", "--config", _serve_config("max_streams = 1\n")
        ) as server,
        connect(server.url) as first,
    ):
        first.send(json.dumps({"type": "start", "stream": "one"}))
        assert json.loads(first.recv(timeout=10))["type"] == "ready"
        refused = run_stream(server.url, b"")
        assert refused.close_code == 1013
        assert "serve.max_streams" in refused.errors[0]["message"]


def test_a_client_that_never_reads_is_closed_and_stalls_nobody(stream_audio, expected):
    """Its results pile up (socket buffers, then the outbox of 2): the stream is closed (1008);
    a good stream beside it gets every result."""
    from .synth import harmonic, silence

    bursts = np.concatenate([np.concatenate([harmonic(0.5), silence(0.6)])] * 400)
    pcm = encode(bursts, "s16le")
    with ServeProcess(
        "--no-mqtt",
        "--workers",
        "1",
        "--config",
        _serve_config("outbox_results = 2\nmax_speed = 0\n"),
    ) as server:
        silent = SilentClient(server.port)
        try:
            silent.send(json.dumps({"type": "start", "stream": "silent"}))
            sender = threading.Thread(target=silent.send_all, args=(pcm, 32000), daemon=True)
            sender.start()
            good = run_stream(server.url, encode(stream_audio, "s16le"))
            deadline = time.monotonic() + 60
            while not any("silent closed (unread)" in x for x in server.stderr):
                assert time.monotonic() < deadline, "\n".join(server.stderr)
                time.sleep(0.2)
        finally:
            silent.close()
    assert [{k: r[k] for k in COMPARED} for r in good.results] == [
        {k: r[k] for k in COMPARED} for r in expected
    ]


def _serve_config(serve_table: str) -> str:
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "serve.toml"
    path.write_text("[serve]\n" + serve_table)
    return str(path)


def test_disconnect_without_stop_still_classifies_and_publishes(broker, stream_audio, expected):  # noqa: F811
    from websockets.sync.client import connect

    sub = Subscriber(broker.port, ["ser/replica-a/#"])
    try:
        with ServeProcess(
            "--workers",
            "1",
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            str(broker.port),
            "--node-id",
            "replica-a",
        ) as server:
            with connect(server.url) as ws:
                ws.send(json.dumps({"type": "start", "stream": "hangup"}))
                assert json.loads(ws.recv(timeout=10))["type"] == "ready"
                pcm = encode(stream_audio, "s16le")
                cut = len(pcm) - 32000 * 1  # the last utterance, without the silence after it
                for i in range(0, cut, 3200):
                    ws.send(pcm[i : min(i + 3200, cut)])
            # the socket is gone mid-utterance: its results still reach MQTT
            sub.wait_for(lambda s: len(s.on("ser/replica-a/emotion")) == len(expected), 60)
    finally:
        sub.close()
    published = [json.loads(p) for p in sub.on("ser/replica-a/emotion")]
    assert [p["source"] for p in published] == ["hangup"] * len(expected)
    assert [p["seq"] for p in published] == list(range(len(expected)))
    assert [p["emotion"] for p in published] == [r["emotion"] for r in expected]
    assert sub.on("ser/replica-a/status")[-1] == "offline"  # clean exit after the drain


def test_sigterm_drains_finishes_in_flight_and_closes_with_1001(stream_audio, expected):
    from websockets.sync.client import connect

    config = _serve_config("drain_grace_s = 1.5\n")
    server = ServeProcess("--no-mqtt", "--workers", "1", "--config", config).wait_ready()
    try:
        with connect(server.url) as ws:
            ws.send(json.dumps({"type": "start", "stream": "draining"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            pcm = encode(stream_audio, "s16le")
            cut = len(pcm) - 32000  # mid-way: the last utterance is still open
            for i in range(0, cut, 3200):
                ws.send(pcm[i : min(i + 3200, cut)])
            time.sleep(1.0)  # the server has taken the audio
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert _health(server.port) == (503, "draining\n")
            refused = run_stream(server.url, b"")
            assert refused.close_code == 1013 and "draining" in refused.errors[0]["message"]
            messages = []
            with contextlib.suppress(ConnectionClosed):
                while True:
                    messages.append(json.loads(ws.recv(timeout=30)))
            close_code = ws.close_code
        assert server.proc.wait(timeout=30) == 0
    finally:
        server.kill()
    results = [m for m in messages if m["type"] == "result"]
    assert [r["emotion"] for r in results] == [r["emotion"] for r in expected]
    assert messages[-1] == {"type": "end", "utterances": len(expected), "reason": "drain"}
    assert close_code == 1001


def test_a_second_sigterm_stops_at_once_and_keeps_unsent_results(stream_audio, tmp_path):
    """Broker away, results queued, a long drain grace: the second SIGTERM ends the process
    within a second or two and the queued results are in the state file."""
    config = _serve_config(
        "drain_grace_s = 20.0\n\n[mqtt]\nenabled = true\nflush_timeout_s = 20.0\n"
    )
    env = env_with(XDG_STATE_HOME=str(tmp_path))
    server = ServeProcess(
        "--workers", "1", "--config", config, "--mqtt-port", str(free_port()), env=env
    ).wait_ready()
    try:
        run = run_stream(server.url, encode(stream_audio, "s16le"))
        assert len(run.results) == len(CLIPS)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert _health(server.port)[0] == 503
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError("\n".join(server.stderr)) from None
        assert code == 0 and time.monotonic() - started < 3.0, "\n".join(server.stderr)
    finally:
        server.kill()
    saved = tmp_path / "ser" / "mqtt-unsent.jsonl"
    assert [json.loads(line)["seq"] for line in saved.read_text().splitlines()] == [0, 1, 2]


@pytest.mark.slow
def test_thin_client_survives_a_server_restart(ravdess, tmp_path):
    import soundfile as sf

    clips = ["03-01-01-01-01-01-07"] + [f"03-01-0{e}-02-01-01-07" for e in (3, 4, 5, 8)]
    audio = tmp_path / "talk.flac"
    sf.write(audio, speech(ravdess, clips, gap_s=1.5), 16000)
    local = parse_results(run_live("--input", str(audio), "--json").stdout)
    assert len(local) == len(clips)
    port = free_port()
    first = ServeProcess("--no-mqtt", "--workers", "1", port=port).wait_ready()
    second = None
    client = LiveProcess(
        "--connect",
        f"ws://127.0.0.1:{port}/v1/stream",
        "--input",
        str(audio),
        "--realtime",
        "--json",
        env=None,
    )
    try:
        client.wait_listening()
        time.sleep(local[2]["end_s"] + 0.6)  # 3 utterances done on the first server
        assert first.terminate() == 0  # drains: the utterance in progress is finished
        time.sleep(2.0)  # the client buffers meanwhile
        second = ServeProcess("--no-mqtt", "--workers", "1", port=port).wait_ready()
        code, out = client.finish(timeout=120)
    finally:
        for s in (first, second):
            if s is not None:
                s.kill()
        if client.proc.poll() is None:
            client.proc.kill()
    assert code == 0, "\n".join(client.stderr)
    results = parse_results(out)
    assert {r["source"] for r in results} == {"talk.flac"}
    # at most the utterance cut by the restart is lost or split
    assert len(local) - 1 <= len(results) <= len(local) + 1, results
    assert any("again" in line for line in client.stderr), client.stderr
    # stream time is the file's time across the reconnection
    for r in results[:3]:
        assert any(abs(r["start_s"] - x["start_s"]) < 0.05 for x in local)
    last = results[-1]
    assert abs(last["end_s"] - local[-1]["end_s"]) < 0.1, (last, local[-1])


def test_sigkill_of_the_server_leaves_no_worker_behind():
    from . import procs

    server = ServeProcess("--no-mqtt", "--workers", "2").wait_ready()
    try:
        children = procs.descendants(server.proc.pid)
        assert len(children) >= 3  # 2 feature workers and the resource tracker
        server.kill()
        deadline = time.monotonic() + 5.0
        while any(procs.alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [c for c in children if procs.alive(c)]
    finally:
        server.kill()


def test_wss_with_a_certificate_and_the_thin_client(tls_files, stream_audio, tmp_path):  # noqa: F811
    import soundfile as sf

    cert, key = tls_files / "server.crt", tls_files / "server.key"
    config = _serve_config(f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\n')
    audio = tmp_path / "talk.wav"
    sf.write(audio, stream_audio, 16000)
    with ServeProcess("--no-mqtt", "--workers", "1", "--config", config) as server:
        assert any(line.startswith("serving on wss://") for line in server.stderr)
        url = f"wss://localhost:{server.port}/v1/stream"
        # the client trusts the test CA the usual OpenSSL way
        trusted = run_live(
            "--connect",
            url,
            "--input",
            str(audio),
            "--json",
            env=env_with(SSL_CERT_FILE=str(tls_files / "ca.crt")),
        )
        untrusted = run_live(
            "--connect",
            url,
            "--input",
            str(audio),
            "--json",
            env=env_with(SSL_CERT_FILE=str(tls_files / "otherca.crt")),
            timeout=200,
        )
    assert trusted.returncode == 0, trusted.stderr.decode()
    assert len(parse_results(trusted.stdout)) == len(CLIPS)
    assert untrusted.returncode == 1  # at once: a certificate is not retried
    assert b"certificate verify failed" in untrusted.stderr and b"SSL_CERT_FILE" in untrusted.stderr


def test_an_idle_stream_times_out_with_its_results(stream_audio, expected):
    from websockets.sync.client import connect

    config = _serve_config("idle_timeout_s = 1.5\n")
    with (
        ServeProcess("--no-mqtt", "--workers", "1", "--config", config) as server,
        connect(server.url) as ws,
    ):
        ws.send(json.dumps({"type": "start", "stream": "quiet"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        pcm = encode(stream_audio, "s16le")
        cut = len(pcm) - 32000  # the last utterance still open when the client goes quiet
        for i in range(0, cut, 3200):
            ws.send(pcm[i : min(i + 3200, cut)])
        messages = []
        with contextlib.suppress(ConnectionClosed):
            while True:
                messages.append(json.loads(ws.recv(timeout=30)))
        close_code = ws.close_code
    assert [m["emotion"] for m in messages if m["type"] == "result"] == [
        r["emotion"] for r in expected
    ]
    assert messages[-1] == {"type": "end", "utterances": len(expected), "reason": "idle"}
    assert close_code == 1000


def _scrape(
    port: int, token: str | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_what_the_clients_did(stream_audio, expected):
    token = "tk-metrics"
    config = _serve_config('token_env = "SER_TEST_TOKEN"\n')
    with ServeProcess(
        "--no-mqtt", "--workers", "1", "--config", config, env=env_with(SER_TEST_TOKEN=token)
    ) as server:
        auth = {"Authorization": f"Bearer {token}"}
        # with a token, /metrics asks for it too
        assert _health(server.port, "/metrics")[0] == 401
        before = _scrape(server.port, token)
        pcm = encode(stream_audio, "s16le")
        runs = [
            run_stream(server.url, pcm, headers=auth, start={"type": "start", "stream": f"m{i}"})
            for i in range(2)
        ]
        assert run_stream(server.url, pcm, headers={"Authorization": "Bearer no"}).http_status
        assert run_stream(server.url, b"", start="nope", headers=auth).close_code == 1008
        after = _scrape(server.port, token)
    emotions: dict[str, int] = {}
    for run in runs:
        assert len(run.results) == len(expected)
        for r in run.results:
            emotions[r["emotion"]] = emotions.get(r["emotion"], 0) + 1
    n = sum(emotions.values())
    assert before[("ser_utterances_total", ())] == 0
    assert after[("ser_utterances_total", ())] == n
    for emotion, count in emotions.items():
        assert after[("ser_results_total", (("emotion", emotion),))] == count
    assert after[("ser_latency_seconds_count", ())] == n
    # where the latency goes: four stages per utterance that add up to it (each stage is read
    # at its own instant: a few ms apart at most)
    stages = ("hangover", "feature_wait", "features", "classify")
    for stage in stages:
        assert after[("ser_stage_seconds_count", (("stage", stage),))] == n
    assert after[("ser_stage_seconds_sum", (("stage", "features"),))] > 0
    staged = sum(after[("ser_stage_seconds_sum", (("stage", s),))] for s in stages)
    assert abs(staged - after[("ser_latency_seconds_sum", ())]) < 0.002 * n
    # analyses during hangovers: at most one used per utterance; both series from the start
    assert before[("ser_early_analyses_total", (("outcome", "used"),))] == 0
    assert 0 < after[("ser_early_analyses_total", (("outcome", "used"),))] <= n
    assert ("ser_early_analyses_total", (("outcome", "dropped"),)) in after
    # the calls behind them: one analysis per utterance, early (one that ended before its
    # drop counts done too) or once it ended; nothing failed or lost
    calls = {
        (dict(labels)["kind"], dict(labels)["outcome"]): value
        for (name, labels), value in after.items()
        if name == "ser_feature_worker_calls_total"
    }
    assert before[("ser_feature_worker_calls_total", (("kind", "pitch"), ("outcome", "done")))] == 0
    used = after[("ser_early_analyses_total", (("outcome", "used"),))]
    dropped = after[("ser_early_analyses_total", (("outcome", "dropped"),))]
    assert calls[("analyse", "done")] == n - used
    assert used <= calls[("early", "done")] <= used + dropped
    assert all(calls[kind, outcome] == 0 for kind in ("analyse", "early", "pitch")
               for outcome in ("failed", "lost"))  # fmt: skip
    assert after[("ser_streams_total", ())] == 2
    assert after[("ser_refusals_total", (("reason", "token"),))] == 1
    assert after[("ser_refusals_total", (("reason", "protocol"),))] == 1
    assert after[("ser_streams_open", ())] == 0
    assert after[("ser_feature_workers_healthy", ())] == 1
    assert after[("ser_feature_worker_restarts_total", ())] == 0
    info = [k for k in after if k[0] == "ser_build_info"]
    assert info and ("bundle", "default") in info[0][1]
    assert ("ser_mqtt_connected", ()) not in after  # --no-mqtt: no MQTT series


def test_the_documented_client_works_and_says_when_the_token_is_refused(ravdess, tmp_path):
    import re
    import sys

    from .conftest import REPO

    serving = (REPO / "docs" / "serving.md").read_text()  # the README links it
    code = next(
        block
        for block in re.findall(r"```python\n(.*?)```", serving, re.DOTALL)
        if "connect(" in block
    )
    client = tmp_path / "client.py"
    client.write_text(code)
    wav = tmp_path / "clip.wav"
    import soundfile as sf

    sf.write(wav, speech(ravdess, CLIPS[:1]), 16000)
    token = "tk-readme"
    config = _serve_config('token_env = "SER_TEST_TOKEN"\n')
    with ServeProcess(
        "--no-mqtt", "--workers", "1", "--config", config, env=env_with(SER_TEST_TOKEN=token)
    ) as server:

        def run(env_token: str | None) -> subprocess.CompletedProcess[str]:
            env = env_with()
            env.pop("SER_TOKEN", None)
            if env_token:
                env["SER_TOKEN"] = env_token
            return subprocess.run(
                [sys.executable, str(client), server.url, str(wav)],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        good, missing, wrong = run(token), run(None), run("nope")
    messages = [json.loads(line) for line in good.stdout.splitlines()]
    assert good.returncode == 0 and [m["type"] for m in messages] == ["ready", "result", "end"]
    assert missing.returncode == 1 and "refused: HTTP 401 missing token" in missing.stderr
    assert wrong.returncode == 1 and "refused: HTTP 401 wrong token" in wrong.stderr
    assert "Traceback" not in missing.stderr + wrong.stderr


def test_the_thin_client_ends_at_once_on_a_refused_token(ravdess, tmp_path):
    import soundfile as sf

    wav = tmp_path / "clip.wav"
    sf.write(wav, speech(ravdess, CLIPS[:1]), 16000)
    config = _serve_config('token_env = "SER_TEST_TOKEN"\n')
    with ServeProcess(
        "--no-mqtt", "--workers", "1", "--config", config, env=env_with(SER_TEST_TOKEN="right")
    ) as server:
        outcomes = {}
        for name, value in (("missing", None), ("wrong", "nope")):
            env = env_with()
            env.pop("SER_TOKEN", None)
            if value:
                env["SER_TOKEN"] = value
            started = time.monotonic()
            url = server.url.replace("ws://", "ws://user:secret@") + "?x=secret"
            proc = run_live("--connect", url, "--input", str(wav), "--json", env=env)
            outcomes[name] = (proc, time.monotonic() - started)
    for name, (proc, took_s) in outcomes.items():
        errors = [x for x in proc.stderr.decode().splitlines() if "error" in x]
        assert proc.returncode == 1 and len(errors) == 1, proc.stderr.decode()
        assert "SER_TOKEN" in errors[0] and took_s < 10, (name, errors)
        assert "secret" not in proc.stderr.decode()  # the URL's password and query never shown
    assert "set SER_TOKEN" in outcomes["missing"][0].stderr.decode()
    assert "SER_TOKEN is not the server's token" in outcomes["wrong"][0].stderr.decode()


def test_thin_client_sends_a_folder_file_by_file_and_stdin_as_locally(ravdess, tmp_path):
    from pathlib import Path

    folder = tmp_path / "clips"
    folder.mkdir()
    names = ["03-01-05-01-01-01-03", "03-01-04-02-02-01-03", "03-01-01-01-01-02-03"]
    for name in names:
        (folder / f"{name}.flac").symlink_to(ravdess / "Actor_03" / f"{name}.flac")
    local = parse_results(run_live("--input", str(folder), "--json").stdout)
    piped = (ravdess / "Actor_03" / f"{names[0]}.flac").read_bytes()
    local_stdin = parse_results(run_live("--input", "-", "--json", stdin=piped).stdout)
    with ServeProcess("--no-mqtt", "--workers", "1") as server:
        proc = run_live("--connect", server.url, "--input", str(folder), "--json")
        via_stdin = run_live("--connect", server.url, "--input", "-", "--json", stdin=piped)
    assert proc.returncode == 0, proc.stderr.decode()
    remote = parse_results(proc.stdout)
    # one stream per file, named after it, each starting without history: as locally
    assert [r["source"] for r in remote] == [Path(r["source"]).name for r in local]
    assert [r["source"] for r in remote] == sorted(f"{n}.flac" for n in names)
    for here, there in zip(local, remote, strict=True):
        assert there["emotion"] == here["emotion"]
        for label, p in here["probabilities"].items():
            assert there["probabilities"][label] == pytest.approx(p, abs=1e-4)
    assert via_stdin.returncode == 0, via_stdin.stderr.decode()
    assert [r["source"] for r in parse_results(via_stdin.stdout)] == ["stdin"]
    assert [r["source"] for r in local_stdin] == ["stdin"]
