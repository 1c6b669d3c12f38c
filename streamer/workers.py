"""Feature extraction in a process pool (spawn; never imports TensorFlow). For a bundle with an
encoder, each worker also runs the encoder (its own LiteRT interpreter), so the costly part of
inference runs on as many cores as there are workers, outside the event loop's process."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import numpy.typing as npt

from streamer import features
from streamer.bundle import EncoderSection
from streamer.encoder import UtteranceEncoder, with_embedding

logger = logging.getLogger(__name__)


def _noop() -> int:
    return os.getpid()


def exit_with_parent() -> None:
    """Exit this worker as soon as its parent process ends, however it ends (SIGKILL, OOM
    killer, a crash): an idle worker otherwise waits forever on a queue whose both ends it
    holds. The parent's sentinel becomes readable when the parent is gone. Call it in a
    spawned worker's initializer."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="ser-parent-watch", daemon=True).start()


class _Worker:
    """What a worker process holds between calls."""

    encoder: UtteranceEncoder | None = None  # for bundles with an encoder


def _analyse(samples: npt.NDArray[np.int16], sample_rate: int) -> features.Analysis:
    analysis = features.analyse(samples, sample_rate)
    if _Worker.encoder is None:
        return analysis
    return with_embedding(analysis, samples, sample_rate, _Worker.encoder)


def _init_worker(encoder: EncoderSection | None) -> None:
    # Ctrl-C reaches the whole process group; the parent decides how to stop, not the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
    features.warm_up()
    if encoder is not None:
        _Worker.encoder = UtteranceEncoder(encoder.encoder_path, encoder.layers)  # warmed up


class FeatureWorkers:
    """`n` processes running `streamer.features.analyse` (and, with `encoder`, the bundle's
    encoder: `Analysis.embedding`), each warmed up at start. Check the encoder file first
    (`Classifier` does): a worker that cannot load it breaks the pool."""

    def __init__(self, n: int, encoder: EncoderSection | None = None) -> None:
        self.n = n
        self.encoder = encoder
        # Spawned workers inherit the environment: one BLAS thread each, or small numpy calls
        # slow down under load (8-16 ms instead of 1-2 ms).
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        self._executor = ProcessPoolExecutor(
            n,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(encoder,),
        )

    async def start(self) -> None:
        """Start all `n` processes and wait until each has run a warm-up extraction."""
        loop = asyncio.get_running_loop()
        pids = await asyncio.gather(
            *(loop.run_in_executor(self._executor, _noop) for _ in range(self.n))
        )
        logger.debug("feature workers ready: %s", sorted(set(pids)))

    async def analyse(self, samples: npt.NDArray[np.int16], sample_rate: int) -> features.Analysis:
        """(n,) int16 -> the utterance's feature vector, log-mel sequence and (encoder bundles)
        embedding, computed in a worker process."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _analyse, samples, sample_rate)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
