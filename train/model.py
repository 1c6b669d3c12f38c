"""The Keras network and its training loop (imports TensorFlow; training side only)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
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
    epochs: int = 30  # fixed schedule: early stopping on few actors is too noisy
    batch_size: int = 32
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


def build_model(x_train: npt.NDArray[np.float32], n_labels: int, config: TrainConfig) -> Any:
    """Normalization (adapted on `x_train`, stored in the model) -> dropout -> dense -> softmax."""
    import keras

    dim = x_train.shape[1]
    norm = keras.layers.Normalization(name="standardize")
    norm.adapt(x_train)
    inputs = keras.Input((dim,), name="features")
    h = norm(inputs)
    h = keras.layers.Dropout(config.input_dropout)(h)
    h = keras.layers.Dense(
        config.hidden_units,
        activation="relu",
        kernel_regularizer=keras.regularizers.l2(config.l2),
        name="hidden",
    )(h)
    h = keras.layers.Dropout(config.hidden_dropout)(h)
    outputs = keras.layers.Dense(n_labels, activation="softmax", name="probabilities")(h)
    model = keras.Model(inputs, outputs, name="ser_dense")
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="sparse_categorical_crossentropy",
    )
    return model


def fit(
    x_train: npt.NDArray[np.float32],
    y_train: npt.NDArray[np.int64],
    n_labels: int,
    config: TrainConfig,
    on_epoch: Callable[[int], None] | None = None,
) -> Any:
    """Train a fresh model with fixed seeds; `on_epoch(epoch_index)` after each epoch."""
    import keras

    keras.utils.set_random_seed(config.seed)
    model = build_model(x_train, n_labels, config)
    callbacks = []
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda e, _logs: on_epoch(e)))
    model.fit(
        x_train,
        y_train,
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    return model


def predict(model: Any, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """(n, dim) -> (n, n_labels) probabilities."""
    return np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float32)


def to_tflite(model: Any) -> bytes:
    """Convert a Keras model to a float32 TFLite flatbuffer."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    return bytes(converter.convert())
