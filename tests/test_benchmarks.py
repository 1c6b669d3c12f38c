"""The benchmark scripts behind BENCHMARKS.md still run and report what they say, at toy sizes.

Their numbers are recorded by hand on a quiet machine; these tests only keep the scripts from
rotting (a renamed metric, a changed config key or message would otherwise surface the next
time someone tries to reproduce a number). Each runs as a user runs it, from its own folder or
the repository root, against a real `ser-serve` where it starts one.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path = REPO, timeout_s: float = 240) -> str:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, f"{args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done.stdout


def _rows(markdown: str, first_cell: str) -> list[list[str]]:
    """The cells of every table row whose first cell is `first_cell`."""
    rows = []
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            rows.append(cells)
    return rows


def _numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?|nan", cell)]


def test_serve_benchmark_reports_a_level_and_idle_streams(ravdess: Path) -> None:
    out = _run(
        "benchmarks/serve.py",
        *("--data", str(ravdess), "--levels", "2", "--seconds", "6", "--idle", "3", "--no-thin"),
    )
    (level,) = _rows(out, "2")
    utterances = int(level[1])
    p50, p95 = _numbers(level[2])
    assert utterances >= 2  # each 6 s stream holds one of its actor's sentences at least
    assert 300 < p50 <= p95 < 5000  # the 300 ms hangover is in every latency
    hangover, wait, features, classify = _numbers(level[8])
    assert hangover >= 300 and min(wait, features, classify) >= 0
    analyse, early, pitch, dropped = _numbers(level[10])
    # read from /metrics: one analysis per utterance, during its hangover or once it ended
    # (early ones the voice came back from count too)
    assert 0 <= analyse <= 1.0 and analyse + early >= 0.99
    assert pitch >= 0 and dropped >= 0
    assert _numbers(level[11])[0] > 0  # the machine's speed was probed
    assert level[12] in ("yes", "no")
    (idle,) = _rows(out, "3")
    before, after = _numbers(idle[1])
    assert after >= before > 100  # MB: the server with its bundle loaded


def test_quiet_streams_benchmark_measures_both_servers() -> None:
    out = _run(
        *("quiet_streams.py", "--streams", "20", "--seconds", "10", "--repeat", "1"),
        cwd=REPO / "benchmarks",
    )
    (ser,) = _rows(out, "`ser-serve` (default bundle)")
    (bare,) = _rows(out, "bare websockets")
    for row in (ser, bare):
        share, us_per_frame, per_core = (_numbers(cell)[0] for cell in row[1:4])
        assert share > 0 and per_core > 0
        assert 1 < us_per_frame < 10_000  # CPU per 100 ms frame, from the server's /proc


def test_segmenter_benchmark_finds_speech_and_not_room_noise(ravdess: Path) -> None:
    out = _run(
        *("segmenter.py", "--data", str(ravdess), "--streams", "4", "--seconds", "12"),
        *("--repeat", "1"),
        cwd=REPO / "benchmarks",
    )
    (speech,) = _rows(out, "speech")
    (noise,) = _rows(out, "room noise")
    assert int(speech[3]) >= 4  # every stream's first sentence at least
    assert int(noise[3]) == 0  # -60 dBFS white noise: no utterance
    assert _numbers(speech[1])[0] > 0 and _numbers(noise[1])[0] > 0


def test_features_same_finds_this_checkout_alike_to_its_own_revision(ravdess: Path) -> None:
    done = subprocess.run(
        [sys.executable, "features_same.py", "HEAD", "--data", str(ravdess), "--every", "120"],
        cwd=REPO / "benchmarks",
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    out = done.stdout
    (row,) = _rows(out, "HEAD")
    analyses, differ = int(row[1]), int(row[2])
    assert analyses >= 12 + 3  # 12 clips (alone, some also with a pitch prefix) + 3 synthetic
    assert min(_numbers(row[3])) > 0
    assert (done.returncode == 1) == (differ > 0)
    unchanged = subprocess.run(
        ["git", "diff", "--quiet", "HEAD", "--", "streamer/features.py"], cwd=REPO, check=False
    )
    if unchanged.returncode == 0:  # (a change being made may mean to change the features)
        assert differ == 0
