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
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ser_train.corpora import DataError
from ser_train.dataset import EncoderChoice, load_dataset
from ser_train.featurize import default_cache_dir
from ser_train.robustness import NATURAL_VARIANTS

TRAINING_VARIANTS = ("snr15", "snr30", "speed90", "speed110", "vad")  # `make train`'s, + VAD cut


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
    cache_dir = args.cache_dir or default_cache_dir()
    train_noise, test_noise = {}, {}
    for name, view in (("statistics", None), ("embedding", encoder)):
        train_noise[name], train_kinds = speech.nonspeech_features(
            config.train_per_kind, 0, args.workers, cache_dir=cache_dir, encoder=view
        )
        test_noise[name], test_kinds = speech.nonspeech_features(
            config.test_per_kind, speech.TEST_SEED, args.workers, cache_dir=cache_dir, encoder=view
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
