"""Record test-audio variant scores in a bundle trained without them.

A bundle trained with `--no-robustness` (as `make train` trains `default`: the variants cost
eight more passes of the encoder over every clip) carries clean scores only. An `--eval-only`
run with robustness on the same data and setup retrains the same folds and adds the variants
(noise, room, channel, VAD-cut, first utterance). This copies those into the bundle's manifest,
but only when the run provably evaluated the same fold models: the same training setup and,
for every protocol, the same clean per-fold scores to the last digit. Otherwise nothing is
written and the one-line error says which protocol or key differs.

Folds retrained on another machine need not be the same models (TensorFlow's CPU kernels are
not bit-identical across CPUs): with `--rerun NOTE` such a run (same setup) is recorded beside
the bundle's own scores, under each protocol's "rerun", with its own clean scores, so every
variant reads against the clean score of the same folds, and NOTE saying where it ran.

    python -m ser_train.record_variants EVALUATION_JSON BUNDLE_DIR [--rerun NOTE]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ser.familiar import WEIGHT_IN_METHOD

HEADLINE = ("accuracy", "unweighted_accuracy", "macro_f1")


class RecordError(Exception):
    """The evaluation cannot be recorded in the bundle; the message says why."""


def check_same_setup(manifest: dict[str, Any], training: dict[str, Any]) -> None:
    """Raise unless the evaluation's setup is the one the bundle was trained with."""
    checks = {
        "training config": (manifest["training"].get("config"), training.get("config")),
        "augmentation": (manifest["training"].get("augment"), training.get("augment")),
        "combine rule": (manifest.get("combine", "mean"), training.get("combine", "mean")),
        "adaptation inputs": (
            (manifest.get("adaptation") or {}).get("inputs", "z"),
            training.get("inputs", "z"),
        ),
        "training sessions' emotion mix": (
            manifest["training"].get("session_mix", 0.0),
            training.get("concentration", 0.0),
        ),
        "statistics network": (
            manifest["training"].get("statistics_network", True),
            training.get("statistics", True),
        ),
        "first-utterance training copies": (
            manifest["training"].get("first_copies", 0),
            training.get("first_copies", 0),
        ),
    }
    encoder = manifest.get("encoder")
    if encoder is not None or training.get("encoder") is not None:
        got = training.get("encoder") or {}
        want = (encoder or {}).get("sha256")
        # a trimmed encoder records the whole one whose layers it reproduces bit for bit
        same = ((encoder or {}).get("source") or {}).get("same_values_as") or {}
        if same.get("sha256") is not None and got.get("sha256") == same["sha256"]:
            want = same["sha256"]
        checks["encoder file"] = (want, got.get("sha256"))
        checks["encoder layers"] = ((encoder or {}).get("layers"), got.get("layers"))
    for name, (want, got) in checks.items():
        if want != got:
            theirs, ours = _differences(got, want)
            raise RecordError(
                f"the evaluation's {name} ({theirs}) is not the bundle's ({ours}): rerun "
                "ser-train with the bundle's settings"
            )


def _differences(a: Any, b: Any) -> tuple[str, str]:
    """Two settings as text; of two dicts, only the keys whose values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(k for k in {*a, *b} if a.get(k) != b.get(k))
        first, second = (", ".join(f"{k} {d.get(k)!r}" for k in keys) for d in (a, b))
        return first, second
    return repr(a), repr(b)


def _headline(fold: dict[str, Any]) -> dict[str, Any]:
    """A bundle's per-fold entry as the networks alone scored it (before any history gate)."""
    return {"fold": fold["fold"], **{k: fold.get("ungated", fold)[k] for k in HEADLINE}}


def _shared(
    manifest: dict[str, Any], evaluation: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """(the manifest's evaluation, its protocols, [(name, the run's protocol)] for the protocols
    both hold)."""
    recorded = manifest.get("evaluation") or {}
    protocols = recorded.get("protocols", {})
    runs = evaluation.get("protocols", {})
    return recorded, protocols, [(n, r) for n, r in runs.items() if n in protocols]


def _ungated_of_run(run: dict[str, Any]) -> list[dict[str, Any]]:
    """An evaluation's per-fold scores of its networks alone (before its history gate)."""
    return [
        {"fold": f["fold"], **{k: f["ungated_scores"][k] for k in HEADLINE}} for f in run["folds"]
    ]


def adopt_gate(
    manifest: dict[str, Any], evaluation: dict[str, Any], retrained: str | None = None
) -> list[str]:
    """Give the bundle the history gate of `evaluation` (an --eval-only run of the same folds
    with --history-gate): its networks' per-fold scores before the gate must equal the
    bundle's; then every protocol's headline, per-fold scores and session kinds become the
    gated ones (the networks' own kept under "ungated"), and adaptation.gate is set. With
    `retrained` (a note: where and when), a protocol whose folds were trained again and scored
    differently takes the run's folds in place of its own, its earlier per-fold scores kept
    under "folds_retrained". Returns the protocols updated."""
    gate = evaluation.get("history_gate")
    if not gate:
        raise RecordError("the evaluation ran without --history-gate: nothing to adopt")
    check_same_setup(manifest, evaluation.get("training", {}))
    recorded, protocols, shared = _shared(manifest, evaluation)
    updated = []
    for name, run in shared:
        theirs = _ungated_of_run(run)
        mine = protocols[name]["per_fold"]
        if [_headline(f) for f in mine] != theirs:
            if retrained is None:
                raise RecordError(
                    f"protocol {name}: the evaluation's networks scored differently per fold, "
                    "so its folds are not the bundle's: nothing recorded (--folds-retrained "
                    "NOTE records the run's folds in their place)"
                )
            protocols[name]["folds_retrained"] = {
                "note": retrained,
                "per_fold_before": [_headline(f) for f in mine],
            }
            mine = protocols[name]["per_fold"] = [
                {"fold": f["fold"], "test_speakers": f["test_speakers"], **t}
                for f, t in zip(run["folds"], theirs, strict=True)
            ]
        if "readings_calibrated" in run:  # the sessions scored as live reads them
            protocols[name]["readings_calibrated"] = run["readings_calibrated"]
        for fold, run_fold in zip(mine, run["folds"], strict=True):
            fold["ungated"] = {k: v for k, v in _headline(fold).items() if k != "fold"}
            fold.update({k: run_fold["scores"][k] for k in HEADLINE})
        summary = protocols[name]["summary"]
        for key in (
            "accuracy",
            "unweighted_accuracy",
            "macro_f1",
            "recall",
            "sessions",
            "alone_share",  # the test clips an alone network had a share in (familiar)
        ):
            if key in run["summary"]:
                summary[key] = run["summary"][key]
        summary["ungated_accuracy"] = run["summary"].get("ungated_accuracy")
        variants = run["summary"].get("variant_accuracy", {})
        # who reads an utterance alone
        for variant in ("first_utterance", "first_adapted", "alone_network"):
            if variant in variants:
                summary.setdefault("variant_accuracy", {})[variant] = variants[variant]
        protocols[name]["adaptation"] = run.get("adaptation", protocols[name].get("adaptation"))
        updated.append(name)
    if not updated:
        raise RecordError("the evaluation shares no protocol with the bundle: nothing recorded")
    if recorded.get("protocol") in protocols:
        recorded["summary"] = protocols[recorded["protocol"]]["summary"]
    manifest["adaptation"] = (manifest.get("adaptation") or {}) | {"gate": gate}
    _adopt_alone_weight(manifest, evaluation.get("alone_mix"))
    return updated


def _adopt_alone_weight(manifest: dict[str, Any], mix: dict[str, Any] | None) -> None:
    """The bundle's alone network gets the evaluation's share of an alone reading (its
    familiar judgement must be the bundle's: the weight only scales it)."""
    alone = manifest.get("alone")
    if not alone or not mix:
        return
    familiar = alone.get("familiar")
    if bool(familiar) != bool(mix.get("familiar")) or (
        familiar and familiar.get("quantile") != mix.get("quantile")
    ):
        raise RecordError(
            "the evaluation judged familiar recordings otherwise than the bundle (--alone-"
            "everywhere or the quantile): rerun with the bundle's settings"
        )
    alone["weight"] = float(mix["weight"])
    if familiar:  # bundles whose method text held the number itself
        familiar["method"] = re.sub(
            r"weight [0-9.]+ where familiar",
            f"{WEIGHT_IN_METHOD} where familiar",
            familiar["method"],
        )


def merge(
    manifest: dict[str, Any], evaluation: dict[str, Any], rerun: str | None = None
) -> list[str]:
    """Copy `evaluation`'s (evaluation.json) variant scores into `manifest` in place; returns
    the protocols updated. Raises RecordError when the runs differ (with `rerun`: only when
    their setups differ; the run is then recorded as a rerun, see the module docstring)."""
    check_same_setup(manifest, evaluation.get("training", {}))
    bundle_gate = (manifest.get("adaptation") or {}).get("gate")
    if bundle_gate != evaluation.get("history_gate"):
        raise RecordError(
            f"the evaluation's history gate ({evaluation.get('history_gate')}) is not the "
            f"bundle's ({bundle_gate}): rerun with the bundle's --history-gate, or --adopt-gate"
        )
    recorded, protocols, shared = _shared(manifest, evaluation)
    updated = []
    for name, run in shared:
        mine = protocols[name]["per_fold"]
        theirs = [
            {"fold": f["fold"], **{k: f["scores"][k] for k in HEADLINE}} for f in run["folds"]
        ]
        if rerun is None and bundle_gate:  # the networks' own scores, and the gated ones
            gated_mine = [{k: f[k] for k in ("fold", *HEADLINE)} for f in mine]
            if [_headline(f) for f in mine] != _ungated_of_run(run) or gated_mine != theirs:
                raise RecordError(
                    f"protocol {name}: the evaluation's clean per-fold scores differ from the "
                    "bundle's: nothing recorded (--rerun NOTE records it beside them)"
                )
        if rerun is not None:
            protocols[name]["rerun"] = {
                "note": rerun,
                "summary": run["summary"],
                "per_fold": [
                    {**t, "variant_accuracy": f.get("variant_accuracy", {})}
                    for t, f in zip(theirs, run["folds"], strict=True)
                ],
            }
            updated.append(name)
            continue
        if not bundle_gate and [{k: f[k] for k in ("fold", *HEADLINE)} for f in mine] != theirs:
            raise RecordError(
                f"protocol {name}: the evaluation's clean per-fold scores differ from the "
                "bundle's, so its folds are not the bundle's: nothing recorded (--rerun NOTE "
                "records it beside them)"
            )
        variants = run["summary"].get("variant_accuracy", {})
        protocols[name]["summary"]["variant_accuracy"] = variants
        if "sessions" in run["summary"]:  # session kinds (train/sessions.py) of the same folds
            protocols[name]["summary"]["sessions"] = run["summary"]["sessions"]
            protocols[name]["sessions_drawn"] = run.get("sessions_drawn")
        for fold, theirs_fold in zip(mine, run["folds"], strict=True):
            fold["variant_accuracy"] = theirs_fold.get("variant_accuracy", {})
        updated.append(name)
    if not updated:
        raise RecordError("the evaluation shares no protocol with the bundle: nothing recorded")
    if rerun is not None:
        return updated
    if recorded.get("protocol") in updated:
        recorded["summary"] = protocols[recorded["protocol"]]["summary"]
    recorded["variants_recorded_from"] = (
        "an --eval-only run with robustness on the same folds (same setup, identical clean "
        "per-fold scores): " + ", ".join(updated)
    )
    return updated


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ser_train.record_variants", description=__doc__)
    p.add_argument("evaluation", type=Path, help="evaluation.json of a ser-train --eval-only run")
    p.add_argument("bundle", type=Path, help="the bundle folder whose manifest gets the scores")
    p.add_argument(
        "--adopt-gate",
        action="store_true",
        help="the evaluation ran the bundle's folds with --history-gate: make that gate the "
        "bundle's, with the gated scores as its headline (the networks' own kept beside)",
    )
    p.add_argument(
        "--folds-retrained",
        metavar="NOTE",
        help="with --adopt-gate: a protocol whose folds the run trained again (another machine) "
        "takes the run's folds and scores in place of its own, the earlier ones kept beside, "
        "with NOTE (e.g. the machine and date)",
    )
    p.add_argument(
        "--rerun",
        metavar="NOTE",
        help="the run retrained the folds elsewhere: record it beside the bundle's scores, "
        "with NOTE (e.g. the machine and date)",
    )
    args = p.parse_args(argv)
    manifest_path = args.bundle / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        evaluation = json.loads(args.evaluation.read_text())
        if args.folds_retrained is not None and not args.adopt_gate:
            raise RecordError("--folds-retrained goes with --adopt-gate")
        if args.adopt_gate:
            updated = adopt_gate(manifest, evaluation, args.folds_retrained)
            merge(manifest, evaluation, None)  # then its variants and sessions, as usual
        else:
            updated = merge(manifest, evaluation, args.rerun)
    except OSError as exc:
        print(
            f"record_variants: error: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr
        )
        return 2
    except json.JSONDecodeError as exc:
        print(f"record_variants: error: not JSON ({exc}): pass evaluation.json", file=sys.stderr)
        return 2
    except (RecordError, KeyError) as exc:
        print(f"record_variants: error: {exc}", file=sys.stderr)
        return 2
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    from ser_train.model_card import CARD, render

    (manifest_path.parent / CARD).write_text(render(manifest_path.parent))  # card follows
    kind = "a rerun's scores" if args.rerun else "variant scores"
    print(f"recorded {kind} of {', '.join(updated)} in {manifest_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
