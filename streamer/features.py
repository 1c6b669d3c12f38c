"""The one feature function shared by training and live recognition.

`extract(audio, sample_rate)` turns one utterance of mono audio into a fixed-length vector of
utterance-level statistics. `train/` imports it; nothing else computes features. Its spec
(`FEATURE_SPEC`) is written into every model bundle and compared when a bundle is loaded.

Per 10 ms frame (25.6 ms window at 16 kHz) it computes 87 descriptors:
40 log-mel bands, 20 MFCC, 20 delta-MFCC, frame energy, zero-crossing rate, spectral centroid,
bandwidth, roll-off and flatness, and log-F0 (YIN). Each descriptor track is summarised by 8
statistics: mean, standard deviation, minimum, maximum, 10th/50th/90th percentile and linear slope.

`analyse(audio, sample_rate)` returns both the vector and the log-mel sequence it summarises
(the input of the bundle's optional log-mel CNN, train/cnn.py) from one STFT; `extract` and
`log_mel_frames` are its two halves. `log_mel_windows` cuts that sequence into the fixed-length
windows the CNN reads, for training and live alike.

Level invariance: energy and log-mel are expressed relative to the utterance's loud level (95th
percentile frame energy), so a quieter microphone gives the same features. Leading and trailing
frames more than `trim_db` below the loudest frame are left out.

The signal processing is plain numpy (no librosa at run time: importing librosa's STFT, filters
and YIN costs 2.3 s of scipy/numba imports per process, which the live recognizer's start-up
cannot afford). Each step reproduces librosa 0.11's definition (periodic Hann STFT, Slaney mel
filters, orthonormal DCT-II MFCC, Savitzky-Golay delta, zero-crossing rate, YIN);
tests/test_features.py checks them against librosa itself.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from ser.audio_io import resample

SAMPLE_RATE = 16_000
STATISTICS = ("mean", "std", "min", "max", "p10", "p50", "p90", "slope")


@dataclass(frozen=True)
class FeatureSpec:
    """Everything that determines the feature vector; bundles must match it exactly."""

    name: str = "utterance-stats"
    version: int = 2
    sample_rate: int = SAMPLE_RATE
    n_fft: int = 512
    win_length: int = 410  # 25.6 ms
    hop_length: int = 160  # 10 ms
    n_mels: int = 40
    fmax_hz: float = 8_000.0
    n_mfcc: int = 20
    f0_min_hz: float = 60.0
    f0_max_hz: float = 500.0
    f0_frame_length: int = 1024
    trim_db: float = 30.0
    min_samples: int = 1_600  # shorter input is zero-padded to 100 ms

    @property
    def n_descriptors(self) -> int:
        return self.n_mels + 2 * self.n_mfcc + 7

    @property
    def dim(self) -> int:
        """Length of the feature vector."""
        return self.n_descriptors * len(STATISTICS)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "dim": self.dim, "statistics": list(STATISTICS)}

    def digest(self) -> str:
        """Short stable hash of the spec, used to key feature caches."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


FEATURE_SPEC = FeatureSpec()

_POWER_FLOOR = 1e-10


def _summarise(tracks: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """(n_tracks, n_frames) -> (n_tracks * 8,), statistic-major within each track."""
    n_frames = tracks.shape[1]
    pct = np.percentile(tracks, [10, 50, 90], axis=1)
    if n_frames > 1:
        t = np.linspace(-1.0, 1.0, n_frames)
        slope = (tracks - tracks.mean(axis=1, keepdims=True)) @ t / float(t @ t)
    else:
        slope = np.zeros(tracks.shape[0])
    stats = np.stack(
        [
            tracks.mean(1),
            tracks.std(1),
            tracks.min(1),
            tracks.max(1),
            pct[0],
            pct[1],
            pct[2],
            slope,
        ],
        axis=1,
    )
    return stats.reshape(-1)


def _frames(y: npt.NDArray[np.float64], length: int, hop: int) -> npt.NDArray[np.float64]:
    """(n,) -> (1 + (n - length) // hop, length) strided view of overlapping frames."""
    return np.lib.stride_tricks.sliding_window_view(y, length)[::hop]


@lru_cache(maxsize=4)
def _window(spec: FeatureSpec) -> npt.NDArray[np.float64]:
    """Periodic Hann window of `win_length`, zero-padded (centred) to `n_fft`."""
    n = spec.win_length
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
    left = (spec.n_fft - n) // 2
    return np.pad(hann, (left, spec.n_fft - n - left))


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    mel = hz / f_sp
    log_part = min_log_hz / f_sp + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log_part, mel)


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(
        mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel
    )


@lru_cache(maxsize=8)
def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmax_hz: float
) -> npt.NDArray[np.float64]:
    """(n_mels, 1 + n_fft // 2) Slaney-normalised triangular filters from 0 Hz to `fmax_hz`
    (as librosa.filters.mel with its defaults)."""
    fft_hz = np.linspace(0.0, sample_rate / 2, 1 + n_fft // 2)
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(fmax_hz)), n_mels + 2)
    )
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


def _mel_filters(spec: FeatureSpec) -> npt.NDArray[np.float64]:
    return mel_filterbank(spec.sample_rate, spec.n_fft, spec.n_mels, spec.fmax_hz)


@lru_cache(maxsize=4)
def _dct_matrix(n_out: int, n_in: int) -> npt.NDArray[np.float64]:
    """Orthonormal DCT-II rows 0..n_out-1 (as scipy.fft.dct(type=2, norm='ortho'))."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    m = np.sqrt(2.0 / n_in) * np.cos(np.pi * k * (2 * n + 1) / (2 * n_in))
    m[0] /= np.sqrt(2.0)
    return np.asarray(m, dtype=np.float64)


def _delta(x: npt.NDArray[np.float64], width: int = 9) -> npt.NDArray[np.float64]:
    """First-order Savitzky-Golay derivative along time, edges repeated (librosa's delta)."""
    half = width // 2
    padded = np.pad(x, ((0, 0), (half, half)), mode="edge")
    k = np.arange(-half, half + 1, dtype=np.float64)
    weights = k / float(k @ k)
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=1)
    return np.asarray(windows @ weights, dtype=np.float64)


def _zero_crossing_rate(
    y: npt.NDArray[np.float64], spec: FeatureSpec, first: int = 0, last: int | None = None
) -> npt.NDArray[np.float64]:
    """Share of sign changes per frame (frames of `win_length`, centred, edges repeated), of
    frames first..last-1. Counted once per pair of neighbouring samples and summed per frame
    (a prefix sum: frames overlap 2.5 times); the same counts as frame by frame."""
    half, length, hop = spec.win_length // 2, spec.win_length, spec.hop_length
    padded = np.pad(y, half, mode="edge")
    negative = np.signbit(np.where(np.abs(padded) <= 1e-10, 0.0, padded))
    changes = np.concatenate([[0], np.cumsum(negative[1:] != negative[:-1])])
    starts = np.arange(1 + (padded.size - length) // hop)[first:last] * hop
    crossings = changes[starts + length - 1] - changes[starts]
    return np.asarray(crossings / length, dtype=np.float64)


def _yin(
    y: npt.NDArray[np.float64], spec: FeatureSpec, first: int = 0, last: int | None = None
) -> npt.NDArray[np.float64]:
    """F0 in Hz of frames first..last-1 with YIN (de Cheveigné & Kawahara 2002), as librosa.yin
    computes it."""
    length = spec.f0_frame_length
    return _yin_of_frames(
        _frames(np.pad(y, length // 2), length, spec.hop_length)[first:last], spec
    )


def _yin_of_frames(frames: npt.NDArray[np.float64], spec: FeatureSpec) -> npt.NDArray[np.float64]:
    """(n, f0_frame_length) frames -> (n,) F0 in Hz (see `_yin`)."""
    length, sr = spec.f0_frame_length, spec.sample_rate
    min_period = int(np.floor(sr / spec.f0_max_hz))
    max_period = min(int(np.ceil(sr / spec.f0_min_hz)), length - 1)
    # Zero-padding to length + max_period keeps the circular autocorrelation exact for the lags
    # used; 3 * 2**k sizes are fast.
    n_fft = 3 * 2 ** int(np.ceil(np.log2((length + max_period + 1) / 3)))
    spectrum = np.fft.rfft(frames, n_fft, axis=1)
    power = spectrum.real**2
    power += spectrum.imag**2
    acf = np.fft.irfft(power, n_fft, axis=1)[:, : max_period + 1]
    energy = np.cumsum(frames[:, :max_period] ** 2, axis=1)  # only the lags' part is read
    diff = np.zeros_like(acf)
    diff[:, 1:] = 2.0 * (acf[:, :1] - acf[:, 1:]) - energy
    lags = np.arange(1, max_period + 1)
    cumulative_mean = np.cumsum(diff[:, 1:], axis=1) / lags
    cmnd = diff[:, min_period:] / (cumulative_mean[:, min_period - 1 :] + 1e-300)
    # First trough under the threshold, else the global minimum.
    left, mid, right = cmnd[:, :-2], cmnd[:, 1:-1], cmnd[:, 2:]
    trough = np.zeros(cmnd.shape, dtype=bool)
    trough[:, 1:-1] = (mid < left) & (mid <= right)
    trough[:, -1] = cmnd[:, -1] < cmnd[:, -2]
    trough[:, 0] = cmnd[:, 0] < cmnd[:, 1]
    candidates = trough & (cmnd < 0.1)
    period = np.where(candidates.any(axis=1), candidates.argmax(axis=1), cmnd.argmin(axis=1))
    # Parabolic refinement of the chosen lag; 0 at either end, or where the vertex lies beyond a
    # neighbour.
    rows = np.arange(cmnd.shape[0])
    inner = np.clip(period, 1, cmnd.shape[1] - 2)
    left, mid, right = cmnd[rows, inner - 1], cmnd[rows, inner], cmnd[rows, inner + 1]
    a = right + left - 2.0 * mid
    b = (right - left) / 2.0
    ok = (np.abs(b) < np.abs(a)) & (period == inner)
    shift = np.where(ok, -b / np.where(ok, a, 1.0), 0.0)
    return np.asarray(sr / (min_period + period + shift), dtype=np.float64)


def _prepare(audio: npt.ArrayLike, sample_rate: int, spec: FeatureSpec) -> npt.NDArray[np.float64]:
    """Mono float64 samples at `spec.sample_rate`, at least `spec.min_samples` long."""
    y = np.asarray(audio)
    if y.ndim != 1:
        raise ValueError(f"audio must be mono with shape (n,), got shape {y.shape}")
    if y.dtype == np.int16:
        y = y.astype(np.float32) / 32768.0
    y = y.astype(np.float32, copy=False)
    if sample_rate != spec.sample_rate:
        y = resample(y, sample_rate, spec.sample_rate)
    if y.size < spec.min_samples:
        y = np.pad(y, (0, spec.min_samples - y.size))
    return np.nan_to_num(y).astype(np.float64)


@dataclass(frozen=True)
class _Spectrum:
    power: npt.NDArray[np.float64]  # (n_bins, n_frames), trimmed
    frame_db: npt.NDArray[np.float64]  # (n_frames,), absolute dB
    ref_db: float  # 95th percentile of frame_db
    first: int  # index of the first kept frame
    last: int  # one past the last kept frame


def _spectrum(x: npt.NDArray[np.float64], spec: FeatureSpec) -> _Spectrum:
    """Power spectrogram of the span from the first to the last frame within trim_db of the
    loudest."""
    frames = _frames(np.pad(x, spec.n_fft // 2), spec.n_fft, spec.hop_length) * _window(spec)
    spectrum = np.fft.rfft(frames, axis=1)
    power = (spectrum.real**2 + spectrum.imag**2).T  # (n_bins, n_frames)
    frame_db = 10.0 * np.log10(np.maximum(power.sum(axis=0), _POWER_FLOOR))
    active = np.flatnonzero(frame_db >= frame_db.max() - spec.trim_db)
    first, last = int(active[0]), int(active[-1]) + 1
    frame_db = frame_db[first:last]
    return _Spectrum(
        power[:, first:last], frame_db, float(np.percentile(frame_db, 95)), first, last
    )


def _log_mel(s: _Spectrum, spec: FeatureSpec) -> npt.NDArray[np.float64]:
    """(n_mels, n_frames) log-mel in dB relative to the utterance's loud level."""
    mel = _mel_filters(spec) @ s.power
    return 10.0 * np.log10(np.maximum(mel, _POWER_FLOOR)) - s.ref_db


def log_mel_frames(
    audio: npt.ArrayLike, sample_rate: int = SAMPLE_RATE, spec: FeatureSpec = FEATURE_SPEC
) -> npt.NDArray[np.float32]:
    """The log-mel sequence `extract` summarises: shape (n_frames, spec.n_mels), float32, dB
    relative to the utterance's loud level, one row per 10 ms, trimmed like `extract`."""
    s = _spectrum(_prepare(audio, sample_rate, spec), spec)
    return _log_mel(s, spec).T.astype(np.float32)


def extract(
    audio: npt.ArrayLike, sample_rate: int = SAMPLE_RATE, spec: FeatureSpec = FEATURE_SPEC
) -> npt.NDArray[np.float32]:
    """Feature vector of one utterance.

    Args:
        audio: mono samples, shape (n,), float in [-1, 1] (int16 is scaled).
        sample_rate: rate of `audio` in Hz; resampled to `spec.sample_rate` when different.
        spec: the feature spec; the default is what shipped models use.

    Returns:
        float32 array of shape (spec.dim,), finite for any input (silence included).
    """
    return analyse(audio, sample_rate, spec).vector


@dataclass(frozen=True, eq=False)
class Analysis:
    """Both feature views of one utterance, from one STFT (`analyse`), and the encoder's
    embedding where a bundle reads it; for a bundle that reads only the embedding, both views
    are empty (`embedding_only`)."""

    vector: npt.NDArray[np.float32]  # (spec.dim,) utterance statistics, finite; or (0,)
    log_mel: npt.NDArray[np.float32]  # (n_frames, spec.n_mels) dB re the loud level, 10 ms rows
    # (len(layers) * 1024,) the encoder's pooled layers (streamer/encoder.py: UtteranceEncoder),
    # for bundles with an encoder; unadapted
    embedding: npt.NDArray[np.float32] | None = None


def embedding_only(
    embedding: npt.NDArray[np.float32], spec: FeatureSpec = FEATURE_SPEC
) -> Analysis:
    """The analysis of a bundle that reads only the encoder's embedding (no statistics network,
    CNN or statistics detector: `Bundle.needs_statistics` False): no STFT, no pitch; the
    statistics (0,) and the log-mel sequence (0, n_mels)."""
    return Analysis(
        np.zeros(0, dtype=np.float32), np.zeros((0, spec.n_mels), dtype=np.float32), embedding
    )


def f0_frames_ready(n_samples: int, spec: FeatureSpec = FEATURE_SPEC) -> int:
    """How many of an utterance's first F0 frames its first `n_samples` samples (at
    `spec.sample_rate`) determine: frame k reads samples k * hop - f0_frame_length / 2 up to
    k * hop + f0_frame_length / 2 (the utterance zero-padded on the left)."""
    half = spec.f0_frame_length // 2
    return max(0, (n_samples - half) // spec.hop_length + 1)


def f0_span(start: int, stop: int, spec: FeatureSpec = FEATURE_SPEC) -> tuple[int, int]:
    """(offset, end): the samples (at `spec.sample_rate`) an utterance's F0 frames
    start..stop-1 read, as `f0_frames` takes them."""
    half, hop = spec.f0_frame_length // 2, spec.hop_length
    return max(0, start * hop - half), (stop - 1) * hop + half


def f0_frames(
    samples: npt.NDArray[np.int16],
    start: int,
    stop: int,
    offset: int,
    spec: FeatureSpec = FEATURE_SPEC,
) -> npt.NDArray[np.float64]:
    """(stop - start,) F0 in Hz of an utterance's frames start..stop-1, as `analyse` computes
    them, from its samples at `spec.sample_rate` from index `offset` on (int16; enough to reach
    frame stop - 1's end: see `f0_frames_ready`). Lets a live pipeline compute an utterance's
    pitch while it is still being spoken (`analyse(..., f0_prefix=...)`)."""
    half, hop = spec.f0_frame_length // 2, spec.hop_length
    y = np.nan_to_num(np.asarray(samples, dtype=np.int16).astype(np.float32) / 32768.0).astype(
        np.float64
    )
    first_sample = start * hop - half  # frame `start` reads from here (< 0: the left padding)
    if offset > max(0, first_sample):
        raise ValueError(f"samples from {offset} do not reach back to frame {start}'s start")
    # from frame `start`'s first sample; before the utterance: its left padding
    y = y[first_sample - offset :] if first_sample >= 0 else np.pad(y, (-first_sample, 0))
    frames = _frames(y, spec.f0_frame_length, hop)[: stop - start]
    if len(frames) != stop - start:
        raise ValueError(f"samples up to {offset + y.size} do not reach frame {stop - 1}'s end")
    return _yin_of_frames(frames, spec)


def analyse(
    audio: npt.ArrayLike,
    sample_rate: int = SAMPLE_RATE,
    spec: FeatureSpec = FEATURE_SPEC,
    f0_prefix: npt.NDArray[np.float64] | None = None,
) -> Analysis:
    """`extract` and `log_mel_frames` of one utterance at the cost of one (see `extract`).
    `f0_prefix`: F0 of the utterance's first frames, already computed (`f0_frames`, from the
    same int16 samples at `spec.sample_rate`): only the rest is computed here."""
    x = _prepare(audio, sample_rate, spec)
    s = _spectrum(x, spec)
    power, frame_db, ref_db, first, last = s.power, s.frame_db, s.ref_db, s.first, s.last
    log_mel = _log_mel(s, spec)
    mfcc = _dct_matrix(spec.n_mfcc, spec.n_mels) @ log_mel
    d_mfcc = _delta(mfcc)

    magnitude = np.sqrt(power)
    freqs = np.linspace(0.0, spec.sample_rate / 2, 1 + spec.n_fft // 2)
    mag_sum = np.maximum(magnitude.sum(axis=0), 1e-10)
    centroid = (freqs @ magnitude) / mag_sum
    bandwidth = np.sqrt(((freqs[:, None] - centroid[None, :]) ** 2 * magnitude).sum(0) / mag_sum)
    cumulative = np.cumsum(magnitude, axis=0)
    rolloff = freqs[np.argmax(cumulative >= 0.85 * cumulative[-1:], axis=0)]
    log_power = np.log(np.maximum(power, _POWER_FLOOR))
    flatness_db = (
        10.0 * (log_power.mean(0) - np.log(np.maximum(power.mean(0), _POWER_FLOOR))) / np.log(10.0)
    )
    zcr = _zero_crossing_rate(x, spec, first, last)
    if f0_prefix is None or len(f0_prefix) == 0:
        f0 = _yin(x, spec, first, last)
    else:
        known = len(f0_prefix)
        head = np.asarray(f0_prefix, dtype=np.float64)[first : min(known, last)]
        f0 = (
            head
            if last <= known
            else np.concatenate([head, _yin(x, spec, max(first, known), last)])
        )

    tracks = np.vstack(
        [
            log_mel,
            mfcc,
            d_mfcc,
            (frame_db - ref_db)[None, :],
            zcr[None, :],
            (centroid / 1000.0)[None, :],
            (bandwidth / 1000.0)[None, :],
            (rolloff / 1000.0)[None, :],
            flatness_db[None, :],
            np.log2(np.maximum(f0, 1.0))[None, :],
        ]
    )
    features = _summarise(tracks)
    return Analysis(
        np.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32),
        log_mel.T.astype(np.float32),
    )


def log_mel_windows(seq: npt.NDArray[np.float32], frames: int) -> npt.NDArray[np.float32]:
    """(n_frames, n_mels) -> (k, frames, n_mels): one window repeat-padded to `frames` when the
    sequence is shorter, else windows of `frames` rows with 50 % overlap covering it all (the
    last one flush with the end). A model reading them averages its k outputs."""
    n = len(seq)
    if n == 0:
        raise ValueError("empty log-mel sequence")
    if n <= frames:
        reps = -(-frames // n)
        return np.tile(seq, (reps, 1))[None, :frames]
    hop = frames // 2
    starts = list(range(0, n - frames + 1, hop))
    if starts[-1] != n - frames:
        starts.append(n - frames)
    return np.stack([seq[s : s + frames] for s in starts])


def warm_up(spec: FeatureSpec = FEATURE_SPEC) -> None:
    """Run `extract` once on synthetic audio so the first real call pays no cached set-up
    (mel filters, DCT matrix, window)."""
    t = np.arange(spec.sample_rate, dtype=np.float32) / spec.sample_rate
    extract(0.1 * np.sin(2 * np.pi * 220.0 * t), spec.sample_rate, spec)
