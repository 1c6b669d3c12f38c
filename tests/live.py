"""Helpers for running `ser-live` as a subprocess and checking its JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Any

import pytest

from ser.labels import LABELS

RESULT_KEYS = {
    "seq",
    "source",
    "start_s",
    "end_s",
    "emotion",
    "confidence",
    "probabilities",
    "latency_ms",
    "model",
    "uncertain",
    "arousal",
    "valence",
    "trend",
    "speech",
}
TREND_KEYS = {"emotion", "confidence", "probabilities", "arousal", "valence", "utterances"}


def run_live(
    *args: str,
    stdin: bytes | None = None,
    timeout: float = 180,
    env: dict[str, str] | None = None,
    mqtt: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run `ser-live ARGS` to completion (with `--no-mqtt` unless `mqtt`)."""
    return subprocess.run(
        [sys.executable, "-m", "ser.cli", *args, *([] if mqtt else ["--no-mqtt"])],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def parse_results(stdout: bytes) -> list[dict[str, Any]]:
    """Every stdout line must be one JSON result with the documented schema."""
    results = [json.loads(line) for line in stdout.decode().splitlines()]
    for r in results:
        assert set(r) == RESULT_KEYS, r
        assert 0.0 <= r["speech"] <= 1.0
        assert r["start_s"] < r["end_s"]
        if r["emotion"] == "not_speech":  # rejected by the speech detector: no emotion
            assert r["probabilities"] == {} and r["arousal"] == r["valence"] == 0.0
            assert r["confidence"] == pytest.approx(1.0 - r["speech"], abs=2e-4)
            assert r["trend"] is None or set(r["trend"]) == TREND_KEYS
            continue
        assert r["emotion"] in LABELS
        assert list(r["probabilities"]) == list(LABELS)
        assert abs(sum(r["probabilities"].values()) - 1.0) < 1e-3
        assert r["confidence"] == max(r["probabilities"].values())
        assert r["probabilities"][r["emotion"]] == r["confidence"]
        assert 0 <= r["start_s"] < r["end_s"]
        assert r["latency_ms"] >= 0
        assert -1 <= r["arousal"] <= 1 and -1 <= r["valence"] <= 1
        trend = r["trend"]
        assert set(trend) == TREND_KEYS, trend
        assert list(trend["probabilities"]) == list(LABELS)
        assert abs(sum(trend["probabilities"].values()) - 1.0) < 1e-3
        assert trend["probabilities"][trend["emotion"]] == trend["confidence"]
        assert trend["utterances"] >= 1
        assert -1 <= trend["arousal"] <= 1 and -1 <= trend["valence"] <= 1
    assert [r["seq"] for r in results] == list(range(len(results)))
    return results


def error_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    """The single `ser-live:` stderr line of a failed run."""
    lines = [line for line in proc.stderr.decode().splitlines() if line.startswith("ser-live:")]
    assert len(lines) == 1, proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()
    return lines[0]


class BackgroundProcess:
    """A process in the background with its stderr collected line by line; `ready` is set at
    the first line starting with `ready_prefix`."""

    def __init__(
        self, cmd: list[str], ready_prefix: str, env: dict[str, str] | None, stdout: int
    ) -> None:
        self.proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=subprocess.PIPE)
        self.stderr: list[str] = []
        self.ready = threading.Event()
        self._prefix = ready_prefix
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.stderr.append(line)
            if line.startswith(self._prefix):
                self.ready.set()

    def wait_ready_line(self, timeout: float) -> None:
        assert self.ready.wait(timeout), "\n".join(self.stderr)


class LiveProcess(BackgroundProcess):
    """`ser-live` running in the background."""

    def __init__(self, *args: str, env: dict[str, str] | None) -> None:
        cmd = [sys.executable, "-m", "ser.cli", *args]
        super().__init__(cmd, "listening on", env, subprocess.PIPE)

    def wait_listening(self, timeout: float = 60) -> None:
        self.wait_ready_line(timeout)

    def finish(self, timeout: float = 60) -> tuple[int, bytes]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        code = self.proc.wait(timeout=timeout)
        self._thread.join(timeout=5)
        return code, out
