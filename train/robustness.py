"""Test-audio variants that show how the model meets real use (pure, no I/O).

- "vad": the clip cut by the live segmenter exactly as `ser-live` would (default `[vad]`
  config; the longest utterance when it finds several, the whole clip when it finds none);
- "snr20" / "snr10": white noise added at 20 / 10 dB below the clip's speech power (frames within
  30 dB of the loudest), seeded by the clip's content hash so runs repeat.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from streamer.config import VadConfig
from streamer.messages import AudioBlock
from streamer.segmenter import VadSegmenter

TEST_VARIANTS = ("vad", "snr20", "snr10")


def check_variant(name: str) -> str:
    """'vad' or 'snrNN' (NN in dB); raises ValueError otherwise (argparse shows it)."""
    if name in ("clean", "vad") or (name.startswith("snr") and name[3:].lstrip("-").isdigit()):
        return name
    raise ValueError(f"unknown audio variant {name!r}: use vad or snrNN (e.g. snr15)")


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


def make_variant(
    audio: npt.NDArray[np.float32], variant: str, seed: int
) -> npt.NDArray[np.float32]:
    if variant == "clean":
        return audio
    if variant == "vad":
        return vad_cut(audio)
    if variant.startswith("snr"):
        return add_noise(audio, float(variant[3:]), seed)
    raise ValueError(f"unknown audio variant {variant!r}: use clean, vad or snrNN")
