"""A real mosquitto broker on a free loopback port, and a recording subscriber (paho-mqtt)."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest

_GIVEN: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, below the kernel's ephemeral range: a port the
    kernel hands out (bind to 0) can be taken as the local port of some outgoing connection
    before the server started with it binds it ("address already in use")."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    for port in random.sample(range(10_000, low), min(50, max(0, low - 10_000))):
        if port in _GIVEN:  # given to a test that may not have bound it yet
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@dataclass
class Broker:
    """mosquitto with a config written by the test; started and stopped by PID."""

    directory: Path
    port: int
    extra: str = ""
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        conf = self.directory / "mosquitto.conf"
        conf.write_text(
            f"per_listener_settings false\n"
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.directory}/\n"
            "user root\n"  # started as root it would drop to 'mosquitto' and fail to persist
            f"log_dest file {self.directory}/mosquitto.log\n" + self.extra
        )
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(self.port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def broker_factory(tmp_path_factory):
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto not installed (scripts/bootstrap installs it)")
    started: list[Broker] = []

    def make(extra: str = "", port: int | None = None) -> Broker:
        b = Broker(tmp_path_factory.mktemp("mosquitto"), port or free_port(), extra)
        b.start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


@pytest.fixture
def broker(broker_factory):
    return broker_factory()


@dataclass
class Subscriber:
    """Records (topic, payload, retained) of every message; persistent session, reconnects."""

    port: int
    topics: list[str]
    client_id: str = "ser-test-sub"
    messages: list[tuple[str, str, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        c = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False
        )
        c.reconnect_delay_set(0.1, 0.5)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *_a: self._subscribed.set()
        c.on_message = self._on_message
        self.client = c
        c.connect("127.0.0.1", self.port, keepalive=10)
        c.loop_start()
        assert self._subscribed.wait(10), "subscriber could not subscribe"

    def _on_connect(self, client, _userdata, _flags, reason_code, _props=None) -> None:
        if not reason_code.is_failure:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, _client, _userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain)))

    def on(self, topic: str) -> list[str]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def wait_for(self, predicate, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out; got {self.messages}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
