"""MQTT against a real mosquitto: every result, in order, across restarts; auth, TLS, discovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import paho.mqtt.publish as paho_publish
import pytest
import soundfile as sf

from ser.labels import LABELS
from ser.messages import Result

from .broker import Subscriber, broker, broker_factory, free_port  # noqa: F401 (fixtures)
from .live import error_line, parse_results, run_live
from .synth import harmonic, silence

NODE = "testnode"
EMOTION = f"ser/{NODE}/emotion"
STATUS = f"ser/{NODE}/status"


def _bursts(path: Path, n: int, burst_s: float = 0.6, gap_s: float = 0.7) -> Path:
    parts = [silence(0.5)]
    for _ in range(n):
        parts += [harmonic(burst_s), silence(gap_s)]
    sf.write(path, np.concatenate(parts), 16_000)
    return path


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), **extra}


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def _start_realtime(
    audio: Path, tmp_path: Path, *args: str, quiet: bool = False
) -> subprocess.Popen[bytes]:
    """`ser-live --input AUDIO --json --realtime ARGS` in the background."""
    sink = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ser.cli",
            "--input",
            str(audio),
            "--json",
            "--realtime",
            *args,
        ],
        env=_env(tmp_path),
        stdout=sink,
        stderr=sink,
    )


def _run_configured(
    audio: Path, config: Path, port: int, tmp_path: Path, **env: str
) -> subprocess.CompletedProcess[bytes]:
    """`ser-live --input AUDIO --json --config CONFIG` publishing to 127.0.0.1:PORT."""
    return run_live(
        "--input",
        str(audio),
        "--json",
        "--config",
        str(config),
        *_mqtt_args(port),
        env=_env(tmp_path, **env),
        mqtt=True,
    )


def _mqtt_args(port: int) -> list[str]:
    return ["--mqtt-host", "127.0.0.1", "--mqtt-port", str(port), "--node-id", NODE]


def test_every_result_published_identical_to_json_lines(broker, tmp_path):  # noqa: F811
    sub = Subscriber(broker.port, [f"ser/{NODE}/#"])
    try:
        inputs = tmp_path / "in"
        inputs.mkdir()
        for name in ("a", "b", "c"):
            _bursts(inputs / f"{name}.wav", 2)
        proc = run_live(
            "--input",
            str(inputs),
            "--json",
            *_mqtt_args(broker.port),
            env=_env(tmp_path),
            mqtt=True,
        )
        assert proc.returncode == 0, proc.stderr.decode()
        lines = parse_results(proc.stdout)
        assert len(lines) == 6
        sub.wait_for(lambda s: len(s.on(EMOTION)) == 6 and s.on(STATUS)[-1:] == ["offline"])
        assert [json.loads(p) for p in sub.on(EMOTION)] == lines
        # status: online before the first result, offline after the last
        topics = [t for t, _, _ in sub.messages if t in (EMOTION, STATUS)]
        assert topics[0] == STATUS and sub.on(STATUS)[0] == "online"
        assert topics[-1] == STATUS and sub.on(STATUS)[-1] == "offline"
        assert not any(r for t, _, r in sub.messages if t == EMOTION)  # not retained
    finally:
        sub.close()
    late = Subscriber(broker.port, [STATUS], client_id="late")  # retained state after exit
    try:
        late.wait_for(lambda s: s.messages == [(STATUS, "offline", True)])
    finally:
        late.close()


def test_status_is_online_while_running(broker, tmp_path):  # noqa: F811
    audio = _bursts(tmp_path / "x.wav", 3)
    live = _start_realtime(audio, tmp_path, *_mqtt_args(broker.port))
    try:
        watcher = Subscriber(broker.port, [STATUS], client_id="watcher")
        watcher.wait_for(lambda s: s.on(STATUS)[-1:] == ["online"], timeout=60)
        assert live.poll() is None  # still running
        watcher.close()
    finally:
        live.wait(timeout=60)
    assert live.returncode == 0


@pytest.mark.slow
def test_broker_restart_mid_run_loses_nothing(broker, tmp_path):  # noqa: F811
    n = 8
    audio = _bursts(tmp_path / "x.wav", n)  # ~11 s in real time
    sub = Subscriber(broker.port, [EMOTION])
    live = _start_realtime(audio, tmp_path, *_mqtt_args(broker.port))
    try:
        sub.wait_for(lambda s: len(s.on(EMOTION)) >= 1, timeout=60)
        broker.stop()
        time.sleep(3.0)  # results keep coming and wait in ser-live's queue
        broker.start()
        out, err = live.communicate(timeout=90)
        assert live.returncode == 0, err.decode()
        assert len(parse_results(out)) == n
        sub.wait_for(lambda s: len({json.loads(p)["seq"] for p in s.on(EMOTION)}) == n)
    finally:
        if live.poll() is None:
            live.kill()
        sub.close()
    seqs = [json.loads(p)["seq"] for p in sub.on(EMOTION)]
    first_seen = list(dict.fromkeys(seqs))  # at-least-once: a duplicate may follow a lost ack
    assert first_seen == list(range(n)), seqs
    assert "connected to 127.0.0.1" in err.decode() and "again" in err.decode()


def test_broker_never_reachable_completes_and_reports_unsent(tmp_path):
    cfg = _config(tmp_path, "[mqtt]\nflush_timeout_s = 1.0\n")
    audio = _bursts(tmp_path / "x.wav", 2)
    proc = _run_configured(audio, cfg, free_port(), tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    results = parse_results(proc.stdout)
    assert len(results) == 2
    stderr = proc.stderr.decode()
    assert "mqtt: 2 results not sent" in stderr
    assert stderr.count("unreachable") == 2  # logged once while retrying, once in the report
    saved = tmp_path / "state" / "ser" / "mqtt-unsent.jsonl"
    assert [json.loads(line) for line in saved.read_text().splitlines()] == results


def _password_broker(broker_factory, tmp_path):  # noqa: F811
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "ser", "right"], check=True)
    return broker_factory(f"allow_anonymous false\npassword_file {pw}\n")


def test_wrong_password_is_one_clear_error_and_the_run_completes(broker_factory, tmp_path):  # noqa: F811
    b = _password_broker(broker_factory, tmp_path)
    cfg = _config(
        tmp_path,
        '[mqtt]\nusername = "ser"\npassword_env = "SER_TEST_PW"\nflush_timeout_s = 2.5\n',
    )
    audio = _bursts(tmp_path / "x.wav", 2)
    proc = _run_configured(audio, cfg, b.port, tmp_path, SER_TEST_PW="pw-7f3a-bad")
    assert proc.returncode == 0, proc.stderr.decode()
    assert len(parse_results(proc.stdout)) == 2
    stderr = proc.stderr.decode()
    refusals = [line for line in stderr.splitlines() if "refused the login" in line]
    assert len(refusals) == 2, stderr  # retried several times, logged once, then the report
    assert "retrying" in refusals[0] and "2 results not sent" in refusals[1]
    assert "mqtt.username" in refusals[0] and "pw-7f3a-bad" not in stderr  # never shown


def test_right_password_publishes(broker_factory, tmp_path):  # noqa: F811
    b = _password_broker(broker_factory, tmp_path)
    cfg = _config(tmp_path, '[mqtt]\nusername = "ser"\npassword_env = "SER_TEST_PW"\n')
    audio = _bursts(tmp_path / "x.wav", 1)
    proc = _run_configured(audio, cfg, b.port, tmp_path, SER_TEST_PW="right")
    assert proc.returncode == 0
    assert "not sent" not in proc.stderr.decode()


def test_password_env_not_set_is_a_config_error(tmp_path):
    cfg = _config(tmp_path, '[mqtt]\npassword_env = "SER_UNSET_VARIABLE"\n')
    audio = _bursts(tmp_path / "x.wav", 1)
    env = _env(tmp_path)
    env.pop("SER_UNSET_VARIABLE", None)
    proc = run_live("--input", str(audio), "--json", "--config", str(cfg), env=env, mqtt=True)
    assert proc.returncode == 2
    assert "SER_UNSET_VARIABLE" in error_line(proc)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(d: Path, name: str) -> None:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-subj",
        f"/CN={name}",
        cwd=d,
    )


@pytest.fixture
def tls_files(tmp_path):
    d = tmp_path / "tls"
    d.mkdir()
    _make_ca(d, "ca")
    _make_ca(d, "otherca")
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        cwd=d,
    )
    return d


def test_tls_verifies_against_the_ca(broker_factory, tls_files, tmp_path):  # noqa: F811
    tls_port = free_port()
    b = broker_factory(
        f"listener {tls_port} 127.0.0.1\ncafile {tls_files}/ca.crt\n"
        f"certfile {tls_files}/server.crt\nkeyfile {tls_files}/server.key\n"
    )
    sub = Subscriber(b.port, [EMOTION])  # plain listener of the same broker
    try:
        audio = _bursts(tmp_path / "x.wav", 2)
        good = _config(tmp_path, f'[mqtt]\nca_file = "{tls_files}/ca.crt"\nflush_timeout_s = 2.0\n')
        proc = _run_configured(audio, good, tls_port, tmp_path)
        assert proc.returncode == 0, proc.stderr.decode()
        assert "not sent" not in proc.stderr.decode()
        sub.wait_for(lambda s: len(s.on(EMOTION)) == 2)

        (tmp_path / "bad").mkdir()
        bad = _config(
            tmp_path / "bad",
            f'[mqtt]\nca_file = "{tls_files}/otherca.crt"\nflush_timeout_s = 1.0\n',
        )
        proc = _run_configured(audio, bad, tls_port, tmp_path)
        assert proc.returncode == 0
        stderr = proc.stderr.decode()
        tls_errors = [line for line in stderr.splitlines() if "TLS with broker" in line]
        assert len(tls_errors) == 2, stderr  # logged once while retrying, once in the report
        assert "certificate verify failed" in tls_errors[0] and "mqtt.ca_file" in tls_errors[0]
        assert "mqtt: 2 results not sent" in tls_errors[1]
    finally:
        sub.close()


def test_home_assistant_discovery(broker, tmp_path):  # noqa: F811
    cfg = _config(tmp_path, "[mqtt]\nhome_assistant = true\n")
    sensors = (
        "emotion",
        "confidence",
        "speech",
        "trend_emotion",
        "trend_arousal",
        "trend_valence",
    )
    configs = [f"homeassistant/sensor/ser_{NODE}/{k}/config" for k in sensors]
    sub = Subscriber(broker.port, ["homeassistant/sensor/#"])
    audio = _bursts(tmp_path / "x.wav", 3)
    live = _start_realtime(audio, tmp_path, "--config", str(cfg), *_mqtt_args(broker.port))
    try:
        sub.wait_for(lambda s: all(len(s.on(t)) == 1 for t in configs), timeout=60)
        # Home Assistant restarting announces itself; discovery must be sent again.
        paho_publish.single(
            "homeassistant/status", "online", hostname="127.0.0.1", port=broker.port, qos=1
        )
        sub.wait_for(lambda s: all(len(s.on(t)) == 2 for t in configs), timeout=30)
    finally:
        live.wait(timeout=60)
        sub.close()
    assert live.returncode == 0
    payloads = [json.loads(sub.on(t)[0]) for t in configs]
    emotion, confidence, speech, trend_emotion, trend_arousal, trend_valence = payloads
    for payload in payloads:
        assert payload["state_topic"] == EMOTION
        assert payload["availability_topic"] == STATUS
        assert payload["payload_available"] == "online"
        assert payload["device"]["identifiers"] == [f"ser_{NODE}"]
        assert payload["unique_id"].startswith(f"ser_{NODE}_")
        assert "{{" in payload["value_template"]
    assert emotion["device_class"] == "enum" and emotion["options"] == list(LABELS)
    assert confidence["unit_of_measurement"] == "%"
    # a rejected utterance ("not_speech") is Home Assistant's unknown: the template renders None
    for sensor in (emotion, confidence):
        assert "None if value_json.emotion == 'not_speech' else" in sensor["value_template"]
    assert speech["unit_of_measurement"] == "%" and "value_json.speech" in speech["value_template"]
    assert trend_emotion["device_class"] == "enum" and trend_emotion["options"] == list(LABELS)
    assert trend_emotion["value_template"] == (
        "{{ value_json.trend.emotion if value_json.trend else None }}"
    )
    assert "value_json.trend.arousal" in trend_arousal["value_template"]
    assert "value_json.trend.valence" in trend_valence["value_template"]
    assert len({p["unique_id"] for p in payloads}) == 6
    late = Subscriber(broker.port, configs, client_id="late")  # retained for a newcomer
    try:
        late.wait_for(
            lambda s: sorted((t, r) for t, _, r in s.messages) == sorted((t, True) for t in configs)
        )
    finally:
        late.close()


@pytest.mark.parametrize("node_id", ["a/b", "a+b", "has space", "#"])
def test_invalid_node_id_is_rejected(node_id, tmp_path):
    audio = _bursts(tmp_path / "x.wav", 1)
    proc = run_live(
        "--input", str(audio), "--json", "--node-id", node_id, env=_env(tmp_path), mqtt=True
    )
    assert proc.returncode == 2
    assert "mqtt.node_id" in error_line(proc)


def test_last_will_says_offline_when_the_recognizer_dies(broker, tmp_path):  # noqa: F811
    audio = _bursts(tmp_path / "x.wav", 6)
    watcher = Subscriber(broker.port, [STATUS], client_id="will-watcher")
    live = _start_realtime(audio, tmp_path, *_mqtt_args(broker.port), quiet=True)
    try:
        watcher.wait_for(lambda s: s.on(STATUS)[-1:] == ["online"], timeout=60)
        live.kill()  # no clean shutdown: only the broker's Last Will can say it
        live.wait(timeout=30)
        watcher.wait_for(lambda s: s.on(STATUS)[-1:] == ["offline"], timeout=30)
    finally:
        if live.poll() is None:
            live.kill()
        watcher.close()


def test_full_queue_drops_the_oldest_and_says_so(tmp_path):
    cfg = _config(tmp_path, "[mqtt]\nqueue_size = 2\nflush_timeout_s = 0.5\n")
    audio = _bursts(tmp_path / "x.wav", 5)
    proc = _run_configured(audio, cfg, free_port(), tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    results = parse_results(proc.stdout)
    assert len(results) == 5
    stderr = proc.stderr.decode()
    assert "mqtt: 2 results not sent" in stderr
    assert "mqtt: 3 results dropped while the queue was full" in stderr
    saved = tmp_path / "state" / "ser" / "mqtt-unsent.jsonl"
    assert [json.loads(line)["seq"] for line in saved.read_text().splitlines()] == [3, 4]


def _result(seq: int, source: str, **changes) -> Result:
    fields = {
        "seq": seq,
        "source": source,
        "start_s": 0.0,
        "end_s": 1.0,
        "emotion": "happy",
        "confidence": 0.5,
        "probabilities": {"happy": 0.5, "sad": 0.5},
        "latency_ms": 10.0,
        "model": "default",
    }
    return Result(**{**fields, **changes})


def test_the_sink_survives_a_result_it_cannot_publish(broker, caplog):  # noqa: F811
    """A non-MQTT exception (a numpy float in a result from a buggy stage): logged, that
    result skipped, every later one published; the supervisor keeps running."""
    import asyncio

    from ser.config import MqttConfig
    from ser.sinks.mqtt import MqttSink

    bad = _result(0, "a", probabilities={"happy": np.float32(0.5)})
    with pytest.raises(TypeError):
        bad.to_json()
    sub = Subscriber(broker.port, [EMOTION])

    async def run() -> MqttSink:
        config = MqttConfig(host="127.0.0.1", port=broker.port)
        sink = MqttSink(config, NODE, LABELS, "default")
        sink.start()
        sink.emit(bad)
        for seq in range(1, 4):
            sink.emit(_result(seq, "a"))
        deadline = time.monotonic() + 20
        while sink.published < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        sink.emit(_result(4, "a"))
        await sink.aclose()
        return sink

    try:
        sink = asyncio.run(run())
        sub.wait_for(lambda s: len(s.on(EMOTION)) == 4)
    finally:
        sub.close()
    assert [json.loads(m)["seq"] for m in sub.on(EMOTION)] == [1, 2, 3, 4]
    assert sink.failures == 1 and "cannot be published" in caplog.text


def test_a_full_queue_drops_the_busiest_source_first(tmp_path):
    """Broker away: one busy stream cannot push out a quiet one's results."""
    import asyncio

    from ser.config import MqttConfig
    from ser.sinks.mqtt import MqttSink, unsent_path

    async def run() -> MqttSink:
        config = MqttConfig(host="127.0.0.1", port=free_port(), queue_size=4, flush_timeout_s=0.2)
        sink = MqttSink(config, NODE, LABELS, "default")
        sink.start()
        sink.emit(_result(0, "quiet"))
        for seq in range(1, 10):
            sink.emit(_result(seq, "busy"))
        sink.emit(_result(10, "quiet"))
        await sink.aclose()
        return sink

    os.environ["XDG_STATE_HOME"], saved = str(tmp_path), os.environ["XDG_STATE_HOME"]
    try:
        sink = asyncio.run(run())
        kept = [json.loads(line) for line in unsent_path().read_text().splitlines()]
    finally:
        os.environ["XDG_STATE_HOME"] = saved
    assert [(r["source"], r["seq"]) for r in kept] == [
        ("quiet", 0),
        ("busy", 8),
        ("busy", 9),
        ("quiet", 10),
    ]
    assert sink.dropped == 7 and sink.dropped_by_source == {"busy": 7}


def test_client_ids_differ_between_processes_with_the_same_pid():
    """Replicas in containers all run as pid 1: the id carries a random part."""
    import asyncio

    from ser.config import MqttConfig
    from ser.sinks.mqtt import MqttSink

    async def ids() -> set[str]:
        return {MqttSink(MqttConfig(), NODE, LABELS, "x").client_id for _ in range(5)}

    assert len(asyncio.run(ids())) == 5


@pytest.mark.parametrize("prefix", ["ha/#", "ha/+/x", "ha\nx", "ha//x", "/ha"])
def test_bad_discovery_prefix_is_a_config_error(prefix, tmp_path):
    from ser.config import ConfigError, load_config

    path = tmp_path / "c.toml"
    path.write_text(f"[mqtt]\ndiscovery_prefix = {json.dumps(prefix)}\n")
    with pytest.raises(ConfigError, match=r"mqtt\.discovery_prefix"):
        load_config(path)
