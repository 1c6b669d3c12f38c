"""Score a finished bundle on a corpus, as `ser-live` would run it (LiteRT, causal per-speaker
adaptation in a random utterance order): the check of a shipped model on voices it never heard.

    python -m ser_train.score_bundle --model default --data nemo=../shared/data/nemo [--json OUT]

Scored on the labels the bundle and the corpus share (calm counted as neutral when the corpus
has no calm, as the cross-corpus protocol does); prints accuracy, UA, macro-F1, recall per label,
how often each label is predicted, and the same for each clip alone (no speaker history). Only
honest when the bundle never trained on that corpus (its manifest's "corpora" says which).
`--sessions` also scores the kinds of session of `train/sessions.py` (held moods, mostly neutral
speech, two speakers...) with the history as the bundle runs it, ungated, and each clip alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser.adaptation import GatedHistory, stream_orders
from ser.audio_io import read_audio
from ser.bundle import load_bundle, resolve_bundle_path
from ser.classifier import Classifier
from ser.encoder import ENCODER_SPEC
from ser.features import Analysis
from ser.labels import LABELS
from ser_train.corpora import CORPORA, DataError
from ser_train.dataset import Dataset, load_dataset
from ser_train.featurize import default_cache_dir
from ser_train.metrics import scores_of_probabilities
from ser_train.protocols import MERGED, SHARED_LABELS, to_label_space
from ser_train.sessions import SESSION_KINDS, draw_sessions


def cached_analyses(clf: Classifier, data: Dataset) -> Callable[[int], Analysis]:
    """Row i -> its feature views as the live feature workers compute them (the encoder, for a
    bundle with one, runs on the audio once per row)."""
    cache: dict[int, Analysis] = {}

    def analysis_of(i: int) -> Analysis:
        if i not in cache:
            mels = data.mels["clean"][i] if data.mels is not None else np.zeros((1, 40), np.float32)
            embedding = None
            if clf.has_encoder:
                audio = read_audio(data.clips[i].path, ENCODER_SPEC.sample_rate)
                embedding = clf.embed(audio, ENCODER_SPEC.sample_rate)
            cache[i] = Analysis(data.features["clean"][i], mels, embedding)
        return cache[i]

    return analysis_of


# how each utterance is read: as the bundle runs it (its history gate), the history ungated
# (`pipeline.adaptation = "always"`), and alone
READINGS = ("with_history", "ungated", "alone")


def read_stream(
    clf: Classifier, rows: Sequence[int], analysis_of: Callable[[int], Analysis]
) -> dict[str, np.ndarray]:
    """`rows` as one stream with a fresh history, in order: each of `READINGS`, (len(rows),
    n_labels) probabilities."""
    adapter = clf.adapter()
    spec = clf.bundle.history_gate
    gate = GatedHistory(spec) if spec is not None else None
    read: dict[str, list[np.ndarray]] = {name: [] for name in READINGS}
    for i in rows:
        analysis = analysis_of(i)
        history = clf.predict(adapter.push(0, analysis))
        alone = clf.predict(adapter.alone(analysis))
        read["ungated"].append(history)
        read["alone"].append(alone)
        read["with_history"].append(gate.push(0, history, alone) if gate is not None else history)
    return {name: np.array(probs).reshape(len(rows), -1) for name, probs in read.items()}


def predict_corpus(
    clf: Classifier,
    data: Dataset,
    alone: bool,
    seed: int,
    analysis_of: Callable[[int], Analysis] | None = None,
) -> np.ndarray:
    """(n, len(LABELS)) probabilities, each speaker's clips in one random order, read with
    the speaker's history and mixed by the bundle's history gate as `ser-live` does (or each
    alone). For a bundle with an encoder, the encoder runs on the audio as the live feature
    workers run it."""
    analysis_of = analysis_of or cached_analyses(clf, data)
    out = np.zeros((len(data.y), len(LABELS)), dtype=np.float32)
    for _, rows in stream_orders(data.speakers, np.random.default_rng(seed)):
        reading = read_stream(clf, np.asarray(rows).tolist(), analysis_of)
        out[rows] = reading["alone" if alone else "with_history"]
    return out


def session_table(
    clf: Classifier,
    data: Dataset,
    labels: tuple[str, ...],
    seed: int,
    analysis_of: Callable[[int], Analysis] | None = None,
) -> dict[str, dict[str, float]]:
    """Accuracy of each of `READINGS` per session kind (train/sessions.py: sessions drawn
    over every clip of the corpus, each one stream with a fresh history), in `labels`."""
    analysis_of = analysis_of or cached_analyses(clf, data)
    table: dict[str, dict[str, float]] = {}
    for kind in SESSION_KINDS:
        sessions = draw_sessions(kind, np.arange(len(data.y)), data.y, data.speakers, seed)
        if not sessions:
            continue
        reads = [read_stream(clf, session.rows.tolist(), analysis_of) for session in sessions]
        rows = np.concatenate([session.rows for session in sessions])
        table[kind] = {"utterances": float(len(rows))}
        for name in READINGS:
            y, mapped = _in_labels(data.y[rows], np.concatenate([r[name] for r in reads]), labels)
            table[kind][name] = float((mapped.argmax(1) == y).mean())
    return table


def _in_labels(
    y: np.ndarray, probs: np.ndarray, labels: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Truths and probabilities in `labels` (as they are when those are all of LABELS)."""
    return to_label_space(y, probs, labels) if labels != LABELS else (y, probs)


def score(data: Dataset, probs: np.ndarray, labels: tuple[str, ...]) -> dict[str, Any]:
    y, mapped = _in_labels(data.y, probs, labels)
    scores = scores_of_probabilities(y, mapped, labels)
    predicted = np.bincount(mapped.argmax(1), minlength=len(labels)) / len(y)
    scores["predicted_share"] = dict(zip(labels, (float(p) for p in predicted), strict=True))
    del scores["confusion"]
    return scores


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ser_train.score_bundle", description=__doc__)
    p.add_argument("--model", default="default", help="bundle folder or shipped name")
    p.add_argument("--data", required=True, help="[NAME=]PATH of one corpus")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the scores here")
    p.add_argument(
        "--sessions",
        action="store_true",
        help="also score the kinds of session (held moods, mostly neutral speech, two "
        "speakers, ...) with the history as the bundle runs it, ungated and each clip alone",
    )
    args = p.parse_args(argv)
    try:
        bundle = load_bundle(resolve_bundle_path(args.model))
        clf = Classifier(bundle)
        data = load_dataset(
            [args.data],
            speakers={},
            cache_dir=args.cache_dir or default_cache_dir(),
            workers=args.workers,
            variants=[],
            log_mel=bundle.cnn is not None,
        )
    except DataError as exc:
        print(f"score_bundle: error: {exc}", file=sys.stderr)
        return 2
    corpus = CORPORA[data.corpora[0]]
    trained_on = [c.get("name") for c in bundle.manifest.get("corpora") or [{"name": "ravdess"}]]
    labels = LABELS if corpus.labels == LABELS else SHARED_LABELS
    if not all(MERGED.get(lb, lb) in labels for lb in corpus.labels):
        labels = tuple(lb for lb in LABELS if lb in corpus.labels)
    analysis_of = cached_analyses(clf, data)  # the encoder once per clip, for every reading
    report: dict[str, Any] = {
        "bundle": bundle.name,
        "bundle_trained_on": trained_on,
        "corpus": corpus.name,
        "clips": len(data.y),
        "labels": list(labels),
        "adapted": score(data, predict_corpus(clf, data, False, args.seed, analysis_of), labels),
        "alone": score(data, predict_corpus(clf, data, True, args.seed, analysis_of), labels),
    }
    for key in ("adapted", "alone"):
        s = report[key]
        print(
            f"{bundle.name} on {corpus.name} ({key}): accuracy {s['accuracy']:.1%}, UA "
            f"{s['unweighted_accuracy']:.1%}, macro-F1 {s['macro_f1']:.1%}; predicted: "
            + ", ".join(f"{k} {v:.0%}" for k, v in s["predicted_share"].items())
        )
    if args.sessions:
        report["sessions"] = session_table(clf, data, labels, args.seed, analysis_of)
        for kind, row in report["sessions"].items():
            print(
                f"{bundle.name} on {corpus.name}, {kind} sessions ({row['utterances']:.0f} "
                f"utterances): with history {row['with_history']:.1%}, ungated "
                f"{row['ungated']:.1%}, alone {row['alone']:.1%}"
            )
    if corpus.name in trained_on:
        print(f"note: {bundle.name} was trained on {corpus.name}: this is not a held-out score")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
