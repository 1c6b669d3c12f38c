"""An utterance's encoder run during its hangover (`pipeline.encoder_tail_ms`): the encoder
reads the same view of the utterance whether it runs early or once the utterance ends, a pause
the voice comes back from drops the early run, and `ser-live` in real time gives exactly the
results of that view, computed here in-process."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import webrtcvad

from ser.bundle import resolve_bundle_path
from ser.classifier import Classifier
from ser.config import VadConfig
from ser.encoder import encoder_view
from ser.features import analyse
from ser.messages import AudioBlock
from ser.segmenter import VadSegmenter
from ser.workers import FeatureWorkers

from .live import parse_results, run_live
from .waits import until, until_running

TAIL_FRAMES = 5  # pipeline.encoder_tail_ms = 150 (the default) in 30 ms VAD frames


def test_the_view_keeps_the_length_and_replaces_the_end_with_the_start():
    head = np.arange(10, dtype=np.int16)
    view = encoder_view(head, 4)
    assert view.dtype == np.int16
    assert view.tolist() == [*range(10), 0, 1, 2, 3]
    assert encoder_view(head, 0) is head
    with pytest.raises(ValueError, match="cannot replace 11 samples from a head of 10"):
        encoder_view(head, 11)


def test_early_and_at_the_end_the_encoder_reads_the_same(ravdess):
    """The early job (`embed` on the utterance so far) and the job at its end (`analyse` of
    the whole utterance) give the same embedding, bit for bit; an early job that failed or was
    dropped is done at the end instead."""
    bundle = Classifier.from_dir(resolve_bundle_path("default")).bundle
    samples, _ = sf.read(ravdess / "Actor_07" / "03-01-04-02-01-01-07.flac", dtype="int16")
    replaced = 4_800  # the hangover's last 150 ms

    async def run() -> tuple[np.ndarray, ...]:
        workers = FeatureWorkers(1, encoder=bundle.encoder)
        await workers.start()
        try:
            head = samples[: samples.size - replaced]
            early = await workers.embed(head, 16_000, replaced, key="s")
            at_end = await workers.analyse(samples, 16_000, key="s", replaced=replaced)
            whole = await workers.analyse(samples, 16_000, key="s")
            dropped = asyncio.get_running_loop().create_future()
            dropped.cancel()
            redone = await workers.analyse(
                samples, 16_000, key="s", replaced=replaced, embedding=dropped
            )
            assert workers.in_flight == 0
            return early, at_end.embedding, whole.embedding, redone.embedding, at_end.vector
        finally:
            await asyncio.to_thread(workers.close)

    early, at_end, whole, redone, vector = asyncio.run(run())
    np.testing.assert_array_equal(early, at_end)
    np.testing.assert_array_equal(redone, at_end)
    assert not np.array_equal(whole, at_end)  # the view is not the whole utterance
    np.testing.assert_array_equal(vector, analyse(samples).vector)  # statistics: all of it


def _speech(path) -> np.ndarray:
    """The clip from its first to its last voiced 30 ms frame (webrtcvad, as `[vad]`), int16."""
    samples, _ = sf.read(path, dtype="int16")
    vad = webrtcvad.Vad(VadConfig().aggressiveness)
    frames = samples[: samples.size // 480 * 480].reshape(-1, 480)
    voiced = [i for i, f in enumerate(frames) if vad.is_speech(f.tobytes(), 16_000)]
    return frames[voiced[0] : voiced[-1] + 1].reshape(-1)


def test_ser_live_in_real_time_reads_the_view_early_and_drops_a_pause_the_voice_ends(
    ravdess, tmp_path
):
    actor = ravdess / "Actor_05"
    a, b, c = (_speech(actor / f"03-01-0{e}-01-01-01-05.flac") for e in (3, 6, 5))
    # the room between them: a clip's background before its speech (digital zeros would
    # move webrtcvad's decisions on the speech around them), in 30 ms frames
    background = sf.read(actor / "03-01-03-01-01-01-05.flac", dtype="int16")[0][: 30 * 480]
    gap, pause = np.tile(background, 2)[: 34 * 480], background[: 7 * 480]
    # a pause of 210 ms (over the 150 ms tail, under the 300 ms hangover) inside one utterance
    audio = np.concatenate([gap, a, pause, b, gap, c, gap])
    wav = tmp_path / "pause.wav"
    sf.write(wav, audio, 16_000, subtype="PCM_16")
    proc = run_live(
        "--input", str(wav), "--realtime", "--json", "-v",
        "--set", "pipeline.adaptation=off",
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    line = re.search(
        rb"(\d+) with their embedding during the hangover \((\d+) dropped", proc.stderr
    )
    assert line is not None, proc.stderr.decode()[-2000:]
    assert (int(line.group(1)), int(line.group(2))) == (2, 1)
    results = parse_results(proc.stdout)
    assert len(results) == 2

    # the same utterances, read here as the view says, alone (adaptation off)
    classifier = Classifier.from_dir(resolve_bundle_path("default"))
    seg = VadSegmenter(VadConfig(), "file")
    utterances = []
    for start in range(0, audio.size, 480):
        block = audio[start : start + 480]
        utterances += seg.push(AudioBlock("file", block, 16_000, start / 16e3, 0.0))
    assert len(utterances) == 2
    moved = []
    for utterance, result in zip(utterances, results, strict=True):
        samples = utterance.samples
        replaced = utterance.hangover_samples - TAIL_FRAMES * 480
        assert replaced == 5 * 480
        analysis = analyse(samples)
        readings = {}
        for name, view in (
            ("view", encoder_view(samples[: samples.size - replaced], replaced)),
            ("whole", samples),
        ):
            embedded = replace(analysis, embedding=classifier.embed(view, 16_000))
            probs = classifier.predict(classifier.adapter(history=False).alone(embedded))
            readings[name] = dict(zip(classifier.bundle.labels, map(float, probs), strict=True))
        got = result["probabilities"]  # JSON: 4 decimals
        assert got == pytest.approx(readings["view"], abs=1e-4)
        moved.append(got != pytest.approx(readings["whole"], abs=1e-4))
    assert any(moved)  # what was read is the view, not the whole utterance


def test_an_early_run_waits_behind_ended_utterances_until_its_own_ends(ravdess):
    """Early encoder runs may turn out unneeded (the voice comes back): they wait while any
    ended utterance waits, and move up once their own utterance has ended."""
    bundle = Classifier.from_dir(resolve_bundle_path("default")).bundle
    samples, _ = sf.read(ravdess / "Actor_07" / "03-01-04-02-01-01-07.flac", dtype="int16")
    head = samples[: samples.size - 4_800]

    async def run() -> None:
        workers = FeatureWorkers(1, encoder=bundle.encoder)  # 2 utterances at a time
        await workers.start()
        try:
            ended = [asyncio.create_task(workers.analyse(samples, 16_000, key=k)) for k in "abc"]
            early = asyncio.create_task(workers.embed(head, 16_000, 4_800, key="d"))
            await asyncio.sleep(0)
            assert workers._running == 2 and list(workers._waiting) == ["c"]
            assert list(workers._early) == ["d"]
            await ended[0]
            await asyncio.sleep(0)
            assert list(workers._early) == ["d"] and not workers._waiting  # "c" went first
            await ended[1]
            await asyncio.sleep(0)
            assert not workers._early  # nothing else waits: it runs
            assert workers._running == 2
            again = asyncio.create_task(workers.embed(head, 16_000, 4_800, key="e"))
            more = asyncio.create_task(workers.analyse(samples, 16_000, key="f"))
            await asyncio.sleep(0)
            assert list(workers._waiting) == ["f"] and list(workers._early) == ["e"]
            # "e" ends: its early run goes ahead of its own statistics, behind "f"
            done = asyncio.create_task(
                workers.analyse(samples, 16_000, key="e", replaced=4_800, embedding=again)
            )
            await asyncio.sleep(0)
            assert not workers._early and list(workers._waiting) == ["f", "e"]
            assert len(workers._waiting["e"]) == 2
            results = await asyncio.gather(*ended, early, more, done)
            np.testing.assert_array_equal(results[-1].embedding, results[3])
            assert workers.in_flight == 0
            # an early run that failed is redone once its utterance's statistics are done, in
            # the line of ended utterances: never behind an early run of another stream
            lost = asyncio.get_running_loop().create_future()
            lost.set_exception(RuntimeError("worker lost"))
            redo = asyncio.create_task(
                workers.analyse(samples, 16_000, key="g", replaced=4_800, embedding=lost)
            )
            await asyncio.sleep(0)
            busy = [asyncio.create_task(workers.analyse(samples, 16_000, key=k)) for k in "vwxyz"]
            waiting = asyncio.create_task(workers.embed(head, 16_000, 4_800, key="h"))
            await asyncio.sleep(0)
            assert list(workers._early) == ["h"]
            await until(  # "g"'s statistics are done and its encoder run queued
                lambda: "g" in workers._waiting or "g" in workers._early,
                "g's encoder run to be queued after its statistics",
            )
            assert "g" in workers._waiting and list(workers._early) == ["h"]
            results = await asyncio.gather(redo, *busy, waiting)
            np.testing.assert_array_equal(results[0].embedding, results[-1])
            assert workers.in_flight == 0
        finally:
            await asyncio.to_thread(workers.close)

    asyncio.run(run())


def test_a_cancelled_run_keeps_its_place_until_its_worker_is_done(ravdess):
    """An early run dropped (the voice came back) after a worker took it cannot be stopped: it
    keeps its place at the workers until it ends, so the scheduler never hands a worker more
    than its 2 calls (a third would wait in the pool's queue, outside the fair line)."""
    bundle = Classifier.from_dir(resolve_bundle_path("default")).bundle
    clip, _ = sf.read(ravdess / "Actor_07" / "03-01-04-02-01-01-07.flac", dtype="int16")
    long = np.tile(clip, 10)  # about 35 s: each call takes a worker well over 100 ms

    async def run() -> None:
        workers = FeatureWorkers(1, encoder=bundle.encoder)  # 2 calls at a time
        await workers.start()
        try:
            ended = asyncio.create_task(workers.analyse(long, 16_000, key="a"))
            early = asyncio.create_task(workers.embed(long, 16_000, 4_800, key="b"))
            await asyncio.sleep(0)
            assert workers._running == 2
            await until_running(workers, 2)
            early.cancel()  # the voice came back
            await asyncio.gather(early, return_exceptions=True)
            assert workers._running == 1 and len(workers._orphaned) == 1
            late = asyncio.create_task(workers.analyse(clip, 16_000, key="c"))
            await asyncio.sleep(0)
            assert list(workers._waiting) == ["c"]  # the dropped run still holds its place
            await until(lambda: not workers._orphaned, "the dropped run's worker to finish it")
            await asyncio.sleep(0)
            assert not workers._orphaned and not workers._waiting  # freed: "c" runs
            await asyncio.gather(ended, late)
            assert workers.in_flight == 0 and workers._running == 0
        finally:
            await asyncio.to_thread(workers.close)

    asyncio.run(run())
