"""What the dashboard shows: mutable state owned and updated by the event loop only."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ser.messages import Result


@dataclass(frozen=True)
class BrokerStatus:
    """MQTT connection state as shown to the user."""

    state: str  # "connecting", "connected", "retrying", "stopped"
    retry_at_s: float | None = None  # time.monotonic() of the next attempt, when retrying
    last_error: str | None = None
    queued: int = 0
    dropped: int = 0
    published: int = 0


@dataclass
class LiveState:
    """Counters, levels and recent results of a running recognizer."""

    model_name: str
    model_accuracy: str | None
    """The bundle's accuracy with its condition (`Bundle.accuracy_note(short=True)`)."""
    labels: tuple[str, ...]
    history_size: int = 12
    timeline_size: int = 40
    source: str = ""
    note: str = ""
    """A line under the header (e.g. what the demo recording's clips are)."""
    started_wall_s: float = field(default_factory=time.monotonic)
    level_db: float = -120.0
    in_speech: bool = False
    utterances: int = 0
    dropped_short: int = 0
    dropped_backlog: int = 0
    failed: int = 0
    overflows: int = 0
    dropped_blocks: int = 0
    resets: int = 0
    """Speaker resets asked for (`reset` message, dashboard key)."""
    early_pitch: int = 0
    """Utterances whose pitch was partly computed while they were spoken (pipeline.early_pitch)."""
    early_analyses: int = 0
    """Utterances analysed during their hangover (pipeline.encoder_tail_ms)."""
    dropped_early_analyses: int = 0
    """Analyses started in a pause that did not end the utterance (speech went on)."""
    last: Result | None = None
    history: deque[Result] = field(init=False)
    timeline: deque[Result] = field(init=False)
    """The last `timeline_size` results, oldest first."""
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    broker: BrokerStatus | None = None
    remote: BrokerStatus | None = None
    """The `ser-serve` connection of a thin client (`ser-live --connect`); `queued`: tenths of
    a second of audio waiting to be sent."""

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.history_size)
        self.timeline = deque(maxlen=self.timeline_size)

    def record(self, result: Result) -> None:
        self.utterances += 1
        self.last = result
        self.history.appendleft(result)
        self.timeline.append(result)
        self.latencies_ms.append(result.latency_ms)

    def latency_percentiles(self) -> tuple[float, float] | None:
        """(p50, p95) of recent end-of-speech-to-result latencies in ms, None before any."""
        if not self.latencies_ms:
            return None
        p50, p95 = np.percentile(np.fromiter(self.latencies_ms, dtype=np.float64), [50, 95])
        return float(p50), float(p95)
