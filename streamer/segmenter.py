"""Utterance segmentation over webrtcvad decisions: pure and synchronous, no I/O.

`UtteranceTracker` is the state machine: VAD frames with their speech flag in, utterances out.
`VadSegmenter` cuts arbitrary audio blocks into VAD frames, asks webrtcvad, and feeds the tracker.

Timeline of one utterance (frames of `frame_ms`):

    silence | pre-roll | start run (>= start_ms voiced) | speech ... | hangover (silence) | silence
            ^ samples begin                                                     samples end ^
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from ser.config import VadConfig
from ser.messages import AudioBlock, Utterance

_SILENT_DB = -120.0
_EDGE_RUN = 3  # frames in a row that count as speech for reported boundaries


class _Frame(NamedTuple):
    """One VAD frame (a tuple: built for every 30 ms of every stream, it must be cheap)."""

    samples: npt.NDArray[np.int16]
    start_s: float
    end_wall_s: float
    speech: bool


@dataclass
class SegmenterStats:
    """Counters since start (mutable, owned by the tracker)."""

    utterances: int = 0
    dropped_short: int = 0
    cut_at_max: int = 0


def frame_level_db(samples: npt.NDArray[np.int16]) -> float:
    """RMS level of int16 samples in dBFS (-120 for digital silence)."""
    if samples.size == 0:
        return _SILENT_DB
    return frame_levels_db(samples.reshape(1, -1))[0]


def frame_levels_db(frames: npt.NDArray[np.int16]) -> list[float]:
    """RMS level in dBFS of each row of (n_frames, frame_len) int16, in one pass (float64);
    -120 for digital silence."""
    x = frames.astype(np.float64) / 32768.0
    power = (x * x).sum(axis=1) / max(frames.shape[1], 1)
    levels = 10.0 * np.log10(np.maximum(power, 1e-30))
    return [float(v) if p > 1e-12 else _SILENT_DB for v, p in zip(levels, power, strict=True)]


class UtteranceTracker:
    """The segmentation state machine; see the module docstring for the timeline."""

    def __init__(self, config: VadConfig, sample_rate: int, source: str) -> None:
        self.config = config
        self.sample_rate = sample_rate
        self.source = source
        self.frame_s = config.frame_ms / 1000.0
        self._start_frames = max(1, math.ceil(config.start_ms / config.frame_ms))
        self._hangover_frames = max(1, math.ceil(config.hangover_ms / config.frame_ms))
        self._max_frames = max(1, config.max_utterance_ms // config.frame_ms)
        pre_roll_frames = math.ceil(config.pre_roll_ms / config.frame_ms)
        self._ring: deque[_Frame] = deque(maxlen=pre_roll_frames + self._start_frames)
        self._voiced_run = 0
        self._frames: list[_Frame] = []  # current utterance, empty when in silence
        self._frame_samples = 0  # samples in `_frames`
        self._in_speech = False
        self._silence_run = 0
        self._next_index = 0
        self.stats = SegmenterStats()

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def silence_run(self) -> int:
        """Unvoiced frames in a row at the end of the utterance in progress (0 in silence)."""
        return self._silence_run if self._in_speech else 0

    @property
    def frame_samples(self) -> int:
        """Samples per VAD frame."""
        return self.sample_rate * self.config.frame_ms // 1000

    @property
    def hangover_frames(self) -> int:
        """Unvoiced frames in a row that end an utterance."""
        return self._hangover_frames

    @property
    def pending_samples(self) -> int:
        """Samples of the utterance in progress so far (0 in silence)."""
        return self._frame_samples if self._in_speech else 0

    def pending_audio(self) -> npt.NDArray[np.int16]:
        """The utterance in progress so far: the first samples of the `Utterance` it becomes
        (unless it turns out too short), int16 at `sample_rate`."""
        if not self._in_speech or not self._frames:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([f.samples for f in self._frames])

    def push(
        self,
        samples: npt.NDArray[np.int16],
        start_s: float,
        end_wall_s: float,
        speech: bool,
    ) -> list[Utterance]:
        """Add one VAD frame (int16, `frame_ms` long) and its decision; returns ended utterances."""
        frame = _Frame(samples, start_s, end_wall_s, speech)
        if not self._in_speech:
            self._ring.append(frame)
            self._voiced_run = self._voiced_run + 1 if speech else 0
            if self._voiced_run >= self._start_frames:
                self._in_speech = True
                self._frames = list(self._ring)
                self._frame_samples = sum(f.samples.size for f in self._frames)
                self._ring.clear()
                self._voiced_run = 0
                self._silence_run = 0
            return []
        self._frames.append(frame)
        self._frame_samples += samples.size
        self._silence_run = 0 if speech else self._silence_run + 1
        if self._silence_run >= self._hangover_frames:
            hangover = sum(f.samples.size for f in self._frames[-self._hangover_frames :])
            out = self._finish(hangover)
            self._in_speech = False
            return out
        if len(self._frames) >= self._max_frames:
            self.stats.cut_at_max += 1
            out = self._finish()
            self._silence_run = 0  # stay in speech; the next piece starts with the next frame
            return out
        return []

    def flush(self) -> list[Utterance]:
        """End of input: emit the utterance in progress (if long enough) and reset."""
        out = self._finish() if self._in_speech else []
        self._in_speech = False
        self._ring.clear()
        self._voiced_run = 0
        return out

    def _finish(self, hangover_samples: int = 0) -> list[Utterance]:
        frames, self._frames = self._frames, []
        self._frame_samples = 0
        voiced = [i for i, f in enumerate(frames) if f.speech]
        if not voiced:
            return []
        first, last = voiced[0], voiced[-1]
        # Reported boundaries: the first and last runs of `_EDGE_RUN` frames within boundary_db
        # of the loudest frame; leaves out breaths, background and isolated clicks at the edges.
        # Levels are needed only here: one pass over the utterance's frames.
        levels = frame_levels_db(np.stack([f.samples for f in frames]))
        loudest = max(levels[first : last + 1])
        loud = [level >= loudest - self.config.boundary_db for level in levels]
        runs = [
            i
            for i in range(first, last + 1)
            if all(loud[i : i + _EDGE_RUN]) and i + _EDGE_RUN <= last + 1
        ]
        if runs:
            first, last = runs[0], runs[-1] + _EDGE_RUN - 1
        start_s = frames[first].start_s
        end_s = frames[last].start_s + self.frame_s
        if (end_s - start_s) * 1000.0 < self.config.min_utterance_ms - 1e-6:
            self.stats.dropped_short += 1
            return []
        utterance = Utterance(
            index=self._next_index,
            source=self.source,
            samples=np.concatenate([f.samples for f in frames]),
            sample_rate=self.sample_rate,
            start_s=start_s,
            end_s=end_s,
            speech_end_wall_s=frames[voiced[-1]].end_wall_s,
            cut_wall_s=frames[-1].end_wall_s,
            hangover_samples=hangover_samples,
        )
        self._next_index += 1
        self.stats.utterances += 1
        return [utterance]


@dataclass
class VadSegmenter:
    """webrtcvad + framing in front of an `UtteranceTracker`, for one source's stream."""

    config: VadConfig
    source: str
    sample_rate: int = 16_000
    tracker: UtteranceTracker = field(init=False)
    _pending: npt.NDArray[np.int16] = field(init=False)
    _consumed: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        import webrtcvad

        if self.sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(f"webrtcvad needs 8, 16, 32 or 48 kHz, got {self.sample_rate}")
        self._vad = webrtcvad.Vad(self.config.aggressiveness)
        self._frame_len = self.sample_rate * self.config.frame_ms // 1000
        self.tracker = UtteranceTracker(self.config, self.sample_rate, self.source)
        self._pending = np.zeros(0, dtype=np.int16)

    def push(self, block: AudioBlock) -> list[Utterance]:
        """Feed one block of int16 audio; returns the utterances that ended in it."""
        data = block.samples
        if self._pending.size:
            data = np.concatenate([self._pending, data])
        n_frames = data.size // self._frame_len
        out: list[Utterance] = []
        if not n_frames:
            self._pending = data.copy()
            return out
        frame_len, rate = self._frame_len, self.sample_rate
        frames = data[: n_frames * frame_len].reshape(n_frames, frame_len)
        pcm = frames.tobytes()  # webrtcvad reads bytes: one copy per block, not per frame
        is_speech, push = self._vad.is_speech, self.tracker.push
        wall_offset_s = block.wall_s - block.end_s  # a sample's wall time = this + its time
        consumed = self._consumed
        for k, frame in enumerate(frames):
            start_s = consumed / rate
            consumed += frame_len
            speech = is_speech(pcm[2 * k * frame_len : 2 * (k + 1) * frame_len], rate)
            ended = push(frame, start_s, wall_offset_s + consumed / rate, speech)
            if ended:  # cut when this block arrived (its last frames may be later audio)
                out.extend(replace(u, cut_wall_s=block.wall_s) for u in ended)
        self._consumed = consumed
        self._pending = data[n_frames * frame_len :].copy()
        return out

    def flush(self) -> list[Utterance]:
        """End of the stream (the last partial frame is dropped)."""
        self._pending = np.zeros(0, dtype=np.int16)
        return self.tracker.flush()
