"""`python -m ser_train.score_bundle`: a shipped bundle scored on a corpus's speakers, as `ser-live`
runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ser_train.protocols import SHARED_LABELS
from ser_train.sessions import SESSION_KINDS

from .test_train_e2e import _tiny_nemo


@pytest.mark.parametrize(
    ("model", "trained_on"), [("small", ["ravdess"]), ("default", ["ravdess", "nemo"])]
)
def test_shipped_bundles_on_nemo(nemo, tmp_path, model, trained_on):
    """small never heard nEMO (a held-out score); default trained on it, and says so."""
    data = _tiny_nemo(nemo, tmp_path / "nemo", speakers=("EB0", "SM0"), per_speaker=24)
    out = tmp_path / "scores.json"
    args = ["--data", f"nemo={data}", "--cache-dir", str(tmp_path / "cache"), "--workers", "1"]
    args += ["--model", model]
    proc = subprocess.run(
        [sys.executable, "-m", "ser_train.score_bundle", *args, "--json", str(out), "--sessions"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert (report["bundle"], report["corpus"], report["clips"]) == (model, "nemo", 48)
    assert report["labels"] == list(SHARED_LABELS)  # nEMO has no calm, no disgust
    assert report["bundle_trained_on"] == trained_on
    for key in ("adapted", "alone"):
        scores = report[key]
        assert 0.0 <= scores["accuracy"] <= 1.0
        assert sum(scores["predicted_share"].values()) == pytest.approx(1.0)
        assert list(scores["recall"]) == list(SHARED_LABELS)
    assert f"{model} on nemo (adapted): accuracy" in proc.stdout
    # --sessions: every kind of session, read as the bundle runs it, ungated and alone
    sessions = report["sessions"]
    assert list(sessions) == list(SESSION_KINDS)
    assert sessions["held"]["utterances"] == sessions["first"]["utterances"] == 48
    for kind, row in sessions.items():
        assert all(0.0 <= row[name] <= 1.0 for name in ("with_history", "ungated", "alone")), kind
    # a first utterance has no history: the gate gives it the alone reading exactly
    assert sessions["first"]["with_history"] == sessions["first"]["alone"]
    # the same clips in every kind: each kind's alone reading scores the same (switch: the
    # two speakers' clips alike)
    assert sessions["held"]["alone"] == sessions["balanced"]["alone"] == sessions["first"]["alone"]
    assert f"{model} on nemo, held sessions (48 utterances): with history" in proc.stdout
    assert ("not a held-out score" in proc.stdout) == ("nemo" in trained_on)
