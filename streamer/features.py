"""The one feature function shared by training and live recognition.

`extract(audio, sample_rate)` turns one utterance of mono audio into a fixed-length vector of
utterance-level statistics. `train/` imports it; nothing else computes features. Its spec
(`FEATURE_SPEC`) is written into every model bundle and compared when a bundle is loaded.

Per 10 ms frame (25.6 ms window at 16 kHz) it computes 87 descriptors:
40 log-mel bands, 20 MFCC, 20 delta-MFCC, frame energy, zero-crossing rate, spectral centroid,
bandwidth, roll-off and flatness, and log-F0 (YIN). Each descriptor track is summarised by 8
statistics: mean, standard deviation, minimum, maximum, 10th/50th/90th percentile and linear slope.

Level invariance: energy and log-mel are expressed relative to the utterance's loud level (95th
percentile frame energy), so a quieter microphone gives the same features. Leading and trailing
frames more than `trim_db` below the loudest frame are left out.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.audio_io import resample

# librosa compiles numba kernels on first use (~13 s cold). Keep the compiled cache in a
# persistent per-user folder unless the user chose one; must be set before numba is imported.
# librosa itself is imported inside `extract`, so processes that only read the spec (the live
# recognizer's main process) never load it.
os.environ.setdefault(
    "NUMBA_CACHE_DIR",
    str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ser" / "numba"),
)

SAMPLE_RATE = 16_000
STATISTICS = ("mean", "std", "min", "max", "p10", "p50", "p90", "slope")


@dataclass(frozen=True)
class FeatureSpec:
    """Everything that determines the feature vector; bundles must match it exactly."""

    name: str = "utterance-stats"
    version: int = 1
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
    import librosa

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
    y = np.nan_to_num(y)

    stft = librosa.stft(
        y, n_fft=spec.n_fft, hop_length=spec.hop_length, win_length=spec.win_length, center=True
    )
    power = (stft.real**2 + stft.imag**2).astype(np.float64)
    frame_db = 10.0 * np.log10(np.maximum(power.sum(axis=0), _POWER_FLOOR))

    # Keep the span from the first to the last frame within trim_db of the loudest.
    active = np.flatnonzero(frame_db >= frame_db.max() - spec.trim_db)
    first, last = int(active[0]), int(active[-1]) + 1
    power = power[:, first:last]
    frame_db = frame_db[first:last]
    ref_db = float(np.percentile(frame_db, 95))

    mel = librosa.feature.melspectrogram(
        S=power, sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels, fmax=spec.fmax_hz
    )
    log_mel = 10.0 * np.log10(np.maximum(mel, _POWER_FLOOR)) - ref_db
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=spec.n_mfcc)
    d_mfcc = (
        librosa.feature.delta(mfcc, width=min(9, _odd_at_most(mfcc.shape[1])), mode="nearest")
        if mfcc.shape[1] >= 3
        else np.zeros_like(mfcc)
    )

    magnitude = np.sqrt(power)
    freqs = librosa.fft_frequencies(sr=spec.sample_rate, n_fft=spec.n_fft)
    mag_sum = np.maximum(magnitude.sum(axis=0), 1e-10)
    centroid = (freqs @ magnitude) / mag_sum
    bandwidth = np.sqrt(((freqs[:, None] - centroid[None, :]) ** 2 * magnitude).sum(0) / mag_sum)
    cumulative = np.cumsum(magnitude, axis=0)
    rolloff = freqs[np.argmax(cumulative >= 0.85 * cumulative[-1:], axis=0)]
    log_power = np.log(np.maximum(power, _POWER_FLOOR))
    flatness_db = (
        10.0 * (log_power.mean(0) - np.log(np.maximum(power.mean(0), _POWER_FLOOR))) / np.log(10.0)
    )

    zcr = librosa.feature.zero_crossing_rate(
        y, frame_length=spec.win_length, hop_length=spec.hop_length, center=True
    )[0, first:last]
    f0 = librosa.yin(
        y,
        fmin=spec.f0_min_hz,
        fmax=spec.f0_max_hz,
        sr=spec.sample_rate,
        frame_length=spec.f0_frame_length,
        hop_length=spec.hop_length,
        center=True,
    )[first:last]

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
    return np.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def _odd_at_most(n: int) -> int:
    return n if n % 2 == 1 else n - 1


def warm_up(spec: FeatureSpec = FEATURE_SPEC) -> None:
    """Run `extract` once on synthetic audio so numba kernels are compiled/loaded (~1-2 s)."""
    t = np.arange(spec.sample_rate, dtype=np.float32) / spec.sample_rate
    extract(0.1 * np.sin(2 * np.pi * 220.0 * t), spec.sample_rate, spec)
