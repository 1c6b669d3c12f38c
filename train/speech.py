"""The bundle's speech detector: is an utterance speech at all? (training side; imports Keras)

webrtcvad lets noise, music, tones and clicks through; the emotion networks then name an
emotion for them. The detector reads the unadapted 696 statistics (`analyse(...).vector`), or
for a bundle with an encoder its unadapted embedding (what the bundle's networks read: no
statistics computed live; better on speech in natural conditions, EXPERIMENTS.md), and outputs
P(speech) (standardise -> dense(32, relu) -> dense(1, sigmoid), class-balanced).
Speech examples: every corpus clip and its variants (noisy, reverberant, channel, VAD-cut,
speed-changed), so degraded speech stays speech. Non-speech: train/nonspeech.py's generators.
`evaluate_detector` holds speakers out by the corpus folds and scores unseen generator seeds,
and each generator kind left out of training entirely.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ser.features import FEATURE_SPEC, analyse
from ser.workers import exit_with_parent
from ser_train import nonspeech
from ser_train.corpora import CORPORA
from ser_train.dataset import Dataset, EncoderChoice
from ser_train.featurize import save_array
from ser_train.robustness import NATURAL_VARIANTS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorConfig:
    hidden_units: int = 32
    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 1e-3
    threshold: float = 0.5  # P(speech) below this: "not speech"
    max_speech_rows: int = 30_000  # speech rows drawn (seeded) per fit, to bound its cost
    train_per_kind: int = 120  # generated clips per kind (seeds 0 ..)
    test_per_kind: int = 40  # held-out clips per kind (seeds TEST_SEED ..)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


TEST_SEED = 1_000_000


@lru_cache(maxsize=1)
def _encoder(path: str, layers: tuple[int, ...]) -> Any:
    from ser.encoder import UtteranceEncoder

    return UtteranceEncoder(Path(path), layers)


def _features(
    item: tuple[str, int], encoder: tuple[str, tuple[int, ...]] | None = None
) -> npt.NDArray[np.float32]:
    """One generated clip's statistics, or its embedding by `encoder` (path, layers)."""
    kind, seed = item
    audio = nonspeech.clip(kind, seed)
    if encoder is None:
        return analyse(audio).vector
    return np.asarray(_encoder(*encoder).embed(audio, FEATURE_SPEC.sample_rate), np.float32)


def nonspeech_features(
    per_kind: int,
    first_seed: int,
    workers: int,
    on_done: Callable[[], None] | None = None,
    *,
    cache_dir: Path | None = None,
    encoder: EncoderChoice | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.str_]]:
    """(n, dim) features (or with `encoder`, embeddings) and (n,) kinds of generated clips,
    seeds first_seed + 0 .. per_kind-1; cached in `cache_dir` keyed by the generator version,
    seeds and feature spec (and the encoder file's sha256 and layers)."""
    items = [(k, s) for k in nonspeech.KINDS for s in range(first_seed, first_seed + per_kind)]
    kinds = np.array([k for k, _ in items])
    path = None
    view = None if encoder is None else (str(encoder.path), tuple(encoder.layers))
    if cache_dir is not None:
        key = f"{nonspeech.VERSION}-{'-'.join(nonspeech.KINDS)}-{first_seed}-{per_kind}"
        if encoder is not None:
            from ser_train.embed import file_digest

            key += f"-{file_digest(encoder.path)}-{','.join(map(str, encoder.layers))}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        path = cache_dir / FEATURE_SPEC.digest() / "nonspeech" / f"{digest}.npy"
        if path.exists():
            cached = np.load(path, allow_pickle=False)
            if cached.shape[0] == len(items) and (
                encoder is not None or cached.shape[1] == FEATURE_SPEC.dim
            ):
                if on_done:
                    for _ in items:
                        on_done()
                return cached.astype(np.float32), kinds
    out: list[npt.NDArray[np.float32]] = []
    one = partial(_features, encoder=view)
    if workers <= 1:
        for item in items:
            out.append(one(item))
            if on_done:
                on_done()
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=exit_with_parent) as pool:
            for vector in pool.map(one, items, chunksize=8):
                out.append(vector)
                if on_done:
                    on_done()
    features = np.stack(out).astype(np.float32)
    if path is not None:
        save_array(path, features)
    return features, kinds


def speech_rows(
    data: Dataset, rows: npt.NDArray[np.bool_], variants: Sequence[str] | None = None
) -> npt.NDArray[np.float32]:
    """The features of the selected clips in every variant (or in `variants`), stacked."""
    chosen = data.features if variants is None else {v: data.features[v] for v in variants}
    return np.concatenate([feats[rows] for feats in chosen.values()])


def fit_detector(
    speech: npt.NDArray[np.float32], noise: npt.NDArray[np.float32], config: DetectorConfig
) -> Any:
    """A Keras model (dim,) -> (1,) P(speech), trained class-balanced."""
    import keras

    keras.utils.set_random_seed(config.seed)
    if len(speech) > config.max_speech_rows:
        rng = np.random.default_rng(config.seed)
        speech = speech[rng.choice(len(speech), config.max_speech_rows, replace=False)]
    x = np.concatenate([speech, noise]).astype(np.float32)
    y = np.concatenate([np.ones(len(speech)), np.zeros(len(noise))]).astype(np.float32)
    weights = np.where(y == 1, len(y) / (2 * len(speech)), len(y) / (2 * len(noise)))
    norm = keras.layers.Normalization(name="standardize")
    norm.adapt(x)
    inputs = keras.Input((x.shape[1],), name="features")
    h = keras.layers.Dense(config.hidden_units, activation="relu", name="hidden")(norm(inputs))
    outputs = keras.layers.Dense(1, activation="sigmoid", name="speech")(h)
    model = keras.Model(inputs, outputs, name="ser_speech")
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="binary_crossentropy")
    model.fit(
        x,
        y,
        sample_weight=weights,
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
    )
    return model


def p_speech(model: Any, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.asarray(model.predict(x, batch_size=1024, verbose=0), dtype=np.float32)[:, 0]


def evaluate_detector(
    data: Dataset,
    train_noise: tuple[npt.NDArray[np.float32], npt.NDArray[np.str_]],
    test_noise: tuple[npt.NDArray[np.float32], npt.NDArray[np.str_]],
    config: DetectorConfig,
    train_variants: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Held-out rates at `config.threshold`: speech rejected (per corpus, per audio variant:
    speakers held out by each corpus's folds) and non-speech accepted (unseen seeds, per kind;
    and per kind when that kind never trained). `train_variants`: the audio variants the
    detectors train on (default: every variant of `data`; all are scored either way)."""
    x_noise, kinds = train_noise
    rejected: dict[str, dict[str, list[float]]] = {}
    accepted: list[npt.NDArray[np.bool_]] = []
    for corpus in data.corpora:
        for fold in CORPORA[corpus].folds:
            test = (data.corpus == corpus) & np.isin(data.speakers, [f"{corpus}:{s}" for s in fold])
            if not test.any() or test.all():
                continue
            model = fit_detector(speech_rows(data, ~test, train_variants), x_noise, config)
            for variant, feats in data.features.items():
                share = float((p_speech(model, feats[test]) < config.threshold).mean())
                rejected.setdefault(corpus, {}).setdefault(variant, []).append(share)
            accepted.append(p_speech(model, test_noise[0]) >= config.threshold)
    unseen_kind: dict[str, float] = {}
    speech_all = speech_rows(data, np.ones(len(data.y), bool), train_variants)
    full = fit_detector(speech_all, x_noise, config) if not accepted else None
    for kind in nonspeech.KINDS:
        model = fit_detector(speech_all, x_noise[kinds != kind], config)
        held = test_noise[0][test_noise[1] == kind]
        unseen_kind[kind] = float((p_speech(model, held) >= config.threshold).mean())
    test_kinds = test_noise[1]
    accepted_all = (
        np.mean(accepted, axis=0)
        if accepted
        else (p_speech(full, test_noise[0]) >= config.threshold).astype(float)
    )
    return {
        "threshold": config.threshold,
        "speech_rejected": {
            corpus: {variant: float(np.mean(v)) for variant, v in by_variant.items()}
            for corpus, by_variant in rejected.items()
        },
        "nonspeech_accepted": float(np.mean(accepted_all)),
        "nonspeech_accepted_per_kind": {
            kind: float(np.mean(accepted_all[test_kinds == kind])) for kind in nonspeech.KINDS
        },
        "nonspeech_accepted_kind_unseen": unseen_kind,
        "nonspeech_accepted_kind_unseen_mean": float(np.mean(list(unseen_kind.values()))),
        "protocol": (
            "speech: each corpus's speaker folds held out (all audio variants); non-speech: "
            f"{config.test_per_kind} unseen seeds per kind; kind_unseen: that kind left out of "
            "training entirely"
        ),
    }


def describe(evaluation: dict[str, Any]) -> Sequence[str]:
    """Lines for the terminal."""
    lines = [
        f"speech detector (P(speech) < {evaluation['threshold']:.2f} -> not speech): "
        f"{evaluation['nonspeech_accepted']:.1%} of unseen generated non-speech accepted as "
        f"speech ({evaluation['nonspeech_accepted_kind_unseen_mean']:.1%} when its kind never "
        "trained)"
    ]
    for corpus, by_variant in evaluation["speech_rejected"].items():
        lines.append(
            f"  held-out {corpus} utterances rejected: clean {by_variant['clean']:.1%}, worst "
            + "{}: {:.1%}".format(*max(by_variant.items(), key=lambda kv: kv[1]))
        )
        natural = [v for v in NATURAL_VARIANTS if v in by_variant]
        if natural:
            lines.append(
                "    in natural conditions: "
                + ", ".join(f"{v} {by_variant[v]:.1%}" for v in natural)
            )
    return lines
