"""Run a bundle's `.tflite` models with LiteRT (no TensorFlow import).

A bundle holds the statistics network and optionally a log-mel CNN and a pretrained encoder
with a head over its pooled layers; the output combines their probabilities as the manifest's
"combine" says (mean or geometric mean), then applies the bundle's calibration temperature. The
encoder (the costly part) runs on every utterance's own length, in the inference thread, for
all utterances that are ready together (`predict_many`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.adaptation import AdaptiveCentering, AdaptiveNormalizer
from streamer.bundle import Bundle, BundleError, EncoderSection, load_bundle
from streamer.encoder import Encoder, with_whisper_input
from streamer.features import Analysis, log_mel_windows
from streamer.native_log import NativeStderrFilter
from streamer.scoring import apply_temperature, combine

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ModelInput:
    """What a bundle's networks read for one utterance, speaker-adapted."""

    features: npt.NDArray[np.float32]  # (dim,) statistics
    log_mel: npt.NDArray[np.float32] | None  # (n_frames, n_mels); None: the bundle has no CNN
    # (n_frames, 80) Whisper input and the stream's adaptation of the pooled embedding, for
    # bundles with an encoder (the embedding exists only after the encoder ran)
    whisper_log_mel: npt.NDArray[np.float32] | None = None
    adapt_embedding: Callable[[npt.NDArray[np.floating]], npt.NDArray[np.float32]] | None = None


class SpeakerAdapter:
    """Per-stream adaptation state for a bundle's networks. Call `push` once per utterance, in
    utterance order: it uses that stream's earlier utterances (see streamer/adaptation.py)."""

    def __init__(self, bundle: Bundle) -> None:
        prior, cnn = bundle.adaptation, bundle.cnn
        self._normalizer = AdaptiveNormalizer(prior) if prior is not None else None
        self._centring = (
            AdaptiveCentering(cnn.centring) if cnn is not None and cnn.centring else None
        )
        self._log_mel = cnn is not None
        encoder = bundle.encoder
        self._encoder = encoder is not None
        self._embedding = (
            AdaptiveNormalizer(encoder.adaptation)
            if encoder is not None and encoder.adaptation is not None
            else None
        )

    def push(self, stream: Hashable, analysis: Analysis) -> ModelInput:
        """The utterance's model input; for an encoder bundle its embedding is adapted later, by
        the classifier, through `adapt_embedding` (call `predict` in utterance order)."""
        features = analysis.vector
        if self._normalizer is not None:
            features = self._normalizer.push(stream, features)
        log_mel = analysis.log_mel if self._log_mel else None
        if log_mel is not None and self._centring is not None:
            log_mel = self._centring.push(stream, log_mel)
        if not self._encoder:
            return ModelInput(features, log_mel)
        if analysis.whisper_log_mel is None:
            raise ValueError("this bundle has an encoder: its input needs Whisper's log-mel")
        adapt = partial(self._embedding.push, stream) if self._embedding is not None else None
        return ModelInput(features, log_mel, analysis.whisper_log_mel, adapt)


class _Model:
    """One LiteRT interpreter with a single input and a single (n_labels,) output."""

    def __init__(self, path: Path, n_labels: int, num_threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        try:
            with NativeStderrFilter():  # LiteRT's "Created ... XNNPACK delegate" INFO line
                self._interpreter: Any = Interpreter(model_path=str(path), num_threads=num_threads)
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"{path} is not a usable TFLite model ({exc})") from exc
        inp = self._interpreter.get_input_details()[0]
        out = self._interpreter.get_output_details()[0]
        self._input_index = int(inp["index"])
        self._output_index = int(out["index"])
        self.input_shape = tuple(int(d) for d in inp["shape"][1:])
        n_out = int(out["shape"][-1])
        if n_out != n_labels:
            raise BundleError(
                f"{path}: model has {n_out} outputs but the manifest names "
                f"{n_labels} labels; retrain the bundle"
            )

    def run(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """One example of `input_shape` -> (n_labels,) probabilities."""
        self._interpreter.set_tensor(self._input_index, x.reshape(1, *self.input_shape))
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._output_index)[0], dtype=np.float32)


class Classifier:
    """Class probabilities for adapted model inputs. Not thread-safe: use it from one thread."""

    def __init__(self, bundle: Bundle, num_threads: int = 1) -> None:
        self.bundle = bundle
        self._temperature = bundle.temperature
        self._combine = bundle.combine
        n_labels = len(bundle.labels)
        self._stats = _Model(bundle.tflite_path, n_labels, num_threads)
        cnn = bundle.cnn
        self._cnn = _Model(cnn.tflite_path, n_labels, num_threads) if cnn is not None else None
        self._frames = cnn.frames if cnn is not None else 0
        speech = bundle.speech
        self._speech = _Model(speech.tflite_path, 1, num_threads) if speech is not None else None
        encoder = bundle.encoder
        self._encoder: Encoder | None = None
        self._head: _Model | None = None
        self._layers: tuple[int, ...] = ()
        if encoder is not None:
            self._encoder, self._head = _open_encoder(encoder, n_labels, num_threads)
            self._layers = encoder.layers
        if self._cnn is not None and self._cnn.input_shape[0] != self._frames:
            raise BundleError(
                f"{bundle.path}: the CNN reads {self._cnn.input_shape[0]} frames but the "
                f"manifest says {self._frames}; retrain the bundle"
            )

    @classmethod
    def from_dir(cls, path: Path) -> Classifier:
        return cls(load_bundle(path))

    def adapter(self) -> SpeakerAdapter:
        """A fresh per-stream adapter for this bundle's inputs."""
        return SpeakerAdapter(self.bundle)

    @property
    def has_speech_detector(self) -> bool:
        return self._speech is not None

    def speech_probability(self, features: npt.NDArray[np.float32]) -> float:
        """P(speech) of one utterance from its unadapted (dim,) statistics; 1.0 when the
        bundle has no speech detector. Its own interpreter: may run beside `predict` in another
        thread, but not beside itself."""
        if self._speech is None:
            return 1.0
        return float(self._speech.run(np.asarray(features, dtype=np.float32))[0])

    @property
    def needs_whisper_log_mel(self) -> bool:
        """Whether model inputs must carry Whisper's log-mel (the bundle has an encoder)."""
        return self._encoder is not None

    def predict(self, inputs: ModelInput) -> npt.NDArray[np.float32]:
        """Adapted inputs of one utterance (see `adapter`) -> (n_labels,) float32 calibrated
        probabilities summing to 1."""
        result = self.predict_many([inputs])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def predict_many(
        self, batch: Sequence[ModelInput]
    ) -> list[npt.NDArray[np.float32] | Exception]:
        """`predict` for several utterances, in order (per stream: utterance order). A failing
        utterance yields its exception."""
        embeddings: list[npt.NDArray[np.float32] | Exception | None] = [None] * len(batch)
        if self._encoder is not None:
            embeddings = self._embed_all(batch)
        out: list[npt.NDArray[np.float32] | Exception] = []
        for inputs, embedding in zip(batch, embeddings, strict=True):
            try:
                if isinstance(embedding, Exception):
                    raise embedding
                out.append(self._predict_one(inputs, embedding))
            except Exception as exc:  # one bad utterance must not fail the others
                out.append(exc)
        return out

    def _embed_all(
        self, batch: Sequence[ModelInput]
    ) -> list[npt.NDArray[np.float32] | Exception | None]:
        assert self._encoder is not None
        out: list[npt.NDArray[np.float32] | Exception | None] = [
            ValueError("this bundle has an encoder: its input needs Whisper's log-mel")
        ] * len(batch)
        ok = [
            (i, x.whisper_log_mel)
            for i, x in enumerate(batch)
            if x.whisper_log_mel is not None
            and x.whisper_log_mel.ndim == 2
            and len(x.whisper_log_mel)
        ]
        # one utterance per call: a padded batch of different lengths costs more on CPU than
        # the calls it saves (BENCHMARKS.md, "Whisper-base encoder")
        for i, mel in ok:
            try:
                out[i] = self._encoder.embed([mel])[0, list(self._layers)].reshape(-1)
            except Exception as exc:  # this utterance fails, not the others of the batch
                out[i] = exc
        return out

    def _predict_one(
        self, inputs: ModelInput, embedding: npt.NDArray[np.float32] | None
    ) -> npt.NDArray[np.float32]:
        x = np.asarray(inputs.features, dtype=np.float32)
        parts = [self._stats.run(x)]
        if self._cnn is not None:
            if inputs.log_mel is None:
                raise ValueError("this bundle has a CNN: its input needs the log-mel sequence")
            windows = log_mel_windows(inputs.log_mel, self._frames)
            parts.append(np.mean([self._cnn.run(w) for w in windows], axis=0))
        if self._head is not None and embedding is not None:
            adapted = inputs.adapt_embedding(embedding) if inputs.adapt_embedding else embedding
            parts.append(self._head.run(np.asarray(adapted, dtype=np.float32)))
        probs = combine(parts, self._combine)
        return apply_temperature(probs, self._temperature) if self._temperature != 1.0 else probs

    def probabilities(self, audio: npt.ArrayLike, sample_rate: int) -> dict[str, float]:
        """One utterance (mono, shape (n,)) -> {label: probability} in the bundle's label order."""
        from streamer.features import analyse

        # a single utterance: no speaker history
        analysis = analyse(audio, sample_rate)
        if self.needs_whisper_log_mel:
            analysis = with_whisper_input(analysis, audio, sample_rate)
        probs = self.predict(self.adapter().push(0, analysis))
        return dict(zip(self.bundle.labels, (float(p) for p in probs), strict=True))


def _open_encoder(
    section: EncoderSection, n_labels: int, num_threads: int
) -> tuple[Encoder, _Model]:
    """The bundle's encoder (its sha256 checked) and head, in their own interpreters."""
    digest = hashlib.sha256()
    with open(section.encoder_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != section.sha256:
        raise BundleError(
            f"{section.encoder_path} does not match the sha256 in the manifest (a damaged or "
            "replaced file): reinstall ser or retrain the bundle"
        )
    try:
        encoder = Encoder(section.encoder_path, num_threads=num_threads)
    except ValueError as exc:
        raise BundleError(str(exc)) from exc
    if max(section.layers) >= encoder.n_layers:
        raise BundleError(
            f"{section.encoder_path} has {encoder.n_layers} pooled layers but the manifest's "
            f"head reads layer {max(section.layers)}; retrain the bundle"
        )
    return encoder, _Model(section.head_path, n_labels, num_threads)
