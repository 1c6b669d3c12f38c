"""Emotion over time: an exponential moving average of each source's results (pure, no I/O).

For every result of a source the trend is updated with
`trend = (1 - alpha) * trend + alpha * new`, `alpha = 2 / (window_utterances + 1)` (the usual
"span" of an EMA: the newest utterance weighs as much as a plain mean over the window would give
it), over the class probabilities, arousal and valence. The first utterance of a source, or the
first after a pause longer than `reset_after_s` of stream time, starts the trend afresh.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ser.config import TrendConfig


@dataclass(frozen=True)
class Trend:
    """A source's smoothed estimate after `utterances` utterances (since the last reset).

    probabilities: {label: p}, sums to 1; emotion/confidence: its top label and probability;
    arousal, valence: in [-1, 1], the same average of the per-utterance values.
    """

    emotion: str
    confidence: float
    probabilities: dict[str, float]
    arousal: float
    valence: float
    utterances: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trend:
        return cls(
            emotion=str(data["emotion"]),
            confidence=float(data["confidence"]),
            probabilities={str(k): float(v) for k, v in data["probabilities"].items()},
            arousal=float(data["arousal"]),
            valence=float(data["valence"]),
            utterances=int(data["utterances"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "emotion": self.emotion,
            "confidence": round(self.confidence, 4),
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
            "arousal": round(self.arousal, 4),
            "valence": round(self.valence, 4),
            "utterances": self.utterances,
        }


@dataclass
class _State:
    probs: npt.NDArray[np.float64]
    arousal: float
    valence: float
    utterances: int
    end_s: float


class TrendTracker:
    """Per-source moving averages. Call `push` once per result, in order within each source."""

    def __init__(self, labels: tuple[str, ...], config: TrendConfig) -> None:
        self.labels = labels
        self.alpha = 2.0 / (config.window_utterances + 1)
        self.reset_after_s = config.reset_after_s
        self._states: dict[Hashable, _State] = {}

    def reset(self) -> None:
        """Forget every source's trend (a new speaker starts)."""
        self._states.clear()

    def current(self, source: Hashable) -> Trend | None:
        """The source's trend as it stands (None before its first utterance)."""
        state = self._states.get(source)
        return None if state is None else self._trend(state)

    def push(
        self,
        source: Hashable,
        probabilities: Mapping[str, float],
        *,
        arousal: float,
        valence: float,
        start_s: float,
        end_s: float,
    ) -> Trend:
        """Add one utterance (stream times in seconds) and return the source's new trend."""
        probs = np.array([probabilities[label] for label in self.labels], dtype=np.float64)
        state = self._states.get(source)
        paused = state is not None and (
            self.reset_after_s > 0 and start_s - state.end_s > self.reset_after_s
        )
        if state is None or paused:
            state = _State(probs, arousal, valence, 1, end_s)
        else:
            a = self.alpha
            state = _State(
                (1 - a) * state.probs + a * probs,
                (1 - a) * state.arousal + a * arousal,
                (1 - a) * state.valence + a * valence,
                state.utterances + 1,
                end_s,
            )
        self._states[source] = state
        return self._trend(state)

    def _trend(self, state: _State) -> Trend:
        top = int(np.argmax(state.probs))
        return Trend(
            emotion=self.labels[top],
            confidence=float(state.probs[top]),
            probabilities={k: float(p) for k, p in zip(self.labels, state.probs, strict=True)},
            arousal=float(state.arousal),
            valence=float(state.valence),
            utterances=state.utterances,
        )
