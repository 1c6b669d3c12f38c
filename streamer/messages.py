"""Typed messages passed between pipeline stages: AudioBlock -> Utterance -> Result."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ser.trend import Trend


@dataclass(frozen=True, eq=False)
class AudioBlock:
    """A block of captured or read audio.

    samples: int16, shape (n,), mono at `sample_rate`.
    start_s: stream time of the first sample (seconds since the source started).
    wall_s: `time.monotonic()` at which the block's last sample was available.
    """

    source: str
    samples: npt.NDArray[np.int16]
    sample_rate: int
    start_s: float
    wall_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.samples.size / self.sample_rate


@dataclass(frozen=True, eq=False)
class Utterance:
    """One segmented stretch of speech.

    samples: int16, shape (n,), from the pre-roll start to the end of the hangover.
    start_s, end_s: stream time of the reported speech boundaries (seconds).
    speech_end_wall_s: `time.monotonic()` of the last voiced frame's end, for latency.
    cut_wall_s: `time.monotonic()` at which it was cut (the end of the hangover, or of
        `max_utterance_ms`): when the audio block holding its last frame arrived (from the
        tracker alone: that frame's end).
    hangover_samples: the silence that ended it, at the end of `samples` (the VAD's hangover);
        0 when it was cut at `max_utterance_ms` or at the end of the stream.
    """

    index: int
    source: str
    samples: npt.NDArray[np.int16]
    sample_rate: int
    start_s: float
    end_s: float
    speech_end_wall_s: float
    cut_wall_s: float
    hangover_samples: int = 0


NOT_SPEECH = "not_speech"  # `Result.emotion` when the speech detector rejects the utterance


@dataclass(frozen=True)
class Result:
    """The classification of one utterance; `to_json()` is the `--json` line and MQTT payload.

    An utterance the bundle's speech detector rejects (noise, music, tones that got past the
    VAD) has emotion NOT_SPEECH, confidence 1 - speech, no probabilities, arousal and valence 0,
    and the source's trend unchanged."""

    seq: int
    source: str
    start_s: float
    end_s: float
    emotion: str
    confidence: float
    probabilities: dict[str, float]
    latency_ms: float
    model: str
    uncertain: bool = False
    arousal: float = 0.0  # [-1, 1], from the probabilities (streamer/scoring.py)
    valence: float = 0.0  # [-1, 1]
    trend: Trend | None = None  # the source's smoothed emotion over recent utterances
    speech: float = 1.0  # P(speech) from the bundle's speech detector (1.0: it has none)

    @property
    def is_speech(self) -> bool:
        return self.emotion != NOT_SPEECH

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "source": self.source,
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "emotion": self.emotion,
            "confidence": round(self.confidence, 4),
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
            "latency_ms": round(self.latency_ms, 1),
            "model": self.model,
            "uncertain": self.uncertain,
            "arousal": round(self.arousal, 4),
            "valence": round(self.valence, 4),
            "speech": round(self.speech, 4),
            # null only for a source's first utterances when they are not speech
            "trend": self.trend.to_dict() if self.trend is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """The inverse of `to_dict` (results received from `ser-serve`)."""
        trend = data.get("trend")
        return cls(
            seq=int(data["seq"]),
            source=str(data["source"]),
            start_s=float(data["start_s"]),
            end_s=float(data["end_s"]),
            emotion=str(data["emotion"]),
            confidence=float(data["confidence"]),
            probabilities={str(k): float(v) for k, v in data["probabilities"].items()},
            latency_ms=float(data["latency_ms"]),
            model=str(data["model"]),
            uncertain=bool(data.get("uncertain", False)),
            arousal=float(data.get("arousal", 0.0)),
            valence=float(data.get("valence", 0.0)),
            trend=Trend.from_dict(trend) if trend else None,
            speech=float(data.get("speech", 1.0)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))
