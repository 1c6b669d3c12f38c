"""Experiment: a small log-mel CNN, alone and averaged with the statistics model.

Not part of `ser-train` (the shipped model is the statistics ensemble); this script reproduces
the CNN rows of EXPERIMENTS.md on the same protocol, folds, test variants and adaptation orders:

    python -m train.logmel_cnn --data ../shared/data/ravdess --out /tmp/cnn

Input: `streamer.features.log_mel_frames` (the log-mel sequence the statistics summarise; 40
bands, 10 ms hop), speaker-adapted by subtracting the causal running mean band energy of the
same speaker's utterances so far (the log-mel analogue of `streamer/adaptation.py`, shrunk
towards the population by the same prior weight), standardised per band, cropped or
repeat-padded to 3 s. Network: 4 conv blocks (3x3, 16-32-64-128 filters, batch norm with
momentum 0.9, ReLU, 2x2 max-pool; the first block strides by 2 instead of pooling), mean and
standard deviation over time, dropout, softmax; 102k weights. Training: SpecAugment masks, a
random one of clean / 15 dB / 30 dB noisy copies per clip and epoch, Adam with cosine decay,
fixed epochs. Each fold also trains the statistics model of EXPERIMENTS.md row 9 exactly as
`ser-train --augment snr15,snr30` does, so the two can be averaged clip by clip. Writes
`cnn_results.json` and `cnn_oof.npz` under --out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.adaptation import AdaptationPrior, stream_orders
from streamer.audio_io import read_audio
from streamer.features import FEATURE_SPEC, log_mel_frames
from streamer.labels import LABELS
from train.cli import adapted_test_set, adapted_training_set, calibrate
from train.data import scan
from train.featurize import default_cache_dir, featurize_all
from train.folds import TEST_ACTORS
from train.metrics import mean_std, scores_of_probabilities
from train.robustness import make_variant

logger = logging.getLogger("ser.train.cnn")

FRAMES = 300  # 3 s at 10 ms
CNN_TEST_VARIANTS = ("vad", "snr20", "snr10")  # the room variant came after the CNN run
TRAIN_VARIANTS = ("clean", "snr15", "snr30")
TRAIN_VARIANT_P = (0.5, 0.25, 0.25)
PRIOR_WEIGHT = 2.0


def _log_mel_file(job: tuple[str, str]) -> npt.NDArray[np.float32]:
    path, variant = job
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    audio = read_audio(Path(path), FEATURE_SPEC.sample_rate)
    # same seed as train/featurize.py, so noisy copies are the statistics model's audio
    return log_mel_frames(make_variant(audio, variant, seed=int(digest[:8], 16)))


def load_log_mels(
    paths: Sequence[Path], variant: str, cache_dir: Path, workers: int
) -> list[npt.NDArray[np.float32]]:
    """Log-mel sequences (n_frames, n_mels) of every path, cached as one .npz per variant."""
    key = hashlib.sha256(("\n".join(p.name for p in paths) + FEATURE_SPEC.digest()).encode())
    target = cache_dir / f"logmel-{key.hexdigest()[:16]}-{variant}.npz"
    if target.exists():
        with np.load(target, allow_pickle=False) as z:
            frames, lengths = z["frames"], z["lengths"]
        return np.split(frames, np.cumsum(lengths)[:-1])
    with ProcessPoolExecutor(workers) as pool:
        out = list(pool.map(_log_mel_file, [(str(p), variant) for p in paths], chunksize=16))
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(target, frames=np.concatenate(out), lengths=np.array([len(m) for m in out]))
    return out


def speaker_offsets(
    band_means: npt.NDArray[np.float64],
    speakers: npt.NDArray[np.int64],
    population: npt.NDArray[np.float64],
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """(n, n_mels) causal per-speaker mean band energy: row i gets the mean over its speaker's
    rows up to and including it, in the order `adapt_in_order` would draw with the same rng,
    shrunk towards `population` by PRIOR_WEIGHT pseudo-utterances."""
    out = np.empty_like(band_means)
    for _, rows in stream_orders(speakers, rng):
        total, n = PRIOR_WEIGHT * population, PRIOR_WEIGHT
        for i in rows:
            total, n = total + band_means[i], n + 1.0
            out[i] = total / n
    return out


def fixed_length(
    seq: npt.NDArray[np.float32], rng: np.random.Generator | None
) -> npt.NDArray[np.float32]:
    """(t, m) -> (FRAMES, m): repeat-padded when short, cropped (random with rng, else
    centred) when long."""
    if len(seq) < FRAMES:
        return np.tile(seq, (int(np.ceil(FRAMES / len(seq))), 1))[:FRAMES]
    start = (
        int(rng.integers(0, len(seq) - FRAMES + 1)) if rng is not None else (len(seq) - FRAMES) // 2
    )
    return seq[start : start + FRAMES]


def spec_augment(x: npt.NDArray[np.float32], rng: np.random.Generator) -> None:
    """In place on (n, FRAMES, m): two time masks (<= 25 frames) and two band masks (<= 5)."""
    n, t, m = x.shape
    for i in range(n):
        for _ in range(2):
            w = int(rng.integers(0, 26))
            s = int(rng.integers(0, t - w + 1))
            x[i, s : s + w, :] = 0.0
            w = int(rng.integers(0, 6))
            s = int(rng.integers(0, m - w + 1))
            x[i, :, s : s + w] = 0.0


def build_cnn(n_mels: int, n_labels: int, steps: int, seed: int) -> Any:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((FRAMES, n_mels, 1), name="log_mel")
    h = inputs
    for block, filters in enumerate((16, 32, 64, 128)):
        # the first block downsamples by a stride-2 convolution: 4x cheaper than conv + pool
        stride = 2 if block == 0 else 1
        h = keras.layers.Conv2D(filters, 3, stride, padding="same", use_bias=False)(h)
        h = keras.layers.BatchNormalization(momentum=0.9)(h)
        h = keras.layers.ReLU()(h)
        if block > 0:
            h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Reshape((h.shape[1], h.shape[2] * h.shape[3]))(h)
    mean = keras.layers.GlobalAveragePooling1D()(h)
    centred = keras.layers.Subtract()([h, keras.layers.Reshape((1, mean.shape[-1]))(mean)])
    std = keras.layers.GlobalAveragePooling1D()(keras.layers.Multiply()([centred, centred]))
    std = keras.layers.Lambda(lambda v: keras.ops.sqrt(v + 1e-5))(std)
    h = keras.layers.Concatenate()([mean, std])
    h = keras.layers.Dropout(0.3)(h)
    outputs = keras.layers.Dense(n_labels, activation="softmax")(h)
    model = keras.Model(inputs, outputs, name="ser_logmel_cnn")
    schedule = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="categorical_crossentropy")
    return model


@dataclass(frozen=True)
class Inputs:
    """Everything the folds need, aligned row by row with `y`."""

    y: npt.NDArray[np.int64]  # (n,) label index
    actors: npt.NDArray[np.int64]  # (n,)
    mels: dict[str, list[npt.NDArray[np.float32]]]  # variant -> n x (n_frames, n_mels)
    band_means: dict[str, npt.NDArray[np.float64]]  # variant -> (n, n_mels)
    stats: dict[str, npt.NDArray[np.float32]]  # variant -> (n, FEATURE_SPEC.dim)
    adapt: bool


@dataclass(frozen=True)
class CnnFold:
    """A trained CNN and the input standardisation it was trained with."""

    model: Any
    population: npt.NDArray[np.float64]  # (n_mels,) prior for the speaker offsets
    mean: npt.NDArray[np.float32]  # (n_mels,)
    std: npt.NDArray[np.float32]  # (n_mels,)


def adapted_mels(
    data: Inputs,
    variant: str,
    rows: npt.NDArray[np.intp],
    population: npt.NDArray[np.float64],
    rng: np.random.Generator,
    *,
    streams: npt.NDArray[np.int64] | None = None,
) -> list[npt.NDArray[np.float32]]:
    """Log-mel sequences of `rows` minus their speaker's causal mean band energy (streams:
    the speakers, default the actors)."""
    seqs = [data.mels[variant][i] for i in rows]
    if not data.adapt:
        return seqs
    speakers = data.actors[rows] if streams is None else streams
    offsets = speaker_offsets(data.band_means[variant][rows], speakers, population, rng)
    return [(s - o).astype(np.float32) for s, o in zip(seqs, offsets, strict=True)]


def train_cnn(
    data: Inputs, rows: npt.NDArray[np.intp], epochs: int, seed: int, order_seed: int
) -> CnnFold:
    """Train on `rows`; `seed` drives weights, crops and masks, `order_seed` the speaker
    orders of the adapted training copies (one per TRAIN_VARIANTS entry)."""
    n_labels, n_mels = len(LABELS), FEATURE_SPEC.n_mels
    population = data.band_means["clean"][rows].mean(0)
    train_sets = {
        v: adapted_mels(data, v, rows, population, np.random.default_rng(order_seed + k))
        for k, v in enumerate(TRAIN_VARIANTS)
    }
    stacked = np.concatenate(train_sets["clean"])
    mean, std = stacked.mean(0), stacked.std(0) + 1e-6
    targets = np.eye(n_labels, dtype=np.float32)[data.y[rows]]
    model = build_cnn(n_mels, n_labels, epochs * int(np.ceil(len(rows) / 32)), seed)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        pick = rng.choice(len(TRAIN_VARIANTS), size=len(rows), p=TRAIN_VARIANT_P)
        batch = np.stack(
            [
                (fixed_length(train_sets[TRAIN_VARIANTS[v]][i], rng) - mean) / std
                for i, v in enumerate(pick)
            ]
        ).astype(np.float32)
        spec_augment(batch, rng)
        history = model.fit(
            batch[..., None], targets, batch_size=32, epochs=1, shuffle=True, verbose=0
        )
        if epoch % 10 == 9:
            logger.info("epoch %d loss %.3f", epoch + 1, history.history["loss"][-1])
    return CnnFold(model, population, mean, std)


def cnn_predict(fold: CnnFold, seqs: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
    """(n, n_labels) probabilities of adapted log-mel sequences."""
    x = np.stack([(fixed_length(s, None) - fold.mean) / fold.std for s in seqs])
    return np.asarray(
        fold.model.predict(x.astype(np.float32)[..., None], batch_size=128, verbose=0),
        dtype=np.float32,
    )


def run_fold(data: Inputs, index: int, epochs: int, seed: int) -> dict[str, Any]:
    """Train the CNN and the default statistics model on the other folds' actors and score
    both and their average on fold `index`'s actors. Returns accuracies and clean probabilities."""
    from train.model import TrainConfig, fit, predict

    test = np.isin(data.actors, TEST_ACTORS[index])
    train_rows, test_rows = np.flatnonzero(~test), np.flatnonzero(test)
    cnn = train_cnn(data, train_rows, epochs, seed + index, order_seed=seed)

    # the statistics model of row 9, exactly as ser-train's evaluation trains it
    config = TrainConfig(seed=seed)
    stats_clean = data.stats["clean"]
    prior = AdaptationPrior.from_features(stats_clean[train_rows]) if data.adapt else None
    x_train, y_train, _ = adapted_training_set(
        {v: f[train_rows] for v, f in data.stats.items()},
        data.y[train_rows],
        data.actors[train_rows],
        prior,
        config.seed,
        augment=("snr15", "snr30"),
    )
    stats_model = fit(x_train, y_train, len(LABELS), config)

    order_seed = config.seed + 1000 + index  # the order ser-train uses for this fold
    accuracy: dict[str, dict[str, float]] = {"cnn": {}, "stats": {}, "average": {}}
    clean: dict[str, npt.NDArray[np.float32]] = {}
    for variant in ("clean", *CNN_TEST_VARIANTS, "first_utterance"):
        alone = variant == "first_utterance"
        source = "clean" if alone else variant
        streams = np.arange(len(test_rows)) if alone else data.actors[test_rows]
        order = 0 if alone else order_seed
        p_cnn = cnn_predict(
            cnn,
            adapted_mels(
                data,
                source,
                test_rows,
                cnn.population,
                np.random.default_rng(order),
                streams=streams,
            ),
        )
        p_stats = predict(
            stats_model, adapted_test_set(data.stats[source][test_rows], streams, prior, order)
        )
        for name, probs in (("cnn", p_cnn), ("stats", p_stats), ("average", (p_cnn + p_stats) / 2)):
            accuracy[name][variant] = scores_of_probabilities(data.y[test_rows], probs, LABELS)[
                "accuracy"
            ]
            if variant == "clean":
                clean[name] = probs.astype(np.float32)
    return {"accuracy": accuracy, "probs": clean, "rows": test_rows}


def load_inputs(args: argparse.Namespace) -> Inputs:
    cache_dir = args.cache_dir or default_cache_dir()
    clips = scan(args.data).clips
    paths = [c.path for c in clips]
    variants = ("clean", *CNN_TEST_VARIANTS, *TRAIN_VARIANTS[1:])
    mels = {v: load_log_mels(paths, v, cache_dir, args.workers) for v in variants}
    stats = {}
    for v in variants:
        done = featurize_all(paths, cache_dir, args.workers, variant=v)
        stats[v] = np.stack([e.vector for e in done if e.vector is not None])
    return Inputs(
        y=np.array([LABELS.index(c.label) for c in clips]),
        actors=np.array([c.actor for c in clips]),
        mels=mels,
        band_means={
            v: np.stack([m.mean(0) for m in seqs]).astype(np.float64) for v, seqs in mels.items()
        },
        stats=stats,
        adapt=not args.no_adaptation,
    )


def summarise(
    data: Inputs,
    folds: list[dict[str, Any]],
    oof: dict[str, npt.NDArray[np.float32]],
    fold_of: npt.NDArray[np.int64],
) -> dict[str, Any]:
    done = fold_of >= 0
    summary = {}
    for name, probs in oof.items():
        per_fold = [
            scores_of_probabilities(data.y[f["rows"]], f["probs"][name], LABELS) for f in folds
        ]
        summary[name] = {
            "accuracy": {
                v: mean_std([f["accuracy"][name][v] for f in folds])
                for v in folds[0]["accuracy"][name]
            },
            "unweighted_accuracy": mean_std([s["unweighted_accuracy"] for s in per_fold]),
            "macro_f1": mean_std([s["macro_f1"] for s in per_fold]),
            "calibration": calibrate(probs[done], data.y[done], fold_of[done]),
        }
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Log-mel CNN experiment (see train/logmel_cnn.py).")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--folds", type=str, default="1,2,3,4,5,6", help="e.g. '1' for a quick run")
    p.add_argument("--no-adaptation", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from train.model import training_device

    t0 = time.perf_counter()
    data = load_inputs(args)
    device = training_device()
    logger.info("inputs ready in %.0f s; training on %s", time.perf_counter() - t0, device)
    n = len(data.y)
    oof = {name: np.zeros((n, len(LABELS)), np.float32) for name in ("cnn", "stats", "average")}
    fold_of = np.full(n, -1)
    folds = []
    for index in [int(f) - 1 for f in args.folds.split(",")]:
        t1 = time.perf_counter()
        fold = run_fold(data, index, args.epochs, args.seed)
        for name, probs in fold["probs"].items():
            oof[name][fold["rows"]] = probs
        fold_of[fold["rows"]] = index
        folds.append(fold | {"fold": index + 1, "seconds": time.perf_counter() - t1})
        acc = fold["accuracy"]
        logger.info(
            "fold %d: cnn %.3f stats %.3f average %.3f (%.0f s)",
            index + 1,
            acc["cnn"]["clean"],
            acc["stats"]["clean"],
            acc["average"]["clean"],
            time.perf_counter() - t1,
        )
    summary = summarise(data, folds, oof, fold_of)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "command": "python -m train.logmel_cnn " + " ".join(sys.argv[1:] if argv is None else argv),
        "epochs": args.epochs,
        "adaptation": data.adapt,
        "device": device,
        "folds": [
            {"fold": f["fold"], "accuracy": f["accuracy"], "seconds": f["seconds"]} for f in folds
        ],
        "summary": summary,
    }
    (args.out / "cnn_results.json").write_text(json.dumps(report, indent=2) + "\n")
    np.savez(args.out / "cnn_oof.npz", y=data.y, fold=fold_of, **oof)  # type: ignore[arg-type]
    for name, result in summary.items():
        cal = result["calibration"]
        logger.info(
            "%s: %s; UA %.3f; ECE after T %.3f per fold (floor %.3f), %.3f pooled",
            name,
            ", ".join(f"{v} {a['mean']:.3f}±{a['std']:.3f}" for v, a in result["accuracy"].items()),
            result["unweighted_accuracy"]["mean"],
            cal["ece_after"]["mean"] if cal["ece_after"] else float("nan"),
            cal["ece_floor"]["mean"] if cal["ece_floor"] else float("nan"),
            cal["ece_after_pooled"] or float("nan"),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
