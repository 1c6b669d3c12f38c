"""Sweep of log-mel CNN settings on the 6 actor folds, each averaged with the statistics model.

Runs from a packed copy of `ser-train`'s feature cache, so it also runs where the audio is not
(a lent GPU machine; any Keras backend): pack here, run there.

    python -m ser_train.cnn_sweep pack --data ../shared/data/ravdess --cache-dir DIR --out pack.npz
    KERAS_BACKEND=jax python -m ser_train.cnn_sweep run --pack pack.npz --out OUT [--configs a,b]

The pack holds the statistics vectors (float16) and log-mel sequences (uint8, 0.5 dB steps) of
the clean audio and the PACK_VARIANTS copies. Every fold trains the statistics model exactly as
`ser-train` does (default TrainConfig, those copies as augmentation) and one CNN per setting in
SWEEP, and scores the CNN alone and the average of both on the clean held-out clips, adapted in
`ser-train`'s utterance orders. Settings run in parallel processes. Writes sweep.json and
sweep_oof.npz under --out and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ser.adaptation import AdaptationPrior
from ser.labels import LABELS
from ser_train.cnn import CnnConfig, Mels
from ser_train.corpora.ravdess import TEST_ACTORS
from ser_train.metrics import mean_std, scores_of_probabilities

logger = logging.getLogger("ser.train.sweep")

PACK_VARIANTS = ("clean", "snr15", "speed90", "speed110")
DB_OFFSET, DB_STEP = 127.5, 0.5  # uint8 q <-> dB: q * DB_STEP - DB_OFFSET
SWEEP: dict[str, dict[str, Any]] = {
    "base": {},  # the shipped CNN's settings
    "no_speed": {"augment": ("snr15",)},
    "epochs80": {"epochs": 80},
    "wide": {"filters": (32, 64, 128, 256)},
    "attention": {"pooling": "attention"},
    "crnn": {"recurrent_units": 64},
    "clean25": {"clean_share": 0.25},
    "lr3e-3": {"learning_rate": 3e-3},
    # second round: combinations, and other seeds to see the noise
    "base_seed1": {"seed": 1},
    "base_seed2": {"seed": 2},
    "lr3e-3_seed1": {"learning_rate": 3e-3, "seed": 1},
    "lr3e-3_seed2": {"learning_rate": 3e-3, "seed": 2},
    "epochs80_seed1": {"epochs": 80, "seed": 1},
    "epochs80_lr3e-3": {"epochs": 80, "learning_rate": 3e-3},
    "wide_lr3e-3": {"filters": (32, 64, 128, 256), "learning_rate": 3e-3},
    "wide_epochs80": {"filters": (32, 64, 128, 256), "epochs": 80},
}


def pack(args: argparse.Namespace) -> int:
    from ser_train.corpora import scan
    from ser_train.featurize import featurize_all

    clips = scan(f"ravdess={args.data}").clips
    paths = [c.path for c in clips]
    arrays: dict[str, npt.NDArray[Any]] = {
        "y": np.array([LABELS.index(c.label) for c in clips]),
        "actors": np.array([int(c.speaker) for c in clips]),
    }
    for variant in PACK_VARIANTS:
        done = featurize_all(paths, args.cache_dir, args.workers, variant=variant, log_mel=True)
        if any(e.vector is None or e.log_mel is None for e in done):
            raise SystemExit(f"cnn_sweep: some {variant} clips could not be featurized")
        mels = [e.log_mel for e in done if e.log_mel is not None]
        arrays[f"vec_{variant}"] = np.stack([e.vector for e in done if e.vector is not None])
        arrays[f"vec_{variant}"] = arrays[f"vec_{variant}"].astype(np.float16)
        quantised = np.round((np.concatenate(mels) + DB_OFFSET) / DB_STEP)
        arrays[f"mel_{variant}"] = np.clip(quantised, 0, 255).astype(np.uint8)
        arrays[f"len_{variant}"] = np.array([len(m) for m in mels])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)  # type: ignore[arg-type]
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return 0


def load_pack(
    path: Path,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], dict[str, Any], dict[str, Mels]]:
    """Labels, actors, statistics vectors and log-mel sequences per variant."""
    with np.load(path, allow_pickle=False) as z:
        vectors = {v: z[f"vec_{v}"].astype(np.float32) for v in PACK_VARIANTS}
        mels = {
            v: np.split(
                z[f"mel_{v}"].astype(np.float32) * DB_STEP - DB_OFFSET,
                np.cumsum(z[f"len_{v}"])[:-1],
            )
            for v in PACK_VARIANTS
        }
        return z["y"], z["actors"], vectors, mels


def run_setting(job: tuple[str, Path, int | None, tuple[int, ...]]) -> dict[str, Any]:
    """One SWEEP entry over the folds: per-fold accuracies and clean out-of-fold probabilities
    of the CNN, the statistics model and their average."""
    name, pack_path, epochs, folds = job
    from ser_train.cnn import fit_cnn
    from ser_train.evaluate import FoldModels, adapted_training_set
    from ser_train.model import TrainConfig, fit

    y, actors, vectors, mels = load_pack(pack_path)
    settings = dict(SWEEP[name])
    augment = tuple(settings.pop("augment", PACK_VARIANTS[1:]))
    cnn_config = replace(CnnConfig(), **settings)
    config = TrainConfig()
    if epochs is not None:
        cnn_config = replace(cnn_config, epochs=epochs)
        config = replace(config, epochs=max(1, epochs // 3))
    n = len(y)
    oof = {k: np.zeros((n, len(LABELS)), np.float32) for k in ("stats", "cnn", "average")}
    per_fold: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for index in folds:
        test = np.isin(actors, TEST_ACTORS[index])
        prior = AdaptationPrior.from_features(vectors["clean"][~test])
        x_train, y_train, speakers, _ = adapted_training_set(
            {v: f[~test] for v, f in vectors.items()},
            y[~test],
            actors[~test],
            prior,
            config.seed,
            augment=PACK_VARIANTS[1:],
        )
        stats = fit(x_train, y_train, len(LABELS), config, speakers=speakers)
        train_mels = {
            v: [m for m, t in zip(ms, test, strict=True) if not t] for v, ms in mels.items()
        }
        cnn = fit_cnn(
            train_mels,
            y[~test],
            actors[~test],
            len(LABELS),
            cnn_config,
            adapt=True,
            augment=augment,
        )
        trained = FoldModels(stats, prior, cnn, cnn_config.frames)
        test_mels = [m for m, t in zip(mels["clean"], test, strict=True) if t]
        parts = trained.parts(
            vectors["clean"][test], test_mels, actors[test], config.seed + 1000 + index
        )
        p_stats, p_cnn = parts["stats"], parts["cnn"]
        probs = {"stats": p_stats, "cnn": p_cnn, "average": (p_stats + p_cnn) / 2}
        fold: dict[str, Any] = {"fold": index + 1}
        for key, p in probs.items():
            oof[key][test] = p
            fold[key] = scores_of_probabilities(y[test], p, LABELS)
        per_fold.append(fold)
        logger.warning(
            "%s fold %d: cnn %.3f stats %.3f average %.3f (%.0f s)",
            name,
            index + 1,
            fold["cnn"]["accuracy"],
            fold["stats"]["accuracy"],
            fold["average"]["accuracy"],
            time.perf_counter() - t0,
        )
    summary = {
        key: {
            metric: mean_std([f[key][metric] for f in per_fold])
            for metric in ("accuracy", "unweighted_accuracy", "macro_f1")
        }
        for key in oof
    }
    return {
        "name": name,
        "cnn_config": cnn_config.to_dict(),
        "augment": list(augment),
        "per_fold": [{"fold": f["fold"]} | {k: f[k]["accuracy"] for k in oof} for f in per_fold],
        "summary": summary,
        "seconds": round(time.perf_counter() - t0, 1),
        "oof": {k: v.tolist() for k, v in oof.items()},
    }


def device_name() -> str:
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax  # type: ignore[import-not-found]

            return f"jax: {jax.devices()[0].device_kind}"
        if backend == "torch":
            import torch  # type: ignore[import-not-found]

            return f"torch: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'}"
    except Exception as exc:  # a name for the report only
        return f"{backend}: unknown ({exc})"
    return f"{backend}: CPU"


def _pm(stat: dict[str, float]) -> str:
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def run(args: argparse.Namespace) -> int:
    names = args.configs.split(",") if args.configs else list(SWEEP)
    unknown = [n for n in names if n not in SWEEP]
    if unknown:
        raise SystemExit(f"cnn_sweep: unknown settings {unknown}; known: {', '.join(SWEEP)}")
    folds = tuple(int(f) - 1 for f in args.folds.split(","))
    jobs = [(name, args.pack, args.epochs, folds) for name in names]
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    report: dict[str, Any] = {}

    def save(result: dict[str, Any]) -> None:
        """Record each setting as it finishes, so a run cut short keeps what it has."""
        results.append(result)
        oof = {
            f"{r['name']}.{k}": np.asarray(v, np.float32)
            for r in results
            for k, v in r["oof"].items()
        }
        np.savez_compressed(args.out / "sweep_oof.npz", **oof)  # type: ignore[arg-type]
        report.update(
            {
                "command": "python -m ser_train.cnn_sweep " + " ".join(sys.argv[1:]),
                "device": device_name(),
                "pack_variants": list(PACK_VARIANTS),
                "seconds": round(time.perf_counter() - t0, 1),
                "results": [{k: v for k, v in r.items() if k != "oof"} for r in results],
            }
        )
        (args.out / "sweep.json").write_text(json.dumps(report, indent=2) + "\n")

    if args.jobs > 1:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(args.jobs, len(jobs))) as pool:
            for result in pool.imap_unordered(run_setting, jobs):
                save(result)
    else:
        for job in jobs:
            save(run_setting(job))
    print(f"device: {report['device']}; {report['seconds']:.0f} s")
    print("| setting | CNN | statistics | average | average UA | s |")
    print("|---|---|---|---|---|---|")
    for r in results:
        s = r["summary"]
        cells = [f"{_pm(s['cnn']['accuracy'])}", f"{s['stats']['accuracy']['mean']:.3f}"]
        cells += [
            _pm(s["average"]["accuracy"]),
            f"{s['average']['unweighted_accuracy']['mean']:.3f}",
        ]
        print(f"| {r['name']} | {' | '.join(cells)} | {r['seconds']:.0f} |")
    return 0


def average(args: argparse.Namespace) -> int:
    """Post-hoc: the statistics model averaged with the mean of several settings' CNNs, from
    saved out-of-fold probabilities (one or more sweep_oof.npz). Prints per-fold mean ± std."""
    y, actors, _, _ = load_pack(args.pack)
    oof: dict[str, npt.NDArray[np.float32]] = {}
    for path in args.oof:
        with np.load(path, allow_pickle=False) as z:
            oof.update({k: z[k] for k in z.files})
    members = args.members.split(",")
    cnn = np.mean([oof[f"{m}.cnn"] for m in members], axis=0)
    stats = oof[f"{members[0]}.stats"]
    for name, probs in (("CNNs", cnn), ("CNNs + statistics", (cnn + stats) / 2)):
        folds = [np.isin(actors, a) for a in TEST_ACTORS if np.isin(actors, a).any()]
        acc = mean_std([float((probs[f].argmax(1) == y[f]).mean()) for f in folds])
        print(f"{'+'.join(members)}: {name} {_pm(acc)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Log-mel CNN sweep (see train/cnn_sweep.py).")
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="pack cached features for a sweep")
    pk.add_argument("--data", type=Path, required=True)
    pk.add_argument("--cache-dir", type=Path, required=True)
    pk.add_argument("--out", type=Path, required=True)
    pk.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    rn = sub.add_parser("run", help="run the sweep on a pack")
    rn.add_argument("--pack", type=Path, required=True)
    rn.add_argument("--out", type=Path, required=True)
    rn.add_argument("--configs", default="", help=f"comma-separated, of: {', '.join(SWEEP)}")
    rn.add_argument("--folds", default="1,2,3,4,5,6")
    rn.add_argument("--epochs", type=int, default=None, help="override (smoke tests)")
    rn.add_argument("--jobs", type=int, default=1, help="settings run in parallel")
    av = sub.add_parser("average", help="average saved CNNs of several settings (post-hoc)")
    av.add_argument("--pack", type=Path, required=True)
    av.add_argument("--oof", type=Path, nargs="+", required=True, help="sweep_oof.npz files")
    av.add_argument("--members", required=True, help="settings, e.g. base,base_seed1")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    commands = {"pack": pack, "run": run, "average": average}
    return commands[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
