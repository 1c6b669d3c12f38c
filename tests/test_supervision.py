"""Supervision: a feature worker killed (SIGKILL, as the OOM killer does) under live streams is
replaced, /healthz says 503 meanwhile and 200 after, and every stream goes on."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from . import procs
from .serve import ServeProcess, encode, run_stream, speech
from .test_serve import CLIPS, COMPARED, _health, _scrape

STREAMS = 20


@pytest.fixture(scope="module")
def stream_audio(ravdess):
    return speech(ravdess, CLIPS)


def _feature_workers(pid: int) -> list[int]:
    table = procs.table()
    return sorted(
        p
        for p in procs.descendants(pid)
        if p in table and "spawn_main" in table[p].cmdline and table[p].state != "Z"
    )


def test_a_killed_worker_is_replaced_and_every_stream_goes_on(stream_audio):
    from .live import parse_results, run_live

    proc = run_live("--input", "-", "--json", stdin=stream_audio.astype("<i2").tobytes())
    expected = parse_results(proc.stdout)
    assert len(expected) == len(CLIPS)
    pcm = encode(stream_audio, "s16le")
    with ServeProcess("--no-mqtt", "--workers", "2") as server:
        workers = _feature_workers(server.proc.pid)
        assert len(workers) == 2
        runs: dict[int, object] = {}

        def stream(i: int) -> None:
            start = {"type": "start", "stream": f"s{i}", "sample_rate": 16000}
            # 0.1 s frames at 4x real time: the streams are mid-utterance when the worker dies
            runs[i] = run_stream(server.url, pcm, start=start, pace_s=0.025)

        threads = [threading.Thread(target=stream, args=(i,)) for i in range(STREAMS)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        time.sleep(1.2)
        os.kill(workers[0], signal.SIGKILL)
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = _health(server.port)[0]
            if not seen or seen[-1] != status:
                seen.append(status)
            if seen[-2:] == [503, 200]:
                break
            time.sleep(0.02)
        for t in threads:
            t.join(timeout=120)
        # the broken pool's surviving worker is shut down with it; it may still be exiting
        deadline = time.monotonic() + 10
        while set(workers) & set(_feature_workers(server.proc.pid)):
            assert time.monotonic() < deadline, "the old pool's workers did not exit"
            time.sleep(0.05)
        replaced = _feature_workers(server.proc.pid)
        scraped = _scrape(server.port)
    assert scraped[("ser_feature_worker_restarts_total", ())] == 1
    assert seen[-2:] == [503, 200], seen
    assert len(replaced) == 2 and not set(workers) & set(replaced)
    log = "\n".join(server.stderr)
    assert "a feature worker died" in log and "feature workers replaced" in log
    assert len(runs) == STREAMS
    want = [{k: r[k] for k in COMPARED} for r in expected]
    lost = 0
    for run in runs.values():
        assert run.close_code == 1000, run  # type: ignore[attr-defined]
        got = [{k: r[k] for k in COMPARED} for r in run.results]  # type: ignore[attr-defined]
        assert all(g in want for g in got)
        assert len(got) >= len(want) - 1  # at most the utterance in flight
        lost += len(want) - len(got)
    assert lost == 0  # what the dead worker held was retried on the new pool


def test_ser_live_replaces_a_killed_worker_and_loses_nothing(stream_audio, tmp_path):
    import soundfile as sf

    from .live import LiveProcess, parse_results, run_live

    path = tmp_path / "speech.wav"
    sf.write(path, stream_audio, 16000, subtype="PCM_16")
    expected = parse_results(run_live("--input", str(path), "--json").stdout)
    live = LiveProcess("--input", str(path), "--json", "--realtime", "--no-mqtt", env=None)
    try:
        live.wait_listening()
        (worker,) = _feature_workers(live.proc.pid)
        time.sleep(2.0)  # the first utterance is under way
        os.kill(worker, signal.SIGKILL)
        code, out = live.finish(timeout=90)
    finally:
        if live.proc.poll() is None:
            live.proc.kill()
    assert code == 0, "\n".join(live.stderr)
    log = "\n".join(live.stderr)
    assert "a feature worker died" in log and "feature workers replaced" in log
    got = parse_results(out)
    assert [r["emotion"] for r in got] == [r["emotion"] for r in expected]


def test_an_unusable_classifier_is_reopened_and_its_loop_restarted(ravdess, caplog):
    import asyncio

    import numpy as np
    import soundfile as sf

    from ser.bundle import load_bundle
    from ser.classifier import Classifier, ModelInput
    from ser.inference import FAILED_BATCHES, BatchedInference

    from .conftest import SMALL_MODEL

    clf = Classifier(load_bundle(SMALL_MODEL))
    audio, rate = sf.read(ravdess / "Actor_03" / "03-01-05-01-01-01-03.flac", dtype="float32")
    inputs = clf.adapter().push("s", clf.analyse(audio, rate))

    async def main() -> None:
        inference = BatchedInference(clf)
        good = await inference.predict(inputs)
        # a malformed input fails alone and never reopens the classifier
        for _ in range(FAILED_BATCHES + 1):
            with pytest.raises(ValueError):
                await inference.predict(ModelInput(np.zeros(3, np.float32), inputs.log_mel))
        assert inference.restarts == 0 and inference.classifier is clf
        # a LiteRT interpreter left unusable: every utterance fails until it is reopened
        clf._stats._interpreter = None  # the fault injected
        for _ in range(FAILED_BATCHES):
            with pytest.raises(AttributeError):
                await inference.predict(inputs)
        assert inference.restarts == 1 and inference.healthy
        assert inference.classifier is not clf
        np.testing.assert_allclose(await inference.predict(inputs), good, atol=1e-6)
        # the batch loop itself failing (its thread pool gone): that batch fails, the loop
        # comes back with a new thread
        inference._thread.shutdown(wait=True)  # the fault injected
        with pytest.raises(RuntimeError):
            await inference.predict(inputs)
        np.testing.assert_allclose(await inference.predict(inputs), good, atol=1e-6)
        assert inference.restarts == 2
        await inference.aclose()

    asyncio.run(main())
    log = caplog.text
    assert "reopening it from" in log and "the inference loop failed: restarting it" in log
