"""Test-audio variants that show how the model meets real use (pure, no I/O).

- "vad": the clip cut by the live segmenter exactly as `ser-live` would (default `[vad]`
  config; the longest utterance when it finds several, the whole clip when it finds none);
- "snr20" / "snr10": white noise added at 20 / 10 dB below the clip's speech power (frames within
  30 dB of the loudest), seeded by the clip's content hash so runs repeat;
- "reverbNNN": the clip in a simulated room with a reverberation time (RT60) of NNN ms: a
  synthetic impulse response (direct sound plus exponentially decaying noise), seeded likewise;
- "speedNNN": the clip played at NNN % speed (pitch and tempo change together, as in Kaldi's
  speed perturbation), by resampling.

All of them can be training augmentation (`ser-train --augment`); TEST_VARIANTS are evaluated.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.signal import fftconvolve

from streamer.audio_io import resample
from streamer.config import VadConfig
from streamer.messages import AudioBlock
from streamer.segmenter import VadSegmenter

TEST_VARIANTS = ("vad", "snr20", "snr10", "reverb500")


_PREFIXES = ("snr", "reverb", "speed")


def check_variant(name: str) -> str:
    """'vad', 'snrNN', 'reverbNNN' or 'speedNNN'; raises ValueError otherwise (argparse shows
    it)."""
    if name in ("clean", "vad"):
        return name
    for prefix in _PREFIXES:
        number = name[len(prefix) :]
        if name.startswith(prefix) and number.lstrip("-").isdigit():
            if prefix != "snr" and not 0 < int(number) <= 10_000:
                break
            return name
    raise ValueError(
        f"unknown audio variant {name!r}: use vad, snrNN (dB), reverbNNN (RT60 in ms) or "
        "speedNNN (percent), e.g. snr15, reverb500, speed110"
    )


_BLOCK = 480


def vad_cut(audio: npt.NDArray[np.float32], sample_rate: int = 16_000) -> npt.NDArray[np.float32]:
    """The longest utterance the live segmenter finds in `audio` (float32 mono)."""
    pcm = np.clip(np.rint(audio * 32767.0), -32768, 32767).astype(np.int16)
    segmenter = VadSegmenter(VadConfig(), "clip", sample_rate)
    found = []
    for start in range(0, pcm.size, _BLOCK):
        block = AudioBlock(
            "clip", pcm[start : start + _BLOCK], sample_rate, start / sample_rate, 0.0
        )
        found += segmenter.push(block)
    found += segmenter.flush()
    if not found:
        return audio
    longest = max(found, key=lambda u: u.samples.size)
    return longest.samples.astype(np.float32) / 32768.0


def add_noise(audio: npt.NDArray[np.float32], snr_db: float, seed: int) -> npt.NDArray[np.float32]:
    """`audio` plus white noise `snr_db` below its speech power."""
    n = audio.size // 160 * 160
    frames = audio[:n].astype(np.float64).reshape(-1, 160) if n else audio[None, :].astype(float)
    power = (frames**2).mean(axis=1)
    speech = power[power >= power.max() * 1e-3]
    level = float(speech.mean()) if speech.size else 1e-8
    noise = np.random.default_rng(seed).normal(
        0.0, np.sqrt(level / 10 ** (snr_db / 10)), audio.size
    )
    return (audio + noise).astype(np.float32)


def room_impulse_response(
    rt60_ms: float, seed: int, sample_rate: int = 16_000
) -> npt.NDArray[np.float64]:
    """A synthetic room: direct sound, a 2-8 ms gap, then Gaussian noise under an exponential
    envelope that falls 60 dB in `rt60_ms`, scaled to a direct-to-reverberant energy ratio of
    0 dB (a talker a couple of metres from the microphone). Shape (n,), float64."""
    rng = np.random.default_rng(seed)
    rt60_s = rt60_ms / 1000.0
    t = np.arange(int(rt60_s * sample_rate)) / sample_rate
    tail = rng.normal(0.0, 1.0, t.size) * 10.0 ** (-3.0 * t / rt60_s)
    tail /= np.sqrt((tail**2).sum())
    gap = int(rng.uniform(0.002, 0.008) * sample_rate)
    return np.concatenate([[1.0], np.zeros(gap), tail])


def add_reverb(
    audio: npt.NDArray[np.float32], rt60_ms: float, seed: int, sample_rate: int = 16_000
) -> npt.NDArray[np.float32]:
    """`audio` convolved with `room_impulse_response`; same length as `audio`, peak kept."""
    rir = room_impulse_response(rt60_ms, seed, sample_rate)
    wet = np.asarray(fftconvolve(audio.astype(np.float64), rir), dtype=np.float64)[: audio.size]
    peak_in, peak_out = float(np.abs(audio).max()), float(np.abs(wet).max())
    if peak_out > 0.0:
        wet *= peak_in / peak_out
    return wet.astype(np.float32)


def change_speed(
    audio: npt.NDArray[np.float32], percent: float, sample_rate: int = 16_000
) -> npt.NDArray[np.float32]:
    """`audio` played at `percent` % speed: duration x 100/percent, pitch x percent/100."""
    return resample(audio, round(sample_rate * percent / 100.0), sample_rate)


def make_variant(
    audio: npt.NDArray[np.float32], variant: str, seed: int
) -> npt.NDArray[np.float32]:
    """`audio` (float32 mono, 16 kHz) as the named variant (see the module docstring)."""
    name = check_variant(variant)
    if name == "clean":
        return audio
    if name == "vad":
        return vad_cut(audio)
    if name.startswith("snr"):
        return add_noise(audio, float(name[3:]), seed)
    if name.startswith("reverb"):
        return add_reverb(audio, float(name[6:]), seed)
    return change_speed(audio, float(name[5:]))
