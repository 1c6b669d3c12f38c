"""An utterance analysed during its hangover (`pipeline.encoder_tail_ms`): its statistics (the
utterance without the part of its hangover the encoder's view replaces) and its encoder (the
view) read the same whether they run early or once it ends, a pause the voice comes back from
drops the early analysis, and `ser-live` in real time gives exactly the results of that
reading, computed here in-process."""

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
from ser.features import Analysis, analyse, f0_frames, f0_frames_ready, f0_span
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


def test_early_and_at_the_end_the_same_view_is_read(ravdess):
    """The early job (`analyse_early` on the utterance so far) and the job at its end
    (`analyse` of the whole utterance) give the same analysis, bit for bit (the statistics of
    the utterance without the replaced part, the embedding of the view), with or without
    pitch computed while it was spoken (a prefix from frames the head determines); an early
    job that failed or was dropped is done at the end instead."""
    bundle = Classifier.from_dir(resolve_bundle_path("default")).bundle
    samples, _ = sf.read(ravdess / "Actor_07" / "03-01-04-02-01-01-07.flac", dtype="int16")
    replaced = 4_800  # the hangover's last 150 ms
    head = samples[: samples.size - replaced]
    # pitch known while spoken: frames the head determines, and more (computed in the pause)
    ready = f0_frames_ready(head.size)
    offset, end = f0_span(0, ready + 20)
    longer_prefix = f0_frames(samples[offset:end], 0, ready + 20, offset)

    async def run() -> list[Analysis]:
        workers = FeatureWorkers(1, encoder=bundle.encoder)
        await workers.start()
        try:
            early = await workers.analyse_early(head, 16_000, replaced, key="s")
            with_pitch = await workers.analyse_early(
                head, 16_000, replaced, key="s", f0_prefix=longer_prefix[:ready]
            )
            at_end = await workers.analyse(samples, 16_000, key="s", replaced=replaced)
            whole = await workers.analyse(samples, 16_000, key="s")
            dropped = asyncio.get_running_loop().create_future()
            dropped.cancel()
            redone = await workers.analyse(
                samples, 16_000, key="s", replaced=replaced, early=dropped
            )
            assert workers.in_flight == 0
            assert workers.calls == {("early", "done"): 2, ("analyse", "done"): 3}
            return [early, with_pitch, at_end, redone, whole]
        finally:
            await asyncio.to_thread(workers.close)

    early, with_pitch, at_end, redone, whole = asyncio.run(run())
    want = analyse(head)  # the statistics leave the replaced part out; the encoder reads the view
    for got in (early, with_pitch, at_end, redone):
        np.testing.assert_array_equal(got.vector, want.vector)
        np.testing.assert_array_equal(got.log_mel, want.log_mel)
        np.testing.assert_array_equal(got.embedding, early.embedding)
    view = encoder_view(head, replaced)
    np.testing.assert_array_equal(early.embedding, _embedding(bundle, view))
    assert not np.array_equal(whole.embedding, early.embedding)  # the view is not the whole
    # the statistics trim the silence at both ends: the head's are the whole's here
    np.testing.assert_array_equal(whole.vector, analyse(samples).vector)
    np.testing.assert_array_equal(whole.vector, early.vector)


def _embedding(bundle, audio: np.ndarray) -> np.ndarray:
    """The bundle's encoder embedding of `audio`, in this process."""
    return Classifier(bundle).embed(audio, 16_000)


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
    line = re.search(rb"(\d+) analysed during the hangover \((\d+) dropped", proc.stderr)
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
        readings = {}
        for name, view in (
            ("view", encoder_view(samples[: samples.size - replaced], replaced)),
            ("whole", samples),
        ):
            statistics = analyse(samples[: samples.size - replaced] if name == "view" else view)
            embedded = replace(statistics, embedding=classifier.embed(view, 16_000))
            probs = classifier.predict(classifier.adapter(history=False).alone(embedded))
            readings[name] = dict(zip(classifier.bundle.labels, map(float, probs), strict=True))
        got = result["probabilities"]  # JSON: 4 decimals
        assert got == pytest.approx(readings["view"], abs=1e-4)
        moved.append(got != pytest.approx(readings["whole"], abs=1e-4))
    assert any(moved)  # what was read is the view, not the whole utterance


def test_an_early_run_waits_behind_ended_utterances_until_its_own_ends(ravdess):
    """Early analyses may turn out unneeded (the voice comes back): they wait while any ended
    utterance waits, and move up once their own utterance has ended."""
    bundle = Classifier.from_dir(resolve_bundle_path("default")).bundle
    samples, _ = sf.read(ravdess / "Actor_07" / "03-01-04-02-01-01-07.flac", dtype="int16")
    head = samples[: samples.size - 4_800]

    async def run() -> None:
        workers = FeatureWorkers(1, encoder=bundle.encoder)  # 2 utterances at a time
        await workers.start()
        try:
            ended = [asyncio.create_task(workers.analyse(samples, 16_000, key=k)) for k in "abc"]
            early = asyncio.create_task(workers.analyse_early(head, 16_000, 4_800, key="d"))
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
            again = asyncio.create_task(workers.analyse_early(head, 16_000, 4_800, key="e"))
            more = asyncio.create_task(workers.analyse(samples, 16_000, key="f"))
            await asyncio.sleep(0)
            assert list(workers._waiting) == ["f"] and list(workers._early) == ["e"]
            # "e" ends: its early analysis moves up, behind "f", and is all it needs
            done = asyncio.create_task(
                workers.analyse(samples, 16_000, key="e", replaced=4_800, early=again)
            )
            await asyncio.sleep(0)
            assert not workers._early and list(workers._waiting) == ["f", "e"]
            assert len(workers._waiting["e"]) == 1
            results = await asyncio.gather(*ended, early, more, done, again)
            assert results[-2] is results[-1]
            assert workers.in_flight == 0
            # an early analysis that failed is redone at once in the line of ended utterances:
            # never behind an early analysis of another stream
            busy = [asyncio.create_task(workers.analyse(samples, 16_000, key=k)) for k in "vwxyz"]
            waiting = asyncio.create_task(workers.analyse_early(head, 16_000, 4_800, key="h"))
            lost = asyncio.get_running_loop().create_future()
            lost.set_exception(RuntimeError("worker lost"))
            redo = asyncio.create_task(
                workers.analyse(samples, 16_000, key="g", replaced=4_800, early=lost)
            )
            await until(
                lambda: "g" in workers._waiting or "g" in workers._early,
                "g's analysis to be queued",
            )
            assert "g" in workers._waiting and list(workers._early) == ["h"]
            results = await asyncio.gather(redo, *busy, waiting)
            np.testing.assert_array_equal(results[0].vector, results[-1].vector)
            np.testing.assert_array_equal(results[0].embedding, results[-1].embedding)
            assert workers.in_flight == 0
        finally:
            await asyncio.to_thread(workers.close)

    asyncio.run(run())


def test_a_cancelled_run_keeps_its_place_until_its_worker_is_done(ravdess):
    """An early analysis dropped (the voice came back) after a worker took it cannot be
    stopped: it keeps its place at the workers until it ends, so the scheduler never hands a
    worker more than its 2 calls (a third would wait in the pool's queue, outside the fair
    line)."""
    bundle = Classifier.from_dir(resolve_bundle_path("default")).bundle
    clip, _ = sf.read(ravdess / "Actor_07" / "03-01-04-02-01-01-07.flac", dtype="int16")
    long = np.tile(clip, 10)  # about 35 s: each call takes a worker well over 100 ms

    async def run() -> None:
        workers = FeatureWorkers(1, encoder=bundle.encoder)  # 2 calls at a time
        await workers.start()
        try:
            ended = asyncio.create_task(workers.analyse(long, 16_000, key="a"))
            early = asyncio.create_task(workers.analyse_early(long, 16_000, 4_800, key="b"))
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


def test_pitch_known_while_spoken_is_cut_to_the_frames_the_head_reads(ravdess):
    """The early analysis takes the pitch parts done so far (`_EarlyPitch.known_for`): only
    frames its head determines (a part computed in the pause reads samples the view
    replaces), only parts done, in order, and none where the head is another utterance's."""
    from ser.pipeline import _EarlyPitch

    samples, _ = sf.read(ravdess / "Actor_07" / "03-01-04-02-01-01-07.flac", dtype="int16")
    spoken = samples[:32_000]  # what the parts were computed from
    head = spoken[:30_000]  # the utterance, its pause's replaced part left out

    def part(start: int, stop: int) -> np.ndarray:
        offset, end = f0_span(start, stop)
        return f0_frames(spoken[offset:end], start, stop, offset)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = f0_frames_ready(spoken.size)
        futures = [loop.create_future() for _ in range(3)]
        futures[0].set_result(part(0, 100))
        futures[1].set_result(part(100, stop))
        early = _EarlyPitch(spoken, stop, futures[:2])
        known = early.known_for(head)
        assert known is not None and known.size == f0_frames_ready(head.size) < stop
        offset, end = f0_span(0, known.size)
        np.testing.assert_array_equal(known, f0_frames(head[offset:end], 0, known.size, offset))
        assert early.known_for(np.concatenate([spoken, samples[32_000:40_000]])).size == stop
        other = head.copy()
        other[500] += 1
        assert early.known_for(other) is None
        # a part not done yet ends the prefix; later ones do not count
        early = _EarlyPitch(spoken, stop, [futures[0], futures[2], futures[1]])
        prefix = early.prefix_for(head)
        assert prefix is not None and prefix.size == 100
        assert futures[2].cancelled()  # an ended utterance's parts not done: cancelled

    asyncio.run(run())
