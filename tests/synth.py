"""Synthetic audio generated in tests (no files needed)."""

from __future__ import annotations

import numpy as np


def harmonic(duration_s: float, sample_rate: int = 16_000, f0_hz: float = 140.0) -> np.ndarray:
    """A voiced-like harmonic tone (29 harmonics), float32 peak 0.3, shape (n,)."""
    t = np.arange(round(duration_s * sample_rate)) / sample_rate
    x = sum((1.0 / k) * np.sin(2 * np.pi * f0_hz * k * t) for k in range(1, 30))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def silence(duration_s: float, sample_rate: int = 16_000) -> np.ndarray:
    return np.zeros(round(duration_s * sample_rate), dtype=np.float32)
