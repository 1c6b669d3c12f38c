"""Which input the speech detector should read: the utterance statistics or the encoder's
embedding. A study (EXPERIMENTS.md); `ser-train --speech-only` trains the shipped detector.

    python -m ser_train.speech_input --data ../shared/data/ravdess --data ../shared/data/nemo \\
        --encoder models/default/encoder.tflite --layers 2,3 [--json OUT]

For each input, train/speech.py's detector (same network, config and generated non-speech) is
trained and scored as `ser-train` scores it, with the speech of each corpus's speaker folds held
out: trained on the held-in speakers' clean clips and `TRAINING_VARIANTS` (`make train`'s
training copies and the VAD cut; the shipped detector also trains on the test and natural
conditions), then the held-out speakers' clips are scored in those variants and in
train/robustness.py's natural conditions (music, babble, laughter, ... : never trained). Generated
non-speech: unseen seeds of every kind, and each kind left out of training entirely (how the
detector meets noise it never heard). Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ser.features import analyse
from ser.workers import exit_with_parent
from ser_train.corpora import DataError
from ser_train.dataset import EncoderChoice, load_dataset
from ser_train.featurize import default_cache_dir
from ser_train.robustness import NATURAL_VARIANTS

TRAINING_VARIANTS = ("snr15", "snr30", "speed90", "speed110", "vad")  # `make train`'s, + VAD cut


@lru_cache(maxsize=1)
def _encoder(path: str, layers: tuple[int, ...]) -> Any:
    from ser.encoder import UtteranceEncoder

    return UtteranceEncoder(Path(path), layers)


def _both(item: tuple[str, int, str, tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """One generated clip's statistics and embedding (in a worker process)."""
    from ser_train import nonspeech

    kind, seed, path, layers = item
    audio = nonspeech.clip(kind, seed)
    return analyse(audio).vector, _encoder(path, layers).embed(audio, 16_000)


def nonspeech_inputs(
    per_kind: int, first_seed: int, encoder: EncoderChoice, workers: int
) -> tuple[dict[str, npt.NDArray[np.float32]], npt.NDArray[np.str_]]:
    """{"statistics": (n, 696), "embedding": (n, dim)} of generated clips and their (n,) kinds."""
    from ser_train import nonspeech

    items = [
        (k, s, str(encoder.path), encoder.layers)
        for k in nonspeech.KINDS
        for s in range(first_seed, first_seed + per_kind)
    ]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=exit_with_parent) as pool:
        out = list(pool.map(_both, items, chunksize=8))
    kinds = np.array([k for k, *_ in items])
    stats = np.stack([s for s, _ in out]).astype(np.float32)
    return {"statistics": stats, "embedding": np.stack([e for _, e in out])}, kinds


def _table(results: dict[str, dict[str, Any]]) -> list[str]:
    names = list(results)
    lines = [
        "| held out | " + " | ".join(f"{n}: % refused or accepted" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    first = results[names[0]]
    for corpus, by_variant in first["speech_rejected"].items():
        for variant in by_variant:
            cells = [100 * results[n]["speech_rejected"][corpus][variant] for n in names]
            lines.append(
                f"| {corpus} speech, {variant} | " + " | ".join(f"{c:.2f}" for c in cells) + " |"
            )
    cells = [100 * results[n]["nonspeech_accepted"] for n in names]
    lines.append(
        "| generated non-speech, unseen seeds | " + " | ".join(f"{c:.2f}" for c in cells) + " |"
    )
    for kind in first["nonspeech_accepted_kind_unseen"]:
        cells = [100 * results[n]["nonspeech_accepted_kind_unseen"][kind] for n in names]
        lines.append(
            f"| {kind}, kind left out of training | " + " | ".join(f"{c:.1f}" for c in cells) + " |"
        )
    means = [
        100 * float(np.mean(list(results[n]["nonspeech_accepted_kind_unseen"].values())))
        for n in names
    ]
    lines.append("| mean of the kinds left out | " + " | ".join(f"{m:.1f}" for m in means) + " |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ser_train.speech_input", description=__doc__)
    p.add_argument("--data", action="append", required=True, help="a corpus folder (repeat)")
    p.add_argument("--encoder", type=Path, required=True, help="the bundle's encoder.tflite")
    p.add_argument("--layers", default="2,3", help="the pooled layers the embedding holds")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    encoder = EncoderChoice(args.encoder, tuple(int(x) for x in args.layers.split(",")))
    try:
        data = load_dataset(
            args.data,
            speakers={},
            cache_dir=args.cache_dir or default_cache_dir(),
            workers=args.workers,
            variants=[*TRAINING_VARIANTS, *NATURAL_VARIANTS],
            log_mel=False,
            encoder=encoder,
        )
    except DataError as exc:
        print(f"speech_input: error: {exc}", file=sys.stderr)
        return 2
    from ser_train import speech

    config = speech.DetectorConfig()
    train_noise, train_kinds = nonspeech_inputs(config.train_per_kind, 0, encoder, args.workers)
    test_noise, test_kinds = nonspeech_inputs(
        config.test_per_kind, speech.TEST_SEED, encoder, args.workers
    )
    assert data.embeddings is not None
    trained = ["clean", *TRAINING_VARIANTS]
    results = {
        name: speech.evaluate_detector(
            replace(data, features=inputs),
            (train_noise[name], train_kinds),
            (test_noise[name], test_kinds),
            config,
            train_variants=trained,
        )
        for name, inputs in (("statistics", data.features), ("embedding", data.embeddings))
    }
    print("\n".join(_table(results)))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
