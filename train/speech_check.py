"""How often a bundle's speech detector refuses real speech in natural conditions, and accepts
generated non-speech: the check of a finished detector as `ser-live` runs it (LiteRT).

    python -m ser_train.speech_check --model default --data ../shared/data/ravdess \\
        --data ../shared/data/nemo [--json OUT]

Speech: every clip of the corpora in each of train/robustness.py's NATURAL_VARIANTS (music,
babble, laughter, applause, shout, broadcast, far, phone; conditions the shipped detector never
trained on unless its manifest's speech "trained_variants" lists them) and clean; a clip is
refused when P(speech) < the bundle's threshold. Non-speech: train/speech.py's held-out
generator seeds (never trained). Prints one line per corpus and variant.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser.bundle import load_bundle, resolve_bundle_path
from ser.classifier import Classifier
from ser_train.corpora import DataError
from ser_train.dataset import EncoderChoice, load_dataset
from ser_train.featurize import default_cache_dir
from ser_train.robustness import NATURAL_VARIANTS


def check(
    clf: Classifier, features: dict[str, np.ndarray], corpus: np.ndarray, threshold: float
) -> dict[str, dict[str, float]]:
    """{corpus: {variant: share of clips refused}} for (n, dim) unadapted detector inputs
    (statistics or embeddings, as the bundle's detector reads) per variant and the (n,) corpus
    of each row."""
    out: dict[str, dict[str, float]] = {}
    for name in sorted(set(corpus.tolist())):
        rows = corpus == name
        out[name] = {
            variant: float(np.mean([clf.speech_probability(v) < threshold for v in feats[rows]]))
            for variant, feats in features.items()
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ser_train.speech_check", description=__doc__)
    p.add_argument("--model", default="default", help="bundle name or folder")
    p.add_argument("--data", action="append", required=True, help="a corpus folder (repeat)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--nonspeech-per-kind", type=int, default=40)
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    try:
        bundle = load_bundle(resolve_bundle_path(args.model))
        if bundle.speech is None:
            raise DataError(f"{bundle.path} has no speech detector; train one with --speech-only")
        encoder = None  # the detector's input: the statistics, or the encoder's embedding
        if bundle.speech.reads_embedding and bundle.encoder is not None:
            encoder = EncoderChoice(bundle.encoder.encoder_path, bundle.encoder.layers)
        data = load_dataset(
            args.data,
            speakers={},
            cache_dir=args.cache_dir or default_cache_dir(),
            workers=args.workers,
            variants=list(NATURAL_VARIANTS),
            log_mel=False,
            encoder=encoder,
        )
    except DataError as exc:
        print(f"speech_check: error: {exc}", file=sys.stderr)
        return 2
    from ser_train import speech

    clf = Classifier(bundle)
    threshold = bundle.speech.threshold
    inputs = data.embeddings if encoder is not None and data.embeddings else data.features
    refused = check(clf, inputs, data.corpus, threshold)
    noise, kinds = speech.nonspeech_features(
        args.nonspeech_per_kind,
        speech.TEST_SEED,
        args.workers,
        cache_dir=args.cache_dir or default_cache_dir(),
        encoder=encoder,
    )
    accepted = np.array([clf.speech_probability(v) >= threshold for v in noise])
    result: dict[str, Any] = {
        "model": str(bundle.path),
        "threshold": threshold,
        "speech_refused": refused,
        "nonspeech_accepted": float(accepted.mean()),
        "nonspeech_accepted_per_kind": {
            k: float(accepted[kinds == k].mean()) for k in sorted(set(kinds.tolist()))
        },
    }
    for name, by_variant in refused.items():
        print(
            f"{name}: speech refused "
            + ", ".join(f"{v} {share:.1%}" for v, share in by_variant.items())
        )
    print(f"generated non-speech accepted as speech: {result['nonspeech_accepted']:.1%}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
