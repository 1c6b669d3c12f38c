"""Helpers for running `ser-live` as a subprocess and checking its JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from streamer.labels import LABELS

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
}


def run_live(
    *args: str,
    stdin: bytes | None = None,
    timeout: float = 180,
    env: dict[str, str] | None = None,
    mqtt: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run `ser-live ARGS` to completion (with `--no-mqtt` unless `mqtt`)."""
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", *args, *([] if mqtt else ["--no-mqtt"])],
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
        assert r["emotion"] in LABELS
        assert list(r["probabilities"]) == list(LABELS)
        assert abs(sum(r["probabilities"].values()) - 1.0) < 1e-3
        assert r["confidence"] == max(r["probabilities"].values())
        assert r["probabilities"][r["emotion"]] == r["confidence"]
        assert 0 <= r["start_s"] < r["end_s"]
        assert r["latency_ms"] >= 0
        assert -1 <= r["arousal"] <= 1 and -1 <= r["valence"] <= 1
    assert [r["seq"] for r in results] == list(range(len(results)))
    return results


def error_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    """The single stderr line of a failed run (LiteRT's own INFO lines aside)."""
    lines = [line for line in proc.stderr.decode().splitlines() if line.startswith("ser-live:")]
    assert len(lines) == 1, proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()
    return lines[0]
