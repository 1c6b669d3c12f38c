"""A pretrained speech encoder as a feature view: Whisper-base's encoder, run by LiteRT.

`whisper_log_mel(audio, sample_rate)` computes Whisper's input exactly as OpenAI's
`whisper.audio.log_mel_spectrogram` does (periodic Hann STFT of 400 samples every 160 with
reflect padding, its last frame dropped, 80 Slaney mel bands, log10 floored 8 decades below
the maximum, then (x + 4) / 4), in plain numpy; tests/test_encoder.py checks it against librosa.

`Encoder(path).embed([log_mel, ...])` runs the exported encoder (train/encoder/) on a batch of
utterances of any lengths and returns, for each, the mean and standard deviation over time of
every layer's hidden states: the conv stem plus positions (layer 0) and the outputs of the six
transformer blocks (the last after the final layer norm). The encoder is run on the utterance's
own frames, not padded to Whisper's 30 s window; longer utterances are cut into 30 s chunks
whose statistics are pooled by frame count. `UtteranceEncoder(path, layers).embed(audio, rate)`
is the whole feature view a bundle's head reads: log-mel, encoder, the chosen layers' pooled
statistics, flattened; the feature workers run it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from ser.audio_io import resample
from ser.features import Analysis, analyse, embedding_only, mel_filterbank
from ser.native_log import NativeStderrFilter

logger = logging.getLogger(__name__)

ScalarT = TypeVar("ScalarT", bound=np.generic)


@dataclass(frozen=True)
class EncoderSpec:
    """Shape of Whisper's input and of the pooled embedding; bundles must match it."""

    name: str = "whisper-encoder-pooled"
    version: int = 1
    sample_rate: int = 16_000
    n_fft: int = 400
    hop_length: int = 160  # 10 ms
    n_mels: int = 80
    max_frames: int = 3_000  # 30 s: the length of Whisper's positional table (x2 for the stem)
    min_samples: int = 1_600  # shorter input is zero-padded to 100 ms
    width: int = 512
    n_blocks: int = 6

    @property
    def n_layers(self) -> int:
        """Pooled layers: the stem and every block."""
        return self.n_blocks + 1

    @property
    def dim(self) -> int:
        """Pooled values per layer (mean and std of `width` channels)."""
        return 2 * self.width

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n_layers": self.n_layers, "dim": self.dim}

    def digest(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


ENCODER_SPEC = EncoderSpec()


def _periodic_hann(n: int) -> npt.NDArray[np.float64]:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def whisper_log_mel(
    audio: npt.ArrayLike, sample_rate: int = 16_000, spec: EncoderSpec = ENCODER_SPEC
) -> npt.NDArray[np.float32]:
    """Whisper's log-mel input of one utterance.

    Args:
        audio: mono samples, shape (n,), float in [-1, 1] (int16 is scaled).
        sample_rate: rate of `audio` in Hz; resampled to 16 kHz when different.

    Returns:
        float32 array (n // 160, 80) at 16 kHz: one row per 10 ms, values about in [-1.5, 2].
    """
    y = np.asarray(audio)
    if y.ndim != 1:
        raise ValueError(f"audio must be mono with shape (n,), got shape {y.shape}")
    if y.dtype == np.int16:
        y = y.astype(np.float32) / 32768.0
    y = np.nan_to_num(y.astype(np.float32, copy=False))
    if sample_rate != spec.sample_rate:
        y = resample(y, sample_rate, spec.sample_rate)
    if y.size < spec.min_samples:
        y = np.pad(y, (0, spec.min_samples - y.size))
    x = np.pad(y.astype(np.float64), spec.n_fft // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, spec.n_fft)[:: spec.hop_length][:-1]
    spectrum = np.fft.rfft(frames * _periodic_hann(spec.n_fft), axis=1)
    power = spectrum.real**2 + spectrum.imag**2  # (n_frames, 1 + n_fft // 2)
    mel = power @ mel_filterbank(spec.sample_rate, spec.n_fft, spec.n_mels, spec.sample_rate / 2).T
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    out: npt.NDArray[np.float32] = ((log_spec + 4.0) / 4.0).astype(np.float32)
    return out


def pool_chunks(
    means: npt.NDArray[np.float32], stds: npt.NDArray[np.float32], frames: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """Statistics of consecutive chunks -> those of their union.

    Args:
        means, stds: (k, n_layers, width) per-chunk mean and standard deviation over time.
        frames: (k,) encoder frames per chunk (the weights).

    Returns:
        (n_layers, 2 * width) float32: the union's mean, then its standard deviation.
    """
    w = frames.astype(np.float64) / frames.sum()
    mean = np.einsum("k,klc->lc", w, means.astype(np.float64))
    second = np.einsum("k,klc->lc", w, stds.astype(np.float64) ** 2 + means.astype(np.float64) ** 2)
    std = np.sqrt(np.maximum(second - mean**2, 0.0))
    return np.concatenate([mean, std], axis=1).astype(np.float32)


class Encoder:
    """The exported encoder in one LiteRT interpreter. Not thread-safe: use it from one thread.

    The model takes `log_mel` (B, T, 80) float32 and `frames` (B,) int32 (each row's valid
    length; rows are zero-padded to T) and returns (B, n_layers, dim) pooled statistics (dim =
    2 * width: the mean, then the standard deviation).
    """

    def __init__(self, path: Path, num_threads: int = 1, spec: EncoderSpec = ENCODER_SPEC) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.spec = spec
        try:
            with NativeStderrFilter():
                self._interpreter: Any = Interpreter(model_path=str(path), num_threads=num_threads)
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"{path} is not a usable TFLite encoder ({exc})") from exc
        inputs = {len(d["shape"]): d for d in self._interpreter.get_input_details()}
        if set(inputs) != {1, 3}:
            raise ValueError(f"{path}: expected inputs log_mel (B, T, 80) and frames (B,)")
        self._mel_index = int(inputs[3]["index"])
        self._frames_index = int(inputs[1]["index"])
        output = self._interpreter.get_output_details()[0]
        self._output_index = int(output["index"])
        self.n_layers, self.dim = (int(d) for d in output["shape"][1:])
        self._shape: tuple[int, int] | None = None

    def _run(
        self, batch: npt.NDArray[np.float32], frames: npt.NDArray[np.int32]
    ) -> npt.NDArray[np.float32]:
        shape = (batch.shape[0], batch.shape[1])
        if shape != self._shape:
            self._interpreter.resize_tensor_input(self._mel_index, list(batch.shape), strict=False)
            self._interpreter.resize_tensor_input(self._frames_index, [shape[0]], strict=False)
            self._interpreter.allocate_tensors()
            self._shape = shape
        self._interpreter.set_tensor(self._mel_index, batch)
        self._interpreter.set_tensor(self._frames_index, frames)
        self._interpreter.invoke()
        return np.asarray(self._interpreter.get_tensor(self._output_index), np.float32)

    def embed(self, log_mels: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
        """[(n_i, 80) log-mel, ...] -> (len, n_layers, dim) float32 pooled statistics.

        Utterances longer than 30 s are cut into 30 s chunks; all chunks of the batch run in one
        call, zero-padded to the longest.
        """
        limit = self.spec.max_frames
        chunks: list[npt.NDArray[np.float32]] = []
        owner: list[int] = []
        for i, mel in enumerate(log_mels):
            if mel.ndim != 2 or mel.shape[1] != self.spec.n_mels or len(mel) == 0:
                raise ValueError(f"log-mel must have shape (n > 0, {self.spec.n_mels})")
            for start in range(0, len(mel), limit):
                chunks.append(mel[start : start + limit])
                owner.append(i)
        longest = max(len(c) for c in chunks)
        batch = np.zeros((len(chunks), longest, self.spec.n_mels), np.float32)
        for row, chunk in enumerate(chunks):
            batch[row, : len(chunk)] = chunk
        lengths = np.array([len(c) for c in chunks], np.int32)
        pooled = np.asarray(self._run(batch, lengths), np.float32)
        owners = np.array(owner)
        out = np.empty((len(log_mels), self.n_layers, self.dim), np.float32)
        for i in range(len(log_mels)):
            rows = np.flatnonzero(owners == i)
            if len(rows) == 1:
                out[i] = pooled[rows[0]]
                continue
            w = self.dim // 2
            out[i] = pool_chunks(
                pooled[rows, :, :w], pooled[rows, :, w:], (lengths[rows].astype(np.int64) + 1) // 2
            )
        return out


class UtteranceEncoder:
    """An encoder bundle's third feature view of one utterance: Whisper's log-mel, the encoder
    on the utterance's own length, the pooled statistics of the bundle's `layers`. Runs where
    the other features are computed (the feature workers). Not thread-safe.
    """

    def __init__(
        self,
        path: Path,
        layers: Sequence[int],
        num_threads: int = 1,
        spec: EncoderSpec = ENCODER_SPEC,
    ) -> None:
        self.encoder = Encoder(path, num_threads=num_threads, spec=spec)
        self.layers = tuple(int(i) for i in layers)
        if not self.layers or max(self.layers) >= self.encoder.n_layers or min(self.layers) < 0:
            raise ValueError(
                f"{path} has pooled layers 0-{self.encoder.n_layers - 1}, not {list(self.layers)}"
            )
        # the first run applies LiteRT's XNNPACK delegate, which says so on stderr: run it here,
        # filtered, so the first utterance pays no set-up either
        with NativeStderrFilter():
            self.warm_up()

    @property
    def dim(self) -> int:
        """Values per embedding: len(layers) * the encoder's pooled dim."""
        return len(self.layers) * self.encoder.dim

    def embed(self, audio: npt.ArrayLike, sample_rate: int) -> npt.NDArray[np.float32]:
        """Mono audio (n,) at `sample_rate` (float in [-1, 1] or int16) -> (dim,) float32: the
        chosen layers' means and standard deviations over time, layer after layer."""
        mel = whisper_log_mel(audio, sample_rate, self.encoder.spec)
        pooled = self.encoder.embed([mel])[0]
        return np.ascontiguousarray(pooled[list(self.layers)].reshape(-1), dtype=np.float32)

    def warm_up(self) -> None:
        """One call on a second of silence: the first real call then pays no set-up."""
        rate = self.encoder.spec.sample_rate
        self.embed(np.zeros(rate, np.float32), rate)


def tail_frames(tail_ms: int, frame_ms: int) -> int:
    """VAD frames of an utterance's hangover its encoder reads (`pipeline.encoder_tail_ms`):
    rounded up, one at least (a pause is known from its first unvoiced frame)."""
    return max(1, math.ceil(tail_ms / frame_ms))


def replaced_samples(hangover_samples: int, sample_rate: int, frame_ms: int, tail_ms: int) -> int:
    """Samples at the end of an utterance its encoder does not read (`encoder_view`): those of
    the hangover that ended it (`Utterance.hangover_samples`; 0: not ended by one) after its
    first `tail_frames`."""
    if hangover_samples <= 0:
        return 0
    kept = tail_frames(tail_ms, frame_ms) * sample_rate * frame_ms // 1000
    return max(0, hangover_samples - kept)


def encoder_view(head: npt.NDArray[ScalarT], replaced: int) -> npt.NDArray[ScalarT]:
    """An utterance as the encoder reads it, from `head` (n,), the utterance without its last
    `replaced` samples (the part of its hangover not waited for, `pipeline.encoder_tail_ms`):
    `head` then its own first `replaced` samples (the pre-roll: background before speech) in
    their place, so the length stays the utterance's. The encoder can then run before the
    hangover is over. Shape (n + replaced,), `head`'s dtype."""
    if replaced <= 0:
        return head
    if replaced > head.size:
        raise ValueError(f"cannot replace {replaced} samples from a head of {head.size}")
    return np.concatenate([head, head[:replaced]])


def read_utterance(
    head: npt.NDArray[Any],
    sample_rate: int,
    *,
    replaced: int = 0,
    embed: Callable[[npt.NDArray[Any], int], npt.NDArray[np.float32]] | None = None,
    statistics: bool = True,
    f0_prefix: npt.NDArray[np.float64] | None = None,
) -> Analysis:
    """An utterance as a bundle reads it, from `head` (n,), the utterance without its last
    `replaced` samples (the part of its hangover not waited for, `pipeline.encoder_tail_ms`):
    the feature vector and log-mel sequence of `head` (the silence the statistics would trim
    left out; `statistics` False: none, `embedding_only`) and, with `embed` (the bundle's
    encoder: `UtteranceEncoder.embed`), the embedding of `encoder_view(head, replaced)`.
    `f0_prefix`: the pitch of its first frames, known already (only frames `head` determines:
    `features.f0_frames_ready(head.size)`). What the feature workers and
    `Classifier.analyse` both compute."""
    if not statistics:
        if embed is None:
            raise ValueError("an utterance read without statistics needs an encoder")
        return embedding_only(embed(encoder_view(head, replaced), sample_rate))
    analysis = analyse(head, sample_rate, f0_prefix=f0_prefix)
    if embed is None:
        return analysis
    return replace(analysis, embedding=embed(encoder_view(head, replaced), sample_rate))
