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
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from streamer.adaptation import AdaptationPrior, adapt_in_order
from streamer.bundle import (
    CNN_KERAS_FILE,
    CNN_TFLITE_FILE,
    FORMAT_VERSION,
    KERAS_FILE,
    MANIFEST,
    TFLITE_FILE,
)
from streamer.features import FEATURE_SPEC
from streamer.labels import LABELS
from streamer.native_log import NativeStderrFilter
from streamer.scoring import apply_temperature
from train.calibration import (
    ece_sampling_floor,
    expected_calibration_error,
    fit_temperature,
    uncertainty_threshold,
)
from train.cnn import CnnConfig, Mels, TrainedCnn
from train.data import Clip, DataError, scan
from train.featurize import default_cache_dir, featurize_all
from train.folds import PROTOCOL_NAME, TEST_ACTORS
from train.metrics import mean_std, scores_of_probabilities
from train.report import plot_confusion, print_evaluation
from train.robustness import TEST_VARIANTS, check_variant

logger = logging.getLogger("ser.train")

PACKAGES = ("numpy", "soundfile", "soxr", "tensorflow", "keras", "ai-edge-litert")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="ser-train",
        description="Train and honestly evaluate a speech emotion model on RAVDESS.",
    )
    p.add_argument("--data", type=Path, required=True, help="RAVDESS folder (any layout)")
    p.add_argument("--out", type=Path, default=Path("models/trained"), help="bundle folder")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 12)")
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
    p.add_argument(
        "--eval-only",
        action="store_true",
        help="evaluate and write evaluation.json, but train no final model (for experiments)",
    )
    p.add_argument(
        "--no-adaptation",
        action="store_true",
        help="no per-speaker feature adaptation (see streamer/adaptation.py)",
    )
    p.add_argument(
        "--augment",
        type=lambda text: [check_variant(v) for v in text.split(",") if v],
        default=["snr15", "snr30", "speed90", "speed110"],
        help="copies of the training audio added to training (default "
        "snr15,snr30,speed90,speed110): snrNN white noise at NN dB SNR, speedNNN played at NNN "
        "%% speed, reverbNNN a simulated room with RT60 NNN ms; '' for none",
    )
    p.add_argument(
        "--hidden-units", type=int, default=None, help="hidden layer width; 0: linear softmax"
    )
    p.add_argument("--label-smoothing", type=float, default=None, help="e.g. 0.1")
    p.add_argument(
        "--mixup", type=float, default=None, help="mixup alpha, e.g. 0.2 (default 0: off)"
    )
    p.add_argument("--ensemble", type=int, default=None, help="models averaged (default 3)")
    p.add_argument(
        "--ensemble-split",
        choices=("seeds", "speakers"),
        default=None,
        help="members differ by seed only (default), or each leaves out a group of speakers",
    )
    p.add_argument(
        "--cnn",
        action="store_true",
        help="also train the log-mel CNN and average it with the statistics model (the shipped "
        "models/default; about 1.5 h more on 2 CPU cores)",
    )
    p.add_argument("--cnn-epochs", type=int, default=None, help="CNN epochs (default 80)")
    p.add_argument(
        "--no-robustness",
        action="store_true",
        help="skip evaluating on VAD-cut and noisy (20/10 dB SNR) test audio",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logging, and TensorFlow's own start-up and export messages",
    )
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


N_ORDERS = 3  # random utterance orders per training speaker when simulating adaptation


def adapted_training_set(
    features: dict[str, np.ndarray],
    y: np.ndarray,
    actors: np.ndarray,
    prior: AdaptationPrior | None,
    seed: int,
    *,
    augment: tuple[str, ...] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training features as the model will meet them live: adapted causally per speaker, the
    clean clips in N_ORDERS random orders, each `augment` variant (noisy, reverberant or
    speed-changed copies of the training audio) in one more (prior None: unadapted, once each).
    Returns features, labels and the speaker (actor) of each row."""
    sets = [("clean", r) for r in range(N_ORDERS if prior is not None else 1)]
    sets += [(variant, N_ORDERS + k) for k, variant in enumerate(augment)]
    copies = [
        features[variant]
        if prior is None
        else adapt_in_order(features[variant], actors, prior, np.random.default_rng(seed + r))
        for variant, r in sets
    ]
    return np.concatenate(copies), np.tile(y, len(sets)), np.tile(actors, len(sets))


def adapted_test_set(
    x: np.ndarray, actors: np.ndarray, prior: AdaptationPrior | None, seed: int
) -> np.ndarray:
    """Test features adapted per held-out speaker in one random order (causal, as live)."""
    if prior is None:
        return x
    return adapt_in_order(x, actors, prior, np.random.default_rng(seed))


def _scores_of(y: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    return scores_of_probabilities(y, probs, LABELS)


def _rows(seqs: Mels, keep: np.ndarray) -> Mels:
    """The sequences where the boolean mask `keep` is true."""
    return [m for m, k in zip(seqs, keep, strict=True) if k]


@dataclass(frozen=True)
class FoldModels:
    """One fold's trained networks and the statistics model's adaptation prior."""

    stats: Any
    prior: AdaptationPrior | None
    cnn: TrainedCnn | None = None
    frames: int = 0

    def parts(
        self, features: np.ndarray, mels: Mels | None, streams: np.ndarray, order: int
    ) -> list[np.ndarray]:
        """Each network's (n, n_labels) probabilities for test clips, adapted per stream in
        the order rng(order) draws: [statistics] or [statistics, CNN]."""
        from train.cnn import predict_cnn
        from train.model import predict

        parts = [predict(self.stats, adapted_test_set(features, streams, self.prior, order))]
        if self.cnn is not None and mels is not None:
            parts.append(predict_cnn(self.cnn, mels, streams, order, self.frames))
        return parts

    def probs(
        self, features: np.ndarray, mels: Mels | None, streams: np.ndarray, order: int
    ) -> np.ndarray:
        """The bundle's output before calibration: the mean of `parts`."""
        return np.asarray(np.mean(self.parts(features, mels, streams, order), axis=0), np.float32)


def evaluate(
    x: dict[str, np.ndarray],
    y: np.ndarray,
    actors: np.ndarray,
    config: Any,
    console: Console,
    *,
    adapt: bool,
    augment: tuple[str, ...] = (),
    mels: dict[str, Mels] | None = None,
    cnn_config: CnnConfig | None = None,
) -> dict[str, Any]:
    """Train and test once per actor fold that has both sides present.

    x maps an audio variant ("clean", "vad", "snr20", ...) to features aligned with y; models
    train on "clean" and the `augment` variants and are scored on "clean" and TEST_VARIANTS.
    With `mels` (the same variants' log-mel sequences) and `cnn_config`, each fold also trains
    the log-mel CNN and scores the average of both networks' probabilities.
    Returns the evaluation, including out-of-fold probabilities.
    """
    from train.cnn import fit_cnn
    from train.model import fit

    clean = x["clean"]
    folds = [(i, fa) for i, fa in enumerate(TEST_ACTORS) if np.isin(actors, fa).any()]
    folds = [(i, fa) for i, fa in folds if (~np.isin(actors, fa)).any()]
    if not folds:
        raise DataError("no fold has both training and held-out actors; use more actors")
    n_labels = len(LABELS)
    results: list[dict[str, Any]] = []
    oof = np.zeros((len(y), n_labels), dtype=np.float32)
    fold_of = np.full(len(y), -1)
    cnn_epochs = cnn_config.epochs if mels is not None and cnn_config is not None else 0
    with _progress(console) as progress:
        task = progress.add_task(
            "evaluating folds (epochs)",
            total=len(folds) * (config.epochs * config.ensemble + cnn_epochs),
        )
        for index, fold_actors in folds:
            test = np.isin(actors, fold_actors)
            if set(actors[~test]) & set(actors[test]):
                raise AssertionError("an actor is on both sides of a fold")
            prior = AdaptationPrior.from_features(clean[~test]) if adapt else None
            x_train, y_train, speakers = adapted_training_set(
                {name: feats[~test] for name, feats in x.items()},
                y[~test],
                actors[~test],
                prior,
                config.seed,
                augment=augment,
            )
            model = fit(
                x_train,
                y_train,
                n_labels,
                config,
                on_epoch=lambda _e: progress.advance(task),
                speakers=speakers,
            )
            cnn = None
            if mels is not None and cnn_config is not None:
                cnn = fit_cnn(
                    {v: _rows(ms, ~test) for v, ms in mels.items()},
                    y[~test],
                    actors[~test],
                    n_labels,
                    cnn_config,
                    adapt=adapt,
                    augment=augment,
                    on_epoch=lambda _e: progress.advance(task),
                )
            trained = FoldModels(model, prior, cnn, cnn_config.frames if cnn_config else 0)
            test_mels = {v: _rows(ms, test) for v, ms in mels.items()} if mels else {}

            order_seed = config.seed + 1000 + index
            parts = trained.parts(clean[test], test_mels.get("clean"), actors[test], order_seed)
            probs = np.asarray(np.mean(parts, axis=0), dtype=np.float32)
            components = (
                {
                    name: _scores_of(y[test], p)["accuracy"]
                    for name, p in zip(("stats", "cnn"), parts, strict=True)
                }
                if len(parts) > 1
                else {}
            )
            oof[test] = probs
            fold_of[test] = index
            variants = {
                name: _scores_of(
                    y[test],
                    trained.probs(feats[test], test_mels.get(name), actors[test], order_seed),
                )["accuracy"]
                for name, feats in x.items()
                if name in TEST_VARIANTS
            }
            if prior is not None:  # each clip as the first utterance of its stream
                streams = np.arange(int(test.sum()))
                alone = trained.probs(clean[test], test_mels.get("clean"), streams, 0)
                variants["first_utterance"] = _scores_of(y[test], alone)["accuracy"]
            results.append(
                {
                    "fold": index + 1,
                    "test_actors": list(fold_actors),
                    "train_actors": sorted(int(a) for a in set(actors[~test])),
                    "scores": _scores_of(y[test], probs),
                    "variant_accuracy": variants,
                }
                | ({"component_accuracy": components} if components else {})
            )
    summary: dict[str, Any] = {
        key: mean_std([r["scores"][key] for r in results])
        for key in ("accuracy", "unweighted_accuracy", "macro_f1")
    }
    summary["recall"] = {
        label: mean_std([r["scores"]["recall"][label] for r in results]) for label in LABELS
    }
    summary["variant_accuracy"] = {
        name: mean_std([r["variant_accuracy"][name] for r in results])
        for name in results[0]["variant_accuracy"]
    }
    if "component_accuracy" in results[0]:
        summary["component_accuracy"] = {
            name: mean_std([r["component_accuracy"][name] for r in results])
            for name in results[0]["component_accuracy"]
        }
    evaluated = fold_of >= 0
    return {
        "protocol": PROTOCOL_NAME,
        "adaptation": "causal per-speaker, random utterance order" if adapt else "none",
        "folds_evaluated": len(results),
        "folds_total": len(TEST_ACTORS),
        "labels": list(LABELS),
        "folds": results,
        "summary": summary,
        "pooled": _scores_of(y[evaluated], oof[evaluated]),
        "calibration": calibrate(oof[evaluated], y[evaluated], fold_of[evaluated]),
    }


def calibrate(probs: np.ndarray, y: np.ndarray, fold_of: np.ndarray) -> dict[str, Any]:
    """Temperature scaling on out-of-fold predictions. ECE per fold uses a T fitted on the
    other folds only; the bundle's T is fitted on all out-of-fold predictions."""
    before, after, floor = [], [], []
    calibrated = probs.copy()
    for fold in np.unique(fold_of):
        held = fold_of == fold
        before.append(expected_calibration_error(probs[held], y[held]))
        if (~held).any():
            t = fit_temperature(probs[~held], y[~held])
            calibrated[held] = apply_temperature(probs[held], t)
            after.append(expected_calibration_error(calibrated[held], y[held]))
            floor.append(ece_sampling_floor(calibrated[held]))
    temperature = fit_temperature(probs, y)
    return {
        "method": "temperature scaling on out-of-fold predictions (ECE: 15 bins, top label)",
        "temperature": temperature,
        "ece_before": mean_std(before),
        "ece_after": mean_std(after) if after else None,
        # over all out-of-fold predictions at once (each calibrated with its other folds' T):
        # less small-sample noise than per fold (240 clips)
        "ece_before_pooled": expected_calibration_error(probs, y),
        "ece_after_pooled": expected_calibration_error(calibrated, y) if after else None,
        # the mean ECE a perfectly calibrated model with the same confidences scores on as
        # many clips (small-sample noise alone): an ECE near these is as good as can be shown
        "ece_floor": mean_std(floor) if floor else None,
        "ece_floor_pooled": ece_sampling_floor(calibrated) if after else None,
        # `ser-live`'s default pipeline.min_confidence, from the held-out calibrated predictions
        "uncertainty": uncertainty_threshold(calibrated if after else probs, y),
    }


def _manifest_evaluation(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    """The evaluation as the manifest records it: protocol, summary, per-fold headline scores."""
    if evaluation is None:
        return None
    headline = ("accuracy", "unweighted_accuracy", "macro_f1")
    return {
        **{
            k: evaluation[k]
            for k in ("protocol", "adaptation", "folds_evaluated", "folds_total", "summary")
        },
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
            log_mel=args.cnn,
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
    console.print(
        f"features: {len(keep)} clips, {n_cached} from cache, {time.perf_counter() - t0:.1f} s "
        f"(spec {FEATURE_SPEC.name} v{FEATURE_SPEC.version}, dim {FEATURE_SPEC.dim})"
    )
    x = np.stack([e.vector for _, e in keep if e.vector is not None]).astype(np.float32)
    y = np.array([LABELS.index(c.label) for c, _ in keep], dtype=np.int64)
    actors = np.array([c.actor for c, _ in keep], dtype=np.int64)
    features = {"clean": x}
    mels: dict[str, Mels] | None = None
    if args.cnn:
        mels = {"clean": [e.log_mel for _, e in keep if e.log_mel is not None]}
    wanted_variants = [] if (args.skip_eval or args.no_robustness) else list(TEST_VARIANTS)
    for variant in dict.fromkeys([*wanted_variants, *args.augment]):
        with _progress(console) as progress:
            task = progress.add_task(f"features of {variant} audio", total=len(keep))
            done = featurize_all(
                [c.path for c, _ in keep],
                cache_dir,
                max(1, args.workers),
                on_done=lambda _item, t=task: progress.advance(t),  # type: ignore[misc]
                variant=variant,
                log_mel=args.cnn,
            )
        features[variant] = np.stack([e.vector for e in done if e.vector is not None])
        if mels is not None:
            mels[variant] = [e.log_mel for e in done if e.log_mel is not None]
    extraction_s = time.perf_counter() - t0
    adapt = not args.no_adaptation

    from train.model import TrainConfig, fit, for_export, to_tflite, training_device

    flags = {  # TrainConfig field -> command-line value (None: keep the default)
        "seed": args.seed,
        "epochs": args.epochs or None,
        "hidden_units": args.hidden_units,
        "label_smoothing": args.label_smoothing,
        "ensemble": args.ensemble,
        "mixup_alpha": args.mixup,
        "ensemble_split": args.ensemble_split,
    }
    overrides = {field: value for field, value in flags.items() if value is not None}
    config = TrainConfig(**overrides)
    cnn_overrides = {"seed": args.seed, "epochs": args.cnn_epochs or None}
    cnn_config = CnnConfig(**{k: v for k, v in cnn_overrides.items() if v is not None})
    if config.ensemble_split == "speakers":
        present = set(actors.tolist())
        held_out = [] if args.skip_eval else [present & set(f) for f in TEST_ACTORS]
        fewest = min([len(present)] + [len(present - h) for h in held_out if h])
        if fewest < config.ensemble:
            raise DataError(
                f"--ensemble-split speakers needs at least {config.ensemble} training actors in "
                f"every fold, but a fold here has {fewest} training actor(s); use more actors, "
                "a smaller --ensemble or --ensemble-split seeds"
            )
    device = training_device()
    console.print(f"training on {device}")
    args.out.mkdir(parents=True, exist_ok=True)

    t1 = time.perf_counter()
    evaluation: dict[str, Any] | None = None
    if not args.skip_eval:
        evaluation = evaluate(
            features,
            y,
            actors,
            config,
            console,
            adapt=adapt,
            augment=tuple(args.augment),
            mels=mels,
            cnn_config=cnn_config,
        )
        print_evaluation(console, evaluation)
        evaluation["training"] = {
            "config": config.to_dict(),
            "augment": list(args.augment),
            "cnn": cnn_config.to_dict() if mels is not None else None,
        }
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
    if args.eval_only:
        console.print(f"evaluation written to {args.out} in {time.perf_counter() - started:.0f} s")
        return 0

    t2 = time.perf_counter()
    with _progress(console) as progress:
        task = progress.add_task(
            "final model on all actors (epochs)",
            total=config.epochs * config.ensemble + (cnn_config.epochs if mels else 0),
        )
        prior = AdaptationPrior.from_features(x) if adapt else None
        x_train, y_train, speakers = adapted_training_set(
            features, y, actors, prior, config.seed, augment=tuple(args.augment)
        )
        model = fit(
            x_train,
            y_train,
            len(LABELS),
            config,
            on_epoch=lambda _e: progress.advance(task),
            speakers=speakers,
        )
        cnn_manifest: dict[str, Any] | None = None
        for stale in (CNN_KERAS_FILE, CNN_TFLITE_FILE):
            (args.out / stale).unlink(missing_ok=True)
        if mels is not None:
            from train.cnn import fit_cnn

            cnn = fit_cnn(
                mels,
                y,
                actors,
                len(LABELS),
                cnn_config,
                adapt=adapt,
                augment=tuple(args.augment),
                on_epoch=lambda _e: progress.advance(task),
            )
            cnn_model = for_export(cnn.model)
            cnn_model.save(args.out / CNN_KERAS_FILE)
            (args.out / CNN_TFLITE_FILE).write_bytes(to_tflite(cnn_model))
            cnn_manifest = {
                "architecture": (
                    f"log-mel CNN: conv blocks {'-'.join(map(str, cnn_config.filters))}"
                    + (
                        f", BiGRU {cnn_config.recurrent_units}"
                        if cnn_config.recurrent_units
                        else ""
                    )
                    + f", {cnn_config.pooling} pooling over time (train/cnn.py)"
                ),
                "keras": CNN_KERAS_FILE,
                "tflite": CNN_TFLITE_FILE,
                "frames": cnn_config.frames,
                "n_mels": FEATURE_SPEC.n_mels,
                "parameters": int(cnn_model.count_params()),
                "config": cnn_config.to_dict(),
                "adaptation": cnn.prior.to_dict() if cnn.prior is not None else None,
            }
    model = for_export(model)
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
            "architecture": (
                f"average of {config.ensemble} x (standardize -> dropout -> "
                f"dense({config.hidden_units}, relu) -> dropout -> softmax)"
                if config.hidden_units
                else f"average of {config.ensemble} x (standardize -> dropout -> softmax)"
            ),
            "keras": KERAS_FILE,
            "tflite": TFLITE_FILE,
            "input_dim": FEATURE_SPEC.dim,
            "parameters": int(model.count_params()),
        },
        "training": {
            "config": config.to_dict(),
            "augment": list(args.augment),
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
        "adaptation": prior.to_dict() if prior is not None else None,
        # with a CNN, the bundle's output is the mean of both networks' probabilities, then
        # the calibration's temperature
        "cnn": cnn_manifest,
        "calibration": (
            evaluation["calibration"] if evaluation else {"temperature": 1.0, "method": "none"}
        ),
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
    if args.eval_only and args.skip_eval:
        print("ser-train: error: --eval-only and --skip-eval exclude each other", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    console = Console(stderr=False)
    # TensorFlow's C++ start-up chatter (absl, CUDA probing on a machine without a GPU) is
    # filtered from stderr unless -v; its real warnings and errors still show.
    try:
        with NativeStderrFilter(enabled=not args.verbose):
            return run(args, console)
    except DataError as exc:
        print(f"ser-train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ser-train: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
