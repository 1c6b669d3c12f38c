"""Choose the encoder's layers: a linear probe per layer (or set of layers) on every protocol.

    python -m ser_train.encoder.probe --encoder FILE --data DIR [--data DIR] \\
        [--layers 6,4,3,2,2+3] [--c 0.05] [--cache-dir DIR] [--workers N]

Each clip's pooled statistics of the named layers (concatenated for "2+3"), z-normalised per
speaker over all of that speaker's clips (the oracle end of speaker adaptation, as in the
issue's measurement; `ser-train` adapts causally), feed a logistic regression trained on each
fold's training speakers. Prints accuracy per protocol (train/protocols.py). Fast (minutes) once
the embeddings are cached (train/embed.py), so it screens layers and quantisations before a
full `ser-train --encoder` run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ser.labels import LABELS
from ser_train.corpora import DataError
from ser_train.dataset import EncoderChoice, load_dataset
from ser_train.featurize import default_cache_dir
from ser_train.protocols import PROTOCOLS, Protocol

logger = logging.getLogger(__name__)


def per_speaker_z(x: npt.NDArray[np.floating], speakers: npt.NDArray[np.str_]) -> np.ndarray:
    """(n, d) -> each speaker's rows standardised by that speaker's mean and std."""
    out = np.asarray(x, dtype=np.float64).copy()
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        out[rows] = (out[rows] - out[rows].mean(0)) / (out[rows].std(0) + 1e-6)
    return out


def probe(
    x: np.ndarray,
    y: np.ndarray,
    corpus: np.ndarray,
    speakers: np.ndarray,
    *,
    protocol: Protocol,
    c: float,
) -> list[float]:
    """Per-fold accuracy of a logistic regression in `protocol`'s label space."""
    from sklearn.linear_model import LogisticRegression

    accuracies = []
    for fold in protocol.folds(corpus, speakers, y):
        model = LogisticRegression(C=c, max_iter=300).fit(x[fold.train], y[fold.train])
        probs = np.zeros((int(fold.test.sum()), len(LABELS)))
        probs[:, model.classes_] = model.predict_proba(x[fold.test])
        truth, scored = protocol.scored(y[fold.test], probs)
        accuracies.append(float((scored.argmax(1) == truth).mean()))
    return accuracies


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ser_train.encoder.probe", description=__doc__)
    p.add_argument("--encoder", type=Path, required=True)
    p.add_argument("--data", action="append", required=True)
    p.add_argument("--layers", default="6,5,4,3,2,1,0,2+3")
    p.add_argument("--c", type=float, default=0.05, help="inverse L2 strength")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        choices = [tuple(int(n) for n in item.split("+")) for item in args.layers.split(",")]
        wanted = tuple(sorted({n for layers in choices for n in layers}))
        data = load_dataset(
            args.data,
            speakers={},
            cache_dir=args.cache_dir or default_cache_dir(),
            workers=args.workers,
            variants=[],
            log_mel=False,
            encoder=EncoderChoice(args.encoder, wanted),
        )
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    assert data.embeddings is not None
    per_layer = data.embeddings["clean"].reshape(len(data.y), len(wanted), -1)
    protocols = [p for p in PROTOCOLS.values() if p.applies_to(data.corpora)]
    print("| layers | " + " | ".join(p.name for p in protocols) + " | seconds |")
    print("|---|" + "---|" * (len(protocols) + 1))
    for layers in choices:
        started = time.perf_counter()
        columns = [wanted.index(n) for n in layers]
        x = per_speaker_z(per_layer[:, columns].reshape(len(data.y), -1), data.speakers)
        cells = []
        for protocol in protocols:
            acc = probe(x, data.y, data.corpus, data.speakers, protocol=protocol, c=args.c)
            cells.append(f"{100 * np.mean(acc):.1f} ± {100 * np.std(acc):.1f}")
        name = "+".join(map(str, layers))
        print(f"| {name} | " + " | ".join(cells) + f" | {time.perf_counter() - started:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
