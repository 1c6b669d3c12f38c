"""The recognizer as a Python library: the same pipeline as `ser-live` (VAD segmentation,
features in a worker process, speaker adaptation, the speech detector, the calibrated networks)
without a terminal, a microphone or MQTT. Results are the `Result` objects whose `to_dict()` /
`to_json()` are the `--json` lines.

    from ser import Recognizer

    recognizer = Recognizer()                         # the shipped "default" bundle
    for result in recognizer.predict_file("call.wav"):
        print(result.start_s, result.emotion, result.confidence)
    results = recognizer.predict(samples, 48_000)      # (n,) or (n, channels), float or int16

    async for result in recognizer.stream(chunks, 16_000):   # an async iterable of arrays
        ...

Each call is one stream: speaker history starts afresh (`adaptation="off"`: none at all).
Every call starts its feature worker process (about 0.3-0.5 s), so batch many files into one
`predict_files` call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ser.audio_io import float_to_int16, to_mono
from ser.bundle import Bundle, load_bundle, resolve_bundle_path
from ser.config import Config, replace
from ser.messages import AudioBlock, Result
from ser.sources import EndOfStream, FileSource, SourceItem, check_files

__all__ = ["Recognizer", "Result"]

_BLOCK_MS = 30


class _Collect:
    """A pipeline sink keeping every result in order (and handing each to `queue`, if any)."""

    def __init__(self, queue: asyncio.Queue[Result | None] | None = None) -> None:
        self.results: list[Result] = []
        self.queue = queue

    def emit(self, result: Result) -> None:
        self.results.append(result)
        if self.queue is not None:
            self.queue.put_nowait(result)


class _ChunkSource:
    """Arrays of audio (one stream) -> AudioBlocks at the bundle's rate."""

    live = False
    overflows = 0
    dropped_blocks = 0

    def __init__(self, chunks: AsyncIterable[Any], sample_rate: int, rate_out: int, name: str):
        self.name = name
        self._chunks = chunks
        self._rate_in = sample_rate
        self._rate_out = rate_out
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True

    async def blocks(self) -> AsyncIterator[SourceItem]:
        import soxr

        resampler = (
            soxr.ResampleStream(self._rate_in, self._rate_out, 1, dtype="float32", quality="HQ")
            if self._rate_in != self._rate_out
            else None
        )
        block_len = self._rate_out * _BLOCK_MS // 1000
        pending = np.zeros(0, np.int16)
        emitted = 0
        async for chunk in self._chunks:
            if self._stopped:
                break
            mono = _as_mono_float(chunk)
            if resampler is not None:
                mono = np.asarray(resampler.resample_chunk(mono), dtype=np.float32)
            pending = np.concatenate([pending, float_to_int16(mono)])
            while pending.size >= block_len:
                block, pending = pending[:block_len], pending[block_len:]
                yield AudioBlock(self.name, block, self._rate_out, emitted / self._rate_out, 0.0)
                emitted += block.size
        if resampler is not None:
            tail = np.asarray(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            pending = np.concatenate([pending, float_to_int16(tail.astype(np.float32))])
        if pending.size:
            yield AudioBlock(self.name, pending, self._rate_out, emitted / self._rate_out, 0.0)
        yield EndOfStream(self.name)


def _as_mono_float(chunk: Any) -> npt.NDArray[np.float32]:
    """(n,) or (n, channels) audio, integer PCM or float in [-1, 1] -> (n,) float32."""
    data = np.asarray(chunk)
    if data.ndim not in (1, 2):
        raise ValueError(f"audio must be (n,) or (n, channels), got shape {data.shape}")
    if np.issubdtype(data.dtype, np.integer):
        scale = float(np.iinfo(data.dtype).max) + 1.0
        data = data.astype(np.float32) / scale
    return to_mono(np.asarray(data, dtype=np.float32))


class Recognizer:
    """Speech emotion recognition on files, arrays and async streams of arrays.

    `model`: "default", "small" or a bundle folder. `adaptation`: "speaker" (each call's
    utterances are read beside its earlier ones as far as the bundle's history gate trusts
    them, as `ser-live` does), "always" (without the gate) or "off" (each utterance alone).
    `config`: anything else of config.toml (VAD, min_confidence, ...)."""

    def __init__(
        self,
        model: str | Path = "default",
        *,
        adaptation: str = "speaker",
        config: Config | None = None,
    ) -> None:
        base = config or Config()
        self.config = replace(
            base,
            pipeline={"model": str(model), "adaptation": adaptation},
            mqtt={"enabled": False},
        )
        self.bundle: Bundle = load_bundle(resolve_bundle_path(self.config.pipeline.model))

    @property
    def labels(self) -> tuple[str, ...]:
        return self.bundle.labels

    def predict_file(self, path: str | Path) -> list[Result]:
        """Every utterance of one audio file (any format libsndfile reads), in order."""
        return self.predict_files([path])

    def predict_files(self, paths: Sequence[str | Path]) -> list[Result]:
        """Every utterance of each file in turn (`source` = the path; history per file)."""
        files = check_files([Path(p) for p in paths])
        source = FileSource(files, self.bundle.sample_rate, _BLOCK_MS, realtime=False)
        return asyncio.run(self._run(source))

    def predict(self, samples: Any, sample_rate: int, *, source: str = "array") -> list[Result]:
        """Every utterance of `samples` ((n,) or (n, channels); int16/int32 PCM or float in
        [-1, 1]) at `sample_rate` Hz."""

        async def one() -> AsyncIterator[Any]:
            yield samples

        chunks = _ChunkSource(one(), sample_rate, self.bundle.sample_rate, source)
        return asyncio.run(self._run(chunks))

    async def stream(
        self, chunks: AsyncIterable[Any], sample_rate: int, *, source: str = "stream"
    ) -> AsyncIterator[Result]:
        """Results as they are ready while `chunks` (arrays as in `predict`) arrive, e.g. from
        a socket or a sound card; ends after the last chunk's utterances."""
        queue: asyncio.Queue[Result | None] = asyncio.Queue()
        audio = _ChunkSource(chunks, sample_rate, self.bundle.sample_rate, source)
        task = asyncio.create_task(self._run(audio, queue))
        try:
            while (result := await queue.get()) is not None:
                yield result
            await task
        finally:
            if not task.done():
                audio.stop()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(
        self, source: Any, queue: asyncio.Queue[Result | None] | None = None
    ) -> list[Result]:
        from ser.classifier import Classifier
        from ser.pipeline import Pipeline
        from ser.state import LiveState
        from ser.workers import FeatureWorkers

        classifier = Classifier(self.bundle)
        workers = FeatureWorkers(
            1, encoder=self.bundle.encoder, statistics=self.bundle.needs_statistics
        )
        sink = _Collect(queue)
        state = LiveState(self.bundle.name, None, self.bundle.labels)
        try:
            await workers.start()
            pipeline = Pipeline(self.config, classifier, workers, [sink], state, meter_levels=False)
            await pipeline.run(source)
        finally:
            await asyncio.to_thread(workers.close)
            if queue is not None:
                queue.put_nowait(None)
        return sink.results
