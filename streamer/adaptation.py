"""Speaker adaptation: normalise each utterance's features by the statistics of the same speaker's
past utterances (pure, no I/O).

Emotion is expressed relative to a speaker's own voice, so features z-normalised per speaker
classify far better than globally normalised ones (measured here: 56 % -> 64 % with logistic
regression). Live, the speaker's statistics are not known in advance; `AdaptiveNormalizer` keeps
running sums per stream and uses only the current and earlier utterances (causal), shrunk
towards the training population's statistics by `prior_weight` pseudo-utterances:

    mean = (sum x_i + w * mu0) / (n + w)
    var  = (sum (x_i - mean)^2 + w * sd0^2) / (n + w)

The first utterance of a stream therefore gets (mostly) population normalisation, and the
estimate sharpens as the speaker talks. After `max_history` utterances older ones fade out
(the sums are scaled down), so a change of speaker is followed within a minute or two.
Training simulates exactly this (train/cli.py), so the model sees what it will see live.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class AdaptationPrior:
    """Population statistics and the weight of the prior, as stored in a bundle's manifest."""

    mean: F64  # (dim,)
    std: F64  # (dim,)
    prior_weight: float = 2.0
    max_history: int = 60

    @classmethod
    def from_features(
        cls, x: npt.NDArray[np.floating], prior_weight: float = 2.0, max_history: int = 60
    ) -> AdaptationPrior:
        """Prior from training features of shape (n, dim)."""
        x64 = np.asarray(x, dtype=np.float64)
        return cls(x64.mean(axis=0), x64.std(axis=0), prior_weight, max_history)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "causal per-stream normalisation with a population prior",
            "prior_weight": self.prior_weight,
            "max_history": self.max_history,
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdaptationPrior:
        return cls(
            np.asarray(data["mean"], dtype=np.float64),
            np.asarray(data["std"], dtype=np.float64),
            float(data["prior_weight"]),
            int(data["max_history"]),
        )


@dataclass
class _Sums:
    n: float = 0.0
    s1: F64 | None = None
    s2: F64 | None = None


@dataclass
class AdaptiveNormalizer:
    """Running per-stream normalisation; call `push` once per utterance, in utterance order."""

    prior: AdaptationPrior
    _streams: dict[Hashable, _Sums] = field(default_factory=dict)

    def push(self, stream: Hashable, x: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """Add utterance features x (dim,) to `stream`'s history; return them normalised."""
        p = self.prior
        x64 = np.asarray(x, dtype=np.float64)
        sums = self._streams.setdefault(stream, _Sums())
        if sums.s1 is None or sums.s2 is None:
            sums.s1, sums.s2 = np.zeros_like(x64), np.zeros_like(x64)
        if sums.n >= p.max_history:
            fade = (p.max_history - 1) / sums.n
            sums.n *= fade
            sums.s1 *= fade
            sums.s2 *= fade
        sums.n += 1.0
        sums.s1 += x64
        sums.s2 += x64 * x64
        w = p.prior_weight
        mean = (sums.s1 + w * p.mean) / (sums.n + w)
        spread = sums.s2 - 2.0 * mean * sums.s1 + sums.n * mean * mean
        var = (np.maximum(spread, 0.0) + w * p.std**2) / (sums.n + w)
        return ((x64 - mean) / np.sqrt(var + 1e-12)).astype(np.float32)

    def reset(self, stream: Hashable | None = None) -> None:
        if stream is None:
            self._streams.clear()
        else:
            self._streams.pop(stream, None)

    def history(self, stream: Hashable) -> float:
        """Effective number of utterances behind `stream`'s statistics."""
        sums = self._streams.get(stream)
        return 0.0 if sums is None else sums.n


def adapt_in_order(
    x: npt.NDArray[np.floating],
    streams: npt.ArrayLike,
    prior: AdaptationPrior,
    rng: np.random.Generator,
) -> npt.NDArray[np.float32]:
    """Simulate live adaptation over a data set: each stream's utterances in a random order.

    x: (n, dim) features; streams: (n,) stream (speaker) of each row. Returns (n, dim) float32,
    row i normalised with the statistics of its stream's rows seen up to and including it.
    """
    out = np.empty(np.shape(x), dtype=np.float32)
    normalizer = AdaptiveNormalizer(prior)
    for stream, rows in stream_orders(streams, rng):
        for i in rows:
            out[i] = normalizer.push(stream, x[i])
    return out


def stream_orders(
    streams: npt.ArrayLike, rng: np.random.Generator
) -> list[tuple[Hashable, npt.NDArray[np.intp]]]:
    """For each stream (in order of first appearance), its row indices in a random order: the
    utterance order that `adapt_in_order` simulates (the same rng gives the same orders)."""
    keys = np.asarray(streams)
    return [
        (stream, rng.permutation(np.flatnonzero(keys == stream)))
        for stream in dict.fromkeys(keys.tolist())
    ]
