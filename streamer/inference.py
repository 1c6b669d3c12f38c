"""Model inference off the event loop, batched: one thread runs the LiteRT models for every
pipeline of the process (the classifier is not thread-safe), and utterances that are ready at
the same time (from several streams of `ser-serve`) go to that thread together, in one hop.

Supervised: the classifier is shared by every stream, so a failure that leaves it unusable
(a LiteRT interpreter in a bad state: every utterance of `FAILED_BATCHES` batches in a row
fails with something other than a malformed input) would otherwise fail every result from then
on. It is then reopened from its bundle in the inference thread (logged, counted in
`restarts`; `healthy` is False meanwhile and while reopening keeps failing). The batch loop
itself restarts after any unexpected error, failing only the batch it held."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

from ser.classifier import Classifier, ModelInput

logger = logging.getLogger(__name__)

FAILED_BATCHES = 3  # whole batches failing in a row before the classifier is reopened

_Request = tuple[ModelInput, "asyncio.Future[npt.NDArray[np.float32]]"]


class BatchedInference:
    """`await predict(inputs)` -> (n_labels,) calibrated probabilities. Create and use inside
    one event loop; `close()` when done. `batches` and `utterances` count what ran."""

    def __init__(self, classifier: Classifier, max_batch: int = 64) -> None:
        self.classifier = classifier
        self.max_batch = max_batch
        self.batches = 0
        self.utterances = 0
        self.restarts = 0  # times the classifier was reopened or the batch loop restarted
        self.healthy = True
        self._failed_batches = 0  # in a row, every utterance failing (not a malformed input)
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
        """In the inference thread: every input of the batch, failures kept per input; after
        `FAILED_BATCHES` wholly failed batches in a row, the classifier is reopened."""
        try:
            results = self.classifier.predict_many(batch)
        except Exception as exc:  # the batch as a whole failed
            results = [exc] * len(batch)
        broken = all(isinstance(r, Exception) and not isinstance(r, ValueError) for r in results)
        self._failed_batches = self._failed_batches + 1 if broken else 0
        if self._failed_batches >= FAILED_BATCHES:
            self._reopen(results[0])
        return results

    def _reopen(self, cause: object) -> None:
        """In the inference thread: a fresh classifier from the same bundle."""
        self.healthy = False
        self.restarts += 1
        logger.error(
            "the classifier failed %d batches in a row (%s): reopening it from %s (restart %d)",
            self._failed_batches,
            cause,
            self.classifier.bundle.path,
            self.restarts,
        )
        try:
            self.classifier = Classifier(self.classifier.bundle, self.classifier.num_threads)
        except Exception:
            logger.exception("reopening the classifier failed; trying again after the next batch")
            return
        self._failed_batches = 0
        self.healthy = True

    async def _run(self) -> None:
        while True:
            try:
                await self._run_batches()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.restarts += 1
                logger.exception("the inference loop failed: restarting it (%d)", self.restarts)
                # a fresh thread: the old executor may be the part that broke
                self._thread.shutdown(wait=False, cancel_futures=True)
                self._thread = ThreadPoolExecutor(1, thread_name_prefix="ser-infer")

    async def _run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            live = [(x, f) for x, f in batch if not f.cancelled()]
            if not live:
                continue
            try:
                results = await loop.run_in_executor(
                    self._thread, self._predict_all, [x for x, _ in live]
                )
            except Exception as exc:  # the loop itself: fail this batch, then go on
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                raise
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
