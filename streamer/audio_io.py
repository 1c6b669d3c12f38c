"""Reading audio files into 16 kHz mono float32 (used by `ser-train` and `ser-live --input`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".mp3", ".opus"})


class AudioReadError(Exception):
    """A file could not be decoded as audio, or holds no samples."""


def to_mono(samples: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """(n,) or (n, channels) -> (n,) float32, channels averaged."""
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    return np.ascontiguousarray(samples, dtype=np.float32)


def float_to_int16(x: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    """float samples in [-1, 1] -> int16 (scaled by 32768, rounded, clipped to [-32768, 32767]).

    The inverse of reading int16 as float (x / 32768, as libsndfile and ser's f32le clients do):
    int16 audio that went through float comes back sample for sample.
    """
    return np.asarray(np.clip(np.rint(x * 32768.0), -32768, 32767), dtype=np.int16)


def resample(
    samples: npt.NDArray[np.float32], rate_in: int, rate_out: int
) -> npt.NDArray[np.float32]:
    """Resample mono float32 audio (soxr, high quality); a no-op when the rates are equal."""
    if rate_in == rate_out:
        return samples
    import soxr

    return np.asarray(soxr.resample(samples, rate_in, rate_out, quality="HQ"), dtype=np.float32)


def read_audio(path: Path, sample_rate: int = 16_000) -> npt.NDArray[np.float32]:
    """Decode any libsndfile format, any rate and channel count, to mono float32 at `sample_rate`.

    Returns shape (n,) with n > 0. Raises AudioReadError naming the file when it cannot be read or
    is empty.
    """
    import soundfile as sf

    try:
        samples, rate_in = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioReadError(f"{path}: not readable as audio ({exc})") from exc
    if samples.shape[0] == 0:
        raise AudioReadError(f"{path}: holds no audio samples")
    return resample(to_mono(samples), int(rate_in), sample_rate)


def list_audio_files(root: Path) -> list[Path]:
    """Audio files under `root` (recursively), sorted by path; `root` itself if it is a file."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
