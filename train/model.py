"""The Keras network and its training loop (imports TensorFlow; training side only)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of the dense network over utterance statistics."""

    hidden_units: int = 256
    input_dropout: float = 0.3
    hidden_dropout: float = 0.5
    l2: float = 1e-3
    learning_rate: float = 1e-3
    epochs: int = 12  # fixed schedule: early stopping on few actors is too noisy
    batch_size: int = 32
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0  # > 0: train on mixup pairs, weight ~ Beta(alpha, alpha)
    ensemble: int = 3  # members with seeds seed, seed+1, ...; their probabilities averaged
    # "seeds": every member sees all training speakers; "speakers": member i leaves out the
    # i-th of `ensemble` groups of training speakers (a fold ensemble)
    ensemble_split: str = "seeds"
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def training_device() -> str:
    """'GPU:0 (name)' when TensorFlow sees a GPU, else 'CPU'."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"GPU:0 ({details.get('device_name', gpus[0].name)})"


@lru_cache(maxsize=1)
def _masked_loss_class() -> Any:
    import keras

    @keras.saving.register_keras_serializable(package="ser")
    class MaskedCrossentropy(keras.losses.Loss):  # type: ignore[misc]
        """See `masked_crossentropy`."""

        def __init__(self, n_labels: int, label_smoothing: float = 0.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.n_labels = n_labels
            self.label_smoothing = label_smoothing

        def call(self, y_true: Any, y_pred: Any) -> Any:
            ops = keras.ops
            target, mask = y_true[:, : self.n_labels], y_true[:, self.n_labels :]
            if self.label_smoothing > 0:
                spread = mask / ops.maximum(ops.sum(mask, axis=-1, keepdims=True), 1.0)
                target = target * (1.0 - self.label_smoothing) + self.label_smoothing * spread
            p = y_pred * mask
            p = p / ops.maximum(ops.sum(p, axis=-1, keepdims=True), 1e-7)
            return -ops.sum(target * ops.log(ops.clip(p, 1e-7, 1.0)), axis=-1)

        def get_config(self) -> dict[str, Any]:
            return {
                **super().get_config(),
                "n_labels": self.n_labels,
                "label_smoothing": self.label_smoothing,
            }

    return MaskedCrossentropy


def masked_crossentropy(n_labels: int, label_smoothing: float = 0.0) -> Any:
    """Cross-entropy for corpora that lack some labels. Targets are (batch, 2 * n_labels): the
    one-hot (or mixed) label, then a 0/1 mask of the labels the row's corpus has. The softmax is
    renormalised over the masked labels, so a row never pushes down a label its corpus cannot
    show (nEMO has no calm: its rows must not teach "never calm"). With a full mask this is
    plain categorical cross-entropy. Label smoothing spreads over the row's labels only."""
    return _masked_loss_class()(n_labels, label_smoothing, name="masked_crossentropy")


def targets_of(
    y: npt.NDArray[np.int64], n_labels: int, label_mask: npt.NDArray[np.bool_] | None
) -> npt.NDArray[np.float32]:
    """(n, n_labels) one-hot, or (n, 2 * n_labels) one-hot + mask for `masked_crossentropy`."""
    onehot = np.eye(n_labels, dtype=np.float32)[y]
    if label_mask is None:
        return onehot
    return np.concatenate([onehot, label_mask.astype(np.float32)], axis=1)


def mix_targets(
    a: npt.NDArray[np.float32],
    b: npt.NDArray[np.float32],
    weight: npt.NDArray[np.float64],
    n_labels: int,
) -> npt.NDArray[np.float32]:
    """Mixup of target rows: labels blended by `weight` (n, 1); masks (if any) united."""
    labels = weight * a[:, :n_labels] + (1 - weight) * b[:, :n_labels]
    if a.shape[1] == n_labels:
        return labels.astype(np.float32)
    masks = np.maximum(a[:, n_labels:], b[:, n_labels:])
    return np.concatenate([labels, masks], axis=1).astype(np.float32)


def build_model(
    x_train: npt.NDArray[np.float32],
    n_labels: int,
    config: TrainConfig,
    name: str = "ser_dense",
    *,
    masked: bool = False,
) -> Any:
    """Normalization (adapted on `x_train`, stored in the model) -> dropout -> dense -> softmax.
    `masked`: compile with `masked_crossentropy` (targets carry label masks)."""
    import keras

    dim = x_train.shape[1]
    norm = keras.layers.Normalization(name="standardize")
    norm.adapt(x_train)
    inputs = keras.Input((dim,), name="features")
    h = norm(inputs)
    h = keras.layers.Dropout(config.input_dropout)(h)
    if config.hidden_units > 0:
        h = keras.layers.Dense(
            config.hidden_units,
            activation="relu",
            kernel_regularizer=keras.regularizers.l2(config.l2),
            name="hidden",
        )(h)
        h = keras.layers.Dropout(config.hidden_dropout)(h)
    outputs = keras.layers.Dense(
        n_labels,
        activation="softmax",
        kernel_regularizer=keras.regularizers.l2(config.l2) if config.hidden_units == 0 else None,
        name="probabilities",
    )(h)
    model = keras.Model(inputs, outputs, name=name)
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=masked_crossentropy(n_labels, config.label_smoothing)
        if masked
        else keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        # 32 batches per graph call: same updates (checked bit-identical), ~30 % less
        # per-step Python overhead on CPU
        steps_per_execution=32,
    )
    return model


def fit(
    x_train: npt.NDArray[np.float32],
    y_train: npt.NDArray[np.int64],
    n_labels: int,
    config: TrainConfig,
    on_epoch: Callable[[int], None] | None = None,
    *,
    speakers: npt.NDArray[Any] | None = None,
    label_mask: npt.NDArray[np.bool_] | None = None,
    sample_weight: npt.NDArray[np.float64] | None = None,
) -> Any:
    """Train `config.ensemble` fresh models with fixed seeds and average them in one Keras model;
    `on_epoch(epoch_index)` after each epoch of each member. `speakers` (n,): the speaker of
    each training row, needed when `config.ensemble_split` is "speakers". `label_mask`
    (n, n_labels): the labels each row's corpus has; when some row lacks one, the loss is
    `masked_crossentropy`. `sample_weight` (n,): each row's weight in the loss."""
    import keras

    keep = [np.ones(len(y_train), dtype=bool)] * config.ensemble
    if config.ensemble_split == "speakers" and config.ensemble > 1:
        if speakers is None:
            raise ValueError('ensemble_split "speakers" needs the speaker of each training row')
        groups = np.array_split(np.unique(speakers), config.ensemble)
        keep = [~np.isin(speakers, group) for group in groups]
    elif config.ensemble_split not in ("seeds", "speakers"):
        raise ValueError(f"ensemble_split must be seeds or speakers, not {config.ensemble_split!r}")
    if label_mask is not None and label_mask.all():
        label_mask = None  # every row has every label: plain cross-entropy
    members = [
        _fit_one(
            x_train[rows],
            y_train[rows],
            n_labels,
            replace(config, seed=config.seed + i),
            on_epoch,
            name=f"member{i}",
            label_mask=None if label_mask is None else label_mask[rows],
            sample_weight=None if sample_weight is None else sample_weight[rows],
        )
        for i, rows in enumerate(keep)
    ]
    if len(members) == 1:
        return members[0]
    inputs = keras.Input((x_train.shape[1],), name="features")
    averaged = keras.layers.Average(name="probabilities")([m(inputs) for m in members])
    return keras.Model(inputs, averaged, name="ser_ensemble")


def _fit_one(
    x_train: npt.NDArray[np.float32],
    y_train: npt.NDArray[np.int64],
    n_labels: int,
    config: TrainConfig,
    on_epoch: Callable[[int], None] | None,
    *,
    name: str,
    label_mask: npt.NDArray[np.bool_] | None = None,
    sample_weight: npt.NDArray[np.float64] | None = None,
) -> Any:
    import keras

    keras.utils.set_random_seed(config.seed)
    model = build_model(
        x_train,
        n_labels,
        config,
        name if config.ensemble > 1 else "ser_dense",
        masked=label_mask is not None,
    )
    callbacks = []
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda e, _logs: on_epoch(e)))
    targets = targets_of(y_train, n_labels, label_mask)
    if config.mixup_alpha <= 0:
        model.fit(
            x_train,
            targets,
            epochs=config.epochs,
            batch_size=config.batch_size,
            shuffle=True,
            verbose=0,
            callbacks=callbacks,
            sample_weight=sample_weight,
        )
        return model
    # mixup (Zhang et al. 2018): each epoch, every example blended with a random partner
    rng = np.random.default_rng(config.seed)
    for epoch in range(config.epochs):
        weight = rng.beta(config.mixup_alpha, config.mixup_alpha, (len(x_train), 1))
        partner = rng.permutation(len(x_train))
        model.fit(
            (weight * x_train + (1 - weight) * x_train[partner]).astype(np.float32),
            mix_targets(targets, targets[partner], weight, n_labels),
            sample_weight=sample_weight,
            epochs=1,
            batch_size=config.batch_size,
            shuffle=True,
            verbose=0,
        )
        if on_epoch is not None:
            on_epoch(epoch)
    return model


def for_export(model: Any) -> Any:
    """An uncompiled copy with the same weights: the bundle carries no optimizer state (the
    3-member model.keras shrinks from 6.6 to 2.3 MB). `set_weights` does not refresh the
    statistics a Normalization layer derives from its adapted variables, so `finalize_state`
    is called on each (without it the copy predicts differently)."""
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    stack = list(clone.layers)
    while stack:
        layer = stack.pop()
        stack.extend(getattr(layer, "layers", []))
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()
    return clone


def predict(model: Any, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """(n, dim) -> (n, n_labels) probabilities."""
    return np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float32)


def to_tflite(model: Any) -> bytes:
    """Convert a Keras model to a float32 TFLite flatbuffer."""
    import tensorflow as tf

    # the converter's Keras export prints its "Saved artifact at ... Captures:" dump to stdout
    with contextlib.redirect_stdout(io.StringIO()) as dump:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        flatbuffer = bytes(converter.convert())
    logger.debug("TFLite converter said: %s", dump.getvalue())
    return flatbuffer
