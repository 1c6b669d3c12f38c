"""The bundle's optional second network: a small CNN over speaker-centred log-mel sequences
(imports Keras; training side only). `ser-train --cnn` trains it beside the statistics model and
the bundle averages the two networks' probabilities (measured: EXPERIMENTS.md rows 16-18).

Input: `streamer.features.analyse(...).log_mel` (40 bands, 10 ms rows), minus the speaker's
causal running mean band energy (`streamer.adaptation.AdaptiveCentering`, simulated here in
random utterance orders exactly as `adapt_in_order` does for the statistics), cut into windows
of `frames` rows by `streamer.features.log_mel_windows` (a clip's windows' outputs averaged).
Network: per-band standardisation (fixed, from the training frames), 4 conv blocks (3x3,
16-32-64-128 filters, batch norm, ReLU; the first strides by 2, the others max-pool 2x2), mean
and standard deviation over time, dropout, softmax: 102k weights. Training: each epoch every clip
appears once, as its clean audio with probability `clean_share`, else as one of the augmented
copies, randomly cropped, with SpecAugment masks (set to the band mean); Adam with cosine decay
over a fixed number of epochs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from ser.adaptation import AdaptationPrior, AdaptiveCentering, push_in_order
from ser.features import log_mel_windows

logger = logging.getLogger(__name__)

Mels = list[npt.NDArray[np.float32]]  # n x (n_frames, n_mels)


@dataclass(frozen=True)
class CnnConfig:
    """Hyper-parameters of the log-mel CNN."""

    frames: int = 300  # window length, 3 s at 10 ms
    filters: tuple[int, ...] = (16, 32, 64, 128)
    dropout: float = 0.3
    epochs: int = 80  # sweep (EXPERIMENTS.md): 80 epochs and lr 3e-3 beat 40 and 1e-3
    batch_size: int = 32
    learning_rate: float = 3e-3
    clean_share: float = 0.5  # the rest is split evenly over the augmented copies
    time_masks: int = 2
    max_time_mask: int = 25  # frames
    band_masks: int = 2
    max_band_mask: int = 5  # bands
    # "stats": mean and std over time; "attention": the same, weighted by a learned attention
    # over time (attentive statistics pooling, Okabe et al. 2018)
    pooling: str = "stats"
    recurrent_units: int = 0  # > 0: a bidirectional GRU over time before the pooling (CRNN)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "filters": list(self.filters)}


def band_means(mels: Mels) -> npt.NDArray[np.float64]:
    """(n, n_mels) mean log-mel band energy of each sequence."""
    return np.stack([m.mean(axis=0) for m in mels]).astype(np.float64)


def centred_in_order(
    mels: Mels, streams: npt.ArrayLike, prior: AdaptationPrior, rng: np.random.Generator
) -> Mels:
    """Simulate live centring over a data set: each stream's sequences in a random order (the
    order `adapt_in_order` draws with the same rng); sequence i minus its stream's running mean
    band energy up to and including it."""
    return push_in_order(mels, streams, AdaptiveCentering(prior).push, rng)


def random_window(
    seq: npt.NDArray[np.float32], frames: int, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """(t, m) -> (frames, m): repeat-padded when short (as `log_mel_windows`), else a random
    crop."""
    if len(seq) <= frames:
        return np.asarray(log_mel_windows(seq, frames)[0], dtype=np.float32)
    start = int(rng.integers(0, len(seq) - frames + 1))
    return seq[start : start + frames]


def spec_augment(
    x: npt.NDArray[np.float32],
    fill: npt.NDArray[np.float32],
    config: CnnConfig,
    rng: np.random.Generator,
) -> None:
    """In place on (n, frames, m): `time_masks` stripes of up to `max_time_mask` frames and
    `band_masks` of up to `max_band_mask` bands, set to `fill` (m,) (the band means, which the
    network's standardisation maps to 0)."""
    n, t, m = x.shape
    for i in range(n):
        for _ in range(config.time_masks):
            w = int(rng.integers(0, config.max_time_mask + 1))
            s = int(rng.integers(0, t - w + 1))
            x[i, s : s + w, :] = fill
        for _ in range(config.band_masks):
            w = int(rng.integers(0, config.max_band_mask + 1))
            s = int(rng.integers(0, m - w + 1))
            x[i, :, s : s + w] = fill[s : s + w]


@lru_cache(maxsize=1)
def stats_pooling_class() -> Any:
    """The StatsPooling layer class, registered with Keras (call before loading a cnn.keras)."""
    import keras

    @keras.saving.register_keras_serializable(package="ser")
    class StatsPooling(keras.layers.Layer):  # type: ignore[misc]
        """(batch, time, channels) -> (batch, 2 * channels): mean and standard deviation over
        time; with `attention`, weighted by a learned softmax over time."""

        def __init__(self, attention: bool = False, attention_units: int = 64, **kwargs: Any):
            super().__init__(**kwargs)
            self.attention = attention
            self.attention_units = attention_units
            if attention:
                self.score_hidden = keras.layers.Dense(attention_units, activation="tanh")
                self.score = keras.layers.Dense(1)

        def call(self, h: Any) -> Any:
            ops = keras.ops
            if self.attention:
                weights = ops.softmax(self.score(self.score_hidden(h)), axis=1)
                mean = ops.sum(weights * h, axis=1)
                var = ops.sum(weights * ops.square(h - ops.expand_dims(mean, 1)), axis=1)
            else:
                mean = ops.mean(h, axis=1)
                var = ops.mean(ops.square(h - ops.expand_dims(mean, 1)), axis=1)
            return ops.concatenate([mean, ops.sqrt(var + 1e-5)], axis=-1)

        def get_config(self) -> dict[str, Any]:
            return {
                **super().get_config(),
                "attention": self.attention,
                "attention_units": self.attention_units,
            }

    return StatsPooling


def build_cnn(
    config: CnnConfig,
    n_labels: int,
    mean: npt.NDArray[np.float32],
    variance: npt.NDArray[np.float32],
    steps: int,
    *,
    masked: bool = False,
) -> Any:
    """Compiled Keras model: (batch, frames, n_mels) centred log-mel -> (batch, n_labels).
    `masked`: the loss is `train.model.masked_crossentropy` (targets carry label masks)."""
    import keras

    from ser_train.model import masked_crossentropy

    keras.utils.set_random_seed(config.seed)
    n_mels = len(mean)
    inputs = keras.Input((config.frames, n_mels), name="log_mel")
    h = keras.layers.Normalization(mean=mean, variance=variance, name="standardize")(inputs)
    h = keras.layers.Reshape((config.frames, n_mels, 1))(h)
    for block, filters in enumerate(config.filters):
        # the first block downsamples by a stride-2 convolution: 4x cheaper than conv + pool
        stride = 2 if block == 0 else 1
        h = keras.layers.Conv2D(filters, 3, stride, padding="same", use_bias=False)(h)
        h = keras.layers.BatchNormalization(momentum=0.9)(h)
        h = keras.layers.ReLU()(h)
        if block > 0:
            h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Reshape((h.shape[1], h.shape[2] * h.shape[3]))(h)
    if config.recurrent_units > 0:
        gru = keras.layers.GRU(config.recurrent_units, return_sequences=True)
        h = keras.layers.Bidirectional(gru)(h)
    if config.pooling not in ("stats", "attention"):
        raise ValueError(f"pooling must be stats or attention, not {config.pooling!r}")
    pooling = stats_pooling_class()(attention=config.pooling == "attention", name="pooling")
    h = pooling(h)
    h = keras.layers.Dropout(config.dropout)(h)
    outputs = keras.layers.Dense(n_labels, activation="softmax", name="probabilities")(h)
    model = keras.Model(inputs, outputs, name="ser_logmel_cnn")
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps)
    loss = masked_crossentropy(n_labels) if masked else "categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss)
    return model


@dataclass(frozen=True)
class TrainedCnn:
    """A trained CNN and the centring prior it was trained with."""

    model: Any
    prior: AdaptationPrior | None  # population band means (n_mels,); None: no centring


def fit_cnn(
    mels: dict[str, Mels],
    y: npt.NDArray[np.int64],
    speakers: npt.NDArray[Any],
    n_labels: int,
    config: CnnConfig,
    *,
    adapt: bool,
    augment: Sequence[str] = (),
    on_epoch: Callable[[int], None] | None = None,
    label_mask: npt.NDArray[np.bool_] | None = None,
) -> TrainedCnn:
    """Train on `mels["clean"]` and `mels[v]` for v in `augment` (rows aligned with y and
    speakers). Adapted copies are centred per speaker in one random order each. `label_mask`
    (n, n_labels): the labels each row's corpus has (see `train.model.masked_crossentropy`)."""
    from ser_train.model import targets_of

    prior = AdaptationPrior.from_features(band_means(mels["clean"])) if adapt else None
    variants = ["clean", *augment]
    train_sets = [
        mels[v]
        if prior is None
        else centred_in_order(mels[v], speakers, prior, np.random.default_rng(config.seed + k))
        for k, v in enumerate(variants)
    ]
    stacked = np.concatenate(train_sets[0])
    mean, variance = stacked.mean(0), stacked.var(0) + 1e-12
    share = [1.0]  # chance of each variant per clip and epoch; without copies, always clean
    if augment:
        share = [config.clean_share] + [(1 - config.clean_share) / len(augment)] * len(augment)
    if label_mask is not None and label_mask.all():
        label_mask = None
    targets = targets_of(y, n_labels, label_mask)
    steps = config.epochs * int(np.ceil(len(y) / config.batch_size))
    model = build_cnn(config, n_labels, mean, variance, steps, masked=label_mask is not None)
    rng = np.random.default_rng(config.seed)
    for epoch in range(config.epochs):
        pick = rng.choice(len(variants), size=len(y), p=share)
        batch = np.stack(
            [random_window(train_sets[v][i], config.frames, rng) for i, v in enumerate(pick)]
        ).astype(np.float32)
        spec_augment(batch, mean.astype(np.float32), config, rng)
        history = model.fit(
            batch, targets, batch_size=config.batch_size, epochs=1, shuffle=True, verbose=0
        )
        logger.debug("cnn epoch %d loss %.3f", epoch + 1, history.history["loss"][-1])
        if on_epoch is not None:
            on_epoch(epoch)
    return TrainedCnn(model, prior)


def predict_cnn(
    trained: TrainedCnn, mels: Mels, streams: npt.ArrayLike, order_seed: int, frames: int
) -> npt.NDArray[np.float32]:
    """(n, n_labels) probabilities of raw log-mel sequences, centred per stream in the random
    order rng(order_seed) draws (the order the statistics model's test set uses), each the mean
    over its `log_mel_windows`."""
    if trained.prior is not None:
        mels = centred_in_order(mels, streams, trained.prior, np.random.default_rng(order_seed))
    return _predict_sequences(trained, mels, frames)


def predict_cnn_sessions(
    trained: TrainedCnn, mels: Mels, sessions: Sequence[npt.NDArray[np.intp]], frames: int
) -> npt.NDArray[np.float32]:
    """(sum of session lengths, n_labels) probabilities of the sessions' utterances (row
    indices into `mels`, in utterance order), each session one live stream whose centring
    starts fresh, as `ser-live` runs it; sessions concatenated."""
    seqs: Mels = []
    for stream, rows in enumerate(sessions):
        if trained.prior is None:
            seqs += [mels[i] for i in rows]
            continue
        centring = AdaptiveCentering(trained.prior)
        seqs += [centring.push(stream, mels[i]) for i in rows]
    if not seqs:
        return np.empty((0, trained.model.output_shape[-1]), dtype=np.float32)
    return _predict_sequences(trained, seqs, frames)


def _predict_sequences(trained: TrainedCnn, mels: Mels, frames: int) -> npt.NDArray[np.float32]:
    """(n, n_labels): each (already centred) sequence's mean over its `log_mel_windows`."""
    windows = [log_mel_windows(m, frames) for m in mels]
    probs = np.asarray(
        trained.model.predict(np.concatenate(windows), batch_size=256, verbose=0),
        dtype=np.float32,
    )
    ends = np.cumsum([len(w) for w in windows])
    return np.stack([p.mean(axis=0) for p in np.split(probs, ends[:-1])]).astype(np.float32)
