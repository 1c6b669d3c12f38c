"""Small real `ser-train` runs: four RAVDESS actors; RAVDESS and nEMO speakers together
(every protocol, masked loss, speech detector, resumed from the fold cache); the bundles they
write load and predict."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from ser.classifier import Classifier
from ser.features import analyse
from ser.labels import LABELS
from ser.scoring import apply_temperature
from ser_train import nonspeech


def ser_train(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ser_train.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_train_small_run_writes_a_working_bundle(ravdess, tmp_path):
    out = tmp_path / "bundle"
    proc = ser_train(
        *("--data", str(ravdess), "--out", str(out), "--cache-dir", str(tmp_path / "cache")),
        *("--actors", "1,4", "--epochs", "3", "--no-speech-detector", "--augment", "snr15"),
        *("--ensemble", "1", "--alone-network", "--alone-everywhere"),  # no encoder: no familiarity
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "found 120 RAVDESS speech (English, 24 actors) clips" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["speakers"] == ["ravdess:1", "ravdess:4"]
    assert [c["name"] for c in manifest["corpora"]] == ["ravdess"]
    assert manifest["speech"] is None and not (out / "speech.tflite").exists()
    ev = manifest["evaluation"]
    assert ev["folds_evaluated"] == 2  # folds 1 (actor 1 held out) and 2 (actor 4)
    assert list(ev["protocols"]) == ["ravdess"]
    assert [f["fold"] for f in ev["protocols"]["ravdess"]["per_fold"]] == [1, 2]
    assert 0.0 <= ev["summary"]["accuracy"]["mean"] <= 1.0
    assert set(ev["summary"]["variant_accuracy"]) == {
        "vad",
        "vadview",
        "snr20",
        "snr10",
        "reverb500",
        "telephone",
        "cheapmic",
        "clipped",
        "quiet",
        "first_utterance",  # the alone network's reading mixed with the next one (0.5)
        "first_adapted",  # the same clips alone through the speaker-adapted networks
        "alone_network",  # the alone network's own reading
    }
    assert "read by an unadapted network" in ev["protocols"]["ravdess"]["adaptation"]
    assert manifest["alone"]["tflite"] == "alone.tflite" and (out / "alone.tflite").is_file()
    assert manifest["alone"]["reads"] == "statistics"  # no encoder here
    assert manifest["alone"]["temperature"] > 0
    assert manifest["alone"]["weight"] == 0.5 and "familiar" not in manifest["alone"]
    assert "(weight 0.5)" in ev["protocols"]["ravdess"]["adaptation"]
    assert manifest["adaptation"]["prior_weight"] == 2.0
    # the history gate (default 4,8,2) is the bundle's and every evaluation's
    assert (manifest["adaptation"]["gate"]["low"], manifest["adaptation"]["gate"]["warmup"]) == (
        4.0,
        2.0,
    )
    assert "history gate 4-8" in ev["protocols"]["ravdess"]["adaptation"]
    assert 0.0 <= ev["protocols"]["ravdess"]["summary"]["ungated_accuracy"]["mean"] <= 1.0
    assert len(manifest["adaptation"]["mean"]) == 696
    assert manifest["calibration"]["temperature"] > 0
    uncertainty = manifest["calibration"]["uncertainty"]  # ser-live's default min_confidence
    assert 0.0 <= uncertainty["min_confidence"] < 1.0
    assert uncertainty["marked_share"] == 0 or uncertainty["marked_accuracy"] < 0.5
    assert "uncertain below confidence" in proc.stdout
    # TensorFlow's C++ start-up chatter and the exporter's dump are filtered
    for noise in ("absl::InitializeLog", "cuInit", "cuda drivers", "XNNPACK"):
        assert noise not in proc.stderr, proc.stderr[-2000:]
    assert "Saved artifact" not in proc.stdout and "Captures:" not in proc.stdout
    evaluation = json.loads((out / "evaluation.json").read_text())["protocols"]["ravdess"]
    # only the speakers that were there; the label says what ran
    assert [f["test_speakers"] for f in evaluation["folds"]] == [["ravdess:1"], ["ravdess:4"]]
    assert ev["protocols"]["ravdess"]["folds_total"] == 6
    assert ev["protocols"]["ravdess"]["title"].endswith(": 2 of 6 folds, 2 test speakers")
    assert "2 of its 6 folds can run" in proc.stderr and "do not trust them" in proc.stderr
    assert [f["n_train"] for f in evaluation["folds"]] == [60, 60]
    # the sessions are scored as live reads them: each reading calibrated with the bundle's
    # temperatures before the alone mix and the history gate; a re-scoring of the same folds
    # with this bundle's temperatures (--calibrated-as) finds the same
    calibrated = evaluation["readings_calibrated"]
    assert calibrated["temperature"] == manifest["calibration"]["temperature"]
    assert calibrated["alone_temperature"] == manifest["alone"]["temperature"]
    rescored = ser_train(
        *("--data", str(ravdess), "--out", str(tmp_path / "rescored")),
        *("--cache-dir", str(tmp_path / "cache"), "--actors", "1,4", "--epochs", "3"),
        *("--no-speech-detector", "--augment", "snr15", "--alone-network", "--alone-everywhere"),
        *("--ensemble", "1", "--eval-only", "--calibrated-as", str(out)),
    )
    assert rescored.returncode == 0, rescored.stderr[-2000:]
    again = json.loads((tmp_path / "rescored" / "evaluation.json").read_text())
    assert again["protocols"]["ravdess"]["folds_from_cache"] == 2  # nothing trained again
    assert "training on" not in rescored.stdout  # nor TensorFlow imported to say where
    assert [f["sessions"] for f in again["protocols"]["ravdess"]["folds"]] == [
        f["sessions"] for f in evaluation["folds"]
    ]
    # the gate sweep scores settings on the same folds as live reads them: the bundle's own
    # setting (4,8,2, weight 0.5) first, scoring the sessions the bundle recorded
    sweep = ser_train(
        *("--data", str(ravdess), "--out", str(tmp_path / "sweep")),
        *("--cache-dir", str(tmp_path / "cache"), "--actors", "1,4", "--epochs", "3"),
        *("--no-speech-detector", "--augment", "snr15", "--alone-network", "--alone-everywhere"),
        *("--ensemble", "1", "--eval-only", "--calibrated-as", str(out)),
        *("--sweep-gate", "4,9/8/2", "--sweep-alone-weights", "0.5,1"),
    )
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    record = json.loads((tmp_path / "sweep" / "gate_sweep.json").read_text())
    settings = record["settings"]
    assert [(s["gate"]["low"], s["gate"]["high"], s["alone_weight"]) for s in settings] == [
        (4.0, 8.0, 0.5),
        (4.0, 8.0, 1.0),  # low 9 is not below high 8: skipped
    ]
    assert record["current"] == settings[0]
    assert "current 4,8,2 w0.5: mean" in sweep.stdout and "History gate settings" in sweep.stdout
    assert record["current"]["sessions"]["ravdess"] == {
        kind: {"accuracy": s["accuracy"]["mean"], "change": s["change"]["mean"]}
        for kind, s in ev["protocols"]["ravdess"]["summary"]["sessions"].items()
    }
    # weight 1: an utterance alone is the alone network's own reading
    first = settings[1]["sessions"]["ravdess"]["first"]["accuracy"]
    assert first == pytest.approx(
        ev["protocols"]["ravdess"]["summary"]["variant_accuracy"]["alone_network"]["mean"]
    )
    within = [s for s in settings if s["worst_change"] >= -0.01]
    if within:  # the rule: within the 1-point bound, the highest mean
        assert record["chosen"]["mean_accuracy"] == max(s["mean_accuracy"] for s in within)
    else:
        assert record["chosen"] is None and "no setting keeps every session" in sweep.stdout
    confusion = np.array(evaluation["pooled"]["confusion"])
    assert confusion.shape == (8, 8) and confusion.sum() == 120
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    clf = Classifier.from_dir(out)
    audio, rate = sf.read(ravdess / "Actor_02" / "03-01-01-01-01-01-02.flac", dtype="float32")
    probs = clf.probabilities(audio, rate)
    assert list(probs) == list(LABELS)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
    # an utterance alone: the alone network's reading of the unadapted statistics, mixed
    # (geometric, weight 0.5) with the speaker-adapted networks' reading of a stream's first
    analysis = clf.analyse(audio, rate)
    alone = clf.adapter().alone(analysis)
    assert alone.alone and np.array_equal(alone.features, analysis.vector)
    network = _run_tflite(out / "alone.tflite", analysis.vector)
    network = apply_temperature(network, manifest["alone"]["temperature"])
    adapted = clf.predict(clf.adapter().push("s", analysis))
    assert alone.first is not None
    np.testing.assert_allclose(clf.predict(alone.first), adapted, atol=1e-6)
    expected = np.sqrt(network * adapted) / np.sqrt(network * adapted).sum()
    np.testing.assert_allclose(clf.predict(alone), expected, atol=1e-5)
    np.testing.assert_allclose(list(probs.values()), expected, atol=1e-5)
    assert not np.allclose(adapted, expected, atol=1e-3)
    # pipeline.adaptation = "off": every utterance alone, the same mix
    off = clf.adapter(history=False)
    for _ in range(2):
        np.testing.assert_allclose(clf.predict(off.push("s", analysis)), expected, atol=1e-5)


def _run_tflite(path, x):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x.reshape(1, -1))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]


@pytest.mark.slow
def test_cnn_run_writes_a_two_network_bundle_that_classifies(ravdess, tmp_path):
    out = tmp_path / "bundle"
    proc = ser_train(
        *("--data", str(ravdess), "--out", str(out), "--cache-dir", str(tmp_path / "cache")),
        *("--actors", "1,4", "--epochs", "1", "--ensemble", "1", "--no-robustness"),
        *("--cnn", "--cnn-epochs", "2", "--augment", "snr30", "--no-speech-detector"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    cnn = manifest["cnn"]
    assert (cnn["tflite"], cnn["frames"], cnn["config"]["epochs"]) == ("cnn.tflite", 300, 2)
    assert len(cnn["adaptation"]["mean"]) == 40
    assert (out / "cnn.tflite").is_file() and (out / "cnn.keras").is_file()
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["training"]["cnn"]["epochs"] == 2
    for fold in evaluation["protocols"]["ravdess"]["folds"]:
        assert set(fold["component_accuracy"]) == {"stats", "cnn"}
        # a CNN's sessions are simulated too (its log-mel centring per session)
        assert {"first", "held", "balanced"} <= set(fold["sessions"])
    # the cache now holds a log-mel sequence beside each vector (clean and snr30)
    assert len(list((tmp_path / "cache").rglob("*.logmel.npy"))) == 2 * 120

    clf = Classifier.from_dir(out)
    audio, rate = sf.read(ravdess / "Actor_02" / "03-01-01-01-01-01-02.flac", dtype="float32")
    probs = clf.probabilities(audio, rate)
    assert list(probs) == list(LABELS)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)

    # retrained without --cnn into the same folder: no stale CNN is left to be picked up
    proc = ser_train(
        *("--data", str(ravdess), "--out", str(out), "--cache-dir", str(tmp_path / "cache")),
        *("--actors", "1,4", "--epochs", "1", "--ensemble", "1", "--skip-eval"),
        "--no-speech-detector",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "manifest.json").read_text())["cnn"] is None
    assert not (out / "cnn.tflite").exists() and not (out / "cnn.keras").exists()


@pytest.mark.slow
def test_eval_only_run_with_augmentation_and_speaker_ensemble(ravdess, tmp_path):
    out = tmp_path / "experiment"
    proc = ser_train(
        *("--data", str(ravdess), "--out", str(out), "--cache-dir", str(tmp_path / "cache")),
        *("--actors", "1,2,3", "--epochs", "1", "--eval-only", "--test-variants", "vadview"),
        "--no-speech-detector",
        *("--augment", "speed110,reverb300", "--mixup", "0.2"),
        *("--ensemble", "2", "--ensemble-split", "speakers"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["confusion.png", "evaluation.json"]
    evaluation = json.loads((out / "evaluation.json").read_text())
    # folds 1 (actor 1 held out), 4 (3) and 5 (2); each trains on the other two actors, one
    # per ensemble member
    folds = evaluation["protocols"]["ravdess"]["folds"]
    assert [f["fold"] for f in folds] == [1, 4, 5]
    assert evaluation["training"]["augment"] == ["speed110", "reverb300"]
    config = evaluation["training"]["config"]
    assert (config["mixup_alpha"], config["ensemble"], config["ensemble_split"]) == (
        0.2,
        2,
        "speakers",
    )
    # the one test variant asked for (the live cut as the encoder reads it), and no other
    assert set(evaluation["protocols"]["ravdess"]["summary"]["variant_accuracy"]) == {
        "first_utterance",
        "vadview",
    }


def test_speaker_ensemble_needs_enough_training_actors(ravdess, tmp_path):
    proc = ser_train(
        *("--data", str(ravdess), "--out", str(tmp_path), "--cache-dir", str(tmp_path / "c")),
        *("--actors", "1,2", "--ensemble", "2", "--ensemble-split", "speakers"),
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--ensemble-split speakers" in lines[0] and "1 training" in lines[0]


def _tiny_nemo(nemo, root, speakers=("EB0", "WR0", "KD0", "KS0"), per_speaker=30):
    """A copy of nEMO's layout (symlinked samples, data.tsv rows) with a few clips per speaker."""
    (root / "samples").mkdir(parents=True)
    header, *rows = (nemo / "data.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    kept = []
    for speaker in speakers:
        mine = [r for r in rows if r.split("\t")[4] == speaker]
        # every emotion: take rows round-robin over the sorted list
        mine = sorted(mine, key=lambda r: (int(r.split("\t")[0].split("_")[2][:-5]), r))
        kept += mine[:per_speaker]
    for row in kept:
        name = row.split("\t")[0]
        (root / "samples" / name).symlink_to(nemo / "samples" / name)
    (root / "data.tsv").write_text(header + "".join(kept), encoding="utf-8")
    return root


@pytest.mark.slow
def test_two_corpora_every_protocol_speech_detector_and_resume(ravdess, nemo, tmp_path):
    data = _tiny_nemo(nemo, tmp_path / "nemo")
    out = tmp_path / "bundle"
    args = (
        *("--data", str(ravdess), "--data", f"nemo={data}", "--out", str(out)),
        *("--cache-dir", str(tmp_path / "cache"), "--actors", "1,4", "--epochs", "2"),
        *("--ensemble", "1", "--no-robustness", "--augment", "telephone"),
        *("--nonspeech-per-kind", "6"),
    )
    first = ser_train(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "found 120 nEMO (Polish, acted) clips" in first.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    corpora = {c["name"]: c for c in manifest["corpora"]}
    assert corpora["nemo"]["clips"] == 120 and corpora["ravdess"]["clips"] == 120
    assert corpora["nemo"]["missing_labels"] == ["calm", "disgust"]
    assert corpora["nemo"]["speakers"] == ["EB0", "KD0", "KS0", "WR0"]
    assert "calm" not in corpora["nemo"]["labels"]
    assert len({c["fingerprint_sha256"] for c in corpora.values()}) == 2
    assert manifest["training"]["loss"].startswith("cross-entropy masked")
    protocols = manifest["evaluation"]["protocols"]
    assert list(protocols) == ["ravdess", "nemo", "ravdess-to-nemo", "nemo-to-ravdess"]
    assert protocols["ravdess"]["train_corpora"] == ["ravdess", "nemo"]
    assert protocols["ravdess-to-nemo"]["train_corpora"] == ["ravdess"]
    assert protocols["nemo-to-ravdess"]["labels"] == [
        "neutral",
        "happy",
        "sad",
        "angry",
        "fearful",
        "surprised",
    ]
    assert [f["test_speakers"] for f in protocols["nemo"]["per_fold"]] == [
        ["nemo:EB0", "nemo:WR0"],
        ["nemo:KD0", "nemo:KS0"],
    ]
    evaluation = json.loads((out / "evaluation.json").read_text())
    for name, protocol in evaluation["protocols"].items():
        assert protocol["folds_from_cache"] == 0, name
        for fold in protocol["folds"]:
            assert fold["n_train"] > 0
    # the speech detector: trained, scored, shipped in the bundle
    speech = manifest["speech"]
    assert speech["tflite"] == "speech.tflite" and 0 < speech["threshold"] < 1
    scores = speech["evaluation"]
    assert set(scores["speech_rejected"]) == {"ravdess", "nemo"}
    assert set(scores["nonspeech_accepted_per_kind"]) == set(nonspeech.KINDS)
    clf = Classifier.from_dir(out)
    assert clf.has_speech_detector
    audio, rate = sf.read(ravdess / "Actor_02" / "03-01-01-01-01-01-02.flac", dtype="float32")
    assert 0.0 <= clf.speech_probability(analyse(audio, rate).vector) <= 1.0
    assert list(clf.probabilities(audio, rate)) == list(LABELS)

    # run again (evaluation only): every fold comes from the fold cache, same scores
    second = ser_train(*args, "--eval-only", "--no-speech-detector")
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads((out / "evaluation.json").read_text())
    for name, protocol in again["protocols"].items():
        assert protocol["folds_from_cache"] == protocol["folds_evaluated"], name
        assert protocol["summary"] == evaluation["protocols"][name]["summary"]


def test_actors_of_one_fold_fail_before_any_features_saying_why(ravdess, tmp_path):
    proc = ser_train(
        *("--data", str(ravdess), "--out", str(tmp_path / "b"), "--cache-dir", str(tmp_path)),
        *("--actors", "1,11"),
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "no fold has both training and test speakers" in lines[0]
    assert "fold 1: 1, 11, 20, 21" in lines[0] and "--skip-eval" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("*.npy"))  # failed before extracting anything


def test_protocol_the_corpora_cannot_run_fails_before_any_features(ravdess, tmp_path):
    proc = ser_train(
        *("--data", str(ravdess), "--out", str(tmp_path / "b"), "--cache-dir", str(tmp_path)),
        *("--protocol", "ravdess-to-nemo"),
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "--protocol ravdess-to-nemo needs the corpora nemo, ravdess" in lines[0]
    assert not list(tmp_path.rglob("*.npy"))  # failed before extracting anything


def test_alone_only_with_a_broken_manifest_is_one_line_before_any_work(ravdess, tmp_path):
    for text, reason in (('{"training": ', "Expecting value"), ('{"x": 1}', "no 'training' key")):
        (tmp_path / "manifest.json").write_text(text)
        proc = ser_train(
            *("--data", str(ravdess), "--out", str(tmp_path), "--alone-only", "--alone-everywhere")
        )
        assert proc.returncode == 2 and not proc.stdout
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"ser-train: error: --alone-only: {tmp_path / 'manifest.json'}")
        assert reason in line and line.endswith(
            "pass --out BUNDLE_FOLDER of a bundle ser-train wrote"
        )


def test_gate_sweep_options_refused_in_one_line_saying_what_to_add(tmp_path):
    proc = ser_train("--data", str(tmp_path), "--sweep-gate")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "--sweep-gate" in lines[0] and "add --eval-only" in lines[0]
    proc = ser_train("--data", str(tmp_path), "--eval-only", "--sweep-alone-weights", "0.5")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines == [
        "ser-train: error: --sweep-alone-weights goes with --sweep-gate"
    ]
    proc = ser_train(
        "--data", str(tmp_path), "--eval-only", "--sweep-gate", "--sweep-alone-weights", "0.5"
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines == [
        "ser-train: error: --sweep-alone-weights weighs an alone network: add --alone-network"
    ]
    proc = ser_train("--data", str(tmp_path), "--eval-only", "--sweep-gate", "8/4/2")
    assert proc.returncode == 2 and "some HIGH above the lowest LOW" in proc.stderr
    proc = ser_train("--data", str(tmp_path), "--eval-only", "--sweep-gate", "4/8")
    assert proc.returncode == 2 and "expected LOWS/HIGHS/WARMUPS" in proc.stderr
    # a share is in (0, 1], checked as the options are read, alone or in a sweep
    for option, value, said in (
        ("--alone-weight", "1.5", "argument --alone-weight: '1.5': expected a share in (0, 1]"),
        ("--sweep-alone-weights", "0.5,0", "'0.5,0': expected shares in (0, 1]"),
    ):
        proc = ser_train("--data", str(tmp_path), "--eval-only", option, value)
        assert proc.returncode == 2 and said in proc.stderr.splitlines()[-1], proc.stderr


def test_train_reports_bad_data_folder(tmp_path):
    proc = ser_train("--data", str(tmp_path), "--test-variants", "vad,echo")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "not a test variant: echo (choose from vad," in lines[-1]
    proc = ser_train("--data", str(tmp_path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no known corpus under" in lines[0] and "NAME=PATH" in lines[0]
    proc = ser_train("--data", f"ravdess={tmp_path}")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "no RAVDESS speech audio" in lines[0]


def test_exported_copy_predicts_exactly_like_the_trained_model(tmp_path):
    keras = pytest.importorskip("keras")
    from ai_edge_litert.interpreter import Interpreter

    from ser_train.model import TrainConfig, fit, for_export, to_tflite

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(200, 696)) * 5 + 3).astype(np.float32)  # far from standardised
    y = rng.integers(0, 8, 200)
    trained = fit(x, y, 8, TrainConfig(epochs=2, ensemble=2))
    exported = for_export(trained)
    exported.save(tmp_path / "m.keras")
    (tmp_path / "m.tflite").write_bytes(to_tflite(exported))
    reference = trained.predict(x[:5], verbose=0)
    reloaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(x[:5], verbose=0), reference, atol=1e-6)
    lite = Interpreter(model_path=str(tmp_path / "m.tflite"))
    lite.allocate_tensors()
    for row, ref in zip(x[:5], reference, strict=True):
        lite.set_tensor(lite.get_input_details()[0]["index"], row[None, :])
        lite.invoke()
        np.testing.assert_allclose(
            lite.get_tensor(lite.get_output_details()[0]["index"])[0], ref, atol=1e-5
        )
    assert (tmp_path / "m.keras").stat().st_size < 1.5 * (tmp_path / "m.tflite").stat().st_size


@pytest.mark.slow
def test_alone_only_gives_a_bundle_alone_networks_when_its_folds_are_the_same(ravdess, tmp_path):
    out, cache = tmp_path / "bundle", tmp_path / "cache"
    common = (
        *("--data", str(ravdess), "--out", str(out), "--cache-dir", str(cache)),
        *("--actors", "1,4", "--epochs", "2", "--ensemble", "1", "--no-robustness"),
        *("--no-speech-detector", "--augment", ""),
    )
    assert ser_train(*common).returncode == 0  # no alone network unless asked
    before = json.loads((out / "manifest.json").read_text())
    assert before["alone"] is None and not (out / "alone.tflite").exists()
    # another seed trains other networks: refused before any work, nothing written
    # (no encoder here: the alone network's share cannot be judged by familiarity, so it is
    # mixed in everywhere; the familiar case: tests/test_encoder.py)
    alone_only = ("--alone-only", "--alone-everywhere")
    other = ser_train(*common, *alone_only, "--seed", "1")
    assert other.returncode == 2
    (line,) = other.stderr.strip().splitlines()[-1:]
    assert line.startswith("ser-train: error: --alone-only: the evaluation's training config")
    assert line.endswith(
        "config (seed 1) is not the bundle's (seed 0): rerun ser-train with the bundle's settings"
    )
    assert "features:" not in other.stdout and "training on" not in other.stdout
    assert json.loads((out / "manifest.json").read_text()) == before
    proc = ser_train(*common, *alone_only)
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = json.loads((out / "manifest.json").read_text())
    assert after["alone"]["tflite"] == "alone.tflite" and (out / "alone.tflite").is_file()
    assert after["alone"]["weight"] == 0.5 and "familiar" not in after["alone"]
    protocol = after["evaluation"]["protocols"]["ravdess"]
    # the networks' own per-fold scores are the bundle's, kept beside the gated ones
    assert [f["ungated"] for f in protocol["per_fold"]] == [
        f["ungated"] for f in before["evaluation"]["protocols"]["ravdess"]["per_fold"]
    ]
    variants = protocol["summary"]["variant_accuracy"]
    assert (
        variants["first_adapted"]
        == before["evaluation"]["protocols"]["ravdess"]["summary"]["variant_accuracy"][
            "first_utterance"
        ]
    )
    assert "read by an unadapted network" in protocol["adaptation"]
    assert "alone_evaluation" in json.loads((out / "evaluation.json").read_text())
    assert "alone.tflite" in (out / "README.md").read_text()  # the card, regenerated
    clf = Classifier.from_dir(out)
    assert clf.has_alone_networks
