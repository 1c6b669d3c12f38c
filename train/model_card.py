"""A bundle's model card (README.md beside its manifest), generated from the manifest so the two
cannot disagree: intended and out-of-scope use, data and licences, results per protocol and
session kind, calibration, the speech detector, measured failure modes, costs, how to reproduce.

    python -m ser_train.model_card BUNDLE_DIR [BUNDLE_DIR ...] [--check]

--check: exit 1 when a card differs from what its manifest says (the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CARD = "README.md"

# What the manifest cannot know: how each shipped bundle is rebuilt and what it costs to run
# (measured: BENCHMARKS.md, `benchmarks/live.py` and `benchmarks/serve.py`).
REPRODUCE = {
    "default": "make train  # about 1 h 10 min on 2 CPU cores (Makefile)",
    "small": "make train-small  # about 1 h 40 min on 2 CPU cores (Makefile)",
}
COSTS = {
    "default": "`ser-live` 220 MB RSS in all; the encoder (3 of Whisper-base's 6 blocks) 5 ms "
    "of one core per second of speech with AVX-512 VNNI; `ser-serve` 150 real-time streams per "
    "2 cores at p95 <= 500 ms, not 200 (BENCHMARKS.md)",
    "small": "`ser-live` 156 MB RSS in all; about 1.7 ms per utterance for the networks; "
    "`ser-serve` at least 200 real-time streams per 2 cores (BENCHMARKS.md)",
}
LICENCES = {
    "ravdess": "RAVDESS (Livingstone & Russo 2018), CC BY-NC-SA 4.0",
    "nemo": "nEMO (Christop 2024), CC BY-NC-SA 4.0",
}
SESSION_ORDER = ("balanced", "held", "neutral-dominant", "switch", "first", "short")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _mean(summary: dict[str, Any], key: str) -> float | None:
    value = summary.get(key)
    return float(value["mean"]) if isinstance(value, dict) and "mean" in value else None


def _corpora(manifest: dict[str, Any]) -> list[str]:
    if manifest.get("corpora"):
        return [c["name"] for c in manifest["corpora"]]
    speakers = (manifest.get("training") or {}).get("speakers") or []
    found = sorted({s.split(":", 1)[0] for s in speakers}) or ["ravdess"]
    return found


def _networks(manifest: dict[str, Any], needs_statistics: bool) -> str:
    """One line: which networks read what (the costs of `ser-serve` follow from it);
    `needs_statistics`: `Bundle.needs_statistics` of the bundle."""
    reads = []
    if manifest.get("model"):
        reads.append("a network over 696 utterance statistics (`model.tflite`)")
    if manifest.get("cnn"):
        reads.append("a log-mel CNN (`cnn.tflite`)")
    encoder = manifest.get("encoder")
    if encoder:
        layers = ",".join(str(n) for n in encoder.get("layers", []))
        reads.append(f"a head over the encoder's pooled layers {layers} (`encoder_head.tflite`)")
    rule = {"geometric": "their geometric mean"}.get(manifest.get("combine", "mean"), "their mean")
    text = "Networks: " + "; ".join(reads) + (f", combined by {rule}" if len(reads) > 1 else "")
    if not needs_statistics:
        detector = ""
        if manifest.get("speech"):
            detector = " (the speech detector reads the embedding too)"
        text += f"; nothing reads utterance statistics{detector}, so none are computed live"
    return text + "."


def _needs_statistics(path: Path, manifest: dict[str, Any]) -> bool:
    """Whether the live side computes utterance statistics for this bundle (ser.bundle)."""
    from ser.bundle import Bundle

    bundle = Bundle(
        path=path,
        name=str(manifest["name"]),
        labels=tuple(manifest["labels"]),
        sample_rate=int(manifest.get("sample_rate", 16_000)),
        manifest=manifest,
    )
    return bundle.needs_statistics


def _size_mb(bundle: Path) -> float:
    return sum(p.stat().st_size for p in bundle.glob("*.tflite")) / 1e6


def _protocols(manifest: dict[str, Any]) -> dict[str, Any]:
    evaluation = manifest.get("evaluation") or {}
    if evaluation.get("protocols"):
        return dict(evaluation["protocols"])
    return {evaluation.get("protocol", "ravdess"): evaluation}


def render(bundle: Path) -> str:
    manifest = json.loads((bundle / "manifest.json").read_text())
    name = manifest["name"]
    corpora = _corpora(manifest)
    protocols = _protocols(manifest)
    lines = [
        f"# Model card: `{name}`",
        "",
        f"Generated from `manifest.json` by `python -m ser_train.model_card models/{name}`; the "
        "test suite fails when the two disagree. Created "
        f"{manifest.get('created', '?')}; {_size_mb(bundle):.1f} MB of LiteRT models; "
        f"labels: {', '.join(manifest['labels'])}, and `not_speech` from its speech detector.",
        "",
        "## Intended use",
        "",
        "Recognising which of eight acted emotion categories a voice carries, utterance by "
        "utterance, in real time on a CPU: home automation, research set-ups and call-centre "
        "dashboards where a person reads the results as a hint, with their `confidence` and "
        "`uncertain` flag. Best on acted or clearly expressed speech; accuracy falls on natural "
        "speech, other languages and other microphones (below).",
        "",
        "## Out of scope",
        "",
        "Decisions about people (hiring, credit, policing, health, lie or stress detection); "
        "anything that needs more than what acted corpora teach; children's voices; commercial "
        "use (the training data is licensed non-commercial).",
        "",
        "## Data and licences",
        "",
        *[f"- {LICENCES.get(c, c)}" for c in corpora],
        "",
        _networks(manifest, _needs_statistics(bundle, manifest)),
        "",
        "Speakers in training: "
        f"{len((manifest.get('training') or {}).get('speakers') or []) or 'all'}. The weights "
        "inherit the corpora's non-commercial licence; the Whisper-base encoder of `default` is "
        "OpenAI's (MIT).",
        "",
        "## Results",
        "",
        "Speaker-independent: no speaker is on both sides of any fold.",
        "",
        "| protocol | folds | accuracy | unweighted accuracy | macro-F1 | no speaker history |",
        "|---|---|---|---|---|---|",
    ]
    for key, protocol in protocols.items():
        summary = protocol.get("summary") or {}
        first = (summary.get("variant_accuracy") or {}).get("first_utterance")
        acc = summary.get("accuracy") or {}
        spread = (
            f" ± {acc['std']:.1%}"
            if "std" in acc and protocol.get("folds_evaluated", 1) > 1
            else ""
        )
        lines.append(
            f"| {protocol.get('title', key)} | {protocol.get('folds_evaluated', '?')} of "
            f"{protocol.get('folds_total', '?')} | {_pct(_mean(summary, 'accuracy'))}{spread} | "
            f"{_pct(_mean(summary, 'unweighted_accuracy'))} | {_pct(_mean(summary, 'macro_f1'))} "
            f"| {_pct(first['mean'] if isinstance(first, dict) else first)} |"
        )
    calibrated = [
        p["readings_calibrated"] for p in protocols.values() if "readings_calibrated" in p
    ]
    if calibrated:
        lines += [
            "",
            f"Scored as `ser-live` reads it: each reading calibrated (temperature "
            f"{float(calibrated[0]['temperature']):.2f}, the alone network's "
            f"{float(calibrated[0]['alone_temperature']):.2f}) before the alone mix and the "
            "history gate.",
        ]
    retrained: dict[str, list[str]] = {}  # note -> "protocol (its earlier per-fold scores)"
    for key, protocol in protocols.items():
        if record := protocol.get("folds_retrained"):
            before = ", ".join(_pct(f["accuracy"]) for f in record.get("per_fold_before", []))
            retrained.setdefault(str(record.get("note", "")), []).append(
                f"{protocol.get('title', key)} (the networks' own accuracy per fold before: "
                f"{before})"
            )
    for note, names in retrained.items():
        lines += [
            "",
            f"Folds trained again since the bundle was made ({note}): {'; '.join(names)}.",
        ]
    sessions = {
        k: p["summary"]["sessions"]
        for k, p in protocols.items()
        if p.get("summary", {}).get("sessions")
    }
    if sessions:
        lines += [
            "",
            "### By kind of session",
            "",
            "Each held-out speaker's utterances drawn as one stream with causal speaker "
            "adaptation (`train/sessions.py`): *balanced* holds every emotion equally (how "
            "acted corpora are recorded), *held* one emotion throughout, *neutral-dominant* "
            "about 70 % neutral/calm, *switch* two speakers taking turns, *first* an utterance "
            "with no history, *short* 3 utterances. Accuracy (and the same utterances alone):",
            "",
            "| session kind | " + " | ".join(protocols[k].get("title", k) for k in sessions) + " |",
            "|---|" + "---|" * len(sessions),
        ]
        for kind in SESSION_ORDER:
            cells = []
            for table in sessions.values():
                row = table.get(kind)
                cells.append(
                    "-"
                    if row is None
                    else f"{_pct(_mean(row, 'accuracy'))} ({_pct(_mean(row, 'alone'))})"
                )
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += ["", "## Calibration", ""]
    calibration = manifest.get("calibration") or {}
    uncertainty = calibration.get("uncertainty") or {}
    fitted = calibration.get("ece_fitted_pooled")
    if "temperature" in calibration and calibration["temperature"] == 1.0 and fitted is not None:
        lines.append(
            f"Temperature scaling not applied: the T fitted on out-of-fold predictions "
            f"({calibration['temperature_fitted']:.2f}) raised the pooled held-out expected "
            f"calibration error from {calibration.get('ece_before_pooled', 0):.3f} to "
            f"{fitted:.3f}, so the probabilities are the networks' own."
        )
    elif "temperature" in calibration:
        lines.append(
            f"Temperature {calibration['temperature']:.2f} fitted on out-of-fold predictions; "
            f"pooled expected calibration error {calibration.get('ece_before_pooled', 0):.3f} "
            f"before, {calibration.get('ece_after_pooled', 0):.3f} after."
        )
    if uncertainty:
        lines.append(
            f"Results below confidence {uncertainty['min_confidence']:.2f} are marked "
            f"`uncertain` ({uncertainty['marked_share']:.0%} of held-out results, right "
            f"{uncertainty['marked_accuracy']:.0%} of the time; the rest "
            f"{uncertainty['unmarked_accuracy']:.0%})."
        )
    speech = manifest.get("speech") or {}
    evaluation = speech.get("evaluation") or {}
    if evaluation:
        worst = max(
            (rate, f"{corpus} {variant}")
            for corpus, rates in evaluation.get("speech_rejected", {}).items()
            for variant, rate in rates.items()
        )
        lines += [
            "",
            "## Speech detector",
            "",
            f"Reads {speech.get('input', 'the unadapted statistics')}. "
            f"Threshold {speech.get('threshold', 0.5)}. Held-out speech refused as not speech: "
            f"at most {worst[0]:.1%} in any condition ({worst[1]}); generated non-speech "
            f"accepted: {_pct(evaluation.get('nonspeech_accepted'))} (kinds left out of its "
            f"training: {_pct(evaluation.get('nonspeech_accepted_kind_unseen_mean'))}).",
        ]
    lines += ["", "## Measured failure modes", ""]
    ravdess = protocols.get("ravdess", {}).get("summary") or {}
    recall = ravdess.get("recall") or {}
    if recall:
        weakest = sorted(recall.items(), key=lambda kv: kv[1]["mean"])[:2]
        lines.append(
            "- Weakest classes on RAVDESS's folds: "
            + ", ".join(f"{label} {value['mean']:.0%} recall" for label, value in weakest)
            + "."
        )
    cross = [_mean(p["summary"], "accuracy") for k, p in protocols.items() if "-to-" in k]
    same = _mean(ravdess, "accuracy")
    if same is not None and cross and None not in cross:
        lowest = min(c for c in cross if c is not None)
        lines.append(
            f"- A corpus it never heard (another language, studio and actors): {lowest:.1%}, "
            f"{(same - lowest) * 100:.0f} points below RAVDESS's folds."
        )
    gate = (manifest.get("adaptation") or {}).get("gate")
    for key, table in sessions.items():
        held = table.get("held")
        if held is None:
            continue
        change = _mean(held, "change") or 0.0
        advice = (
            "use `--no-adaptation` for held moods"
            if change < -0.03
            else "the history gate keeps a held mood"
            if gate
            else "speaker history does not erase a held mood here"
        )
        lines.append(
            f"- {protocols[key].get('title', key)}: a session holding one emotion scores "
            f"{_pct(_mean(held, 'accuracy'))} with speaker history against "
            f"{_pct(_mean(held, 'alone'))} for the same utterances alone: {advice}."
        )
    if gate:
        lines.append(
            f"- History gate (low {gate['low']}, high {gate['high']}, warm-up {gate['warmup']}): "
            "sessions that act every emotion (balanced) gain less from history than without it "
            "(the networks' own scores are under each protocol's `ungated_accuracy`)."
        )
    alone = manifest.get("alone")
    if alone:
        adapted = (ravdess.get("variant_accuracy") or {}).get("first_adapted")
        familiar = alone.get("familiar")
        weight = float(alone.get("weight", 1.0))
        who = (
            "where the recording is familiar (like the training recordings; test clips found "
            "familiar: "
            + ", ".join(
                f"{name} {_pct(p['summary']['alone_share']['mean'])}"
                for name, p in protocols.items()
                if isinstance((p.get("summary") or {}).get("alone_share"), dict)
            )
            + f"), {weight:g} of it by a network of its own"
            if familiar
            else f"{weight:g} of it by a network of its own"
            if weight < 1
            else "by a network of its own"
        )
        lines.append(
            "- An utterance with no history (a stream's first, `--no-adaptation`, and the "
            f"reading the history gate falls back to) is read, {who}, trained "
            f"on the unadapted {alone.get('reads', 'statistics')} (`alone.tflite`, "
            f"temperature {float(alone.get('temperature', 1.0)):.2f})"
            + ("; elsewhere by the speaker-adapted networks alone" if familiar else "")
            + (
                f"; the speaker-adapted networks scored {_pct(adapted['mean'])} on the same "
                "RAVDESS clips alone."
                if isinstance(adapted, dict)
                else "."
            )
        )
    if not sessions:
        lines.append(
            "- Session kinds (held moods, mostly neutral speech) are not measured for this "
            "bundle: expect speaker adaptation to cost accuracy where one mood is held."
        )
    lines += [
        "",
        "## Costs",
        "",
        COSTS.get(name, "see BENCHMARKS.md"),
        "",
        "## How to reproduce",
        "",
        "```sh",
        REPRODUCE.get(name, f"ser-train ... --out models/{name}  # see manifest.json's training"),
        "```",
        "",
        "Numbers retrained on another CPU differ by a point or two (TensorFlow's CPU kernels are "
        "not bit-identical); `manifest.json` records every setting and package version.",
    ]
    return "\n".join(line for line in lines if line is not None).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ser_train.model_card", description=__doc__)
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    stale = []
    for bundle in args.bundles:
        text = render(bundle)
        card = bundle / CARD
        if args.check:
            if not card.is_file() or card.read_text() != text:
                stale.append(str(card))
        else:
            card.write_text(text)
    if stale:
        print(
            f"model cards differ from their manifests: {', '.join(stale)}; run "
            "python -m ser_train.model_card " + " ".join(str(b) for b in args.bundles),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
