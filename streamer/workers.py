"""Feature extraction in a process pool (spawn; never imports TensorFlow). For a bundle with an
encoder, each worker also runs the encoder (its own LiteRT interpreter), so the costly part of
inference runs on as many cores as there are workers, outside the event loop's process.

Supervised: a worker that dies (SIGKILL, the OOM killer, a native crash) breaks the whole
`ProcessPoolExecutor`; the pool is then given up (its other workers killed: they may be unable
to stop on their own) and replaced by a fresh one (logged, counted in `restarts`), and every
utterance that was in the broken pool is retried once on the new one. While no pool can take
work `healthy` is False (ser-serve's /healthz answers 503)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Hashable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from ser import features
from ser.bundle import EncoderSection
from ser.encoder import UtteranceEncoder, read_utterance

logger = logging.getLogger(__name__)

T = TypeVar("T")


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


def _analyse(
    head: npt.NDArray[np.int16],
    sample_rate: int,
    replaced: int = 0,
    f0_prefix: npt.NDArray[np.float64] | None = None,
    statistics: bool = True,
) -> features.Analysis:
    """`read_utterance` with this worker's encoder (if any)."""
    encoder = _Worker.encoder
    return read_utterance(
        head,
        sample_rate,
        replaced=replaced,
        embed=encoder.embed if encoder is not None else None,
        statistics=statistics,
        f0_prefix=f0_prefix,
    )


def _analyse_early(*args: Any) -> features.Analysis:
    """`_analyse(*args)` of an utterance whose hangover is not over yet (counted as "early")."""
    return _analyse(*args)


def _init_worker(encoder: EncoderSection | None, statistics: bool = True) -> None:
    # Ctrl-C reaches the whole process group; the parent decides how to stop, not the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
    if statistics:
        features.warm_up()
    if encoder is not None:
        _Worker.encoder = UtteranceEncoder(encoder.encoder_path, encoder.layers)  # warmed up


def _soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: Any) -> None:
    """`fn(*args)` in `loop` from any thread; nothing once the loop is closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


def _processes(executor: ProcessPoolExecutor) -> list[multiprocessing.process.BaseProcess]:
    """The pool's worker processes (a private attribute of CPython's pool; none when absent or
    after its shutdown)."""
    return list((getattr(executor, "_processes", None) or {}).values())


def _running(
    processes: list[multiprocessing.process.BaseProcess], timeout_s: float = 0.0
) -> list[multiprocessing.process.BaseProcess]:
    """Those of `processes` still running after waiting up to `timeout_s` for them to end.
    Read from their sentinels (readable once a process has ended), never from `join` or
    `exitcode`: the pool's manager thread reaps its workers too, and of two threads waiting for
    one child only one gets its exit status; the other's `exitcode` stays None for a process
    long gone (and a SIGKILL to its pid could reach whatever process has that pid next)."""
    pending = {}
    for process in processes:
        with contextlib.suppress(ValueError):  # closed: long gone
            pending[process.sentinel] = process
    deadline_s = time.monotonic() + timeout_s
    while pending:
        ended = multiprocessing.connection.wait(
            list(pending), max(0.0, deadline_s - time.monotonic())
        )
        if not ended:
            break
        pending = {s: process for s, process in pending.items() if s not in ended}
    return list(pending.values())


def _kill(processes: list[multiprocessing.process.BaseProcess]) -> None:
    """SIGKILL those of `processes` that are still running."""
    for process in _running(processes):
        with contextlib.suppress(OSError, ValueError):  # gone meanwhile
            process.kill()


class WorkerLostError(Exception):
    """An utterance's worker died twice (once in the pool it started in, once in the pool that
    replaced it): this utterance fails alone; the pool goes on."""


# what a worker call is for (`FeatureWorkers.calls`): an utterance's analysis once it ended, its
# analysis during its hangover (`analyse_early`), pitch computed while it is spoken
CALL_KINDS = {"_analyse": "analyse", "_analyse_early": "early", "f0_frames": "pitch"}
# how a call ended: its result returned; its function raised; its pool broke or was given up
# under it; its caller gave up before a worker took it (no work done), or after (done for
# nothing: the caller had moved on)
CALL_OUTCOMES = ("done", "failed", "lost", "cancelled", "dropped")

RESTART_MIN_INTERVAL_S = 1.0  # a pool that breaks again at once is replaced at most this often
CLOSE_TIMEOUT_S = 10.0  # workers finishing what they hold at close


class FeatureWorkers:
    """`n` processes running `streamer.features.analyse` (and, with `encoder`, the bundle's
    encoder: `Analysis.embedding`), each warmed up at start; replaced when one dies (see the
    module docstring). Check the encoder file first (`Classifier` does): a worker that cannot
    load it breaks the pool."""

    def __init__(
        self,
        n: int,
        encoder: EncoderSection | None = None,
        observe: Callable[[str, float], object] | None = None,
        *,
        statistics: bool = True,
    ) -> None:
        """`statistics` False (with an `encoder`): utterances get the embedding alone, no
        statistics or log-mel sequence (a bundle whose `needs_statistics` is False), and no
        early pitch is wanted. `observe(stage, seconds)`: called for each utterance analysed,
        with "feature_wait" (from `analyse`'s `since_s` until handed to the pool) and "features"
        (from then until analysed: the hand-over, at most one other utterance ahead of it in its
        worker, the work)."""
        if not statistics and encoder is None:
            raise ValueError("feature workers without statistics compute the embedding alone")
        self.n = n
        self.encoder = encoder
        self.statistics = statistics
        self.observe = observe
        self.restarts = 0
        self.in_flight = 0  # utterances waiting for or in a worker
        # calls handed to the pool, by (kind, outcome): `CALL_KINDS`' values, `CALL_OUTCOMES`
        self.calls: Counter[tuple[str, str]] = Counter()
        self._waiting: dict[Hashable, deque[asyncio.Future[None]]] = {}  # per key, in order
        # analyses of utterances whose hangover is not over yet (`analyse_early`): after every
        # waiting utterance, until their utterance ends (`analyse` moves them up)
        self._early: dict[Hashable, deque[asyncio.Future[None]]] = {}
        self._running = 0  # handed to the pool
        # early work (pitch of utterances still being spoken): only while no utterance waits,
        # at most one per worker at a time
        self._background: deque[asyncio.Future[None]] = deque()
        self._running_background = 0
        # calls whose caller gave up (cancelled) while a worker already had them: a pool cannot
        # stop a call it has handed out, so each keeps its place until it ends (or its pool is
        # given up)
        self._orphaned: dict[Future[Any], ProcessPoolExecutor] = {}
        self.healthy = False  # True once started, False while a broken pool is being replaced
        # Spawned workers inherit the environment: one BLAS thread each, or small numpy calls
        # slow down under load (8-16 ms instead of 1-2 ms).
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        self._executor = self._new_executor()
        self._replacing: asyncio.Task[None] | None = None
        # per pool: done when the pool is given up (every call still in it is lost)
        self._lost: dict[ProcessPoolExecutor, asyncio.Future[None]] = {}
        self._last_restart_s = 0.0
        self._closed = False
        self._unwatch: Callable[[], object] = lambda: None

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.n,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.encoder, self.statistics),
        )

    async def start(self) -> None:
        """Start all `n` processes and wait until each has run a warm-up extraction."""
        await self._warm(self._executor)
        self.healthy = True

    async def _warm(self, executor: ProcessPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        self._lost[executor] = loop.create_future()
        pids = await asyncio.gather(*(loop.run_in_executor(executor, _noop) for _ in range(self.n)))
        logger.debug("feature workers ready: %s", sorted(set(pids)))
        self._watch(executor)

    def _watch(self, executor: ProcessPoolExecutor) -> None:
        """Notice a worker's death at once (its sentinel becomes readable), not only when the
        next utterance hits the broken pool: health turns 503 and the pool is replaced."""
        loop = asyncio.get_running_loop()
        sentinels = [process.sentinel for process in _processes(executor)]

        def died() -> None:
            for fd in sentinels:
                loop.remove_reader(fd)
            if not self._closed and self._executor is executor and self._replacing is None:
                self._replacing = loop.create_task(self._restart(executor))

        for fd in sentinels:
            loop.add_reader(fd, died)
        self._unwatch = lambda: [loop.remove_reader(fd) for fd in sentinels]

    async def analyse(
        self,
        samples: npt.NDArray[np.int16],
        sample_rate: int,
        *,
        key: Hashable = "",
        f0_prefix: npt.NDArray[np.float64] | None = None,
        since_s: float | None = None,
        replaced: int = 0,
        early: asyncio.Future[features.Analysis] | None = None,
    ) -> features.Analysis:
        """(n,) int16 -> the utterance's analysis (`_analyse` of `samples[:n - replaced]`: its
        feature vector and log-mel sequence and, encoder bundles, the embedding of its
        `encoder_view`), computed in a worker process. A worker lost under it: retried once on the
        replacement pool; lost again: `WorkerLostError`.

        Fair: utterances wait per `key` (ser-serve: the stream) and are handed to the workers
        round-robin over the keys, at most 2 per worker at a time, so one stream's backlog
        cannot hold the workers ahead of every other stream's next utterance. `f0_prefix`: the
        pitch of its first frames, computed while it was spoken (`f0_frames`). `since_s`:
        `time.monotonic()` the utterance's wait counts from (default: now). `early`: the same
        analysis, already being computed (`analyse_early`, during the utterance's hangover):
        awaited instead, no call of its own; computed here after all if it failed or was
        cancelled (in the line of ended utterances, not behind early runs)."""
        queued_s = time.monotonic() if since_s is None else since_s
        self.in_flight += 1
        head = samples[: samples.size - replaced]
        try:
            started_s = time.monotonic()
            analysis = None
            if early is not None:
                self._move_up(key)
                await asyncio.wait([early])
                if not early.cancelled() and early.exception() is None:
                    analysis = early.result()
            if analysis is None:
                async with self._turn(key):
                    started_s = time.monotonic()
                    analysis = await self._retrying(
                        _analyse, head, sample_rate, replaced, f0_prefix, self.statistics
                    )
            if self.observe is not None:
                self.observe("feature_wait", started_s - queued_s)
                self.observe("features", time.monotonic() - started_s)
            return analysis
        finally:
            self.in_flight -= 1

    async def analyse_early(
        self,
        head: npt.NDArray[np.int16],
        sample_rate: int,
        replaced: int,
        *,
        key: Hashable = "",
        f0_prefix: npt.NDArray[np.float64] | None = None,
    ) -> features.Analysis:
        """`analyse`'s analysis of the utterance `head` will be if the voice does not come back
        (`head`: it without its last `replaced` samples), computed while its hangover is still
        being waited for, in a worker, in `key`'s turn. A worker lost under it: retried once;
        lost again: `WorkerLostError`. Waits behind every utterance that has ended (in
        `analyse`'s line), until its own utterance ends (`analyse` with it as `early`)."""
        async with self._turn(key, early=True):
            return await self._retrying(
                _analyse_early, head, sample_rate, replaced, f0_prefix, self.statistics
            )

    @contextlib.asynccontextmanager
    async def _turn(self, key: Hashable, early: bool = False) -> AsyncIterator[None]:
        """Wait for `key`'s turn at the workers (`_dispatch`); hold its place until the end.
        `early`: in the line of work that may turn out not to be needed (`analyse_early`)."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        (self._early if early else self._waiting).setdefault(key, deque()).append(ready)
        self._dispatch()
        try:
            await ready
            yield
        finally:
            if ready.done() and not ready.cancelled():
                self._running -= 1
            else:  # cancelled while waiting: never started
                for line in (self._waiting, self._early):
                    queue = line.get(key)
                    if queue is not None and ready in queue:
                        queue.remove(ready)
                        if not queue:
                            del line[key]
            self._dispatch()

    def _move_up(self, key: Hashable) -> None:
        """`key`'s early analyses not started yet: needed now (their utterance ended), ahead of
        its other waiting work."""
        early = self._early.pop(key, None)
        if early:
            self._waiting.setdefault(key, deque()).extendleft(reversed(early))

    async def f0_frames(
        self, samples: npt.NDArray[np.int16], start: int, stop: int, offset: int
    ) -> npt.NDArray[np.float64]:
        """`streamer.features.f0_frames` in a worker process, as background work: it waits
        while any utterance waits (`analyse`), and at most one runs per worker. A worker lost
        under it: `WorkerLostError` at once (the caller computes the pitch with the rest)."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._background.append(ready)  # not in `in_flight`: that counts utterances
        self._dispatch()
        try:
            await ready
            if self._replacing is not None:
                raise WorkerLostError("the feature workers are being replaced")
            executor = self._executor
            try:
                return await self._call(executor, features.f0_frames, samples, start, stop, offset)
            except BrokenProcessPool:
                if self._closed:
                    raise
                await self._replace(executor)
                raise WorkerLostError("a feature worker died under early pitch work") from None
        finally:
            if ready.done() and not ready.cancelled():
                self._running_background -= 1
            elif ready in self._background:
                self._background.remove(ready)
            self._dispatch()

    def _dispatch(self) -> None:
        """Start waiting utterances, one key at a time in turn, while workers have room; then
        early analyses (`analyse_early`), the same way; then background work, while neither
        waits."""
        self._dispatch_line(self._waiting)
        self._dispatch_line(self._early)
        while (
            self._background
            and not self._waiting
            and not self._early
            and self._busy() < 2 * self.n
            and self._running_background < self.n
        ):
            ready = self._background.popleft()
            if ready.done():  # cancelled meanwhile
                continue
            self._running_background += 1
            ready.set_result(None)

    def _busy(self) -> int:
        """Calls the workers hold or will run next: at most 2 per worker."""
        return self._running + self._running_background + len(self._orphaned)

    def _dispatch_line(self, line: dict[Hashable, deque[asyncio.Future[None]]]) -> None:
        while line and self._busy() < 2 * self.n:
            key = next(iter(line))
            queue = line.pop(key)
            ready = queue.popleft()
            if queue:  # the key goes to the back of the line
                line[key] = queue
            if ready.done():  # cancelled meanwhile
                continue
            self._running += 1
            ready.set_result(None)

    async def _retrying(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the pool; a worker lost under it: retried once on the replacement."""
        for attempt in (1, 2):
            if self._replacing is not None:
                await asyncio.shield(self._replacing)
            executor = self._executor
            try:
                return await self._call(executor, fn, *args)
            except BrokenProcessPool:
                if self._closed:
                    raise
                await self._replace(executor)
                if attempt == 2:
                    raise WorkerLostError(
                        "a feature worker died twice under this utterance (see the log)"
                    ) from None
        raise AssertionError("unreachable")

    async def _call(self, executor: ProcessPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in `executor`; `BrokenProcessPool` as soon as that pool breaks or is given
        up (`_abandon`), even where its own bookkeeping would never say so."""
        loop = asyncio.get_running_loop()
        lost = self._lost.get(executor)  # removed when the pool is given up
        if lost is None:
            raise BrokenProcessPool("this feature pool was given up")
        kind = CALL_KINDS.get(getattr(fn, "__name__", ""), "other")
        call = executor.submit(fn, *args)
        future = asyncio.wrap_future(call)
        try:
            await asyncio.wait((future, lost), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            if call.cancel():
                self.calls[kind, "cancelled"] += 1
            else:
                self.calls[kind, "dropped"] += 1
                if not call.done():  # a worker has it: it runs to its end
                    self._orphaned[call] = executor
                    call.add_done_callback(lambda _: _soon(loop, self._release, call))
            future.cancel()
            raise
        if not future.done() or future.cancelled():
            future.cancel()
            self.calls[kind, "lost"] += 1
            raise BrokenProcessPool("this feature pool was given up")
        error = future.exception()
        if error is None:
            self.calls[kind, "done"] += 1
        else:
            self.calls[kind, "lost" if isinstance(error, BrokenProcessPool) else "failed"] += 1
        return future.result()

    def _release(self, call: Future[Any]) -> None:
        """An orphaned call ended: its place at the workers is free."""
        if self._orphaned.pop(call, None) is not None:
            self._dispatch()

    def _abandon(self, executor: ProcessPoolExecutor) -> None:
        """Give up a broken pool: kill its surviving workers, fail every call still in it, shut
        it down. Shutting it down alone is not enough: its shutdown asks each worker to stop
        through the call queue, and a survivor can wait forever for the queue's read lock when
        the worker that died held it (an idle worker waits for work holding that lock)."""
        _kill(_processes(executor))
        orphans = [call for call, owner in self._orphaned.items() if owner is executor]
        for call in orphans:
            del self._orphaned[call]  # it may never say it ended
        if orphans:
            self._dispatch()
        lost = self._lost.pop(executor, None)
        if lost is not None and not lost.done():
            lost.set_result(None)
        executor.shutdown(wait=False, cancel_futures=True)

    async def _replace(self, broken: ProcessPoolExecutor) -> None:
        """Replace `broken` (once, however many utterances saw it break)."""
        if self._replacing is None and self._executor is broken:
            self._replacing = asyncio.create_task(self._restart(broken))
        if self._replacing is not None:
            await asyncio.shield(self._replacing)

    async def _restart(self, broken: ProcessPoolExecutor) -> None:
        self.healthy = False
        self.restarts += 1
        self._unwatch()
        logger.error(
            "a feature worker died (killed, out of memory or crashed): replacing the pool "
            "(restart %d); the utterances it held are retried once",
            self.restarts,
        )
        self._abandon(broken)
        started_s = time.monotonic()
        try:
            while not self._closed:
                wait_s = self._last_restart_s + RESTART_MIN_INTERVAL_S - time.monotonic()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                self._last_restart_s = time.monotonic()
                self._executor = self._new_executor()
                try:
                    await self._warm(self._executor)
                except BrokenProcessPool:
                    logger.error("the replacement feature pool broke while starting; retrying")
                    self._abandon(self._executor)
                    continue
                self.healthy = True
                logger.warning("feature workers replaced in %.2f s", time.monotonic() - started_s)
                return
        finally:
            self._replacing = None

    def close(self) -> None:
        """Stop the workers (waits for them: call it from a thread in an event loop that must
        go on, or at its end)."""
        self._closed = True
        self.healthy = False
        with contextlib.suppress(RuntimeError):  # no event loop: nothing is watched
            self._unwatch()
        if self._replacing is not None:
            self._replacing.cancel()
        executor = self._executor
        processes = _processes(executor)
        manager = getattr(executor, "_executor_manager_thread", None)
        executor.shutdown(wait=False, cancel_futures=True)
        # a worker that died just now can leave the others unable to stop (`_abandon`)
        stuck = _running(processes, CLOSE_TIMEOUT_S)
        if stuck:
            logger.warning("%d feature worker(s) did not stop; killing them", len(stuck))
            _kill(stuck)
        if manager is not None:
            manager.join(CLOSE_TIMEOUT_S)
