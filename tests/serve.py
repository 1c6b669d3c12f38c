"""Helpers for `ser-serve` tests: the server as a subprocess (stopped by PID), a blocking
WebSocket client, and speech streams made of RAVDESS clips."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from .broker import free_port
from .live import BackgroundProcess


class ServeProcess(BackgroundProcess):
    """`ser-serve --port PORT ARGS` in the background."""

    def __init__(self, *args: str, port: int | None = None, env: dict[str, str] | None = None):
        self.port = port or free_port()
        cmd = [sys.executable, "-m", "ser.serve_cli", "--port", str(self.port), *args]
        super().__init__(cmd, "serving on", env, subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    def wait_ready(self, timeout: float = 60) -> ServeProcess:
        self.wait_ready_line(timeout)
        return self

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM (drain), then the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._thread.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def __enter__(self) -> ServeProcess:
        return self.wait_ready()

    def __exit__(self, *_exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class StreamRun:
    """What a client saw of one stream."""

    first: dict[str, Any] | None = None  # "ready" or "error"
    results: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    extensions: str | None = None  # what the server accepted of the client's offer
    http_status: int | None = None  # the server refused the upgrade (e.g. 401)
    http_body: str = ""


def encode(samples: np.ndarray, fmt: str, channels: int = 1) -> bytes:
    """float32 or int16 mono (n,) -> interleaved PCM bytes, `channels` identical channels."""
    if fmt == "s16le":
        data = samples if samples.dtype == np.int16 else np.rint(samples * 32767).astype(np.int16)
        data = data.astype("<i2")
    else:
        data = (
            samples.astype(np.float32) / (32768.0 if samples.dtype == np.int16 else 1.0)
        ).astype("<f4")
    return np.repeat(data[:, None], channels, axis=1).tobytes()


def run_stream(
    url: str,
    pcm: bytes | list[bytes | dict[str, Any]],
    *,
    start: dict[str, Any] | str | None = None,
    frame_bytes: int = 3200,
    stop: bool = True,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    subprotocols: list[str] | None = None,
    read: bool = True,
    timeout: float = 120,
    pace_s: float = 0.0,
) -> StreamRun:
    """Send `start`, then `pcm` in frames, then stop; collect everything until the close.
    `pcm` as a list: PCM pieces (each in frames) and control messages (sent as JSON) in order.
    `pace_s`: a pause after each frame (0: as fast as the server reads)."""
    run = StreamRun()
    if start is None:
        start = {"type": "start", "sample_rate": 16000, "format": "s16le", "channels": 1}
    try:
        ws = connect(
            url,
            additional_headers=headers,
            subprotocols=subprotocols,  # type: ignore[arg-type]
            open_timeout=10,
            close_timeout=5,
        )
    except InvalidStatus as exc:
        run.http_status = exc.response.status_code
        run.http_body = exc.response.body.decode()
        return run
    with ws:
        run.extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
        try:
            # a server that refuses the stream may close before the start message arrives
            with contextlib.suppress(ConnectionClosed):
                ws.send(start if isinstance(start, str) else json.dumps(start))
            run.first = json.loads(ws.recv(timeout=timeout))
            if run.first["type"] == "ready":
                for piece in pcm if isinstance(pcm, list) else [pcm]:
                    if isinstance(piece, dict):
                        ws.send(json.dumps(piece))
                        continue
                    for i in range(0, len(piece), frame_bytes):
                        ws.send(piece[i : i + frame_bytes])
                        if pace_s:
                            time.sleep(pace_s)
                if not stop:
                    return run
                ws.send(json.dumps({"type": "stop"}))
            while read:
                message = json.loads(ws.recv(timeout=timeout))
                kind = message["type"]
                if kind == "result":
                    run.results.append(message)
                elif kind == "end":
                    run.end = message
                elif kind == "error":
                    run.errors.append(message)
        except ConnectionClosed:
            pass
        run.close_code = ws.close_code
    if run.first is not None and run.first["type"] == "error":
        run.errors.insert(0, run.first)
    return run


def speech(ravdess: Path, names: list[str], gap_s: float = 1.2) -> np.ndarray:
    """RAVDESS clips (Actor_NN/NAME.flac) joined by silence: int16 mono 16 kHz."""
    parts = [np.zeros(int(0.5 * 16000), np.int16)]
    for name in names:
        actor = name.rsplit("-", 1)[1]
        audio, rate = sf.read(ravdess / f"Actor_{actor}" / f"{name}.flac", dtype="int16")
        assert rate == 16000
        parts += [audio, np.zeros(int(gap_s * 16000), np.int16)]
    return np.concatenate(parts)


def env_with(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


class SilentClient:
    """A WebSocket client on a raw socket that sends but, after the handshake, never reads:
    its receive buffer is tiny, so whatever the server sends piles up on the server's side."""

    def __init__(self, port: int, path: str = "/v1/stream") -> None:
        import base64
        import socket

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)  # byte by byte: read nothing past the headers
        assert response.startswith(b"HTTP/1.1 101"), response

    def send(self, payload: bytes | str) -> None:
        """One masked frame (text for str, binary for bytes)."""
        import struct

        data = payload.encode() if isinstance(payload, str) else payload
        opcode = 0x1 if isinstance(payload, str) else 0x2
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = (
            np.frombuffer(data, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)
        ).tobytes()
        self.sock.sendall(header + mask + masked)

    def send_all(self, pcm: bytes, frame_bytes: int) -> None:
        """Binary frames until done or the server closes the connection."""
        with contextlib.suppress(OSError):
            for i in range(0, len(pcm), frame_bytes):
                self.send(pcm[i : i + frame_bytes])

    def close(self) -> None:
        self.sock.close()


def make_secrets(directory: Path) -> Path:
    """`deploy/setup` into `directory`: ser.env, token, mosquitto.passwd, ser.pem/crt/key."""
    repo = Path(__file__).resolve().parents[1]
    subprocess.run(
        [str(repo / "deploy" / "setup")],
        env={**os.environ, "SER_SECRETS_DIR": str(directory), "SER_CERT_NAME": "localhost"},
        check=True,
        capture_output=True,
    )
    return directory


def haproxy_env(lb_port: int, tls_port: int, secrets: Path, replicas: list[ServeProcess]) -> dict:
    """The environment deploy/haproxy.cfg reads: plain and TLS binds on loopback, the setup's
    certificate, the replicas."""
    return {
        **os.environ,
        "SER_LB_BIND": f"127.0.0.1:{lb_port}",
        "SER_LB_TLS_BIND": f"127.0.0.1:{tls_port}",
        "SER_LB_CERT": str(secrets / "ser.pem"),
        **{f"SER_REPLICA_{i}": f"127.0.0.1:{r.port}" for i, r in enumerate(replicas, start=1)},
    }
