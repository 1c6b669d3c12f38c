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

What the networks read (`AdaptationPrior.inputs`):

- "z": the normalised features alone (both shipped bundles; `ser-train`'s default).
  They assume the stream's average is a mix of all emotions: a session held in one mood is
  normalised towards "average" and its emotion erased.
- "raw+z+history": the unnormalised features, the normalised ones and how much history is
  behind them (n / (n + w), 1/(1 + w) for a first utterance), trained on sessions whose emotion
  mix is drawn at random (train/sessions.py) so the network learns when the speaker-relative
  view can be trusted and when the utterance must stand on its own. Measured better on held
  sessions but worse across corpora (EXPERIMENTS.md, "Sessions as people talk"): an option.

`AdaptiveCentering` does the same for the log-mel CNN: it subtracts the stream's running mean
band energy (a per-speaker spectral offset) from each utterance's log-mel frames.

History gate (`HistoryGate`, `GatedHistory`): the networks read every utterance twice, with the
speaker's history and alone (as a stream's first utterance), and the two probability vectors
are mixed geometrically, `p ~ p_history^w * p_alone^(1 - w)`. The weight `w` comes from how
many emotions the speaker has shown so far, as the *alone* readings see them: the effective
number of labels `exp(H)` of their running mean (H: entropy). A speaker who holds one mood
(a sad voice message, an angry caller, a calm meeting) shows few, so the history, which would
normalise that mood away, is not trusted; a conversation that moves between emotions shows
many, and the speaker-relative reading (better there) takes over. `w` is 0 below `low`
effective labels, 1 above `high`, linear between, and scaled by `(n - 1) / (n - 1 + warmup)`
after n utterances (0 for the first). Chosen on every protocol's session kinds from the fold
predictions (EXPERIMENTS.md, "A history gate").
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, eq=False)
class AdaptationPrior:
    """Population statistics and the weight of the prior, as stored in a bundle's manifest."""

    mean: F64  # (dim,)
    std: F64  # (dim,)
    prior_weight: float = 2.0
    max_history: int = 60
    inputs: str = "z"  # one of INPUTS: what the network reads (module docstring)

    def __post_init__(self) -> None:
        if self.inputs not in INPUTS:
            raise ValueError(f"adaptation inputs {self.inputs!r}: expected one of {INPUTS}")

    @classmethod
    def from_features(
        cls,
        x: npt.NDArray[np.floating],
        prior_weight: float = 2.0,
        max_history: int = 60,
        inputs: str = "z",
    ) -> AdaptationPrior:
        """Prior from training features of shape (n, dim)."""
        x64 = np.asarray(x, dtype=np.float64)
        return cls(x64.mean(axis=0), x64.std(axis=0), prior_weight, max_history, inputs)

    def output_dim(self, dim: int) -> int:
        """Size of the network input made from (dim,) features."""
        return dim if self.inputs == "z" else 2 * dim + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "causal per-stream normalisation with a population prior",
            "inputs": self.inputs,
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
            str(data.get("inputs", "z")),
        )


INPUTS = ("z", "raw+z+history")


@dataclass
class _Sums:
    n: float = 0.0
    s1: F64 | None = None
    s2: F64 | None = None

    def add(self, x64: F64, max_history: int) -> tuple[F64, F64]:
        """Add one utterance (older ones fade beyond `max_history`); return the sums."""
        if self.s1 is None or self.s2 is None:
            self.s1, self.s2 = np.zeros_like(x64), np.zeros_like(x64)
        if self.n >= max_history:
            fade = (max_history - 1) / self.n
            self.n *= fade
            self.s1 *= fade
            self.s2 *= fade
        self.n += 1.0
        self.s1 += x64
        self.s2 += x64 * x64
        return self.s1, self.s2


@dataclass
class AdaptiveNormalizer:
    """Running per-stream normalisation; call `push` once per utterance, in utterance order."""

    prior: AdaptationPrior
    _streams: dict[Hashable, _Sums] = field(default_factory=dict)

    def push(self, stream: Hashable, x: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """Add utterance features x (dim,) to `stream`'s history; return the network input,
        float32 (`prior.output_dim(dim)`,): the normalised features, or for "raw+z+history"
        x, the normalised features and the history weight n / (n + w)."""
        p = self.prior
        x64 = np.asarray(x, dtype=np.float64)
        sums = self._streams.setdefault(stream, _Sums())
        s1, s2 = sums.add(x64, p.max_history)
        w = p.prior_weight
        mean = (s1 + w * p.mean) / (sums.n + w)
        spread = s2 - 2.0 * mean * s1 + sums.n * mean * mean
        var = (np.maximum(spread, 0.0) + w * p.std**2) / (sums.n + w)
        z = (x64 - mean) / np.sqrt(var + 1e-12)
        if p.inputs == "z":
            return z.astype(np.float32)
        return np.concatenate([x64, z, [sums.n / (sums.n + w)]]).astype(np.float32)

    def reset(self, stream: Hashable | None = None) -> None:
        if stream is None:
            self._streams.clear()
        else:
            self._streams.pop(stream, None)

    def history(self, stream: Hashable) -> float:
        """Effective number of utterances behind `stream`'s statistics."""
        sums = self._streams.get(stream)
        return 0.0 if sums is None else sums.n


@dataclass
class AdaptiveCentering:
    """The log-mel CNN's adaptation: a running per-stream mean of each utterance's mean log-mel
    band energies (same prior weight and history as `AdaptiveNormalizer`, `prior.std` unused),
    subtracted from every frame. Call `push` once per utterance, in utterance order."""

    prior: AdaptationPrior  # mean: (n_mels,) population band means in dB
    _streams: dict[Hashable, _Sums] = field(default_factory=dict)

    def offset(self, stream: Hashable, band_means: npt.NDArray[np.floating]) -> F64:
        """Add one utterance's (n_mels,) band means to `stream`; return the stream's current
        (n_mels,) offset."""
        p = self.prior
        sums = self._streams.setdefault(stream, _Sums())
        s1, _ = sums.add(np.asarray(band_means, dtype=np.float64), p.max_history)
        return (s1 + p.prior_weight * p.mean) / (sums.n + p.prior_weight)

    def push(self, stream: Hashable, log_mel: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """(n_frames, n_mels) log-mel -> the same minus `stream`'s offset, float32."""
        offset = self.offset(stream, np.mean(log_mel, axis=0))
        return (np.asarray(log_mel, dtype=np.float64) - offset).astype(np.float32)

    def reset(self, stream: Hashable | None = None) -> None:
        if stream is None:
            self._streams.clear()
        else:
            self._streams.pop(stream, None)


def adapt_sessions(
    x: npt.NDArray[np.floating], sessions: Sequence[npt.NDArray[np.intp]], prior: AdaptationPrior
) -> npt.NDArray[np.float32]:
    """Live adaptation simulated over sessions: each session (row indices of x (n, dim), in
    utterance order) is one stream with a fresh history. Returns one row per session row,
    sessions concatenated: (sum of session lengths, `prior.output_dim(dim)`) float32."""
    dim = prior.output_dim(np.shape(x)[1])
    out = []
    for stream, rows in enumerate(sessions):
        normalizer = AdaptiveNormalizer(prior)
        out += [normalizer.push(stream, x[i]) for i in rows]
    return np.stack(out) if out else np.empty((0, dim), dtype=np.float32)


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
    if len(x) == 0:
        return np.empty((0, prior.output_dim(np.shape(x)[1])), dtype=np.float32)
    return np.stack(push_in_order(list(x), streams, AdaptiveNormalizer(prior).push, rng))


def push_in_order(
    items: Sequence[T],
    streams: npt.ArrayLike,
    push: Callable[[Hashable, T], R],
    rng: np.random.Generator,
) -> list[R]:
    """`push(stream, items[i])` for every row, each stream's rows in the random order
    `stream_orders` draws with `rng`; results in row order."""
    out: list[R | None] = [None] * len(items)
    for stream, rows in stream_orders(streams, rng):
        for i in rows:
            out[i] = push(stream, items[i])
    return cast("list[R]", out)  # every row belongs to one stream: none is left None


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


_EPS = 1e-7


def effective_labels(p: npt.ArrayLike) -> float:
    """exp(entropy) of a probability vector: 1 for a sure one-hot, len(p) for uniform."""
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0)
    q = q / q.sum()
    return float(np.exp(-(q * np.log(q)).sum()))


def mix_geometric(
    p_history: npt.ArrayLike, p_alone: npt.ArrayLike, weight: float
) -> npt.NDArray[np.float32]:
    """p_history^weight * p_alone^(1 - weight), renormalised: (n_labels,) float32."""
    log = weight * np.log(np.clip(np.asarray(p_history, np.float64), _EPS, 1.0)) + (
        1.0 - weight
    ) * np.log(np.clip(np.asarray(p_alone, np.float64), _EPS, 1.0))
    e = np.exp(log - log.max())
    return np.asarray(e / e.sum(), dtype=np.float32)


@dataclass(frozen=True)
class HistoryGate:
    """How far to trust a speaker's history (module docstring); stored in the bundle's
    manifest under adaptation.gate."""

    low: float = 4.0  # effective labels shown so far at or below which history is not used
    high: float = 8.0  # ... at or above which it is used fully
    warmup: float = 2.0  # utterances over which trust grows, however varied they are
    max_history: int = 60  # as AdaptationPrior.max_history: older utterances fade

    def __post_init__(self) -> None:
        if not (1.0 <= self.low < self.high and self.warmup >= 0 and self.max_history >= 1):
            raise ValueError(f"history gate {self}: need 1 <= low < high, warmup >= 0")

    def weight(self, alone_mean: npt.ArrayLike, n: float) -> float:
        """The weight of the history-adapted reading after `n` utterances (this one included)
        whose alone readings average `alone_mean`."""
        if n <= 1:
            return 0.0
        shown = effective_labels(alone_mean)
        trust = min(max((shown - self.low) / (self.high - self.low), 0.0), 1.0)
        return trust * (n - 1) / (n - 1 + self.warmup)

    def to_dict(self) -> dict[str, Any]:
        return {
            "low": self.low,
            "high": self.high,
            "warmup": self.warmup,
            "max_history": self.max_history,
            "signal": "effective number of labels of the running mean alone reading",
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistoryGate:
        return cls(
            float(data["low"]),
            float(data["high"]),
            float(data["warmup"]),
            int(data.get("max_history", 60)),
        )


class GatedHistory:
    """Per-stream state of a `HistoryGate`: `push` one utterance's two readings, in order."""

    def __init__(self, gate: HistoryGate) -> None:
        self.gate = gate
        self._sums: dict[Hashable, tuple[F64, float]] = {}

    def push(
        self, stream: Hashable, p_history: npt.ArrayLike, p_alone: npt.ArrayLike
    ) -> npt.NDArray[np.float32]:
        """The utterance's probabilities: its two readings mixed by the stream's gate weight."""
        alone = np.asarray(p_alone, np.float64)
        total, n = self._sums.get(stream, (np.zeros_like(alone), 0.0))
        total, n = total + alone, n + 1.0
        if n > self.gate.max_history:  # fade older utterances, as the normaliser does
            total, n = total * (self.gate.max_history / n), float(self.gate.max_history)
        self._sums[stream] = (total, n)
        return mix_geometric(p_history, p_alone, self.gate.weight(total / n, n))

    def reset(self, stream: Hashable | None = None) -> None:
        if stream is None:
            self._sums.clear()
        else:
            self._sums.pop(stream, None)


def gate_in_order(
    p_history: npt.NDArray[np.floating],
    p_alone: npt.NDArray[np.floating],
    streams: Sequence[npt.NDArray[np.intp]],
    gate: HistoryGate,
) -> npt.NDArray[np.float32]:
    """Live gating simulated: each entry of `streams` is one stream's row indices (into the
    (n, n_labels) arrays) in utterance order; returns the gated (n, n_labels) in row order."""
    out = np.asarray(p_history, np.float32).copy()
    for stream, rows in enumerate(streams):
        state = GatedHistory(gate)
        for i in rows:
            out[i] = state.push(stream, p_history[i], p_alone[i])
    return out
