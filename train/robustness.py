"""Test-audio variants that show how the model meets real use (pure, no I/O).

- "vad": the clip cut by the live segmenter exactly as `ser-live` would (default `[vad]`
  config; the longest utterance when it finds several, the whole clip when it finds none);
- "snr20" / "snr10": white noise added at 20 / 10 dB below the clip's speech power (frames within
  30 dB of the loudest), seeded by the clip's content hash so runs repeat;
- "reverbNNN": the clip in a simulated room with a reverberation time (RT60) of NNN ms: a
  synthetic impulse response (direct sound plus exponentially decaying noise), seeded likewise;
- "speedNNN": the clip played at NNN % speed (pitch and tempo change together, as in Kaldi's
  speed perturbation), by resampling;
- channels: "telephone" (300-3400 Hz band, 8 kHz, G.711 mu-law 8-bit, back to 16 kHz),
  "cheapmic" (a seeded random microphone response: high-pass at 100-300 Hz, a spectral tilt of
  up to +-4 dB per octave around 1 kHz and two +-8 dB resonances between 400 Hz and 6 kHz),
  "clipped" (input gain 12 dB too high: peak at 4x full scale, hard-clipped at full scale) and
  "quiet" (peak at -40 dBFS, quantised to 16 bits: a far or badly set microphone).

All of them can be training augmentation (`ser-train --augment`); TEST_VARIANTS are evaluated.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy.signal import butter, fftconvolve, sosfiltfilt

from streamer.audio_io import resample
from streamer.config import VadConfig
from streamer.messages import AudioBlock
from streamer.segmenter import VadSegmenter

CHANNELS = ("telephone", "cheapmic", "clipped", "quiet")

TEST_VARIANTS = ("vad", "snr20", "snr10", "reverb500", *CHANNELS)


_PREFIXES = ("snr", "reverb", "speed")


def check_variant(name: str) -> str:
    """'vad', 'snrNN', 'reverbNNN' or 'speedNNN'; raises ValueError otherwise (argparse shows
    it)."""
    if name in ("clean", "vad", *CHANNELS):
        return name
    for prefix in _PREFIXES:
        number = name[len(prefix) :]
        if name.startswith(prefix) and number.lstrip("-").isdigit():
            if prefix != "snr" and not 0 < int(number) <= 10_000:
                break
            return name
    raise ValueError(
        f"unknown audio variant {name!r}: use vad, snrNN (dB), reverbNNN (RT60 in ms), "
        f"speedNNN (percent) or a channel ({', '.join(CHANNELS)}), e.g. snr15, reverb500"
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
    if name.startswith("speed"):
        return change_speed(audio, float(name[5:]))
    return _CHANNEL_FUNCTIONS[name](audio, seed)


def telephone(audio: npt.NDArray[np.float32], sample_rate: int = 16_000) -> npt.NDArray[np.float32]:
    """A narrow-band phone call: 300-3400 Hz (4th-order Butterworth, zero phase), 8 kHz,
    G.711 mu-law (mu 255, 8 bits), resampled back to `sample_rate`. Same length."""
    sos = butter(4, (300.0, 3400.0), btype="bandpass", fs=sample_rate, output="sos")
    band = np.asarray(sosfiltfilt(sos, audio.astype(np.float64)), dtype=np.float32)
    narrow = resample(band, 8_000, sample_rate)
    mu = 255.0
    x = np.clip(narrow.astype(np.float64), -1.0, 1.0)
    code = np.round(np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) * 127.0) / 127.0
    decoded = (np.sign(code) * np.expm1(np.abs(code) * np.log1p(mu)) / mu).astype(np.float32)
    wide = resample(decoded, sample_rate, 8_000)
    out = np.zeros_like(audio)
    out[: min(out.size, wide.size)] = wide[: out.size]
    return out


def microphone_response(
    n_fft: int, seed: int, sample_rate: int = 16_000
) -> npt.NDArray[np.float64]:
    """(n_fft // 2 + 1,) linear gains of a seeded random cheap microphone (see the module
    docstring)."""
    rng = np.random.default_rng(seed)
    f = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    octaves = np.log2(np.maximum(f, 1.0) / 1000.0)
    gain_db = rng.uniform(-4.0, 4.0) * octaves
    for _ in range(2):
        centre = np.log2(rng.uniform(400.0, 6000.0) / 1000.0)
        width = rng.uniform(0.3, 1.0)  # octaves
        gain_db += rng.uniform(-8.0, 8.0) * np.exp(-0.5 * ((octaves - centre) / width) ** 2)
    cutoff = rng.uniform(100.0, 300.0)
    high_pass = (f / cutoff) ** 2 / np.sqrt(1.0 + (f / cutoff) ** 4)  # 2nd order, magnitude
    return np.asarray(10.0 ** (gain_db / 20.0) * high_pass, dtype=np.float64)


def cheap_microphone(audio: npt.NDArray[np.float32], seed: int) -> npt.NDArray[np.float32]:
    """`audio` through `microphone_response` (zero phase, whole clip), RMS kept."""
    if audio.size == 0:
        return audio
    spectrum = np.fft.rfft(audio.astype(np.float64))
    out = np.fft.irfft(spectrum * microphone_response(audio.size, seed), n=audio.size)
    rms_in, rms_out = float(np.sqrt(np.mean(audio**2))), float(np.sqrt(np.mean(out**2)))
    return (out * (rms_in / rms_out if rms_out > 0 else 1.0)).astype(np.float32)


def clip(audio: npt.NDArray[np.float32], gain_db: float) -> npt.NDArray[np.float32]:
    """Peak normalised to full scale, `gain_db` more gain, hard-clipped to [-1, 1]."""
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak == 0.0:
        return audio
    return np.asarray(np.clip(audio / peak * 10 ** (gain_db / 20.0), -1.0, 1.0), np.float32)


def at_level(audio: npt.NDArray[np.float32], peak_dbfs: float) -> npt.NDArray[np.float32]:
    """Peak scaled to `peak_dbfs`, then quantised to 16-bit steps."""
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak == 0.0:
        return audio
    scaled = audio / peak * 10 ** (peak_dbfs / 20.0)
    return (np.round(scaled * 32767.0) / 32767.0).astype(np.float32)


def _telephone(audio: npt.NDArray[np.float32], _seed: int) -> npt.NDArray[np.float32]:
    return telephone(audio)


def _clipped(audio: npt.NDArray[np.float32], _seed: int) -> npt.NDArray[np.float32]:
    return clip(audio, gain_db=12.0)


def _quiet(audio: npt.NDArray[np.float32], _seed: int) -> npt.NDArray[np.float32]:
    return at_level(audio, peak_dbfs=-40.0)


_CHANNEL_FUNCTIONS: dict[str, Callable[[npt.NDArray[np.float32], int], npt.NDArray[np.float32]]] = {
    "telephone": _telephone,
    "cheapmic": cheap_microphone,
    "clipped": _clipped,
    "quiet": _quiet,
}
