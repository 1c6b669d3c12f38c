"""An utterance's pitch computed while it is spoken (`pipeline.early_pitch`): the parts are the
whole computation's frames exactly, background work never holds an utterance that waits, and
`ser-live` gives the same results with it, sooner."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest
import soundfile as sf

from ser import features
from ser.pipeline import _EarlyPitch
from ser.workers import FeatureWorkers

from .live import parse_results, run_live


def _parts(samples: np.ndarray, every: int) -> np.ndarray:
    """The pitch of `samples`' frames computed as a live pipeline does, `every` samples."""
    parts, done = [], 0
    for n in range(every, samples.size + 1, every):
        ready = features.f0_frames_ready(n)
        if ready > done:
            offset, end = features.f0_span(done, ready)
            parts.append(features.f0_frames(samples[offset:end], done, ready, offset))
            done = ready
    return np.concatenate(parts) if parts else np.zeros(0)


def test_parts_computed_while_spoken_give_the_same_features(ravdess):
    for path in sorted((ravdess / "Actor_05").glob("03-01-0[1-8]-01-01-01-05.flac")):
        samples, _ = sf.read(path, dtype="int16")
        whole = features.analyse(samples)
        for every in (1_000, 16_000, 40_000):  # 1/16 s, 1 s, 2.5 s of speech between parts
            prefix = _parts(samples, every)
            assert 0 < len(prefix) <= 1 + samples.size // 160
            got = features.analyse(samples, f0_prefix=prefix)
            np.testing.assert_array_equal(got.vector, whole.vector)
            np.testing.assert_array_equal(got.log_mel, whole.log_mel)


def test_frames_ready_and_what_a_part_needs():
    assert features.f0_frames_ready(511) == 0  # frame 0 reads up to sample 512
    assert features.f0_frames_ready(512) == 1
    assert features.f0_frames_ready(512 + 160) == 2
    assert features.f0_span(0, 10) == (0, 1952) and features.f0_span(5, 8) == (288, 1632)
    samples = np.zeros(2_000, dtype=np.int16)
    with pytest.raises(ValueError, match="do not reach frame 9's end"):
        features.f0_frames(samples[:1_500], 0, 10, 0)  # frame 9 ends at sample 1952
    with pytest.raises(ValueError, match="do not reach back to frame 5's start"):
        features.f0_frames(samples[400:], 5, 8, 400)  # frame 5 starts at sample 288


def test_parts_of_another_utterance_are_not_used():
    async def run() -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[np.ndarray] = loop.create_future()
        done.set_result(np.ones(3))
        pending: asyncio.Future[np.ndarray] = loop.create_future()
        part = asyncio.ensure_future(done)
        waiting = asyncio.ensure_future(pending)
        spoken = np.arange(2_000, dtype=np.int16)
        # 3 frames, read from the first 832 samples (frame 2 ends there)
        early = _EarlyPitch(spoken[:900], frames=3, parts=[part, waiting])  # type: ignore[list-item]
        # the utterance it becomes: the parts done, in order; a part not done is left out
        assert np.array_equal(early.prefix_for(spoken), np.ones(3))
        assert waiting.cancelled() or waiting.cancelling()
        # another utterance (e.g. a new piece after vad.max_utterance_ms): none of them
        again = _EarlyPitch(spoken[:900], frames=3, parts=[asyncio.ensure_future(done)])  # type: ignore[list-item]
        assert again.prefix_for(spoken[1:]) is None
        # a shorter one (the view of an utterance its pause ended): the frames it determines
        assert np.array_equal(again.known_for(spoken[:700]), np.ones(2))
        assert again.prefix_for(spoken[:400]) is None  # not even frame 0

    asyncio.run(run())


def test_background_pitch_waits_while_an_utterance_waits(ravdess):
    samples, _ = sf.read(ravdess / "Actor_05" / "03-01-05-01-01-01-05.flac", dtype="int16")

    async def run() -> None:
        workers = FeatureWorkers(1)
        await workers.start()
        try:
            utterances = [asyncio.create_task(workers.analyse(samples, 16_000)) for _ in range(3)]
            part = asyncio.create_task(workers.f0_frames(samples[:2_000], 0, 10, 0))
            await asyncio.sleep(0)
            # one worker: two utterances handed over, the third waits, so the part waits too
            assert (workers._running, workers._running_background) == (2, 0)
            await utterances[0]
            await asyncio.sleep(0)
            assert workers._running_background == 0  # the third utterance went first
            got = await part
            np.testing.assert_array_equal(got, features.f0_frames(samples[:2_000], 0, 10, 0))
            await asyncio.gather(*utterances)
            assert workers.in_flight == 0
        finally:
            await asyncio.to_thread(workers.close)

    asyncio.run(run())


def test_ser_live_in_real_time_gives_the_same_results_sooner_computed(ravdess, tmp_path):
    clips = [
        sf.read(ravdess / "Actor_05" / f"03-01-0{e}-01-01-01-05.flac", dtype="int16")[0]
        for e in (3, 5)
    ]
    gap = np.zeros(16_000, dtype=np.int16)
    wav = tmp_path / "two.wav"
    sf.write(wav, np.concatenate([gap, clips[0], gap, clips[1], gap]), 16_000, subtype="PCM_16")
    runs = {}
    for early in ("true", "false"):
        args = ("--input", str(wav), "--realtime", "--json", "-v")
        proc = run_live(*args, "--set", f"pipeline.early_pitch={early}", timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        line = re.search(rb"(\d+) with their pitch computed while spoken", proc.stderr)
        assert line is not None, proc.stderr.decode()[-2000:]
        runs[early] = (parse_results(proc.stdout), int(line.group(1)))
    (on, n_on), (off, n_off) = runs["true"], runs["false"]
    assert len(on) == len(off) == 2
    assert (n_on, n_off) == (2, 0)  # each utterance's pitch was partly computed while spoken
    assert [r["probabilities"] for r in on] == [r["probabilities"] for r in off]
