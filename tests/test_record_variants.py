"""`python -m ser_train.record_variants`: variant scores enter a bundle's manifest only from a run
that evaluated the bundle's own folds."""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from ser_train.record_variants import main

from .conftest import DEFAULT_MODEL


def _run_of(manifest: dict) -> dict:
    """An evaluation.json as `ser-train --eval-only` writes it, for the bundle's own folds."""
    protocols = {}
    for name, p in manifest["evaluation"]["protocols"].items():
        folds = [
            {
                "fold": f["fold"],
                "test_speakers": f["test_speakers"],
                "scores": {k: f[k] for k in HEADLINE},
                "variant_accuracy": {"snr10": 0.5, "telephone": 0.4},
            }
            | ({"ungated_scores": {k: f["ungated"][k] for k in HEADLINE}} if "ungated" in f else {})
            for f in p["per_fold"]
        ]
        summary = copy.deepcopy(p["summary"])
        summary["variant_accuracy"] = {"snr10": {"mean": 0.5, "std": 0.0}}
        summary["sessions"] = {"held": {"accuracy": {"mean": 0.25, "std": 0.0}}}
        protocols[name] = {"folds": folds, "summary": summary, "sessions_drawn": "per fold"}
    training = {
        "config": manifest["training"]["config"],
        "augment": manifest["training"]["augment"],
        "combine": manifest["combine"],
        "inputs": manifest["adaptation"].get("inputs", "z"),
        "concentration": manifest["training"].get("session_mix", 0.0),
        "encoder": {k: manifest["encoder"][k] for k in ("sha256", "layers")},
    }
    return {
        "protocols": protocols,
        "training": training,
        "history_gate": manifest["adaptation"].get("gate"),
    }


HEADLINE = ("accuracy", "unweighted_accuracy", "macro_f1")


def _without_gate(manifest: dict) -> dict:
    """The manifest as it was before its history gate: the networks' own scores as headline."""
    out = copy.deepcopy(manifest)
    out["adaptation"].pop("gate")
    for p in out["evaluation"]["protocols"].values():
        for f in p["per_fold"]:
            f.update(f.pop("ungated"))
    return out


def test_a_gate_is_adopted_only_from_a_run_of_the_same_networks(bundle, tmp_path):
    gated = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps(_without_gate(gated)))
    run = _run_of(gated)  # gated scores, with the networks' own beside them
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps(run))
    assert main([str(path), str(bundle)]) == 2  # a plain record refuses another gate
    assert main([str(path), str(bundle), "--adopt-gate"]) == 0
    got = json.loads((bundle / "manifest.json").read_text())
    assert got["adaptation"]["gate"] == gated["adaptation"]["gate"]
    for name, p in got["evaluation"]["protocols"].items():
        want = gated["evaluation"]["protocols"][name]["per_fold"]
        assert [f["accuracy"] for f in p["per_fold"]] == [f["accuracy"] for f in want]
        assert [f["ungated"] for f in p["per_fold"]] == [f["ungated"] for f in want]
    # other networks (one fold scored differently before the gate): nothing adopted
    (bundle / "manifest.json").write_text(json.dumps(_without_gate(gated)))
    run["protocols"]["ravdess"]["folds"][0]["ungated_scores"]["accuracy"] += 0.01
    path.write_text(json.dumps(run))
    assert main([str(path), str(bundle), "--adopt-gate"]) == 2
    assert "gate" not in json.loads((bundle / "manifest.json").read_text())["adaptation"]
    # unless the run says it trained those folds again: its folds take their place, the
    # bundle's earlier scores kept beside them
    assert main([str(path), str(bundle), "--folds-retrained", "machine X"]) == 2  # needs adopt
    note = ("--adopt-gate", "--folds-retrained", "machine X, 2026-12-07")
    assert main([str(path), str(bundle), *note]) == 0
    got = json.loads((bundle / "manifest.json").read_text())
    assert got["adaptation"]["gate"] == gated["adaptation"]["gate"]
    ravdess = got["evaluation"]["protocols"]["ravdess"]
    before = gated["evaluation"]["protocols"]["ravdess"]["per_fold"]
    assert ravdess["folds_retrained"] == {
        "note": "machine X, 2026-12-07",
        "per_fold_before": [{"fold": f["fold"], **f["ungated"]} for f in before],
    }
    assert ravdess["per_fold"][0]["ungated"]["accuracy"] == before[0]["ungated"]["accuracy"] + 0.01
    assert [f["test_speakers"] for f in ravdess["per_fold"]] == [f["test_speakers"] for f in before]
    assert [f["accuracy"] for f in ravdess["per_fold"]] == [f["accuracy"] for f in before]
    card = (bundle / "README.md").read_text()  # the model card says so too
    assert "Folds trained again since the bundle was made (machine X, 2026-12-07): RAVDESS" in card
    others = [n for n in got["evaluation"]["protocols"] if n != "ravdess"]
    assert others
    for name in others:  # the same folds there: what the bundle recorded of them stays
        want = gated["evaluation"]["protocols"][name].get("folds_retrained")
        assert got["evaluation"]["protocols"][name].get("folds_retrained") == want, name


@pytest.fixture
def bundle(tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    shutil.copy(DEFAULT_MODEL / "manifest.json", out / "manifest.json")
    return out


def test_variants_of_the_same_folds_are_recorded(bundle, tmp_path, capsys):
    manifest = json.loads((bundle / "manifest.json").read_text())
    run = tmp_path / "evaluation.json"
    run.write_text(json.dumps(_run_of(manifest)))
    assert main([str(run), str(bundle)]) == 0
    got = json.loads((bundle / "manifest.json").read_text())["evaluation"]
    for name, p in got["protocols"].items():
        assert p["summary"]["variant_accuracy"] == {"snr10": {"mean": 0.5, "std": 0.0}}
        assert p["summary"]["sessions"]["held"]["accuracy"]["mean"] == 0.25
        assert p["sessions_drawn"] == "per fold"
        assert all(f["variant_accuracy"]["telephone"] == 0.4 for f in p["per_fold"])
        clean = manifest["evaluation"]["protocols"][name]["summary"]["accuracy"]
        assert p["summary"]["accuracy"] == clean  # the clean scores stay as measured
    assert got["summary"]["variant_accuracy"] == {"snr10": {"mean": 0.5, "std": 0.0}}
    assert "same folds" in got["variants_recorded_from"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["protocols"]["ravdess"]["folds"][2]["scores"].update(accuracy=0.5), "ravdess"),
        (lambda r: r["training"].update(combine="mean"), "combine rule"),
        (lambda r: r["training"].update(inputs="raw+z+history"), "adaptation inputs"),
        (lambda r: r["training"].update(concentration=0.3), "emotion mix"),
        (lambda r: r["training"]["encoder"].update(layers=[3]), "encoder layers"),
        (lambda r: r["training"]["encoder"].update(sha256="0" * 64), "encoder file"),
    ],
)
def test_another_run_is_refused_and_nothing_written(bundle, tmp_path, capsys, change, message):
    before = (bundle / "manifest.json").read_text()
    run = _run_of(json.loads(before))
    change(run)
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps(run))
    assert main([str(path), str(bundle)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert (bundle / "manifest.json").read_text() == before


def test_a_rerun_elsewhere_is_recorded_beside_the_bundles_scores(bundle, tmp_path):
    before = json.loads((bundle / "manifest.json").read_text())
    run = _run_of(before)
    run["protocols"]["ravdess"]["folds"][0]["scores"]["accuracy"] = 0.5  # other fold models
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps(run))
    assert main([str(path), str(bundle), "--rerun", "machine C, 2026-12-02"]) == 0
    after = json.loads((bundle / "manifest.json").read_text())["evaluation"]
    ravdess = after["protocols"]["ravdess"]
    # the bundle's own scores are untouched; the rerun carries its own clean scores
    assert ravdess["summary"] == before["evaluation"]["protocols"]["ravdess"]["summary"]
    assert ravdess["per_fold"] == before["evaluation"]["protocols"]["ravdess"]["per_fold"]
    assert ravdess["rerun"]["note"] == "machine C, 2026-12-02"
    assert ravdess["rerun"]["per_fold"][0]["accuracy"] == 0.5
    assert ravdess["rerun"]["per_fold"][0]["variant_accuracy"]["telephone"] == 0.4
    assert ravdess["rerun"]["summary"]["variant_accuracy"]["snr10"]["mean"] == 0.5
    # another setup is refused even as a rerun
    run["training"]["combine"] = "mean"
    path.write_text(json.dumps(run))
    assert main([str(path), str(bundle), "--rerun", "x"]) == 2


def test_a_run_with_the_whole_encoder_counts_for_its_trimmed_copy(bundle, tmp_path):
    """The shipped encoder keeps 3 of Whisper-base's 6 blocks; its manifest names the whole
    file it reproduces bit for bit, whose runs are this bundle's."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    whole = manifest["encoder"]["source"]["same_values_as"]["sha256"]
    assert whole != manifest["encoder"]["sha256"] and manifest["encoder"]["source"]["blocks"] == 3
    run = _run_of(manifest)
    run["training"]["encoder"]["sha256"] = whole
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps(run))
    assert main([str(path), str(bundle)]) == 0


def test_an_adopted_gate_brings_its_alone_share_when_familiar_is_judged_alike(bundle, tmp_path):
    from ser.bundle import load_bundle

    gated = json.loads((bundle / "manifest.json").read_text())
    assert gated["alone"]["weight"] != 0.7 and gated["alone"]["familiar"]["quantile"] == 0.95
    for source in DEFAULT_MODEL.iterdir():  # the networks too: the bundle loads as live loads it
        if source.is_file() and source.name != "manifest.json":
            shutil.copy(source, bundle / source.name)
    run = _run_of(gated)
    path = tmp_path / "evaluation.json"
    run["alone_mix"] = {"weight": 0.7, "familiar": True, "quantile": 0.9}
    path.write_text(json.dumps(run))
    assert main([str(path), str(bundle), "--adopt-gate"]) == 2  # another familiar threshold
    assert json.loads((bundle / "manifest.json").read_text())["alone"] == gated["alone"]
    run["alone_mix"]["quantile"] = 0.95
    path.write_text(json.dumps(run))
    assert main([str(path), str(bundle), "--adopt-gate"]) == 0
    alone = json.loads((bundle / "manifest.json").read_text())["alone"]
    assert alone["weight"] == 0.7
    # the method names the share by its key, never a number that may go stale
    assert "the alone network's weight (alone.weight) where familiar" in alone["familiar"]["method"]
    assert load_bundle(bundle).alone.weight == 0.7  # what live mixes with
