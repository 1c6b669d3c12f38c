"""The pure segmenter: exact boundaries on synthetic decisions and synthetic audio."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ser.config import VadConfig
from ser.messages import AudioBlock
from ser.segmenter import UtteranceTracker, VadSegmenter

from .synth import harmonic, silence

FRAME_S = 0.03
CFG = VadConfig(
    frame_ms=30,
    pre_roll_ms=90,
    start_ms=60,
    hangover_ms=150,
    min_utterance_ms=200,
    max_utterance_ms=3000,
    boundary_db=35.0,
)


def _run(pattern: str, config: VadConfig = CFG, loud: int = 8000):
    """Feed one frame per character ('1' speech, '0' silence) with matching loudness."""
    tracker = UtteranceTracker(config, 16_000, "test")
    out = []
    for i, ch in enumerate(pattern):
        samples = np.full(480, loud if ch == "1" else 0, dtype=np.int16)
        out += tracker.push(samples, i * FRAME_S, 100.0 + (i + 1) * FRAME_S, ch == "1")
    return tracker, out, tracker.flush()


def test_one_utterance_exact_boundaries_preroll_and_hangover():
    pattern = "0" * 10 + "1" * 20 + "0" * 10
    tracker, out, rest = _run(pattern)
    assert rest == [] and len(out) == 1
    u = out[0]
    assert u.start_s == pytest.approx(10 * FRAME_S)
    assert u.end_s == pytest.approx(30 * FRAME_S)
    # samples: 3 pre-roll frames + 20 speech + 5 hangover frames (ended on the 5th silent frame)
    assert u.samples.size == (3 + 20 + 5) * 480
    assert u.speech_end_wall_s == pytest.approx(100.0 + 30 * FRAME_S)
    assert u.cut_wall_s == pytest.approx(100.0 + 35 * FRAME_S)  # the 5th silent frame's end
    assert tracker.stats.utterances == 1 and not tracker.in_speech


def test_an_utterance_knows_the_silence_that_ended_it():
    """`hangover_samples` (what the encoder may read early: pipeline.encoder_tail_ms): the
    hangover's frames when a pause ended it; 0 when cut at max_utterance_ms or by the end of
    the input. `silence_run` counts the pause so far."""
    tracker = UtteranceTracker(CFG, 16_000, "test")
    assert (tracker.frame_samples, tracker.hangover_frames) == (480, 5)
    runs, out = [], []
    for i, ch in enumerate("0" * 4 + "1" * 10 + "0" * 3 + "1" * 8 + "0" * 6):
        samples = np.full(480, 8000 if ch == "1" else 0, dtype=np.int16)
        out += tracker.push(samples, i * FRAME_S, 100.0 + i * FRAME_S, ch == "1")
        runs.append(tracker.silence_run)
    assert runs[13:18] == [0, 1, 2, 3, 0] and runs[-6:] == [1, 2, 3, 4, 0, 0]  # ended: 0
    assert len(out) == 1 and out[0].hangover_samples == 5 * 480
    # cut at max_utterance_ms (3 s = 100 frames), then the rest flushed at the end
    _, cut, rest = _run("0" * 3 + "1" * 130)
    assert [u.hangover_samples for u in cut + rest] == [0, 0]


def test_short_silence_inside_speech_does_not_split():
    _, out, _ = _run("0" * 5 + "1" * 10 + "0" * 4 + "1" * 10 + "0" * 10)
    assert len(out) == 1
    assert out[0].start_s == pytest.approx(5 * FRAME_S)
    assert out[0].end_s == pytest.approx(29 * FRAME_S)


def test_two_utterances_and_exact_count():
    _, out, _ = _run("0" * 5 + "1" * 10 + "0" * 6 + "1" * 10 + "0" * 10)
    assert [round(u.start_s / FRAME_S) for u in out] == [5, 21]
    assert [round(u.end_s / FRAME_S) for u in out] == [15, 31]
    assert [u.index for u in out] == [0, 1]


def test_a_blip_shorter_than_the_start_trigger_is_ignored():
    tracker, out, rest = _run("0" * 5 + "1" + "0" * 20)
    assert out == rest == [] and tracker.stats.dropped_short == 0


def test_min_length_drops_and_counts():
    tracker, out, _ = _run("0" * 5 + "1" * 5 + "0" * 10)  # 150 ms < 200 ms
    assert out == [] and tracker.stats.dropped_short == 1


def test_max_length_cuts_long_speech_into_pieces():
    config = VadConfig(**{**CFG.__dict__, "max_utterance_ms": 1500})  # 50 frames
    tracker, out, rest = _run("0" * 5 + "1" * 120 + "0" * 10, config)
    pieces = out + rest
    assert len(pieces) == 3
    assert tracker.stats.cut_at_max == 2
    # contiguous pieces covering all speech
    assert pieces[0].start_s == pytest.approx(5 * FRAME_S)
    for a, b in itertools.pairwise(pieces):
        assert b.start_s == pytest.approx(a.end_s)
    assert pieces[-1].end_s == pytest.approx(125 * FRAME_S)


def test_flush_emits_speech_in_progress():
    _, out, rest = _run("0" * 5 + "1" * 20)
    assert out == [] and len(rest) == 1
    assert rest[0].end_s == pytest.approx(25 * FRAME_S)


def test_quiet_edge_frames_are_left_out_of_reported_boundaries():
    tracker = UtteranceTracker(CFG, 16_000, "t")
    levels = [0] * 5 + [30] * 3 + [8000] * 10 + [30] * 3 + [0] * 10  # breaths ~ -61 dB vs -12 dB
    out = []
    for i, level in enumerate(levels):
        out += tracker.push(
            np.full(480, level, dtype=np.int16), i * FRAME_S, i * FRAME_S, level > 0
        )
    assert len(out) == 1
    assert out[0].start_s == pytest.approx(8 * FRAME_S)
    assert out[0].end_s == pytest.approx(18 * FRAME_S)


def _blocks(audio: np.ndarray, block: int = 480):
    pcm = (audio * 32767).astype(np.int16)
    for i in range(0, pcm.size, block):
        chunk = pcm[i : i + block]
        # arriving in real time: its last sample at wall time 1000 s + its stream time
        yield AudioBlock("syn", chunk, 16_000, i / 16_000, 1000.0 + (i + chunk.size) / 16_000)


@pytest.mark.parametrize("block", [160, 480, 1000])
def test_webrtcvad_on_synthetic_voiced_bursts(block):
    bursts = [(1.0, 0.8), (2.5, 1.2), (5.0, 0.5)]  # (start s, duration s)
    audio = silence(6.5)
    for start, dur in bursts:
        i = round(start * 16_000)
        audio[i : i + round(dur * 16_000)] = harmonic(dur)
    seg = VadSegmenter(VadConfig(), "syn")
    out = [u for b in _blocks(audio, block) for u in seg.push(b)] + seg.flush()
    assert len(out) == len(bursts)
    for u, (start, dur) in zip(out, bursts, strict=True):
        assert abs(u.start_s - start) <= 0.03
        assert abs(u.end_s - (start + dur)) <= 0.03
        assert u.samples.size / 16_000 >= dur  # pre-roll and hangover included
        # cut when the block with the hangover's last frame arrived: the hangover after the
        # end of speech, and at most that block's length more
        assert 0.3 - 1e-9 <= u.cut_wall_s - u.speech_end_wall_s <= 0.3 + block / 16_000 + 1e-9


def test_burst_shorter_than_min_utterance_is_dropped():
    audio = np.concatenate([silence(1.0), harmonic(0.2), silence(1.0)])
    seg = VadSegmenter(VadConfig(min_utterance_ms=400), "syn")
    out = [u for b in _blocks(audio) for u in seg.push(b)] + seg.flush()
    assert out == [] and seg.tracker.stats.dropped_short == 1


def test_block_size_does_not_change_the_utterances():
    """ser-serve hands the segmenter whole client frames, ser-live 30 ms blocks: the same audio
    gives the same utterances, samples and boundaries whatever the blocks."""
    audio = silence(4.0)
    audio[16_000:40_000] = harmonic(1.5)
    audio[48_000:56_000] = 0.2 * harmonic(0.5)
    runs = []
    for block in (480, 1600, 3333, 64_000):
        seg = VadSegmenter(VadConfig(), "syn")
        runs.append([u for b in _blocks(audio, block) for u in seg.push(b)] + seg.flush())
    first = runs[0]
    assert len(first) >= 1
    for run in runs[1:]:
        assert [(u.start_s, u.end_s) for u in run] == [(u.start_s, u.end_s) for u in first]
        for a, b in zip(run, first, strict=True):
            np.testing.assert_array_equal(a.samples, b.samples)


def test_frame_levels_in_one_pass_equal_the_single_frame_level():
    from ser.segmenter import frame_level_db, frame_levels_db

    rng = np.random.default_rng(0)
    frames = (rng.standard_normal((20, 480)) * 3000).astype(np.int16)
    frames[3] = 0  # digital silence
    frames[4] = 1
    got = frame_levels_db(frames)
    want = [frame_level_db(f) for f in frames]
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert got[3] == -120.0 and -25.0 < got[0] < -15.0  # 3000 / 32768 RMS: -20.7 dBFS


def test_the_utterance_in_progress_is_the_start_of_the_utterance_it_becomes():
    """What a live pipeline reads while someone speaks (pipeline.early_pitch): the samples so
    far are the first samples of the utterance emitted at its end; none in silence."""
    audio = np.concatenate([silence(1.0), harmonic(1.5), silence(1.0), harmonic(0.8), silence(1)])
    seg = VadSegmenter(VadConfig(), "syn")
    seen: list[np.ndarray] = []
    matched = 0
    for block in _blocks(audio, 1600):
        out = seg.push(block)
        for utterance in out:
            assert seen and np.array_equal(utterance.samples[: seen[-1].size], seen[-1])
            matched += 1
            seen.clear()
        tracker = seg.tracker
        assert tracker.pending_samples == tracker.pending_audio().size
        if tracker.in_speech:
            so_far = tracker.pending_audio()
            if seen:
                assert np.array_equal(so_far[: seen[-1].size], seen[-1])  # it only grows
            seen.append(so_far)
        else:
            assert tracker.pending_samples == 0
    assert matched == 2
