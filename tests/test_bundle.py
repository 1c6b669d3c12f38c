"""The shipped bundles (default: statistics + Whisper encoder; small: statistics + CNN): load
with LiteRT alone, agree with Keras, carry honest scores."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from ser.adaptation import AdaptiveCentering, AdaptiveNormalizer
from ser.bundle import BundleError, load_bundle
from ser.classifier import Classifier
from ser.features import FEATURE_SPEC, extract, log_mel_frames, log_mel_windows
from ser.labels import LABELS
from ser.scoring import apply_temperature, combine
from ser_train.robustness import NATURAL_VARIANTS
from ser_train.sessions import SESSION_KINDS

from .conftest import DEFAULT_MODEL, SMALL_MODEL

LITERT_ONLY = """
import asyncio, json, sys
import soundfile as sf
from pathlib import Path
from ser.classifier import Classifier
from ser.workers import FeatureWorkers
clf = Classifier.from_dir(Path(sys.argv[1]))
clips = [sf.read(path, dtype="int16") for path in sys.argv[2:]]
analyses = [clf.analyse(*clip) for clip in clips]
labelled = lambda p: dict(zip(clf.bundle.labels, map(float, p)))
# a fresh stream's first utterance through the speaker-adapted networks
probs = [labelled(clf.predict(clf.adapter().push(0, a))) for a in analyses]
alone = [clf.probabilities(*clip) for clip in clips]  # the utterance alone, as the API reads it
weights = [clf.alone_weight(a.embedding) if clf.has_alone_networks else None for a in analyses]
embeddings = [a.embedding.tolist() if a.embedding is not None else None for a in analyses]

async def in_workers():  # the live path: a feature worker process runs the encoder
    workers = FeatureWorkers(1, encoder=clf.bundle.encoder,
                             statistics=clf.bundle.needs_statistics)
    try:
        await workers.start()
        out = []
        for audio, rate in clips:
            inputs = clf.adapter().push(0, await workers.analyse(audio, rate))
            out.append(dict(zip(clf.bundle.labels, map(float, clf.predict(inputs)))))
        return out
    finally:
        workers.close()

workers = asyncio.run(in_workers())
heavy = sorted(m for m in ("tensorflow", "keras", "ctranslate2", "torch") if m in sys.modules)
print(json.dumps({"probs": probs, "workers": workers, "heavy": heavy, "alone": alone,
                  "weights": weights, "embeddings": embeddings}))
"""


def _litert_only(bundle: Path, *clips: Path) -> dict[str, Any]:
    """The bundle's probabilities for `clips`, from a process that imported no heavy package."""
    out = subprocess.run(
        [sys.executable, "-c", LITERT_ONLY, str(bundle), *map(str, clips)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    reply: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    assert reply["heavy"] == []
    return reply


def test_small_manifest_records_protocol_scores_and_spec():
    bundle = load_bundle(SMALL_MODEL)
    m = bundle.manifest
    assert bundle.labels == LABELS
    assert m["feature_spec"] == FEATURE_SPEC.to_dict()
    ev = m["evaluation"]
    assert ev["protocol"] == "ravdess" and list(ev["protocols"]) == ["ravdess"]
    assert ev["folds_evaluated"] == 6 and len(ev["protocols"]["ravdess"]["per_fold"]) == 6
    assert m["training"]["n_clips"] == 1440
    # the history gate, as `default`'s (a CNN's sessions simulated with its log-mel centring):
    # no kind of session more than 1 point below the same utterances alone
    gate = bundle.history_gate
    assert gate is not None and (gate.low, gate.high, gate.warmup) == (4.0, 8.0, 2.0)
    sessions = ev["summary"]["sessions"]
    assert set(sessions) == set(SESSION_KINDS)
    for kind, scores in sessions.items():
        assert scores["change"]["mean"] >= -0.010, kind
    assert sessions["balanced"]["change"]["mean"] >= 0.02
    assert ev["summary"]["ungated_accuracy"]["mean"] >= ev["summary"]["accuracy"]["mean"]
    assert bundle.accuracy is not None and bundle.accuracy >= 0.50
    assert (SMALL_MODEL / "model.tflite").stat().st_size < 5_000_000
    # speaker adaptation, calibration and robustness are recorded with the scores
    assert bundle.adaptation is not None and bundle.adaptation.mean.shape == (696,)
    calibration = m["calibration"]
    assert 0.2 < bundle.temperature < 10
    # the goal (pooled over all out-of-fold predictions), floors recorded beside it
    assert calibration["ece_after_pooled"] <= 0.05
    assert 0 < calibration["ece_floor_pooled"] < calibration["ece_floor"]["mean"]
    # its NLL-fitted temperature raised the held-out ECE (0.036 -> 0.055), so none is applied
    assert bundle.temperature == 1.0 and "not applied" in calibration["method"]
    assert calibration["ece_fitted_pooled"] > calibration["ece_before_pooled"]
    variants = ev["summary"]["variant_accuracy"]
    assert set(variants) == {
        *("vad", "snr20", "snr10", "reverb500", "telephone", "cheapmic", "clipped", "quiet"),
        "first_utterance",
    }
    # the best measured recipe: statistics network + log-mel CNN, each scored on its own too
    assert bundle.cnn is not None and bundle.cnn.frames == 300
    assert bundle.cnn.centring is not None and bundle.cnn.centring.mean.shape == (40,)
    assert set(ev["summary"]["component_accuracy"]) == {"stats", "cnn"}
    assert m["cnn"]["config"]["epochs"] == 80 and m["cnn"]["parameters"] > 50_000
    shipped = sum(p.stat().st_size for p in SMALL_MODEL.iterdir())
    assert shipped < 10_000_000  # the bundle budget
    # the speech detector, trained on both corpora, scored held out against the goals
    assert bundle.speech is not None and bundle.speech.threshold == 0.5
    scores = m["speech"]["evaluation"]
    assert scores["nonspeech_accepted"] <= 0.10
    for corpus in ("ravdess", "nemo"):
        assert max(scores["speech_rejected"][corpus].values()) <= 0.02


def test_small_bundle_runs_without_tensorflow_and_agrees_with_keras(ravdess, tmp_path):
    clip = ravdess / "Actor_03" / "03-01-05-02-01-01-03.flac"
    # a long utterance too (three sentences back to back): the CNN averages several windows
    long = tmp_path / "long.wav"
    parts = [sf.read(ravdess / "Actor_03" / f"03-01-0{e}-02-01-01-03.flac")[0] for e in (3, 4, 5)]
    sf.write(long, np.concatenate(parts), 16_000)
    reply = _litert_only(SMALL_MODEL, clip, long)

    keras = pytest.importorskip("keras")
    from ser_train.cnn import stats_pooling_class

    stats_pooling_class()  # the CNN's custom layer, registered for safe-mode loading
    model = keras.models.load_model(SMALL_MODEL / "model.keras", safe_mode=True)
    cnn_model = keras.models.load_model(SMALL_MODEL / "cnn.keras", safe_mode=True)
    bundle = load_bundle(SMALL_MODEL)
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
    speech = keras.models.load_model(SMALL_MODEL / "speech.keras", safe_mode=True)
    clf = Classifier(bundle)
    noise = np.random.default_rng(0).normal(0, 0.05, 32_000).astype(np.float32)
    for audio in (sf.read(clip, dtype="float32")[0], noise):
        vector = extract(audio, 16_000)
        expected = float(speech.predict(vector[None, :], verbose=0)[0, 0])
        assert clf.speech_probability(vector) == pytest.approx(expected, abs=1e-4)


# models/small scored on nEMO, a corpus it never heard (`python -m ser_train.score_bundle
# --model small --data nemo=../shared/data/nemo`): 0.275 with its gate since 2026-12-06, 0.365
# for the bundle before it (EXPERIMENTS.md row 18), the bar kept for the comparison below
SMALL_ON_NEMO = 0.365


def test_default_manifest_records_encoder_source_protocols_and_scores():
    bundle = load_bundle(DEFAULT_MODEL)
    m = bundle.manifest
    assert bundle.name == "default" and bundle.labels == LABELS
    assert m["feature_spec"] == FEATURE_SPEC.to_dict()
    # the encoder: its file, checksum, source, licence and the check against ctranslate2
    section = m["encoder"]
    assert bundle.encoder is not None and bundle.encoder.layers == (2, 3)
    data = (DEFAULT_MODEL / section["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == section["sha256"] and len(data) == section["bytes"]
    source = section["source"]
    assert source["model"].startswith("openai/whisper-base") and source["licence"].startswith("MIT")
    assert source["quantize"] == "int8" and source["check"]["min_cosine"] > 0.9999
    assert section["adaptation"] is not None and len(section["adaptation"]["mean"]) == 2048
    # trained on both corpora, scored on the speaker-independent protocols of both
    assert [c["name"] for c in m["corpora"]] == ["ravdess", "nemo"]
    assert m["training"]["n_clips"] == 1440 + 4225
    ev = m["evaluation"]
    assert ev["protocol"] == "ravdess"  # the headline: RAVDESS's EmoBox folds
    protocols = ev["protocols"]
    assert protocols["ravdess"]["title"] == "RAVDESS, EmoBox 6 actor folds"
    assert ev["folds_evaluated"] == 6 and len(protocols["ravdess"]["per_fold"]) == 6
    assert set(protocols) == {"ravdess", "nemo", "ravdess-to-nemo", "nemo-to-ravdess"}
    assert protocols["nemo"]["folds_evaluated"] == 4
    assert set(ev["summary"]["component_accuracy"]) == {"stats", "encoder"}
    # the bar: the 76 % goal, and 3 points above the small bundle on RAVDESS and across
    # corpora
    small = load_bundle(SMALL_MODEL).accuracy
    assert bundle.accuracy is not None and small is not None
    assert bundle.accuracy >= max(0.76, small + 0.03)
    cross = protocols["ravdess-to-nemo"]["summary"]["accuracy"]["mean"]
    assert cross >= SMALL_ON_NEMO + 0.03
    # every protocol's test-audio variants, from a rerun of the recipe (its own clean scores)
    variants = {"vad", "snr20", "snr10", "reverb500", "telephone", "cheapmic", "clipped", "quiet"}
    for name, protocol in protocols.items():
        rerun = protocol["rerun"]
        assert set(rerun["summary"]["variant_accuracy"]) == variants | {"first_utterance"}, name
        assert len(rerun["per_fold"]) == protocol["folds_evaluated"]
        clean = rerun["summary"]["accuracy"]["mean"]  # the rerun had no history gate
        assert abs(clean - protocol["summary"]["ungated_accuracy"]["mean"]) < 0.03, name
    assert protocols["ravdess"]["rerun"]["summary"]["accuracy"]["mean"] >= 0.76
    # session kinds (train/sessions.py) of every protocol, from reruns that reproduced their
    # per-fold scores (python -m ser_train.record_variants; the two cross-corpus folds trained
    # again elsewhere, the bundle's earlier scores kept beside), with the history gate chosen
    # on readings calibrated as live calibrates them (ser-train --sweep-gate, EXPERIMENTS.md)
    gate = bundle.history_gate
    assert gate is not None and (gate.low, gate.high, gate.warmup) == (4.5, 7.0, 5.0)
    assert bundle.alone is not None
    for name in ("ravdess", "nemo", "ravdess-to-nemo", "nemo-to-ravdess"):
        protocol = protocols[name]
        # scored as live reads it: each reading calibrated with the bundle's own temperatures
        assert protocol["readings_calibrated"]["temperature"] == bundle.temperature, name
        calibrated = protocol["readings_calibrated"]["alone_temperature"]
        assert calibrated == bundle.alone.temperature, name
        if "folds_retrained" in protocol:
            before = protocol["folds_retrained"]["per_fold_before"]
            assert [f["fold"] for f in before] == [f["fold"] for f in protocol["per_fold"]]
        sessions = protocol["summary"]["sessions"]
        assert set(sessions) == set(SESSION_KINDS), name
        assert "held" in protocol["sessions_drawn"], name
        for scores in sessions.values():
            assert set(scores) == {"accuracy", "unweighted_accuracy", "alone", "change"}
            got, alone = scores["accuracy"]["mean"], scores["alone"]["mean"]
            assert got - alone == pytest.approx(scores["change"]["mean"], abs=1e-9)
        first = sessions["first"]["accuracy"]["mean"]
        assert first == pytest.approx(
            protocol["summary"]["variant_accuracy"]["first_utterance"]["mean"], abs=1e-6
        ), name
        # a balanced session is what the clean score measures, in another random order
        assert sessions["balanced"]["accuracy"]["mean"] == pytest.approx(
            protocol["summary"]["accuracy"]["mean"], abs=0.03
        ), name
        # what the session-kind issue is about: the gated history never erases a held emotion
        # by more than the 1 point (measured worst, as live reads it: -0.97 points,
        # RAVDESS held; it was -41.9 on nEMO's folds before the gate), and it still helps where
        # a conversation mixes emotions
        for kind, scores in sessions.items():
            assert scores["change"]["mean"] >= -0.010, (name, kind)
        # (less than before the familiar alone network: the alone reading it is measured
        # against rose 6-8 points in-corpus; balanced +4.2 nEMO, switch +1.9 RAVDESS)
        assert sessions["balanced"]["change"]["mean"] >= 0.04, name
        assert sessions["switch"]["change"]["mean"] >= 0.015, name
        # the networks' own (ungated) score stays recorded beside the gated headline
        assert protocol["summary"]["ungated_accuracy"]["mean"] > 0.4, name
    assert protocols["ravdess"]["summary"]["accuracy"]["mean"] >= 0.77  # the trade's floor
    # a stream's first utterance (>= 72 % on RAVDESS's folds): the alone network over the
    # unadapted embedding has its share only where the recording is familiar (ser/familiar.py,
    # fitted on each fold's training clips): new speakers of the corpora it learned, never
    # the other corpus, where the speaker-adapted networks' reading stands alone
    first = {n: p["summary"]["sessions"]["first"]["accuracy"]["mean"] for n, p in protocols.items()}
    share = {n: p["summary"]["alone_share"]["mean"] for n, p in protocols.items()}
    adapted = {
        n: p["summary"]["variant_accuracy"]["first_adapted"]["mean"] for n, p in protocols.items()
    }
    assert first["ravdess"] >= 0.72 and first["nemo"] >= adapted["nemo"] + 0.03
    assert share["ravdess"] >= 0.9 and share["nemo"] >= 0.9
    for name in ("ravdess-to-nemo", "nemo-to-ravdess"):
        assert share[name] <= 0.01, name
        assert first[name] >= adapted[name] - 0.005, name
    alone = bundle.alone
    assert (
        alone is not None and alone.reads_embedding and alone.weight == 0.9
    )  # chosen with the gate
    assert alone.familiar_path is not None and alone.familiar_path.is_file()
    assert m["alone"]["familiar"]["quantile"] == 0.95
    # the networks' probabilities combine by their geometric mean, then the temperature: the
    # calibration goal of the generalisation issue, on the pooled out-of-fold predictions
    assert bundle.combine == "geometric"
    assert 0.2 < bundle.temperature < 10
    assert m["calibration"]["ece_after_pooled"] <= 0.05
    shipped = sum(p.stat().st_size for p in DEFAULT_MODEL.iterdir())
    assert shipped < 50_000_000  # the bundle budget with an encoder
    assert bundle.speech is not None and bundle.speech.threshold == 0.5
    scores = m["speech"]["evaluation"]
    assert scores["nonspeech_accepted"] <= 0.10
    for corpus in ("ravdess", "nemo"):
        assert max(scores["speech_rejected"][corpus].values()) <= 0.02
        for variant in NATURAL_VARIANTS:  # speech in natural conditions, held-out speakers
            assert scores["speech_rejected"][corpus][variant] <= 0.01, (corpus, variant)


def test_default_bundle_runs_without_tensorflow_and_agrees_with_keras(ravdess):
    """LiteRT alone (no TensorFlow, Keras, ctranslate2 or torch) against the bundle's Keras
    networks over the same encoder output."""
    clip = ravdess / "Actor_03" / "03-01-05-02-01-01-03.flac"
    reply = _litert_only(DEFAULT_MODEL, clip)

    keras = pytest.importorskip("keras")
    from ser.encoder import Encoder, whisper_log_mel

    bundle = load_bundle(DEFAULT_MODEL)
    assert bundle.encoder is not None and bundle.encoder.adaptation is not None
    stats = keras.models.load_model(DEFAULT_MODEL / "model.keras", safe_mode=True)
    head = keras.models.load_model(DEFAULT_MODEL / "encoder_head.keras", safe_mode=True)
    audio, rate = sf.read(clip, dtype="float32")
    pooled = Encoder(bundle.encoder.encoder_path).embed([whisper_log_mel(audio, rate)])[0]
    embedding = pooled[list(bundle.encoder.layers)].reshape(-1)
    head_in = AdaptiveNormalizer(bundle.encoder.adaptation).push(0, embedding)
    stats_in = AdaptiveNormalizer(bundle.adaptation).push(0, extract(audio, rate))
    parts = [
        stats.predict(stats_in[None, :], verbose=0)[0],
        head.predict(head_in[None, :], verbose=0)[0],
    ]
    want = apply_temperature(combine(parts, bundle.combine), bundle.temperature)
    lite = np.array([reply["probs"][0][label] for label in LABELS])
    np.testing.assert_allclose(lite, want, atol=1e-4)
    # the live path (the encoder in a feature worker process) gives the same
    in_worker = np.array([reply["workers"][0][label] for label in LABELS])
    np.testing.assert_allclose(in_worker, lite, atol=1e-6)
    # the clip alone (RAVDESS: a familiar recording): the alone network's reading of the
    # unadapted embedding mixed with the speaker-adapted networks' (geometric, its share 0.9)
    assert bundle.alone is not None and reply["weights"] == [0.9]
    from ai_edge_litert.interpreter import Interpreter

    network = Interpreter(model_path=str(bundle.alone.tflite_path))
    network.allocate_tensors()
    x = np.asarray(reply["embeddings"][0], dtype=np.float32)[None, :]
    network.set_tensor(network.get_input_details()[0]["index"], x)
    network.invoke()
    raw = network.get_tensor(network.get_output_details()[0]["index"])[0]
    mixed = apply_temperature(raw, bundle.alone.temperature) ** 0.9 * lite**0.1
    alone = np.array([reply["alone"][0][label] for label in LABELS])
    np.testing.assert_allclose(alone, mixed / mixed.sum(), atol=1e-5)


def test_networks_that_do_not_read_the_manifests_adaptation_inputs_are_refused(tmp_path):
    def dual(m: dict[str, Any]) -> None:
        m["adaptation"]["inputs"] = "raw+z+history"  # the network reads z only

    with pytest.raises(BundleError, match="adaptation"):
        Classifier.from_dir(_copy_with(tmp_path, dual))


def _copy_with(tmp_path, change) -> Path:
    """A copy of the small shipped bundle with `change(manifest)` applied to its manifest."""
    copy = tmp_path / "b"
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(SMALL_MODEL, copy)
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
    both = Classifier.from_dir(SMALL_MODEL)
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


def test_combine_rule_is_read_and_checked(ravdess, tmp_path):
    """The manifest's "combine" decides how the networks' probabilities become one; an unknown
    rule is refused by name."""
    audio, rate = sf.read(ravdess / "Actor_03" / "03-01-05-02-01-01-03.flac", dtype="float32")
    mean = Classifier.from_dir(SMALL_MODEL)
    assert mean.bundle.combine == "mean"  # a manifest from before the choice
    geometric = Classifier.from_dir(_copy_with(tmp_path, lambda m: m.update(combine="geometric")))
    p_mean, p_geo = mean.probabilities(audio, rate), geometric.probabilities(audio, rate)
    assert sum(p_geo.values()) == pytest.approx(1.0, abs=1e-4)
    assert max(abs(p_mean[k] - p_geo[k]) for k in p_mean) > 1e-3
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "b", bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    (bad / "manifest.json").write_text(json.dumps(manifest | {"combine": "median"}))
    with pytest.raises(BundleError, match=r"'combine' is 'median'.*'mean' or 'geometric'"):
        load_bundle(bad)


def test_an_alone_network_over_the_embedding_reads_utterances_alone(ravdess, tmp_path):
    """A bundle with an encoder and an "alone" section (`ser-train --alone-network`): the
    unadapted embedding goes to `alone.tflite`, calibrated with its own temperature. The
    shipped head stands in for a trained alone network (same input size: 2048)."""
    copy = tmp_path / "default"
    shutil.copytree(DEFAULT_MODEL, copy, ignore=shutil.ignore_patterns("*.keras", "*.png"))
    shutil.copyfile(copy / "encoder_head.tflite", copy / "alone.tflite")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["alone"] = {"reads": "embedding", "tflite": "alone.tflite", "temperature": 1.7}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    clf = Classifier.from_dir(copy)
    assert clf.has_alone_networks
    audio, rate = sf.read(ravdess / "Actor_07" / "03-01-05-02-01-01-07.flac", dtype="float32")
    analysis = clf.analyse(audio, rate)
    assert analysis.embedding is not None
    from ai_edge_litert.interpreter import Interpreter

    head = Interpreter(model_path=str(copy / "alone.tflite"))
    head.allocate_tensors()
    head.set_tensor(head.get_input_details()[0]["index"], analysis.embedding[None, :])
    head.invoke()
    raw = head.get_tensor(head.get_output_details()[0]["index"])[0]
    alone = clf.predict(clf.adapter().alone(analysis))
    np.testing.assert_allclose(alone, apply_temperature(raw, 1.7), atol=1e-6)
    np.testing.assert_allclose(list(clf.probabilities(audio, rate).values()), alone, atol=1e-6)
    # the speaker-adapted reading is another one
    assert not np.allclose(clf.predict(clf.adapter().push("s", analysis)), alone, atol=1e-3)

    # an alone network that does not read what its section says is refused on loading
    shutil.copyfile(copy / "model.tflite", copy / "alone.tflite")  # reads 696 statistics
    with pytest.raises(BundleError, match=r"alone\.tflite reads"):
        Classifier.from_dir(copy)
    manifest["alone"]["reads"] = "spectrogram"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="'alone' is malformed"):
        load_bundle(copy)
    # a familiarity whose file is missing, or a weight that is no share, is refused by name
    shutil.copyfile(copy / "encoder_head.tflite", copy / "alone.tflite")
    familiar = {"file": "nowhere.npz", "threshold": 5.0}
    manifest["alone"] = {"reads": "embedding", "weight": 0.5, "familiar": familiar}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"nowhere\.npz is missing"):
        load_bundle(copy)
    manifest["alone"]["weight"] = 1.5
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"alone\.weight 1\.5: expected a share"):
        load_bundle(copy)
    # ... and one that describes embeddings of another size than the encoder's
    rng = np.random.default_rng(0)
    np.savez(
        copy / "nowhere.npz",
        mean=np.zeros(16),
        components=rng.normal(size=(4, 16)),
        location=np.zeros(4),
        precision=np.eye(4),
    )
    manifest["alone"]["weight"] = 0.5
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="describes 16-value embeddings but the encoder gives"):
        Classifier.from_dir(copy)
    # ... and one that reads an embedding in a bundle without an encoder
    small = _copy_with(tmp_path, lambda m: m.update(alone={"reads": "embedding"}))
    shutil.copyfile(small / "model.tflite", small / "alone.tflite")
    with pytest.raises(BundleError, match="no encoder"):
        load_bundle(small)


def test_what_the_speech_detector_and_networks_read_is_checked(tmp_path):
    """A manifest that says the detector reads what its file does not, or names no network at
    all, is refused by name at load time."""

    def on_embedding(m: dict[str, Any]) -> None:
        m["speech"]["reads"] = "embedding"  # small has no encoder

    with pytest.raises(BundleError, match="'speech' reads the encoder's embedding"):
        load_bundle(_copy_with(tmp_path / "a", on_embedding))

    def unknown(m: dict[str, Any]) -> None:
        m["speech"]["reads"] = "spectrogram"

    with pytest.raises(BundleError, match="'speech' is malformed"):
        load_bundle(_copy_with(tmp_path / "b", unknown))

    def no_network(m: dict[str, Any]) -> None:
        m["model"] = None

    with pytest.raises(BundleError, match="no network"):
        load_bundle(_copy_with(tmp_path / "c", no_network))
    # default's detector file read as the other input: its shape says no
    copy = tmp_path / "d"
    shutil.copytree(DEFAULT_MODEL, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    reads = manifest["speech"].get("reads", "statistics")
    manifest["speech"]["reads"] = "statistics" if reads == "embedding" else "embedding"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="retrain it with --speech-only"):
        Classifier.from_dir(copy)
