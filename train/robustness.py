"""Test-audio variants that show how the model meets real use (pure, no I/O).

- "vad": the clip cut by the live segmenter exactly as `ser-live` would (default `[vad]`
  config; the longest utterance when it finds several, the whole clip when it finds none);
- "vadview": that cut as an encoder bundle reads it live: its encoder the `encoder_view` (the
  hangover after `pipeline.encoder_tail_ms` replaced with the cut's first samples), its
  statistics the cut without that part of the hangover (`statistics_variant`: "vadhead");
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

- natural conditions (NATURAL_VARIANTS: what users' speech goes through and the speech
  detector must still call speech): "music" (generated music, train/nonspeech.py, at 5 dB below
  the speech), "babble" (four other voices at 3 dB below: the clip's own voice speed-changed by
  80-125 %, half of them time-reversed, shifted in time; a stand-in for a room of other
  talkers, no second speaker's recording needed), "laughter" (bursts of synthetic laughing,
  voiced 4-6 Hz pulses at 180-320 Hz, at the speech's level over a third of the clip),
  "applause" (dense bursts of filtered clap noise at the speech's level), "shout" (20 dB too
  much gain, hard-clipped), "broadcast" (a fast 8:1 compressor with make-up gain, then a
  low-bitrate codec: 7 kHz band, a quarter of the STFT bins kept per frame), "far" (RT60
  900 ms at -6 dB direct-to-reverberant ratio plus pink noise 15 dB down) and "phone" (the
  telephone channel).

All of them can be training augmentation (`ser-train --augment`); TEST_VARIANTS are evaluated.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from ser.audio_io import resample
from ser.config import PipelineConfig, VadConfig
from ser.encoder import encoder_view, replaced_samples
from ser.messages import AudioBlock, Utterance
from ser.segmenter import VadSegmenter

# scipy.signal is imported where it is used: it takes 0.7 s, and `ser-train`'s option checks
# and `--help` need none of it

CHANNELS = ("telephone", "cheapmic", "clipped", "quiet")

TEST_VARIANTS = ("vad", "vadview", "snr20", "snr10", "reverb500", *CHANNELS)

NATURAL_VARIANTS = (
    "music",
    "babble",
    "laughter",
    "applause",
    "shout",
    "broadcast",
    "far",
    "phone",
)


_PREFIXES = ("snr", "reverb", "speed")


def check_variant(name: str) -> str:
    """'vad', 'snrNN', 'reverbNNN' or 'speedNNN'; raises ValueError otherwise (argparse shows
    it)."""
    if name in ("clean", "vad", "vadview", *CHANNELS, *NATURAL_VARIANTS):
        return name
    for prefix in _PREFIXES:
        number = name[len(prefix) :]
        if name.startswith(prefix) and number.lstrip("-").isdigit():
            if prefix != "snr" and not 0 < int(number) <= 10_000:
                break
            return name
    raise ValueError(
        f"unknown audio variant {name!r}: use vad, snrNN (dB), reverbNNN (RT60 in ms), "
        f"speedNNN (percent), a channel ({', '.join(CHANNELS)}) or a natural condition "
        f"({', '.join(NATURAL_VARIANTS)}), e.g. snr15, reverb500"
    )


_BLOCK = 480


def _longest_utterance(audio: npt.NDArray[np.float32], sample_rate: int) -> Utterance | None:
    """The longest utterance the live segmenter (default `[vad]`) finds in `audio`."""
    pcm = np.clip(np.rint(audio * 32767.0), -32768, 32767).astype(np.int16)
    segmenter = VadSegmenter(VadConfig(), "clip", sample_rate)
    found = []
    for start in range(0, pcm.size, _BLOCK):
        block = AudioBlock(
            "clip", pcm[start : start + _BLOCK], sample_rate, start / sample_rate, 0.0
        )
        found += segmenter.push(block)
    found += segmenter.flush()
    return max(found, key=lambda u: u.samples.size) if found else None


def vad_cut(audio: npt.NDArray[np.float32], sample_rate: int = 16_000) -> npt.NDArray[np.float32]:
    """The longest utterance the live segmenter finds in `audio` (float32 mono)."""
    longest = _longest_utterance(audio, sample_rate)
    if longest is None:
        return audio
    return longest.samples.astype(np.float32) / 32768.0


def _vad_head(audio: npt.NDArray[np.float32], sample_rate: int) -> tuple[np.ndarray, int] | None:
    """`vad_cut`'s utterance (int16) without the part of its hangover a live encoder bundle
    does not wait for (default `pipeline.encoder_tail_ms`), and how many samples that is (0
    when the clip ended before a hangover did); None when the segmenter finds nothing."""
    longest = _longest_utterance(audio, sample_rate)
    if longest is None:
        return None
    samples = longest.samples
    replaced = replaced_samples(
        longest.hangover_samples,
        sample_rate,
        VadConfig().frame_ms,
        PipelineConfig().encoder_tail_ms,
    )
    return samples[: samples.size - replaced], replaced


def vad_view(audio: npt.NDArray[np.float32], sample_rate: int = 16_000) -> npt.NDArray[np.float32]:
    """`vad_cut`'s utterance as a live encoder bundle's encoder reads it (`encoder_view` at the
    default `pipeline.encoder_tail_ms`): the hangover after its first 150 ms replaced with the
    utterance's first samples; read whole when the clip ended before a hangover did."""
    found = _vad_head(audio, sample_rate)
    if found is None:
        return audio
    return encoder_view(*found).astype(np.float32) / 32768.0


def vad_head(audio: npt.NDArray[np.float32], sample_rate: int = 16_000) -> npt.NDArray[np.float32]:
    """`vad_cut`'s utterance as a live encoder bundle's statistics read it: without the part of
    its hangover after the first 150 ms (the view's replaced part)."""
    found = _vad_head(audio, sample_rate)
    if found is None:
        return audio
    return found[0].astype(np.float32) / 32768.0


def statistics_variant(name: str) -> str:
    """The audio the statistics (and log-mel) of variant `name` are computed from, as
    `make_variant` names it: "vadview"'s are "vadhead" (`vad_head`), as live."""
    return "vadhead" if name == "vadview" else name


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
    return _convolve(audio, room_impulse_response(rt60_ms, seed, sample_rate))


def _convolve(
    audio: npt.NDArray[np.float32], rir: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    """`audio` convolved with `rir`, cut to `audio`'s length, its peak kept."""
    from scipy.signal import fftconvolve

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
    # "vadhead": what "vadview"'s statistics read (`statistics_variant`)
    cuts = {"vad": vad_cut, "vadview": vad_view, "vadhead": vad_head}
    if variant in cuts:
        return cuts[variant](audio)
    name = check_variant(variant)
    if name == "clean":
        return audio
    if name.startswith("snr"):
        return add_noise(audio, float(name[3:]), seed)
    if name.startswith("reverb"):
        return add_reverb(audio, float(name[6:]), seed)
    if name.startswith("speed"):
        return change_speed(audio, float(name[5:]))
    return {**_CHANNEL_FUNCTIONS, **_NATURAL_FUNCTIONS}[name](audio, seed)


def telephone(audio: npt.NDArray[np.float32], sample_rate: int = 16_000) -> npt.NDArray[np.float32]:
    """A narrow-band phone call: 300-3400 Hz (4th-order Butterworth, zero phase), 8 kHz,
    G.711 mu-law (mu 255, 8 bits), resampled back to `sample_rate`. Same length."""
    from scipy.signal import butter, sosfiltfilt

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


def speech_power(audio: npt.NDArray[np.float32]) -> float:
    """Mean power of the 10 ms frames within 30 dB of the loudest (the speech, not pauses)."""
    n = audio.size // 160 * 160
    if n == 0:
        return float(np.mean(audio.astype(np.float64) ** 2)) if audio.size else 0.0
    power = (audio[:n].astype(np.float64).reshape(-1, 160) ** 2).mean(axis=1)
    speech = power[power >= power.max() * 1e-3]
    return float(speech.mean()) if speech.size else 0.0


def mix_at(
    audio: npt.NDArray[np.float32], other: npt.NDArray[np.float64], snr_db: float
) -> npt.NDArray[np.float32]:
    """`audio` plus `other` (same length) scaled to `snr_db` below the speech power; the sum
    is scaled down only if it would clip."""
    p_speech, p_other = speech_power(audio), float(np.mean(other**2)) if other.size else 0.0
    if p_other <= 0.0 or p_speech <= 0.0:
        return audio
    mixed = audio + other * np.sqrt(p_speech / p_other / 10 ** (snr_db / 10))
    peak = float(np.abs(mixed).max())
    return np.asarray(mixed / peak * 0.99 if peak > 0.99 else mixed, dtype=np.float32)


def _fit(x: npt.NDArray[np.float64], n: int) -> npt.NDArray[np.float64]:
    """`x` tiled or cut to length n."""
    if x.size == 0:
        return np.zeros(n)
    return np.tile(x, n // x.size + 1)[:n]


def with_music(audio: npt.NDArray[np.float32], seed: int) -> npt.NDArray[np.float32]:
    from ser_train.nonspeech import _music

    rng = np.random.default_rng([seed, 1])
    return mix_at(audio, _music(audio.size, rng), 5.0)


def with_babble(audio: npt.NDArray[np.float32], seed: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng([seed, 2])
    voices = np.zeros(audio.size)
    for k in range(4):
        voice = change_speed(audio, rng.uniform(80.0, 125.0)).astype(np.float64)
        if k % 2:
            voice = voice[::-1]
        voice = np.roll(_fit(voice, audio.size), int(rng.integers(0, max(1, audio.size))))
        voices += voice / np.sqrt(max(float(np.mean(voice**2)), 1e-12))
    return mix_at(audio, voices, 3.0)


def _laugh(n: int, rng: np.random.Generator, sample_rate: int = 16_000) -> npt.NDArray[np.float64]:
    """Synthetic laughing: voiced pulses ("ha") at 4-6 Hz, f0 180-320 Hz with a few
    harmonics and breath noise, n samples."""
    t = np.arange(n) / sample_rate
    f0 = rng.uniform(180.0, 320.0) * (1.0 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    breath = 0.3 * rng.normal(size=n)
    rate = rng.uniform(4.0, 6.0)
    pulses = np.clip(np.sin(2 * np.pi * rate * t), 0.0, None) ** 2
    return np.asarray((voiced + breath) * pulses, dtype=np.float64)


def _applause(
    n: int, rng: np.random.Generator, sample_rate: int = 16_000
) -> npt.NDArray[np.float64]:
    """Applause: many overlapping claps (5 ms noise bursts, high-passed at 500 Hz)."""
    out = np.zeros(n)
    clap = rng.normal(size=80) * np.exp(-np.arange(80) / 15.0)
    for at in rng.integers(0, max(1, n - 80), size=int(n / sample_rate * rng.uniform(40, 120))):
        out[at : at + 80] += rng.uniform(0.3, 1.0) * clap[: n - at]
    from scipy.signal import butter, sosfiltfilt

    sos = butter(2, 500.0, btype="highpass", fs=sample_rate, output="sos")
    return np.asarray(sosfiltfilt(sos, out), dtype=np.float64)


def _bursts(
    audio: npt.NDArray[np.float32], sound: npt.NDArray[np.float64], rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """`sound` in one or two bursts over about a third of the clip, at the speech's level."""
    n = audio.size
    gate = np.zeros(n)
    for _ in range(int(rng.integers(1, 3))):
        length = int(n * rng.uniform(0.15, 0.25))
        start = int(rng.integers(0, max(1, n - length)))
        ramp = np.minimum(1.0, np.minimum(np.arange(length), np.arange(length)[::-1]) / 800.0)
        gate[start : start + length] = np.maximum(gate[start : start + length], ramp)
    return mix_at(audio, sound * gate, 0.0)


def with_laughter(audio: npt.NDArray[np.float32], seed: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng([seed, 3])
    return _bursts(audio, _laugh(audio.size, rng), rng)


def with_applause(audio: npt.NDArray[np.float32], seed: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng([seed, 4])
    return _bursts(audio, _applause(audio.size, rng), rng)


def shout(audio: npt.NDArray[np.float32], _seed: int) -> npt.NDArray[np.float32]:
    return clip(audio, gain_db=20.0)


def compress(
    audio: npt.NDArray[np.float32], ratio: float = 8.0, threshold_db: float = -30.0
) -> npt.NDArray[np.float32]:
    """A fast feed-forward compressor (5 ms attack, 50 ms release on the 1 ms envelope) on the
    input brought to a 0 dBFS peak, with make-up gain to a -1 dBFS peak."""
    x = audio.astype(np.float64)
    hop = 16
    n = x.size // hop * hop
    peak_in = float(np.abs(x).max()) if x.size else 0.0
    if n == 0 or peak_in == 0.0:
        return audio
    x /= peak_in
    env = np.sqrt((x[:n].reshape(-1, hop) ** 2).mean(axis=1) + 1e-12)
    smooth = np.empty_like(env)
    level = env[0]
    attack, release = np.exp(-1.0 / 5.0), np.exp(-1.0 / 50.0)
    for i, e in enumerate(env):
        coeff = attack if e > level else release
        level = coeff * level + (1 - coeff) * e
        smooth[i] = level
    level_db = 20 * np.log10(smooth + 1e-12)
    gain_db = np.where(level_db > threshold_db, (threshold_db - level_db) * (1 - 1 / ratio), 0.0)
    gain = np.repeat(10 ** (gain_db / 20), hop)
    y = x.copy()
    y[:n] *= gain
    peak = float(np.abs(y).max())
    return (y / peak * 10 ** (-1 / 20) if peak > 0 else y).astype(np.float32)


def low_bitrate(
    audio: npt.NDArray[np.float32], keep: float = 0.25, band_hz: float = 7000.0
) -> npt.NDArray[np.float32]:
    """A crude perceptual codec: STFT (512, hop 128), bins above `band_hz` dropped, only the
    loudest `keep` share of the rest kept per frame; same length."""
    from scipy.signal import istft, stft

    if audio.size < 512:
        return audio
    f, _, spec = stft(audio.astype(np.float64), fs=16_000, nperseg=512, noverlap=384)
    spec[f > band_hz] = 0.0
    magnitude = np.abs(spec)
    cut = np.quantile(magnitude, 1.0 - keep, axis=0, keepdims=True)
    spec[magnitude < cut] = 0.0
    _, out = istft(spec, fs=16_000, nperseg=512, noverlap=384)
    y = np.zeros(audio.size)
    y[: min(audio.size, out.size)] = out[: audio.size]
    return y.astype(np.float32)


def broadcast(audio: npt.NDArray[np.float32], _seed: int) -> npt.NDArray[np.float32]:
    return low_bitrate(compress(audio))


def far_field(audio: npt.NDArray[np.float32], seed: int) -> npt.NDArray[np.float32]:
    """RT60 900 ms with the reverberant tail 6 dB above the direct sound, pink noise 15 dB
    below the speech."""
    from ser_train.nonspeech import _coloured

    rir = room_impulse_response(900.0, seed)
    rir[1:] *= 10 ** (6.0 / 20.0)
    room = _convolve(audio, rir)
    noise = _coloured(audio.size, 1.0, np.random.default_rng([seed, 5]))
    return mix_at(room, noise, 15.0)


_NATURAL_FUNCTIONS: dict[str, Callable[[npt.NDArray[np.float32], int], npt.NDArray[np.float32]]] = {
    "music": with_music,
    "babble": with_babble,
    "laughter": with_laughter,
    "applause": with_applause,
    "shout": shout,
    "broadcast": broadcast,
    "far": far_field,
    "phone": _telephone,
}
