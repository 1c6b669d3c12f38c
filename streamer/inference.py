"""Model inference off the event loop, batched: one thread runs the LiteRT models for every
pipeline of the process (the classifier is not thread-safe), and utterances that are ready at
the same time (from several streams of `ser-serve`) go to that thread together, in one hop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

from streamer.classifier import Classifier, ModelInput

logger = logging.getLogger(__name__)

_Request = tuple[ModelInput, "asyncio.Future[npt.NDArray[np.float32]]"]


class BatchedInference:
    """`await predict(inputs)` -> (n_labels,) calibrated probabilities. Create and use inside
    one event loop; `close()` when done. `batches` and `utterances` count what ran."""

    def __init__(self, classifier: Classifier, max_batch: int = 64) -> None:
        self.classifier = classifier
        self.max_batch = max_batch
        self.batches = 0
        self.utterances = 0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ser-infer")
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._runner: asyncio.Task[None] | None = None

    async def predict(self, inputs: ModelInput) -> npt.NDArray[np.float32]:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="ser-infer-batches")
        future: asyncio.Future[npt.NDArray[np.float32]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((inputs, future))
        return await future

    @property
    def queued(self) -> int:
        """Utterances waiting for the classifier."""
        return self._queue.qsize()

    def _predict_all(self, batch: list[ModelInput]) -> list[npt.NDArray[np.float32] | Exception]:
        """In the inference thread: every input of the batch, failures kept per input."""
        try:
            return self.classifier.predict_many(batch)
        except Exception as exc:  # the batch as a whole failed (e.g. the encoder itself)
            return [exc] * len(batch)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            live = [(x, f) for x, f in batch if not f.cancelled()]
            if not live:
                continue
            results = await loop.run_in_executor(
                self._thread, self._predict_all, [x for x, _ in live]
            )
            self.batches += 1
            self.utterances += len(live)
            for (_, future), result in zip(live, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def aclose(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        self._thread.shutdown(wait=False, cancel_futures=True)
