"""The asyncio pipeline: source -> segmenter -> features (processes) -> classifier -> sinks.

Results leave in utterance order. Utterances in flight are bounded by `max_pending`: a live source
drops the newest utterance when full (counted in `dropped_backlog`); a file or stdin source waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ser.adaptation import GatedHistory
from ser.classifier import Classifier
from ser.config import Config
from ser.encoder import replaced_samples, tail_frames
from ser.features import FEATURE_SPEC, Analysis, f0_frames_ready, f0_span
from ser.inference import BatchedInference
from ser.messages import NOT_SPEECH, AudioBlock, Result, Utterance
from ser.scoring import arousal_valence
from ser.segmenter import VadSegmenter, frame_level_db
from ser.sources import EndOfStream, Source, SourceError, SpeakerReset
from ser.state import LiveState
from ser.trend import Trend, TrendTracker
from ser.workers import FeatureWorkers

logger = logging.getLogger(__name__)

_Featurized = tuple[Utterance, Analysis, float]  # and `time.monotonic()` when analysed


class _Reset:
    """Queued between utterances: the speaker history is forgotten at this point."""


_RESET = _Reset()

# early pitch: a part is computed each time this many more of the utterance's frames (10 ms
# each) are known
EARLY_STEP_FRAMES = 100


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Early work that failed (a worker lost under it) only costs itself: the utterance's own
    job does that part (early pitch: its frames; an early analysis: all of it); noted, never
    raised."""
    if not task.cancelled() and task.exception() is not None:
        logger.debug("early work failed: %s", task.exception())


@dataclass
class _EarlyPitch:
    """The pitch of the utterance in progress, computed in parts while it is spoken."""

    samples: npt.NDArray[np.int16]  # what the parts were computed from: its first samples
    frames: int = 0  # the parts cover its frames 0..frames-1
    parts: list[asyncio.Task[npt.NDArray[np.float64]]] = field(default_factory=list)

    def cancel(self) -> None:
        for part in self.parts:
            part.cancel()

    def continues_in(self, samples: npt.NDArray[np.int16]) -> bool:
        """Whether `samples` begin with what the parts were computed from."""
        n = self.samples.size
        return samples.size >= n and np.array_equal(samples[:n], self.samples)

    def known_for(self, head: npt.NDArray[np.int16]) -> npt.NDArray[np.float64] | None:
        """The pitch of the parts done so far, in order, of the frames `head` (an utterance's
        first samples) determines (`f0_frames_ready`), where `head` agrees with what they
        were computed from; None if none. Nothing is cancelled."""
        n = min(head.size, self.samples.size)
        if not np.array_equal(head[:n], self.samples[:n]):
            return None
        done: list[npt.NDArray[np.float64]] = []
        for part in self.parts:
            if not part.done() or part.cancelled() or part.exception() is not None:
                break
            done.append(part.result())
        known = np.concatenate(done)[: f0_frames_ready(head.size)] if done else None
        return known if known is not None and known.size else None

    def prefix_for(self, head: npt.NDArray[np.int16]) -> npt.NDArray[np.float64] | None:
        """`known_for(head)` of an ended utterance; the parts not done are cancelled."""
        prefix = self.known_for(head)
        self.cancel()
        return prefix


@dataclass
class _EarlyAnalysis:
    """The analysis of the utterance in progress, computed during its hangover."""

    head: npt.NDArray[np.int16]  # the utterance it would be, but its last `replaced` samples
    replaced: int
    task: asyncio.Task[Analysis]

    def is_for(self, utterance: Utterance, replaced: int) -> bool:
        """Whether `utterance` (its last `replaced` samples not read) is the utterance it was
        computed for."""
        n = self.head.size
        return (
            replaced == self.replaced
            and utterance.samples.size - replaced == n
            and np.array_equal(utterance.samples[:n], self.head)
        )


class Sink(Protocol):
    """Receives every result in order. `emit` must not block."""

    def emit(self, result: Result) -> None: ...


def emit_all(sinks: Sequence[Sink], result: Result) -> None:
    """`result` to every sink; a failing sink is logged and does not stop the others."""
    for sink in sinks:
        try:
            sink.emit(result)
        except Exception:
            logger.exception("a result sink failed")


class Pipeline:
    """Runs one source to its end (or until stopped) and emits every result to the sinks."""

    def __init__(
        self,
        config: Config,
        classifier: Classifier,
        workers: FeatureWorkers,
        sinks: Sequence[Sink],
        state: LiveState,
        *,
        inference: BatchedInference | None = None,
        meter_levels: bool = True,
        observe: Callable[[str, float], object] | None = None,
        on_early_analysis: Callable[[bool], object] | None = None,
    ) -> None:
        """`inference`: shared by the pipelines of a process (ser-serve's streams); None: this
        pipeline runs its own and closes it at the end of `run`. `meter_levels`: keep the input
        level and VAD state in `state` for a dashboard (ser-serve has none). `observe(stage,
        seconds)`: called for each result with "hangover" (end of speech to the utterance's
        cut: the VAD's hangover and the input block's length) and "classify" (features to
        result: in order behind the stream's earlier utterances, and inference); with the
        feature workers' "feature_wait" and "features" they add up to `latency_ms`.
        `on_early_analysis(used)`: called for each analysis started during a hangover
        (`pipeline.encoder_tail_ms`), with whether its utterance used it."""
        self.config = config
        self.classifier = classifier
        self.workers = workers
        self.sinks = list(sinks)
        self.state = state
        self._meter_levels = meter_levels
        self._own_inference = inference is None
        self.inference = inference if inference is not None else BatchedInference(classifier)
        self.observe = observe
        self.on_early_analysis = on_early_analysis
        self._seq = 0
        self._short_in_finished_streams = 0
        self._pending: asyncio.Queue[asyncio.Task[_Featurized] | _Reset | None] | None = None
        self._resets_before_run = 0
        self._early: _EarlyPitch | None = None
        self._early_analysis: _EarlyAnalysis | None = None
        # VAD frames of an utterance's hangover that are read (see `encoder_view`)
        self._tail_frames = tail_frames(config.pipeline.encoder_tail_ms, config.vad.frame_ms)

    async def reset_speaker(self) -> None:
        """A new speaker starts now: utterances already segmented keep the old history, later
        ones start afresh (speaker adaptation and trend)."""
        if self._pending is None:
            self._resets_before_run += 1
            return
        await self._pending.put(_RESET)

    async def run(self, source: Source) -> None:
        """Process `source` to its end; a SourceError is raised after what was in flight is out."""
        pending: asyncio.Queue[asyncio.Task[_Featurized] | _Reset | None] = asyncio.Queue(
            self.config.pipeline.max_pending
        )
        self._pending = pending
        for _ in range(self._resets_before_run):
            await pending.put(_RESET)
        self._resets_before_run = 0
        emitter = asyncio.create_task(self._emit_in_order(pending), name="ser-emit")
        segmenter: VadSegmenter | None = None
        failure: SourceError | None = None
        self.state.source = source.name
        try:
            async for item in source.blocks():
                if isinstance(item, SpeakerReset):
                    await pending.put(_RESET)  # after the utterances already segmented
                    continue
                if isinstance(item, EndOfStream):
                    if segmenter is not None:
                        await self._submit_all(segmenter.flush(), pending, source.live)
                        self._count(segmenter, finished=True)
                    segmenter = None
                    continue
                if segmenter is None:
                    segmenter = VadSegmenter(self.config.vad, item.source, item.sample_rate)
                    self.state.source = item.source
                utterances = segmenter.push(item)
                if self._meter_levels:
                    self._observe(item, segmenter, source)
                else:
                    self._count(segmenter)
                if utterances:
                    await self._submit_all(utterances, pending, source.live)
                self._advance_early_pitch(segmenter)
                self._advance_early_analysis(segmenter)
        except SourceError as exc:
            failure = exc
            if segmenter is not None:  # keep the utterance in progress
                await self._submit_all(segmenter.flush(), pending, live=False)
                self._count(segmenter, finished=True)
        finally:
            if self._early is not None:
                self._early.cancel()
                self._early = None
            self._drop_early_analysis()
            await pending.put(None)
            await emitter
            if self._own_inference:
                await self.inference.aclose()
        if failure is not None:
            raise failure

    def _observe(self, block: AudioBlock, segmenter: VadSegmenter, source: Source) -> None:
        state = self.state
        state.level_db = frame_level_db(block.samples)
        state.in_speech = segmenter.tracker.in_speech
        state.overflows = source.overflows
        state.dropped_blocks = source.dropped_blocks
        self._count(segmenter)

    def _count(self, segmenter: VadSegmenter, finished: bool = False) -> None:
        """Short-utterance drops over all streams so far."""
        dropped = segmenter.tracker.stats.dropped_short
        self.state.dropped_short = self._short_in_finished_streams + dropped
        if finished:
            self._short_in_finished_streams += dropped

    async def _submit_all(
        self,
        utterances: list[Utterance],
        pending: asyncio.Queue[asyncio.Task[_Featurized] | _Reset | None],
        live: bool,
    ) -> None:
        for utterance in utterances:
            replaced = self._replaced(utterance)
            early = self._early_analysis
            if early is None or not early.is_for(utterance, replaced):
                early = None
                self._drop_early_analysis()
            if live and pending.full():
                self._drop_early_analysis()
                self.state.dropped_backlog += 1
                logger.warning(
                    "dropping utterance at %.2f s: %d already in flight (pipeline.max_pending)",
                    utterance.start_s,
                    pending.maxsize,
                )
                continue
            prefix = None
            if self._early is not None:
                prefix = self._early.prefix_for(
                    utterance.samples[: utterance.samples.size - replaced]
                )
                self._early = None
                self.state.early_pitch += prefix is not None
            self._early_analysis = None
            if early is not None:
                self.state.early_analyses += 1
                if self.on_early_analysis is not None:
                    self.on_early_analysis(True)
            task = asyncio.create_task(
                self._classify(utterance, prefix, replaced, early.task if early else None)
            )
            await pending.put(task)

    def _advance_early_pitch(self, segmenter: VadSegmenter) -> None:
        """While an utterance is being spoken: its pitch so far, in parts, in the feature
        workers when they are free (`pipeline.early_pitch`; 16 kHz input)."""
        tracker = segmenter.tracker
        if (
            not self.config.pipeline.early_pitch
            or not self.workers.statistics  # the bundle reads no pitch
            or segmenter.sample_rate != FEATURE_SPEC.sample_rate
            or not tracker.in_speech
        ):
            if self._early is not None and not tracker.in_speech:
                self._early.cancel()  # the utterance was too short, or is out already
                self._early = None
            return
        ready = f0_frames_ready(tracker.pending_samples)
        early = self._early
        if ready - (early.frames if early is not None else 0) < EARLY_STEP_FRAMES:
            return
        so_far = tracker.pending_audio()
        if early is None or not early.continues_in(so_far):
            # a new utterance (or a new piece of one cut at vad.max_utterance_ms)
            if early is not None:
                early.cancel()
            early = self._early = _EarlyPitch(np.zeros(0, dtype=np.int16))
        offset, end = f0_span(early.frames, ready)
        part = asyncio.create_task(
            self.workers.f0_frames(so_far[offset:end], early.frames, ready, offset)
        )
        part.add_done_callback(_retrieve)
        early.parts.append(part)
        early.frames, early.samples = ready, so_far[:end]

    def _replaced(self, utterance: Utterance) -> int:
        """Samples at the end of `utterance` that are not read (`encoder_view`): the part of
        the hangover that ended it after `pipeline.encoder_tail_ms`; 0 when it was not ended by
        a hangover or the bundle has no encoder."""
        if not self.classifier.has_encoder:
            return 0
        return replaced_samples(
            utterance.hangover_samples,
            utterance.sample_rate,
            self.config.vad.frame_ms,
            self.config.pipeline.encoder_tail_ms,
        )

    def _advance_early_analysis(self, segmenter: VadSegmenter) -> None:
        """In a pause of `pipeline.encoder_tail_ms` or more: the analysis of the utterance it
        ends if the voice does not come back within the hangover, computed now (the same
        analysis as once it ends: `encoder_view`). The voice back: dropped."""
        tracker = segmenter.tracker
        if not self.classifier.has_encoder or self._tail_frames >= tracker.hangover_frames:
            return
        if not tracker.in_speech or tracker.silence_run < self._tail_frames:
            self._drop_early_analysis()  # the voice is back, or the utterance was too short
            return
        if self._early_analysis is not None:  # this pause's is under way
            return
        frame = tracker.frame_samples
        so_far = tracker.pending_audio()
        head = so_far[: so_far.size - (tracker.silence_run - self._tail_frames) * frame]
        replaced = replaced_samples(
            tracker.hangover_frames * frame,
            segmenter.sample_rate,
            self.config.vad.frame_ms,
            self.config.pipeline.encoder_tail_ms,
        )
        prefix = self._early.known_for(head) if self._early is not None else None
        task = asyncio.create_task(
            self.workers.analyse_early(
                head, segmenter.sample_rate, replaced, key=segmenter.source, f0_prefix=prefix
            )
        )
        task.add_done_callback(_retrieve)
        self._early_analysis = _EarlyAnalysis(head, replaced, task)

    def _drop_early_analysis(self) -> None:
        if self._early_analysis is not None:
            self._early_analysis.task.cancel()
            self._early_analysis = None
            self.state.dropped_early_analyses += 1
            if self.on_early_analysis is not None:
                self.on_early_analysis(False)

    async def _classify(
        self,
        utterance: Utterance,
        f0_prefix: npt.NDArray[np.float64] | None = None,
        replaced: int = 0,
        early: asyncio.Task[Analysis] | None = None,
    ) -> _Featurized:
        # fair across the streams of a server (ser-serve): each stream its own turn
        analysis = await self.workers.analyse(
            utterance.samples,
            utterance.sample_rate,
            key=utterance.source,
            f0_prefix=f0_prefix,
            since_s=utterance.cut_wall_s,
            replaced=replaced,
            early=early,
        )
        return utterance, analysis, time.monotonic()

    async def _emit_in_order(
        self, pending: asyncio.Queue[asyncio.Task[_Featurized] | _Reset | None]
    ) -> None:
        labels = self.classifier.bundle.labels
        model = self.classifier.bundle.name
        min_confidence = self.classifier.bundle.resolve_min_confidence(
            self.config.pipeline.min_confidence
        )
        min_speech = self.classifier.bundle.resolve_min_speech(self.config.pipeline.min_speech)
        per_source = self.config.pipeline.adaptation_scope == "source"
        mode = self.config.pipeline.adaptation
        adapter = self.classifier.adapter(history=mode != "off")
        gate_spec = self.classifier.bundle.history_gate
        gate = GatedHistory(gate_spec) if gate_spec is not None and mode == "speaker" else None
        trends = TrendTracker(labels, self.config.trend)
        while (task := await pending.get()) is not None:
            if isinstance(task, _Reset):
                adapter.reset()
                if gate is not None:
                    gate.reset()
                trends.reset()
                self.state.resets += 1
                logger.info("speaker reset: history forgotten from here on")
                continue
            try:
                utterance, analysis, analysed_s = await task
                speaker = utterance.source if per_source else ""
                # a tiny network on the unadapted statistics or embedding (microseconds)
                speech = self.classifier.speech_probability(analysis)
                if speech < min_speech:  # not speech: no emotion, no adaptation history
                    self._emit(
                        not_speech(self._seq, utterance, speech, model, trends.current(speaker)),
                        utterance,
                        analysed_s,
                    )
                    continue
                # Speaker adaptation uses earlier utterances only, so it runs here, in order.
                inputs = adapter.push(speaker, analysis)
                if gate is None:
                    probs = await self.inference.predict(inputs)
                else:  # read with the history and alone, mixed by the bundle's gate
                    with_history, alone = await asyncio.gather(
                        self.inference.predict(inputs),
                        self.inference.predict(adapter.alone(analysis)),
                    )
                    probs = gate.push(speaker, with_history, alone)
            except Exception:
                self.state.failed += 1
                logger.exception("classifying an utterance failed")
                continue
            ready_s = time.monotonic()
            top = int(np.argmax(probs))
            confidence = float(probs[top])
            probabilities = {label: float(p) for label, p in zip(labels, probs, strict=True)}
            arousal, valence = arousal_valence(probabilities)
            trend = trends.push(
                speaker,
                probabilities,
                arousal=arousal,
                valence=valence,
                start_s=utterance.start_s,
                end_s=utterance.end_s,
            )
            result = Result(
                seq=self._seq,
                source=utterance.source,
                start_s=utterance.start_s,
                end_s=utterance.end_s,
                emotion=labels[top],
                confidence=confidence,
                probabilities=probabilities,
                latency_ms=(ready_s - utterance.speech_end_wall_s) * 1000.0,
                model=model,
                uncertain=confidence < min_confidence,
                arousal=arousal,
                valence=valence,
                trend=trend,
                speech=speech,
            )
            self._emit(result, utterance, analysed_s)

    def _emit(self, result: Result, utterance: Utterance, analysed_s: float) -> None:
        if self.observe is not None:
            self.observe("hangover", utterance.cut_wall_s - utterance.speech_end_wall_s)
            self.observe("classify", time.monotonic() - analysed_s)
        self._seq += 1
        self.state.record(result)
        emit_all(self.sinks, result)


def not_speech(
    seq: int, utterance: Utterance, speech: float, model: str, trend: Trend | None
) -> Result:
    """The result of an utterance the speech detector rejected (see `Result`)."""
    return Result(
        seq=seq,
        source=utterance.source,
        start_s=utterance.start_s,
        end_s=utterance.end_s,
        emotion=NOT_SPEECH,
        confidence=1.0 - speech,
        probabilities={},
        latency_ms=(time.monotonic() - utterance.speech_end_wall_s) * 1000.0,
        model=model,
        trend=trend,
        speech=speech,
    )
