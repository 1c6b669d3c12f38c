"""`python -m train.score_bundle`: the shipped bundle scored on speakers of a corpus it never
heard, as `ser-live` runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from train.protocols import SHARED_LABELS

from .test_train_e2e import _tiny_nemo


def test_shipped_bundle_on_a_corpus_it_never_heard(nemo, tmp_path):
    data = _tiny_nemo(nemo, tmp_path / "nemo", speakers=("EB0", "SM0"), per_speaker=24)
    out = tmp_path / "scores.json"
    args = ["--data", f"nemo={data}", "--cache-dir", str(tmp_path / "cache"), "--workers", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "train.score_bundle", *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert (report["bundle"], report["corpus"], report["clips"]) == ("default", "nemo", 48)
    assert report["labels"] == list(SHARED_LABELS)  # nEMO has no calm, no disgust
    assert report["bundle_trained_on"] == ["ravdess"]
    for key in ("adapted", "alone"):
        scores = report[key]
        assert 0.0 <= scores["accuracy"] <= 1.0
        assert sum(scores["predicted_share"].values()) == pytest.approx(1.0)
        assert list(scores["recall"]) == list(SHARED_LABELS)
    assert "default on nemo (adapted): accuracy" in proc.stdout
    assert "not a held-out score" not in proc.stdout
