"""Whisper's audio encoder in Keras (imports TensorFlow; training side only).

OpenAI's architecture (whisper/model.py `AudioEncoder`): Conv1d(80 -> W, k3, pad 1) + GELU,
Conv1d(W -> W, k3, stride 2, pad 1) + GELU, sinusoidal positions, N pre-norm blocks
(x + attn(LN(x)), x + MLP(LN(x)), MLP W -> 4W -> W with exact GELU), a final LayerNorm; every
LayerNorm has eps 1e-5. Base: W 512, 8 heads, 6 blocks.

Differences from the original, none of which change a valid frame's value: inputs have any
length up to 3000 frames instead of exactly 3000, and a batch may hold rows of different lengths
(`frames`): padded input frames are zeroed before each convolution (as the original's zero
padding at the end of a trimmed input) and masked out of attention and pooling. `build_pooled`
returns each layer's mean and standard deviation over valid frames; `build_frames` the last
layer's hidden states (for the check against CTranslate2).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WhisperEncoderConfig:
    n_mels: int = 80
    width: int = 512
    heads: int = 8
    blocks: int = 6
    positions: int = 1500
    layer_norm_eps: float = 1e-5


BASE = WhisperEncoderConfig()


def _layers(config: WhisperEncoderConfig, blocks: int | None = None) -> tuple[Any, Any, list[Any]]:
    """The model's inputs and its per-layer hidden states (B, T', W) plus the T' mask. `blocks`
    < config.blocks: only the first `blocks` blocks, and no final LayerNorm (it belongs to the
    last block's output), so every kept layer has the full model's value."""
    kept = config.blocks if blocks is None else blocks
    if not 1 <= kept <= config.blocks:
        raise ValueError(f"blocks must be 1..{config.blocks}, not {blocks}")
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="ser")
    class PositionalAdd(keras.layers.Layer):  # type: ignore[misc]
        """x (B, T, W) + table[:T]."""

        def build(self, input_shape: Any) -> None:
            self.table = self.add_weight(
                name="table", shape=(config.positions, config.width), trainable=False
            )

        def call(self, x: Any) -> Any:
            return x + ops.expand_dims(
                ops.slice(self.table, (0, 0), (ops.shape(x)[1], config.width)), 0
            )

    @keras.saving.register_keras_serializable(package="ser")
    class MaskedSelfAttention(keras.layers.Layer):  # type: ignore[misc]
        """Scaled dot-product attention of fused q|k|v (B, T, 3W) with a key mask (B, T)."""

        def call(self, qkv: Any, mask: Any) -> Any:
            b, t = ops.shape(qkv)[0], ops.shape(qkv)[1]
            d = config.width // config.heads

            def split(z: Any) -> Any:
                return ops.transpose(ops.reshape(z, (b, t, config.heads, d)), (0, 2, 1, 3))

            q, k, v = (split(z) for z in ops.split(qkv, 3, axis=-1))
            scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (1.0 / float(np.sqrt(d)))
            key_mask = ops.expand_dims(ops.expand_dims(mask, 1), 1)
            scores = scores + (1.0 - key_mask) * -1e9
            out = ops.matmul(ops.softmax(scores, axis=-1), v)
            return ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (b, t, config.width))

    @keras.saving.register_keras_serializable(package="ser")
    class FrameMask(keras.layers.Layer):  # type: ignore[misc]
        """(B,) valid lengths and a (B, T, C) tensor -> (B, T) float mask of `t < length`."""

        def call(self, lengths: Any, like: Any) -> Any:
            t = ops.arange(ops.shape(like)[1], dtype="int32")
            valid = ops.expand_dims(t, 0) < ops.expand_dims(ops.cast(lengths, "int32"), 1)
            return ops.cast(valid, "float32")

    @keras.saving.register_keras_serializable(package="ser")
    class _Expand(keras.layers.Layer):  # type: ignore[misc]
        """(B, T) -> (B, T, 1)."""

        def call(self, m: Any) -> Any:
            return ops.expand_dims(m, -1)

    mel = keras.Input((None, config.n_mels), name="log_mel")
    frames = keras.Input((), dtype="int32", name="frames")
    gelu = keras.layers.Activation(lambda z: keras.activations.gelu(z, approximate=False))
    mask_in = FrameMask(name="mask_in")(frames, mel)
    x = keras.layers.Multiply()([mel, _Expand()(mask_in)])
    x = keras.layers.Conv1D(config.width, 3, padding="same", name="conv1")(x)
    x = keras.layers.Multiply()([gelu(x), _Expand()(mask_in)])
    x = keras.layers.ZeroPadding1D(1)(x)
    x = keras.layers.Conv1D(config.width, 3, strides=2, padding="valid", name="conv2")(x)
    x = keras.layers.Activation(lambda z: keras.activations.gelu(z, approximate=False))(x)
    x = PositionalAdd(name="positions")(x)
    out_frames = keras.layers.Lambda(lambda n: (n + 1) // 2, name="out_frames")(frames)
    mask = FrameMask(name="mask")(out_frames, x)
    hidden = [x]
    eps = config.layer_norm_eps
    for i in range(kept):
        h = keras.layers.LayerNormalization(epsilon=eps, name=f"block{i}_attn_ln")(x)
        h = keras.layers.Dense(3 * config.width, name=f"block{i}_qkv")(h)
        h = MaskedSelfAttention(name=f"block{i}_attn")(h, mask)
        x = x + keras.layers.Dense(config.width, name=f"block{i}_attn_out")(h)
        h = keras.layers.LayerNormalization(epsilon=eps, name=f"block{i}_mlp_ln")(x)
        h = keras.layers.Dense(4 * config.width, name=f"block{i}_fc1")(h)
        h = keras.layers.Activation(lambda z: keras.activations.gelu(z, approximate=False))(h)
        x = x + keras.layers.Dense(config.width, name=f"block{i}_fc2")(h)
        hidden.append(x)
    if kept == config.blocks:
        hidden[-1] = keras.layers.LayerNormalization(epsilon=eps, name="ln_post")(x)
    return (mel, frames), mask, hidden


def build_pooled(config: WhisperEncoderConfig = BASE, blocks: int | None = None) -> Any:
    """(log_mel (B, T, 80), frames (B,)) -> (B, blocks + 1, 2 W): per layer (the stem, then
    each block), the mean then the standard deviation over each row's valid output frames.
    `blocks`: keep only the first ones (a bundle that reads layers 2 and 3 needs 3 of 6: half
    the compute, the same values)."""
    import keras
    from keras import ops

    inputs, mask, hidden = _layers(config, blocks)

    @keras.saving.register_keras_serializable(package="ser")
    class MaskedStats(keras.layers.Layer):  # type: ignore[misc]
        def call(self, h: Any, mask: Any) -> Any:
            m = ops.expand_dims(mask, -1)
            n = ops.maximum(ops.sum(m, axis=1), 1.0)
            mean = ops.sum(h * m, axis=1) / n
            var = ops.sum(ops.square(h - ops.expand_dims(mean, 1)) * m, axis=1) / n
            return ops.concatenate([mean, ops.sqrt(var + 1e-12)], axis=-1)

    pooled = [MaskedStats(name=f"stats{i}")(h, mask) for i, h in enumerate(hidden)]
    out = keras.layers.Lambda(lambda z: ops.stack(z, axis=1), name="layers")(pooled)
    return keras.Model(inputs, out, name="whisper_encoder_pooled")


def build_frames(config: WhisperEncoderConfig = BASE) -> Any:
    """(log_mel, frames) -> (B, T', W) hidden states after the final LayerNorm."""
    import keras

    inputs, _, hidden = _layers(config)
    return keras.Model(inputs, hidden[-1], name="whisper_encoder_frames")


def load_ct2_weights(model: Any, variables: dict[str, npt.NDArray[Any]]) -> None:
    """Set `model`'s weights from CTranslate2 `encoder/...` variables (float16/float32)."""

    def get(name: str) -> npt.NDArray[np.float32]:
        key = f"encoder/{name}"
        if key not in variables:
            raise KeyError(f"CTranslate2 model has no variable {key} (not a Whisper encoder?)")
        return np.asarray(variables[key], np.float32)

    def dense(layer: str, name: str) -> None:
        model.get_layer(layer).set_weights([get(f"{name}/weight").T, get(f"{name}/bias")])

    def norm(layer: str, name: str) -> None:
        model.get_layer(layer).set_weights([get(f"{name}/gamma"), get(f"{name}/beta")])

    for conv in ("conv1", "conv2"):
        model.get_layer(conv).set_weights(
            [get(f"{conv}/weight").transpose(2, 1, 0), get(f"{conv}/bias")]
        )
    model.get_layer("positions").set_weights([get("position_encodings/encodings")])
    blocks = sum(1 for layer in model.layers if layer.name.endswith("_qkv"))
    for i in range(blocks):
        prefix = f"layer_{i}"
        norm(f"block{i}_attn_ln", f"{prefix}/self_attention/layer_norm")
        dense(f"block{i}_qkv", f"{prefix}/self_attention/linear_0")
        dense(f"block{i}_attn_out", f"{prefix}/self_attention/linear_1")
        norm(f"block{i}_mlp_ln", f"{prefix}/ffn/layer_norm")
        dense(f"block{i}_fc1", f"{prefix}/ffn/linear_0")
        dense(f"block{i}_fc2", f"{prefix}/ffn/linear_1")
    if any(layer.name == "ln_post" for layer in model.layers):  # not in a trimmed encoder
        norm("ln_post", "layer_norm")


def to_tflite(model: Any, quantize: str = "float16") -> bytes:
    """Convert the pooled encoder: `quantize` "none" (float32 weights), "float16" (half-size
    weights, float32 compute) or "int8" (dynamic-range int8 weights)."""
    import tensorflow as tf

    if quantize not in ("none", "float16", "int8"):
        raise ValueError(f"quantize must be none, float16 or int8, not {quantize!r}")
    with contextlib.redirect_stdout(io.StringIO()) as dump:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        flatbuffer = bytes(converter.convert())
    logger.debug("TFLite converter said: %s", dump.getvalue())
    return flatbuffer
