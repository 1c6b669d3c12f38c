"""Presenting an evaluation: Rich table on the terminal, JSON and a confusion-matrix PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

NETWORK_NAMES = {"stats": "statistics", "cnn": "log-mel CNN"}


def fold_table(evaluation: dict[str, Any]) -> Table:
    """Per-fold and mean ± std accuracy, UA and macro-F1, then per-class recall."""
    table = Table(title=f"{evaluation['title']} ({evaluation['protocol']}, speaker-independent)")
    table.add_column("fold")
    table.add_column("test speakers")
    table.add_column("n", justify="right")
    for name in ("accuracy", "UA", "macro-F1"):
        table.add_column(name, justify="right")
    for fold in evaluation["folds"]:
        s = fold["scores"]
        table.add_row(
            str(fold["fold"]),
            ",".join(str(a).split(":", 1)[-1] for a in fold["test_speakers"]),
            str(s["n"]),
            f"{s['accuracy']:.1%}",
            f"{s['unweighted_accuracy']:.1%}",
            f"{s['macro_f1']:.1%}",
        )
    summary = evaluation["summary"]
    table.add_section()
    table.add_row(
        "mean ± std",
        "",
        str(sum(f["scores"]["n"] for f in evaluation["folds"])),
        *(
            f"{summary[key]['mean']:.1%} ± {summary[key]['std']:.1%}"
            for key in ("accuracy", "unweighted_accuracy", "macro_f1")
        ),
    )
    return table


def recall_table(evaluation: dict[str, Any]) -> Table:
    table = Table(title="Recall per class (summed confusion)")
    for label in evaluation["labels"]:
        table.add_column(label, justify="right")
    recall = evaluation["pooled"]["recall"]
    table.add_row(*(f"{recall[label]:.0%}" for label in evaluation["labels"]))
    return table


def variant_table(evaluation: dict[str, Any]) -> Table:
    table = Table(title="Accuracy as users meet the model (same folds, same models)")
    table.add_column("test audio")
    table.add_column("accuracy", justify="right")
    table.add_column("change", justify="right")
    clean = evaluation["summary"]["accuracy"]["mean"]
    table.add_row("clean clips", f"{clean:.1%}", "")
    names = {
        "vad": "cut by the live VAD segmenter",
        "vadview": "the same, read as live reads it during the hangover",
        "snr20": "white noise, 20 dB SNR",
        "snr10": "white noise, 10 dB SNR",
        "reverb500": "simulated room, RT60 500 ms",
        "telephone": "telephone band, 8 kHz mu-law",
        "cheapmic": "cheap microphone (random EQ)",
        "clipped": "clipped (12 dB too much gain)",
        "quiet": "low level (peak -40 dBFS)",
        "first_utterance": "each clip alone (no speaker history)",
        "first_adapted": "each clip alone, through the speaker-adapted networks",
    }
    for key, value in evaluation["summary"]["variant_accuracy"].items():
        table.add_row(
            names.get(key, key),
            f"{value['mean']:.1%} ± {value['std']:.1%}",
            f"{value['mean'] - clean:+.1%}",
        )
    return table


SESSION_TITLES = {
    "balanced": "balanced: every clip of a speaker, random order",
    "held": "held: one emotion per session",
    "neutral-dominant": "neutral-dominant: ~70 % neutral/calm",
    "switch": "switch: two speakers take turns, no reset",
    "first": "first: each clip alone (no history)",
    "short": "short: sessions of 3 utterances",
}


def session_table(evaluation: dict[str, Any]) -> Table:
    """Accuracy and UA per session kind (train/sessions.py), and the change history makes
    against the same utterances each alone."""
    table = Table(title=f"Session kinds ({evaluation['protocol']}, same folds, same models)")
    for column in ("session kind", "utterances", "accuracy", "UA", "alone", "history"):
        table.add_column(column, justify="left" if column == "session kind" else "right")
    per_fold = evaluation["folds"]
    for kind, value in evaluation["summary"]["sessions"].items():
        n = sum(f["sessions"][kind]["utterances"] for f in per_fold if kind in f["sessions"])
        table.add_row(
            SESSION_TITLES.get(kind, kind),
            str(n),
            f"{value['accuracy']['mean']:.1%}",
            f"{value['unweighted_accuracy']['mean']:.1%}",
            f"{value['alone']['mean']:.1%}",
            f"{value['change']['mean']:+.1%}",
        )
    return table


def print_evaluation(console: Console, evaluation: dict[str, Any]) -> None:
    console.print(fold_table(evaluation))
    console.print(
        f"{evaluation['protocol']}: {evaluation['folds_evaluated']} folds in "
        f"{evaluation['seconds']:.0f} s ({evaluation['folds_from_cache']} from the fold cache), "
        f"trained on {', '.join(evaluation['train_corpora'])}"
    )
    console.print(recall_table(evaluation))
    if evaluation["summary"]["variant_accuracy"]:
        console.print(variant_table(evaluation))
    if evaluation["summary"].get("sessions"):
        console.print(session_table(evaluation))
    components = evaluation["summary"].get("component_accuracy")
    if components:
        console.print(
            "each network alone on clean clips: "
            + ", ".join(
                f"{NETWORK_NAMES.get(k, k)} {v['mean']:.1%} ± {v['std']:.1%}"
                for k, v in components.items()
            )
        )


def combination_table(protocol: str, rows: list[dict[str, Any]]) -> Table:
    """`train.evaluate.compare_combinations` as a table."""
    table = Table(
        title=f"Combining the networks ({protocol}, the same out-of-fold predictions; ECE pooled, "
        "each fold calibrated with the other folds' temperature)"
    )
    for column in ("combination", "accuracy", "T", "ECE before", "ECE after"):
        table.add_column(column, justify="left" if column == "combination" else "right")
    for row in rows:
        after = row["ece_after_pooled"]
        table.add_row(
            row["combination"],
            f"{row['accuracy']:.1%}",
            f"{row['temperature']:.2f}",
            f"{row['ece_before_pooled']:.3f}",
            f"{after:.3f}" if after is not None else "-",
        )
    return table


def gate_sweep_table(rows: list[Any], chosen: Any) -> Table:
    """Session accuracy (and the change against the same utterances alone) per protocol and
    kind, one column per `train.gate_sweep.Scored` in `rows`."""
    table = Table(title="History gate settings: session accuracy (history - alone), as live")
    table.add_column("protocol / session kind")
    for row in rows:
        kind = "chosen" if row is chosen else "current"
        table.add_column(f"{kind} {row.setting.label()}", justify="right")
    for protocol, kinds in rows[0].cells.items():
        for kind in kinds:
            table.add_row(
                f"{protocol} / {kind}",
                *(
                    f"{row.cells[protocol][kind][0]:.1%} ({row.cells[protocol][kind][1]:+.1%})"
                    for row in rows
                ),
            )
    return table


def print_calibration(console: Console, cal: dict[str, Any]) -> None:
    # "after" only where the temperature was applied (else T = 1: the same numbers)
    after = (
        cal["ece_after"]
        if cal.get("ece_fitted_pooled") is None or cal["temperature"] != 1.0
        else None
    )
    console.print(
        f"calibration: temperature {cal['temperature']:.2f}; expected calibration error "
        f"{cal['ece_before']['mean']:.3f} before"
        + (f", {after['mean']:.3f} after (T fitted on the other folds)" if after else "")
        + "; pooled over all folds "
        + f"{cal['ece_before_pooled']:.3f}"
        + (f" -> {cal['ece_after_pooled']:.3f}" if after else "")
        + (
            f" (a perfectly calibrated model would score {cal['ece_floor']['mean']:.3f} per "
            f"fold, {cal['ece_floor_pooled']:.3f} pooled, from sample size alone)"
            if cal.get("ece_floor")
            else ""
        )
    )
    fitted = cal.get("ece_fitted_pooled")
    if cal["temperature"] == 1.0 and fitted is not None:
        console.print(
            f"temperature not applied: the fitted T {cal['temperature_fitted']:.2f} raised the "
            f"pooled held-out ECE to {fitted:.3f}"
        )
    uncertainty = cal.get("uncertainty")
    if uncertainty:
        console.print(
            f"uncertain below confidence {uncertainty['min_confidence']:.2f} (ser-live's default "
            f"min_confidence): marks {uncertainty['marked_share']:.1%} of held-out results, "
            f"right {uncertainty['marked_accuracy']:.1%} of the time; the rest "
            f"{uncertainty['unmarked_accuracy']:.1%}"
        )


def plot_confusion(confusion: list[list[int]], labels: list[str], title: str, path: Path) -> None:
    """Write a row-normalised confusion matrix with counts as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(confusion, dtype=np.float64)
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    fig, ax = plt.subplots(figsize=(7.5, 6.5), dpi=110)
    image = ax.imshow(rows, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{int(counts[i, j])}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if rows[i, j] > 0.5 else "black",
            )
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of true class")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
