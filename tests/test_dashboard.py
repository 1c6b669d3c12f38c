"""The dashboard rendered from a fixed state to a string console."""

from __future__ import annotations

import io

from rich.console import Console

from ser.labels import LABELS
from ser.messages import Result
from ser.sinks.dashboard import render
from ser.state import BrokerStatus, LiveState


def _result(seq: int, emotion: str, confidence: float, uncertain: bool = False) -> Result:
    rest = (1.0 - confidence) / (len(LABELS) - 1)
    probs = {label: (confidence if label == emotion else rest) for label in LABELS}
    return Result(
        seq,
        "mic",
        1.0 + seq,
        2.5 + seq,
        emotion,
        confidence,
        probs,
        312.0 + seq,
        "default",
        uncertain,
        arousal=0.12,
        valence=-0.34,
    )


def _text(state: LiveState, width: int = 110) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)
    console.print(render(state, now_s=state.started_wall_s + 42.0))
    return console.file.getvalue()


def _state() -> LiveState:
    state = LiveState(
        "default",
        "58% acted, same corpora; 41% other corpora",
        LABELS,
        history_size=3,
        source="mic",
        started_wall_s=100.0,
    )
    state.level_db = -23.5
    state.in_speech = True
    for seq, (emotion, conf) in enumerate([("sad", 0.4), ("happy", 0.55), ("angry", 0.81)]):
        state.record(_result(seq, emotion, conf))
    state.record(_result(3, "calm", 0.30, uncertain=True))
    state.dropped_short, state.dropped_backlog, state.overflows = 2, 1, 5
    return state


def test_dashboard_shows_state():
    text = _text(_state())
    assert "model default (58% acted, same corpora; 41% other corpora)" in text
    assert "source mic" in text and "up 42 s" in text
    assert "-23.5 dBFS" in text and "SPEECH" in text
    assert "#3 calm 30% (uncertain)" in text and "arousal +0.12 valence -0.34" in text
    for label in LABELS:
        assert label in text
    # history keeps the 3 newest, newest first
    rows = [line.split() for line in text.splitlines() if line.startswith("│") and " mic " in line]
    assert [(r[1], r[5]) for r in rows] == [("3", "calm"), ("2", "angry"), ("1", "happy")]
    assert "dropped: short 2, backlog 1" in text and "overflows 5" in text
    assert "latency p50/p95 314 / 315 ms" in text
    assert "mqtt off" in text


def test_dashboard_before_any_result_and_broker_retrying():
    state = LiveState("m", None, LABELS, source="x.wav", started_wall_s=0.0)
    state.broker = BrokerStatus(
        "retrying", retry_at_s=46.0, last_error="connection refused", queued=17
    )
    text = _text(state)
    assert "waiting for speech" in text and "accuracy not recorded" in text
    assert "silence" in text and "latency p50/p95 -" in text
    assert "retrying in 4 s (connection refused)  waiting 17" in text


def test_sparkline_maps_the_range_onto_eight_levels():
    from ser.sinks.dashboard import sparkline

    assert sparkline([-1.0, -0.5, 0.0, 0.5, 1.0]) == "▁▃▅▆█"
    assert sparkline([-3.0, 3.0]) == "▁█"  # clipped to [-1, 1]
    assert sparkline([]) == ""


def test_timeline_strip_and_trend_sparklines():
    from ser.config import TrendConfig
    from ser.trend import TrendTracker

    state = LiveState("m", "70% acted", LABELS, timeline_size=4, source="mic", started_wall_s=0.0)
    tracker = TrendTracker(LABELS, TrendConfig(window_utterances=1))
    sequence = [("sad", -0.5, -0.7), ("happy", 0.5, 0.8), ("angry", 0.8, -0.6)]
    sequence += [("angry", 0.8, -0.6), ("surprised", 0.8, 0.3)]
    for seq, (emotion, arousal, valence) in enumerate(sequence):
        r = _result(seq, emotion, 0.9)
        trend = tracker.push(
            "mic",
            r.probabilities,
            arousal=arousal,
            valence=valence,
            start_s=r.start_s,
            end_s=r.end_s,
        )
        state.record(
            Result(**{**r.__dict__, "arousal": arousal, "valence": valence, "trend": trend})
        )
    text = _text(state)
    line = next(x for x in text.splitlines() if "emotions" in x)
    assert " HAAU" in line  # the last 4 utterances, oldest first: happy, angry, angry, surprised
    assert "trend surprised 90% over 5 utterances" in text
    # the trend (window 1: each utterance's own values) of the same 4 utterances
    assert "arousal ▆▇▇▇ +0.80" in text
    assert "valence ▇▂▂▆ +0.30" in text


def test_thin_client_shows_the_server_connection_instead_of_mqtt():
    state = LiveState("on ws://box:8765/v1/stream", None, LABELS, source="mic", started_wall_s=0.0)
    state.remote = BrokerStatus(
        "retrying", retry_at_s=44.0, last_error="connection refused", queued=25, published=3
    )
    text = " ".join(_text(state).split())
    assert "model on ws://box:8765/v1/stream" in text
    assert "server retrying in 2 s (connection refused) waiting 25 x 0.1 s audio sent 3" in text
    assert "mqtt" not in text


def test_not_speech_results_show_no_emotion():
    state = _state()
    rejected = Result(4, "mic", 6.0, 7.5, "not_speech", 0.97, {}, 300.0, "default", speech=0.03)
    state.record(rejected)
    text = _text(state)
    assert "#4 not speech (speech probability 3%)" in text
    assert "(not speech)" in text  # in the history table, with no confidence
    strip = next(line for line in text.splitlines() if "emotions" in line)
    assert "SHAC·" in strip and "· not speech" in text  # one grey dot, after S H A C
    assert rejected.to_dict()["probabilities"] == {} and not rejected.is_speech


def test_every_emotion_has_its_own_letter_and_colour():
    from ser.labels import COLOURS, LETTERS

    assert set(LETTERS) == set(LABELS) == set(COLOURS)
    assert len(set(LETTERS.values())) == len(LABELS)  # sad S, surprised U
    assert len(set(COLOURS.values())) == len(LABELS)
    text = " ".join(_text(_state()).split())
    assert "S sad" in text and "U surprised" in text


def test_80_by_24_fits_and_long_sources_keep_both_ends():
    from ser.sinks.dashboard import middle_ellipsis

    state = _state()
    path = "/home/user/recordings/2026/december/call-centre/line-04/very-long-file-name.wav"
    state.source = path
    for r in list(state.history):
        state.history.append(Result(**{**r.__dict__, "source": path}))
    console = Console(file=io.StringIO(), width=80, height=24, color_system=None)
    console.print(render(state, now_s=state.started_wall_s + 42.0, width=80, height=24))
    lines = console.file.getvalue().rstrip("\n").splitlines()
    assert len(lines) <= 24 and max(len(x) for x in lines) <= 80
    assert any("/home/user/" in x and "name.wav" in x and "…" in x for x in lines)
    assert "utterances" in lines[-3] and "latency p50/p95" in lines[-2]  # counters not cut
    assert middle_ellipsis("abcdefghij", 5) == "ab…ij" and middle_ellipsis("abc", 5) == "abc"


def test_counts_are_singular_for_one():
    state = LiveState("m", None, LABELS, source="mic", started_wall_s=0.0)
    state.record(_result(0, "sad", 0.9))
    assert "1 utterance " in _text(state)
