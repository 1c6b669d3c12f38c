"""The shipped bundle: loads with LiteRT alone, agrees with Keras, carries honest scores."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from streamer.adaptation import AdaptiveNormalizer
from streamer.bundle import BundleError, load_bundle
from streamer.classifier import Classifier
from streamer.features import FEATURE_SPEC, extract
from streamer.labels import LABELS
from streamer.scoring import apply_temperature

from .conftest import DEFAULT_MODEL

LITERT_ONLY = """
import json, sys
import soundfile as sf
from pathlib import Path
from streamer.classifier import Classifier
clf = Classifier.from_dir(Path(sys.argv[1]))
audio, rate = sf.read(sys.argv[2], dtype="float32")
probs = clf.probabilities(audio, rate)
heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
print(json.dumps({"probs": probs, "heavy": heavy}))
"""


def test_manifest_records_protocol_scores_and_spec():
    bundle = load_bundle(DEFAULT_MODEL)
    m = bundle.manifest
    assert bundle.labels == LABELS
    assert m["feature_spec"] == FEATURE_SPEC.to_dict()
    ev = m["evaluation"]
    assert ev["protocol"] == "ravdess-emobox-6fold-speaker-independent"
    assert ev["folds_evaluated"] == 6 and len(ev["per_fold"]) == 6
    assert m["training"]["n_clips"] == 1440
    assert bundle.accuracy is not None and bundle.accuracy >= 0.50
    assert (DEFAULT_MODEL / "model.tflite").stat().st_size < 5_000_000
    # speaker adaptation, calibration and robustness are recorded with the scores
    assert bundle.adaptation is not None and bundle.adaptation.mean.shape == (696,)
    calibration = m["calibration"]
    assert 0.2 < bundle.temperature < 10
    assert calibration["ece_after"]["mean"] < calibration["ece_before"]["mean"]
    variants = ev["summary"]["variant_accuracy"]
    assert set(variants) == {"vad", "snr20", "snr10", "reverb500", "first_utterance"}


def test_shipped_bundle_runs_without_tensorflow_and_agrees_with_keras(ravdess):
    clip = ravdess / "Actor_03" / "03-01-05-02-01-01-03.flac"
    out = subprocess.run(
        [sys.executable, "-c", LITERT_ONLY, str(DEFAULT_MODEL), str(clip)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    reply = json.loads(out.stdout.strip().splitlines()[-1])
    assert reply["heavy"] == []
    lite = np.array([reply["probs"][label] for label in LABELS])
    assert lite.sum() == pytest.approx(1.0, abs=1e-4)

    keras = pytest.importorskip("keras")
    model = keras.models.load_model(DEFAULT_MODEL / "model.keras", safe_mode=True)
    audio, rate = sf.read(clip, dtype="float32")
    bundle = load_bundle(DEFAULT_MODEL)
    adapted = AdaptiveNormalizer(bundle.adaptation).push(0, extract(audio, rate))
    ref = apply_temperature(model.predict(adapted[None, :], verbose=0)[0], bundle.temperature)
    np.testing.assert_allclose(lite, ref, atol=1e-4)


def test_spec_mismatch_is_a_clear_error(tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(DEFAULT_MODEL, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["feature_spec"]["n_mels"] = 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="retrain"):
        load_bundle(copy)


def test_missing_bundle_says_how_to_get_one(tmp_path):
    with pytest.raises(BundleError, match="ser-train"):
        load_bundle(tmp_path / "none")


def test_label_count_mismatch_is_caught(tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(DEFAULT_MODEL, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["labels"] = manifest["labels"][:4]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="4 labels"):
        Classifier.from_dir(copy)
