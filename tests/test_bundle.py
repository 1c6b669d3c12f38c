"""The shipped bundle: loads with LiteRT alone, agrees with Keras, carries honest scores."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer.adaptation import AdaptiveCentering, AdaptiveNormalizer
from streamer.bundle import BundleError, load_bundle
from streamer.classifier import Classifier
from streamer.features import FEATURE_SPEC, extract, log_mel_frames, log_mel_windows
from streamer.labels import LABELS
from streamer.scoring import apply_temperature

from .conftest import DEFAULT_MODEL

LITERT_ONLY = """
import json, sys
import soundfile as sf
from pathlib import Path
from streamer.classifier import Classifier
clf = Classifier.from_dir(Path(sys.argv[1]))
probs = [clf.probabilities(*sf.read(path, dtype="float32")) for path in sys.argv[2:]]
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
    # the goal (pooled over all out-of-fold predictions), floors recorded beside it
    assert calibration["ece_after_pooled"] <= 0.05
    assert 0 < calibration["ece_floor_pooled"] < calibration["ece_floor"]["mean"]
    variants = ev["summary"]["variant_accuracy"]
    assert set(variants) == {"vad", "snr20", "snr10", "reverb500", "first_utterance"}
    # the best measured recipe: statistics network + log-mel CNN, each scored on its own too
    assert bundle.cnn is not None and bundle.cnn.frames == 300
    assert bundle.cnn.centring is not None and bundle.cnn.centring.mean.shape == (40,)
    assert set(ev["summary"]["component_accuracy"]) == {"stats", "cnn"}
    assert m["cnn"]["config"]["epochs"] == 80 and m["cnn"]["parameters"] > 50_000
    shipped = sum(p.stat().st_size for p in DEFAULT_MODEL.iterdir())
    assert shipped < 10_000_000  # the bundle budget
    # the speech detector, trained on both corpora, scored held out against the goals
    assert bundle.speech is not None and bundle.speech.threshold == 0.5
    scores = m["speech"]["evaluation"]
    assert scores["nonspeech_accepted"] <= 0.10
    for corpus in ("ravdess", "nemo"):
        assert max(scores["speech_rejected"][corpus].values()) <= 0.02


def test_shipped_bundle_runs_without_tensorflow_and_agrees_with_keras(ravdess, tmp_path):
    clip = ravdess / "Actor_03" / "03-01-05-02-01-01-03.flac"
    # a long utterance too (three sentences back to back): the CNN averages several windows
    long = tmp_path / "long.wav"
    parts = [sf.read(ravdess / "Actor_03" / f"03-01-0{e}-02-01-01-03.flac")[0] for e in (3, 4, 5)]
    sf.write(long, np.concatenate(parts), 16_000)
    out = subprocess.run(
        [sys.executable, "-c", LITERT_ONLY, str(DEFAULT_MODEL), str(clip), str(long)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    reply = json.loads(out.stdout.strip().splitlines()[-1])
    assert reply["heavy"] == []

    keras = pytest.importorskip("keras")
    from train.cnn import stats_pooling_class

    stats_pooling_class()  # the CNN's custom layer, registered for safe-mode loading
    model = keras.models.load_model(DEFAULT_MODEL / "model.keras", safe_mode=True)
    cnn_model = keras.models.load_model(DEFAULT_MODEL / "cnn.keras", safe_mode=True)
    bundle = load_bundle(DEFAULT_MODEL)
    assert bundle.cnn is not None and bundle.cnn.centring is not None
    n_windows = []
    for path, probs in zip((clip, long), reply["probs"], strict=True):
        lite = np.array([probs[label] for label in LABELS])
        assert lite.sum() == pytest.approx(1.0, abs=1e-4)
        audio, rate = sf.read(path, dtype="float32")
        adapted = AdaptiveNormalizer(bundle.adaptation).push(0, extract(audio, rate))
        centred = AdaptiveCentering(bundle.cnn.centring).push(0, log_mel_frames(audio, rate))
        windows = log_mel_windows(centred, bundle.cnn.frames)
        n_windows.append(len(windows))
        stats_probs = model.predict(adapted[None, :], verbose=0)[0]
        cnn_probs = cnn_model.predict(windows, verbose=0).mean(axis=0)
        ref = apply_temperature((stats_probs + cnn_probs) / 2, bundle.temperature)
        np.testing.assert_allclose(lite, ref, atol=1e-4)
    assert n_windows[0] == 1 and n_windows[1] >= 3

    # the speech detector: LiteRT agrees with its Keras source
    speech = keras.models.load_model(DEFAULT_MODEL / "speech.keras", safe_mode=True)
    clf = Classifier(bundle)
    noise = np.random.default_rng(0).normal(0, 0.05, 32_000).astype(np.float32)
    for audio in (sf.read(clip, dtype="float32")[0], noise):
        vector = extract(audio, 16_000)
        expected = float(speech.predict(vector[None, :], verbose=0)[0, 0])
        assert clf.speech_probability(vector) == pytest.approx(expected, abs=1e-4)


def _copy_with(tmp_path, change) -> Path:
    """A copy of the shipped bundle with `change(manifest)` applied to its manifest."""
    copy = tmp_path / "b"
    shutil.copytree(DEFAULT_MODEL, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    change(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_spec_mismatch_is_a_clear_error(tmp_path):
    copy = _copy_with(tmp_path, lambda m: m["feature_spec"].update(n_mels=64))
    with pytest.raises(BundleError, match="retrain"):
        load_bundle(copy)


def test_missing_bundle_says_how_to_get_one(tmp_path):
    with pytest.raises(BundleError, match="ser-train"):
        load_bundle(tmp_path / "none")


def test_label_count_mismatch_is_caught(tmp_path):
    copy = _copy_with(tmp_path, lambda m: m.update(labels=m["labels"][:4]))
    with pytest.raises(BundleError, match="4 labels"):
        Classifier.from_dir(copy)


def test_missing_cnn_file_is_a_clear_error(tmp_path):
    copy = _copy_with(tmp_path, lambda m: None)
    (copy / "cnn.tflite").unlink()
    with pytest.raises(BundleError, match=r"cnn\.tflite is missing.*ser-train"):
        load_bundle(copy)


def test_cnn_window_mismatch_is_caught(tmp_path):
    copy = _copy_with(tmp_path, lambda m: m["cnn"].update(frames=200))
    with pytest.raises(BundleError, match="CNN reads 300 frames but the manifest says 200"):
        Classifier.from_dir(copy)


def test_bundle_without_cnn_still_classifies(ravdess, tmp_path):
    """Bundles trained without --cnn (and those from before it) use the statistics network."""
    copy = _copy_with(tmp_path, lambda m: m.update(cnn=None))
    audio, rate = sf.read(ravdess / "Actor_03" / "03-01-05-02-01-01-03.flac", dtype="float32")
    alone = Classifier.from_dir(copy)
    both = Classifier.from_dir(DEFAULT_MODEL)
    assert alone.bundle.cnn is None
    stats_only = alone.probabilities(audio, rate)
    assert sum(stats_only.values()) == pytest.approx(1.0, abs=1e-4)
    assert stats_only != both.probabilities(audio, rate)


def test_missing_speech_detector_file_is_a_clear_error(tmp_path):
    copy = _copy_with(tmp_path, lambda m: None)
    (copy / "speech.tflite").unlink()
    with pytest.raises(BundleError, match=r"speech\.tflite is missing"):
        load_bundle(copy)
    # a bundle without a "speech" section rejects nothing
    older = _copy_with(tmp_path / "o", lambda m: m.update(speech=None))
    bundle = load_bundle(older)
    assert bundle.speech is None and bundle.resolve_min_speech("auto") == 0.0
    assert not Classifier(bundle).has_speech_detector
    assert Classifier(bundle).speech_probability(np.zeros(696, np.float32)) == 1.0
