"""Generated non-speech: what gets past webrtcvad in homes and offices (pure, seeded, no I/O).

Kinds: white, pink and brown noise; steady tones; sweeps; click trains; mains hum; synthetic
music (notes of harmonic partials with decays, sometimes chords, over a noise-burst beat);
babble-free machine noise (band-limited noise with a slow amplitude modulation). Each clip is
1-4 s at a random peak level from -40 to -3 dBFS. `clip(kind, seed)` is deterministic.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

KINDS: tuple[str, ...] = (
    "white",
    "pink",
    "brown",
    "tone",
    "sweep",
    "clicks",
    "hum",
    "music",
    "machine",
)
SAMPLE_RATE = 16_000
VERSION = 1  # bump when a generator changes (keys the feature cache)


def _coloured(n: int, exponent: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Noise with power spectrum ~ 1 / f**exponent (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spectrum *= 1.0 / np.maximum(f, 20.0) ** (exponent / 2.0)
    return np.fft.irfft(spectrum, n=n)


def _note(n: int, f0: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    t = np.arange(n) / SAMPLE_RATE
    partials = int(rng.integers(1, 8))
    tone = sum(
        rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi))
        for k in range(1, partials + 1)
        if f0 * k < SAMPLE_RATE / 2
    )
    decay = np.exp(-t * rng.uniform(0.5, 8.0))
    attack = np.minimum(1.0, t / 0.01)
    return np.asarray(tone * decay * attack, dtype=np.float64)


def _music(n: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    out = np.zeros(n)
    scale = 220.0 * 2.0 ** (np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16]) / 12.0)
    start = 0
    while start < n:
        length = int(rng.uniform(0.12, 0.6) * SAMPLE_RATE)
        chord = rng.choice(scale, size=int(rng.integers(1, 4)), replace=False)
        octave = 2.0 ** int(rng.integers(-1, 2))
        for f0 in chord:
            out[start : start + length] += _note(min(length, n - start), f0 * octave, rng)
        start += length
    if rng.random() < 0.6:  # a beat: short noise bursts
        period = int(rng.uniform(0.25, 0.6) * SAMPLE_RATE)
        burst = rng.normal(size=800) * np.exp(-np.arange(800) / 120.0)
        for s in range(int(rng.integers(0, period)), n - 800, period):
            out[s : s + 800] += rng.uniform(0.3, 1.0) * burst * np.abs(out).max(initial=1.0)
    return out


def clip(kind: str, seed: int) -> npt.NDArray[np.float32]:
    """One generated clip of `kind` (see KINDS): float32 mono at 16 kHz, shape (n,)."""
    if kind not in KINDS:
        raise ValueError(f"unknown non-speech kind {kind!r}; one of {', '.join(KINDS)}")
    rng = np.random.default_rng([KINDS.index(kind), seed])
    n = int(rng.uniform(1.0, 4.0) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    if kind in ("white", "pink", "brown"):
        x = _coloured(n, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind], rng)
    elif kind == "tone":
        x = np.sin(2 * np.pi * rng.uniform(80.0, 4000.0) * t)
    elif kind == "sweep":
        f0, f1 = np.exp(rng.uniform(np.log(80.0), np.log(6000.0), 2))
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1]))
        x = np.sin(phase)
    elif kind == "clicks":
        x = np.zeros(n)
        rate = rng.uniform(1.0, 30.0)
        times = np.cumsum(rng.exponential(1.0 / rate, size=int(rate * 5) + 2))
        for at in (times[times < t[-1]] * SAMPLE_RATE).astype(int):
            width = int(rng.integers(1, 80))
            x[at : at + width] += rng.normal(size=min(width, n - at)) * np.exp(
                -np.arange(min(width, n - at)) / 10.0
            )
    elif kind == "hum":
        mains = rng.choice([50.0, 60.0])
        x = sum(rng.uniform(0.1, 1.0) / k * np.sin(2 * np.pi * mains * k * t) for k in range(1, 8))
        x = x + 0.05 * rng.normal(size=n)
    elif kind == "music":
        x = _music(n, rng)
    else:  # machine: band-limited noise, slowly modulated
        noise = _coloured(n, rng.uniform(0.0, 2.0), rng)
        spectrum = np.fft.rfft(noise)
        f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
        centre, spread = rng.uniform(100.0, 3000.0), rng.uniform(50.0, 1500.0)
        spectrum *= np.exp(-0.5 * ((f - centre) / spread) ** 2)
        x = np.fft.irfft(spectrum, n=n) * (1.0 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 8) * t))
    x = np.asarray(x, dtype=np.float64)
    peak = float(np.abs(x).max())
    level = 10 ** (rng.uniform(-40.0, -3.0) / 20.0)
    return (x / peak * level if peak > 0 else x).astype(np.float32)


def clips(n_per_kind: int, first_seed: int = 0) -> list[tuple[str, npt.NDArray[np.float32]]]:
    """(kind, audio) for every kind, seeds first_seed .. first_seed + n_per_kind - 1."""
    return [
        (kind, clip(kind, seed))
        for kind in KINDS
        for seed in range(first_seed, first_seed + n_per_kind)
    ]
