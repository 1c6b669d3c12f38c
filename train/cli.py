"""`ser-train`: featurize RAVDESS, evaluate speaker-independently, train and write a bundle."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from streamer.bundle import FORMAT_VERSION, KERAS_FILE, MANIFEST, TFLITE_FILE
from streamer.features import FEATURE_SPEC
from streamer.labels import LABELS
from train.data import Clip, DataError, scan
from train.featurize import default_cache_dir, featurize_all
from train.folds import PROTOCOL_NAME, TEST_ACTORS
from train.metrics import confusion_matrix, mean_std, scores_from_confusion
from train.report import plot_confusion, print_evaluation

logger = logging.getLogger("ser.train")

PACKAGES = ("numpy", "soundfile", "soxr", "tensorflow", "keras", "ai-edge-litert")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="ser-train",
        description="Train and honestly evaluate a speech emotion model on RAVDESS.",
    )
    p.add_argument("--data", type=Path, required=True, help="RAVDESS folder (any layout)")
    p.add_argument("--out", type=Path, default=Path("models/trained"), help="bundle folder")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 30)")
    p.add_argument("--seed", type=int, default=0, help="random seed (recorded in the bundle)")
    p.add_argument(
        "--actors",
        type=str,
        default=None,
        help="use only these actors, e.g. '1,4,10,11' (for quick runs; folds without "
        "held-out actors are skipped)",
    )
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="feature processes")
    p.add_argument("--cache-dir", type=Path, default=None, help="feature cache folder")
    p.add_argument("--no-cache", action="store_true", help="do not read or write cached features")
    p.add_argument("--skip-eval", action="store_true", help="train the final model only")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def _parse_actors(text: str | None) -> set[int] | None:
    if text is None:
        return None
    try:
        actors = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        raise DataError(f"--actors {text!r}: expected comma-separated numbers 1-24") from None
    if not actors or not all(1 <= a <= 24 for a in actors):
        raise DataError(f"--actors {text!r}: expected comma-separated numbers 1-24")
    return actors


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _fingerprint(clips: Sequence[Clip], digests: Sequence[str]) -> str:
    h = hashlib.sha256()
    for clip, digest in sorted(zip(clips, digests, strict=True), key=lambda x: x[0].path.stem):
        h.update(f"{clip.path.stem}:{digest}\n".encode())
    return h.hexdigest()


def _package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def evaluate(
    x: np.ndarray,
    y: np.ndarray,
    actors: np.ndarray,
    config: Any,
    console: Console,
) -> dict[str, Any]:
    """Train and test once per actor fold that has both sides present."""
    from train.model import fit, predict

    folds = [(i, fa) for i, fa in enumerate(TEST_ACTORS) if np.isin(actors, fa).any()]
    folds = [(i, fa) for i, fa in folds if (~np.isin(actors, fa)).any()]
    if not folds:
        raise DataError("no fold has both training and held-out actors; use more actors")
    n_labels = len(LABELS)
    results: list[dict[str, Any]] = []
    pooled = np.zeros((n_labels, n_labels), dtype=np.int64)
    with _progress(console) as progress:
        task = progress.add_task("evaluating folds (epochs)", total=len(folds) * config.epochs)
        for index, fold_actors in folds:
            test = np.isin(actors, fold_actors)
            if set(actors[~test]) & set(actors[test]):
                raise AssertionError("an actor is on both sides of a fold")
            model = fit(
                x[~test], y[~test], n_labels, config, on_epoch=lambda _e: progress.advance(task)
            )
            pred = predict(model, x[test]).argmax(axis=1)
            matrix = confusion_matrix(y[test], pred, n_labels)
            pooled += matrix
            scores = scores_from_confusion(matrix)
            results.append(
                {
                    "fold": index + 1,
                    "test_actors": list(fold_actors),
                    "train_actors": sorted(int(a) for a in set(actors[~test])),
                    "scores": scores.to_dict(LABELS),
                }
            )
    summary: dict[str, Any] = {
        key: mean_std([r["scores"][key] for r in results])
        for key in ("accuracy", "unweighted_accuracy", "macro_f1")
    }
    summary["recall"] = {
        label: mean_std([r["scores"]["recall"][label] for r in results]) for label in LABELS
    }
    return {
        "protocol": PROTOCOL_NAME,
        "folds_evaluated": len(results),
        "folds_total": len(TEST_ACTORS),
        "labels": list(LABELS),
        "folds": results,
        "summary": summary,
        "pooled": scores_from_confusion(pooled).to_dict(LABELS),
    }


def _manifest_evaluation(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    """The evaluation as the manifest records it: protocol, summary, per-fold headline scores."""
    if evaluation is None:
        return None
    headline = ("accuracy", "unweighted_accuracy", "macro_f1")
    return {
        **{k: evaluation[k] for k in ("protocol", "folds_evaluated", "folds_total", "summary")},
        "per_fold": [
            {"fold": f["fold"], "test_actors": f["test_actors"]}
            | {k: f["scores"][k] for k in headline}
            for f in evaluation["folds"]
        ],
    }


def run(args: argparse.Namespace, console: Console) -> int:
    started = time.perf_counter()
    wanted = _parse_actors(args.actors)
    found = scan(args.data)
    clips = [c for c in found.clips if wanted is None or c.actor in wanted]
    if not clips:
        raise DataError(f"none of the actors {sorted(wanted or [])} found under {args.data}")
    console.print(
        f"found {len(clips)} RAVDESS speech clips under {args.data} "
        f"({found.duplicates_dropped} duplicates dropped, {len(found.not_ravdess)} other audio "
        f"files ignored, {len(found.not_speech)} song/video files ignored)"
    )
    cache_dir = None if args.no_cache else (args.cache_dir or default_cache_dir())

    t0 = time.perf_counter()
    with _progress(console) as progress:
        task = progress.add_task("extracting features", total=len(clips))
        extracted = featurize_all(
            [c.path for c in clips],
            cache_dir,
            max(1, args.workers),
            on_done=lambda _item: progress.advance(task),
        )
    bad = [e for e in extracted if e.vector is None]
    if bad:
        console.print(
            f"[yellow]skipped {len(bad)} unreadable or empty files[/], e.g. "
            + "; ".join(str(e.error) for e in bad[:3])
        )
    keep = [(c, e) for c, e in zip(clips, extracted, strict=True) if e.vector is not None]
    if not keep:
        raise DataError(f"no usable audio under {args.data}: every RAVDESS file was unreadable")
    n_cached = sum(e.cached for _, e in keep)
    extraction_s = time.perf_counter() - t0
    console.print(
        f"features: {len(keep)} clips, {n_cached} from cache, {extraction_s:.1f} s "
        f"(spec {FEATURE_SPEC.name} v{FEATURE_SPEC.version}, dim {FEATURE_SPEC.dim})"
    )
    x = np.stack([e.vector for _, e in keep if e.vector is not None]).astype(np.float32)
    y = np.array([LABELS.index(c.label) for c, _ in keep], dtype=np.int64)
    actors = np.array([c.actor for c, _ in keep], dtype=np.int64)

    from train.model import TrainConfig, fit, to_tflite, training_device

    config = TrainConfig(seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    device = training_device()
    console.print(f"training on {device}")
    args.out.mkdir(parents=True, exist_ok=True)

    t1 = time.perf_counter()
    evaluation: dict[str, Any] | None = None
    if not args.skip_eval:
        evaluation = evaluate(x, y, actors, config, console)
        print_evaluation(console, evaluation)
        (args.out / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n")
        acc = evaluation["summary"]["accuracy"]
        plot_confusion(
            evaluation["pooled"]["confusion"],
            list(LABELS),
            f"{PROTOCOL_NAME}\naccuracy {acc['mean']:.1%} ± {acc['std']:.1%} "
            f"over {evaluation['folds_evaluated']} folds",
            args.out / "confusion.png",
        )
    evaluation_s = time.perf_counter() - t1

    t2 = time.perf_counter()
    with _progress(console) as progress:
        task = progress.add_task("final model on all actors (epochs)", total=config.epochs)
        model = fit(x, y, len(LABELS), config, on_epoch=lambda _e: progress.advance(task))
    model.save(args.out / KERAS_FILE)
    (args.out / TFLITE_FILE).write_bytes(to_tflite(model))
    final_s = time.perf_counter() - t2

    manifest = {
        "format_version": FORMAT_VERSION,
        "name": args.out.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "labels": list(LABELS),
        "sample_rate": FEATURE_SPEC.sample_rate,
        "feature_spec": FEATURE_SPEC.to_dict(),
        "model": {
            "architecture": "standardize -> dropout -> dense(relu) -> dropout -> softmax",
            "keras": KERAS_FILE,
            "tflite": TFLITE_FILE,
            "input_dim": FEATURE_SPEC.dim,
            "parameters": int(model.count_params()),
        },
        "training": {
            "config": config.to_dict(),
            "device": device,
            "n_clips": len(keep),
            "actors": sorted(int(a) for a in set(actors)),
            "duplicates_dropped": found.duplicates_dropped,
            "unreadable_skipped": len(bad),
            "data_fingerprint_sha256": _fingerprint(
                [c for c, _ in keep], [e.content_sha256 for _, e in keep]
            ),
            "seconds": {
                "features": round(extraction_s, 1),
                "evaluation": round(evaluation_s, 1),
                "final_model": round(final_s, 1),
                "total": round(time.perf_counter() - started, 1),
            },
        },
        "evaluation": _manifest_evaluation(evaluation),
        "packages": _package_versions(),
    }
    (args.out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    console.print(
        f"wrote bundle {args.out} in {time.perf_counter() - started:.0f} s "
        f"(features {extraction_s:.0f} s, evaluation {evaluation_s:.0f} s, final {final_s:.0f} s)"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    console = Console(stderr=False)
    try:
        return run(args, console)
    except DataError as exc:
        print(f"ser-train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ser-train: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
