"""Emotion over time: the per-source moving average on synthetic sequences."""

from __future__ import annotations

import pytest

from ser.config import TrendConfig
from ser.trend import TrendTracker

LABELS = ("neutral", "happy", "angry")


def _p(neutral: float, happy: float, angry: float) -> dict[str, float]:
    return {"neutral": neutral, "happy": happy, "angry": angry}


def _push(t: TrendTracker, source: str, probs: dict[str, float], start_s: float, **kw: float):
    return t.push(
        source,
        probs,
        arousal=kw.get("arousal", 0.0),
        valence=kw.get("valence", 0.0),
        start_s=start_s,
        end_s=start_s + 2.0,
    )


def test_first_utterance_is_its_own_trend():
    t = TrendTracker(LABELS, TrendConfig(window_utterances=5))
    trend = _push(t, "a", _p(0.2, 0.7, 0.1), 0.0, arousal=0.4, valence=0.6)
    assert trend.emotion == "happy" and trend.utterances == 1
    assert trend.probabilities == pytest.approx(_p(0.2, 0.7, 0.1))
    assert (trend.arousal, trend.valence) == pytest.approx((0.4, 0.6))


def test_exponential_average_with_span_weights():
    # window 3: alpha = 2 / 4 = 0.5; after [happy, angry, angry] the average is
    # 0.25 * happy + 0.25 * angry + 0.5 * angry
    t = TrendTracker(LABELS, TrendConfig(window_utterances=3))
    _push(t, "a", _p(0.0, 1.0, 0.0), 0.0, arousal=0.5, valence=1.0)
    _push(t, "a", _p(0.0, 0.0, 1.0), 3.0, arousal=1.0, valence=-1.0)
    trend = _push(t, "a", _p(0.0, 0.0, 1.0), 6.0, arousal=1.0, valence=-1.0)
    assert trend.probabilities == pytest.approx(_p(0.0, 0.25, 0.75))
    assert trend.arousal == pytest.approx(0.25 * 0.5 + 0.75 * 1.0)
    assert trend.valence == pytest.approx(0.25 * 1.0 - 0.75)
    assert trend.emotion == "angry" and trend.confidence == pytest.approx(0.75)
    assert trend.utterances == 3
    assert sum(trend.probabilities.values()) == pytest.approx(1.0)


def test_one_outlier_does_not_flip_a_long_trend():
    t = TrendTracker(LABELS, TrendConfig(window_utterances=5))
    for i in range(10):
        _push(t, "a", _p(0.8, 0.1, 0.1), 3.0 * i)
    trend = _push(t, "a", _p(0.0, 0.0, 1.0), 30.0)
    assert trend.emotion == "neutral"
    assert trend.probabilities["angry"] == pytest.approx(0.1 * (2 / 3) + 1.0 * (1 / 3))
    # with window 1 the trend is just the last utterance
    t1 = TrendTracker(LABELS, TrendConfig(window_utterances=1))
    _push(t1, "a", _p(0.8, 0.1, 0.1), 0.0)
    assert _push(t1, "a", _p(0.0, 0.0, 1.0), 3.0).emotion == "angry"


def test_sources_are_independent():
    t = TrendTracker(LABELS, TrendConfig(window_utterances=5))
    _push(t, "kitchen", _p(0.0, 0.0, 1.0), 0.0)
    trend = _push(t, "office", _p(0.0, 1.0, 0.0), 1.0)
    assert trend.emotion == "happy" and trend.utterances == 1


def test_a_long_pause_starts_afresh_unless_disabled():
    t = TrendTracker(LABELS, TrendConfig(window_utterances=5, reset_after_s=60.0))
    _push(t, "a", _p(0.0, 0.0, 1.0), 0.0)
    near = _push(t, "a", _p(0.0, 1.0, 0.0), 50.0)  # gap 48 s: continues
    assert near.utterances == 2 and near.emotion == "angry"
    after = _push(t, "a", _p(0.0, 1.0, 0.0), 200.0)  # gap 148 s: afresh
    assert after.utterances == 1 and after.probabilities == pytest.approx(_p(0.0, 1.0, 0.0))
    never = TrendTracker(LABELS, TrendConfig(window_utterances=5, reset_after_s=0.0))
    _push(never, "a", _p(0.0, 0.0, 1.0), 0.0)
    assert _push(never, "a", _p(0.0, 1.0, 0.0), 10_000.0).utterances == 2


def test_current_reads_the_trend_without_changing_it():
    t = TrendTracker(LABELS, TrendConfig(window_utterances=5))
    assert t.current("a") is None  # before any utterance (a first result that is not speech)
    pushed = _push(t, "a", _p(0.1, 0.2, 0.7), 0.0)
    assert t.current("a") == pushed and t.current("a") == pushed  # reading twice: unchanged
    assert t.current("b") is None
