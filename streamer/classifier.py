"""Run a bundle's `.tflite` models with LiteRT (no TensorFlow import).

A bundle holds a network over the utterance statistics, a pretrained encoder with a head over
its pooled layers, or both, and optionally a log-mel CNN; the output combines their
probabilities as the manifest's "combine" says (mean or geometric mean), then applies the
bundle's calibration temperature. The encoder itself (the costly part) is a feature view: it
runs where the features are computed (`streamer.workers`, or `Classifier.analyse` in-process),
and this class runs only the head over its adapted embedding.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ser.adaptation import AdaptiveCentering, AdaptiveNormalizer, mix_geometric
from ser.bundle import Bundle, BundleError, EncoderSection, load_bundle
from ser.encoder import Encoder, UtteranceEncoder
from ser.familiar import Familiarity, load_familiarity
from ser.features import FEATURE_SPEC, Analysis, log_mel_windows
from ser.native_log import NativeStderrFilter
from ser.scoring import apply_temperature, combine

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ModelInput:
    """What a bundle's networks read for one utterance, speaker-adapted."""

    features: npt.NDArray[np.float32]  # (dim,) statistics; (0,) where the bundle reads none
    log_mel: npt.NDArray[np.float32] | None  # (n_frames, n_mels); None: the bundle has no CNN
    # (len(layers) * 1024,) the encoder's embedding; None: the bundle has no encoder
    embedding: npt.NDArray[np.float32] | None = None
    # True: unadapted inputs, for the bundle's alone network (`SpeakerAdapter.alone`)
    alone: bool = False
    # with `alone`: the same utterance adapted as a stream's first, for the speaker-adapted
    # networks' share of its alone reading (None: the alone network's reading stands alone)
    first: ModelInput | None = None


_ALONE = object()  # the stream key of `SpeakerAdapter.alone`'s throwaway state


class SpeakerAdapter:
    """Per-stream adaptation state for a bundle's networks. Call `push` once per utterance, in
    utterance order: it uses that stream's earlier utterances (see streamer/adaptation.py)."""

    def __init__(self, bundle: Bundle, *, history: bool = True) -> None:
        """`history` False: every utterance is read alone (`alone`; no memory kept;
        `pipeline.adaptation = "off"`)."""
        self._history = history
        spec = bundle.alone
        self._has_alone = spec is not None
        # the speaker-adapted networks share the alone reading (see Classifier._predict_alone)
        self._alone_mixes = spec is not None and (
            spec.weight < 1.0 or spec.familiar_path is not None
        )
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

    def reset(self, stream: Hashable | None = None) -> None:
        """Forget `stream`'s history (None: every stream's): a new speaker starts."""
        for state in (self._normalizer, self._centring, self._embedding):
            if state is not None:
                state.reset(stream)

    def push(self, stream: Hashable, analysis: Analysis) -> ModelInput:
        """The utterance's model input, every view adapted with the stream's earlier
        utterances (an adapter that keeps no history gives `alone`'s)."""
        if not self._history:
            return self.alone(analysis)
        return self._push(stream, analysis)

    @property
    def keeps_history(self) -> bool:
        return self._history

    def alone(self, analysis: Analysis) -> ModelInput:
        """The utterance's model input with no history (nothing kept): the reading the bundle's
        history gate weighs against `push`'s. For a bundle with an alone network, the unadapted
        views it reads (`alone` set); else adapted as a stream's first."""
        first = None
        if not self._has_alone or self._alone_mixes:
            first = self._push(_ALONE, analysis)
            self.reset(_ALONE)
        if self._has_alone:
            return ModelInput(
                analysis.vector,
                analysis.log_mel if self._log_mel else None,
                self._embedding_of(analysis),
                alone=True,
                first=first,
            )
        assert first is not None
        return first

    def _push(self, stream: Hashable, analysis: Analysis) -> ModelInput:
        features = analysis.vector
        if self._normalizer is not None:
            features = self._normalizer.push(stream, features)
        log_mel = analysis.log_mel if self._log_mel else None
        if log_mel is not None and self._centring is not None:
            log_mel = self._centring.push(stream, log_mel)
        embedding = self._embedding_of(analysis)
        if embedding is not None and self._embedding is not None:
            embedding = self._embedding.push(stream, embedding)
        return ModelInput(features, log_mel, embedding)

    def _embedding_of(self, analysis: Analysis) -> npt.NDArray[np.float32] | None:
        """The unadapted embedding an encoder bundle reads (None without an encoder)."""
        if not self._encoder:
            return None
        if analysis.embedding is None:
            raise ValueError(
                "this bundle has an encoder: its input needs the encoder's embedding "
                "(FeatureWorkers(encoder=bundle.encoder) or Classifier.analyse)"
            )
        return analysis.embedding


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

        self._batch = 1

    def run(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """One example of `input_shape` -> (n_labels,) probabilities, in a batch of one (the
        CNN's windows and the speech detector: no padded rows to compute)."""
        row: npt.NDArray[np.float32] = self.run_many(x.reshape(1, *self.input_shape), pad=False)[0]
        return row

    def run_many(self, x: npt.NDArray[np.float32], pad: bool = True) -> npt.NDArray[np.float32]:
        """(n, *input_shape) float32 -> (n, n_labels) probabilities, in one call. Each row's
        result is the same, bit for bit, as alone (the networks are float32 dense layers, run
        row by row by XNNPACK; tests/test_inference.py checks it). The rows are zero-padded to
        `_padded_rows(n)` (`pad`): a few batch shapes, so the interpreter is rarely resized (a
        resize costs about half a run), and 4 rows cost what 1 does (the weights are read once)."""
        n = int(x.shape[0])
        rows = _padded_rows(n) if pad else n
        if rows != self._batch:
            self._interpreter.resize_tensor_input(
                self._input_index, [rows, *self.input_shape], strict=False
            )
            self._interpreter.allocate_tensors()
            self._batch = rows
        batch = np.zeros((rows, *self.input_shape), np.float32)
        batch[:n] = x.reshape(n, *self.input_shape)
        self._interpreter.set_tensor(self._input_index, batch)
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._output_index)[:n], dtype=np.float32)


def _padded_rows(n: int) -> int:
    """The batch shape `n` rows run in: at least 4, else the next power of 2."""
    return max(4, 1 << (n - 1).bit_length())


class Classifier:
    """Class probabilities for adapted model inputs. Not thread-safe: use it from one thread."""

    def __init__(self, bundle: Bundle, num_threads: int = 1) -> None:
        self.bundle = bundle
        self._temperature = bundle.temperature
        self._combine = bundle.combine
        n_labels = len(bundle.labels)
        self._stats = (
            _Model(bundle.tflite_path, n_labels, num_threads)
            if bundle.has_statistics_network
            else None
        )
        cnn = bundle.cnn
        self._cnn = _Model(cnn.tflite_path, n_labels, num_threads) if cnn is not None else None
        self._frames = cnn.frames if cnn is not None else 0
        speech = bundle.speech
        self._speech = _Model(speech.tflite_path, 1, num_threads) if speech is not None else None
        self._speech_reads_embedding = speech is not None and speech.reads_embedding
        self.needs_statistics = bundle.needs_statistics
        encoder = bundle.encoder
        self.num_threads = num_threads
        self._embedder: UtteranceEncoder | None = None  # in-process, opened when first needed
        self._head: _Model | None = None
        self._embedding_dim = self._raw_embedding_dim = 0  # the head's input; the encoder's
        if encoder is not None:
            self._head, self._embedding_dim, self._raw_embedding_dim = _open_encoder(
                encoder, n_labels, num_threads
            )
        alone = bundle.alone
        self._alone: _Model | None = None
        self._alone_reads_embedding = False
        self._alone_temperature = 1.0
        self._alone_weight = 1.0
        self._familiarity: Familiarity | None = None
        if alone is not None:
            self._alone_weight = alone.weight
            if alone.familiar_path is not None:
                try:
                    self._familiarity = load_familiarity(
                        alone.familiar_path, alone.familiar_threshold, alone.weight
                    )
                except (OSError, ValueError, KeyError) as exc:
                    raise BundleError(
                        f"{alone.familiar_path}: unreadable ({exc}); retrain the bundle"
                    ) from exc
            self._alone = _Model(alone.tflite_path, n_labels, num_threads)
            self._alone_reads_embedding = alone.reads_embedding
            self._alone_temperature = alone.temperature
            familiar = self._familiarity
            if familiar is not None and familiar.mean.shape != (self._raw_embedding_dim,):
                raise BundleError(
                    f"{alone.familiar_path} describes {familiar.mean.shape[0]}-value embeddings "
                    f"but the encoder gives {self._raw_embedding_dim}; retrain the bundle"
                )
            wanted = (self._raw_embedding_dim if alone.reads_embedding else FEATURE_SPEC.dim,)
            if self._alone.input_shape != wanted:
                raise BundleError(
                    f"{alone.tflite_path} reads {self._alone.input_shape} but the unadapted "
                    f"{'embedding' if alone.reads_embedding else 'statistics'} are {wanted}; "
                    "retrain the bundle"
                )
        if speech is not None and self._speech is not None:
            reads = "embedding" if self._speech_reads_embedding else "statistics"
            wanted = (
                self._raw_embedding_dim if self._speech_reads_embedding else FEATURE_SPEC.dim,
            )
            if self._speech.input_shape != wanted:
                raise BundleError(
                    f"{speech.tflite_path} reads {self._speech.input_shape} but the unadapted "
                    f"{reads} are {wanted}; retrain it with --speech-only"
                )
        prior = bundle.adaptation
        stats = self._stats
        if (
            stats is not None
            and prior is not None
            and stats.input_shape != (prior.output_dim(len(prior.mean)),)
        ):
            raise BundleError(
                f"{bundle.tflite_path} reads {stats.input_shape} but the manifest's "
                f"adaptation ({prior.inputs}) gives ({prior.output_dim(len(prior.mean))},); "
                "retrain the bundle"
            )
        if self._cnn is not None and self._cnn.input_shape[0] != self._frames:
            raise BundleError(
                f"{bundle.path}: the CNN reads {self._cnn.input_shape[0]} frames but the "
                f"manifest says {self._frames}; retrain the bundle"
            )

    @classmethod
    def from_dir(cls, path: Path) -> Classifier:
        return cls(load_bundle(path))

    def adapter(self, *, history: bool = True) -> SpeakerAdapter:
        """A fresh per-stream adapter for this bundle's inputs (`history` False: none kept)."""
        return SpeakerAdapter(self.bundle, history=history)

    @property
    def has_speech_detector(self) -> bool:
        return self._speech is not None

    def speech_probability(self, analysis: Analysis | npt.NDArray[np.float32]) -> float:
        """P(speech) of one utterance from its analysis (or the detector's input alone: the
        unadapted (dim,) statistics, or the unadapted embedding where the detector reads it);
        1.0 when the bundle has no speech detector. Its own interpreter: may run beside
        `predict` in another thread, but not beside itself."""
        if self._speech is None:
            return 1.0
        x = analysis
        if isinstance(analysis, Analysis):
            x = analysis.vector
            if self._speech_reads_embedding:
                if analysis.embedding is None:
                    raise ValueError("this bundle's speech detector reads the encoder's embedding")
                x = analysis.embedding
        return float(self._speech.run(np.asarray(x, dtype=np.float32))[0])

    @property
    def has_encoder(self) -> bool:
        """Whether analyses must carry the encoder's embedding (see `analyse`)."""
        return self._head is not None

    def analyse(self, audio: npt.ArrayLike, sample_rate: int) -> Analysis:
        """One utterance (mono, shape (n,)) -> every feature view this bundle reads, computed
        in this process, as the feature workers compute them."""
        from ser.encoder import read_utterance

        return read_utterance(
            np.asarray(audio),
            sample_rate,
            embed=self.embed if self.bundle.encoder is not None else None,
            statistics=self.needs_statistics,
        )

    def embed(self, audio: npt.ArrayLike, sample_rate: int) -> npt.NDArray[np.float32]:
        """One utterance (mono, shape (n,)) -> the encoder's (dim,) unadapted embedding, in this
        process (its encoder is opened at the first call). Only for bundles with an encoder."""
        section = self.bundle.encoder
        if section is None:
            raise ValueError(f"{self.bundle.path}: this bundle has no encoder")
        if self._embedder is None:
            self._embedder = UtteranceEncoder(
                section.encoder_path, section.layers, num_threads=self.num_threads
            )
        return self._embedder.embed(audio, sample_rate)

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
        """`predict` for several utterances, in order (per stream: utterance order), each
        network run once for all of them (the same probabilities as one by one). A failing
        utterance yields its exception."""
        try:
            return list(self._read(batch))
        except Exception as exc:  # one bad utterance must not fail the others: each alone
            if len(batch) == 1:
                return [exc]
        out: list[npt.NDArray[np.float32] | Exception] = []
        for inputs in batch:
            try:
                out.append(self._read([inputs])[0])
            except Exception as exc:
                out.append(exc)
        return out

    @property
    def has_alone_networks(self) -> bool:
        """Whether utterances alone are read by a network of their own (`ModelInput.alone`)."""
        return self._alone is not None

    def _read(self, batch: Sequence[ModelInput]) -> npt.NDArray[np.float32]:
        """(n, n_labels) calibrated probabilities of `batch`: adapted inputs by the
        speaker-adapted networks, alone ones by the alone network mixed with their `first`
        (adapted) reading by `alone_weight`. Each network runs once for the whole batch: the
        adapted inputs and the alone ones' firsts together, the alone network only on the
        rows that take a share of it (a weight above 0; an unfamiliar recording's is 0)."""
        out = np.empty((len(batch), len(self.bundle.labels)), np.float32)
        adapted = [i for i, inputs in enumerate(batch) if not inputs.alone]
        alone = [i for i, inputs in enumerate(batch) if inputs.alone]
        weights = [self._alone_share(batch[i]) for i in alone]
        mixed = [i for i, w in zip(alone, weights, strict=True) if w < 1.0]
        firsts = [batch[i].first for i in mixed]
        if any(first is None or first.alone for first in firsts):
            raise ValueError("this bundle's alone reading needs the utterance adapted as a first")
        rows = [batch[i] for i in adapted] + [f for f in firsts if f is not None]
        readings = self._read_adapted(rows) if rows else out[:0]
        out[adapted] = readings[: len(adapted)]
        out[mixed] = readings[len(adapted) :]
        shared = [i for i, w in zip(alone, weights, strict=True) if w > 0.0]
        if shared:
            probs = self._read_alone([batch[i] for i in shared])
            share = dict(zip(alone, weights, strict=True))
            for i, row in zip(shared, probs, strict=True):
                w = share[i]
                out[i] = row if w >= 1.0 else mix_geometric(row, out[i], w)
        return out

    def _alone_share(self, inputs: ModelInput) -> float:
        """The alone network's share of an alone input's reading (`alone_weight`), after
        checking that this bundle has one and that it can read `inputs`."""
        if self._alone is None:
            raise ValueError(f"{self.bundle.path}: this bundle has no alone network")
        view = inputs.embedding if self._alone_reads_embedding else inputs.features
        if view is None or view.shape != self._alone.input_shape:
            what = "embedding" if self._alone_reads_embedding else "statistics"
            raise ValueError(
                f"this bundle's alone network needs a {self._alone.input_shape} {what}"
            )
        return self.alone_weight(inputs.embedding)

    def _read_adapted(self, batch: Sequence[ModelInput]) -> npt.NDArray[np.float32]:
        """(n, n_labels): the speaker-adapted networks' combined, calibrated reading."""
        parts = []
        if self._stats is not None:
            parts.append(self._stats.run_many(_rows([i.features for i in batch])))
        if self._cnn is not None:
            rows = []
            for inputs in batch:
                if inputs.log_mel is None:
                    raise ValueError("this bundle has a CNN: its input needs the log-mel sequence")
                windows = log_mel_windows(inputs.log_mel, self._frames)
                rows.append(np.mean([self._cnn.run(w) for w in windows], axis=0))
            parts.append(np.stack(rows))
        if self._head is not None:
            if any(
                i.embedding is None or i.embedding.shape != (self._embedding_dim,) for i in batch
            ):
                raise ValueError(
                    f"this bundle has an encoder: its input needs a ({self._embedding_dim},) "
                    "embedding"
                )
            parts.append(self._head.run_many(_rows([i.embedding for i in batch])))
        probs = combine(parts, self._combine)
        return apply_temperature(probs, self._temperature) if self._temperature != 1.0 else probs

    def _read_alone(self, batch: Sequence[ModelInput]) -> npt.NDArray[np.float32]:
        """(n, n_labels): the alone network's reading of unadapted inputs (checked by
        `_alone_share`), calibrated with its temperature."""
        assert self._alone is not None
        views = [i.embedding if self._alone_reads_embedding else i.features for i in batch]
        probs = self._alone.run_many(_rows(views))
        t = self._alone_temperature
        return apply_temperature(probs, t) if t != 1.0 else probs

    def alone_weight(self, embedding: npt.ArrayLike | None) -> float:
        """The alone network's share of an utterance's alone reading: the bundle's weight,
        where its familiarity finds the (unadapted) embedding familiar; else 0."""
        if self._familiarity is None:
            return self._alone_weight
        if embedding is None:
            raise ValueError("this bundle judges familiar recordings on the encoder's embedding")
        return float(self._familiarity.alone_weight(embedding))

    def probabilities(self, audio: npt.ArrayLike, sample_rate: int) -> dict[str, float]:
        """One utterance (mono, shape (n,)) -> {label: probability} in the bundle's label order."""
        # a single utterance: no speaker history
        probs = self.predict(self.adapter().alone(self.analyse(audio, sample_rate)))
        return dict(zip(self.bundle.labels, (float(p) for p in probs), strict=True))


def _rows(vectors: Sequence[npt.ArrayLike | None]) -> npt.NDArray[np.float32]:
    """Equal-length vectors -> one (n, dim) float32 batch."""
    return np.stack([np.asarray(v, dtype=np.float32) for v in vectors])


def _open_encoder(
    section: EncoderSection, n_labels: int, num_threads: int
) -> tuple[_Model, int, int]:
    """The bundle's head, its input size and the encoder's embedding size, after checking the
    encoder file (sha256, layers) that the feature workers will run."""
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
    dim = len(section.layers) * encoder.dim
    del encoder  # the workers run it; this process opens one only for `analyse`
    head = _Model(section.head_path, n_labels, num_threads)
    adapted = section.adaptation.output_dim(dim) if section.adaptation is not None else dim
    if head.input_shape != (adapted,):
        raise BundleError(
            f"{section.head_path} reads {head.input_shape} but the encoder's layers "
            f"{list(section.layers)} give ({adapted},) as adapted; retrain the bundle"
        )
    return head, adapted, dim
