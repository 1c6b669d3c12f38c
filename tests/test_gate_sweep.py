"""The history gate's sweep rule (train/gate_sweep.py): the bound first, then the mean."""

from __future__ import annotations

import pytest

from ser.adaptation import HistoryGate
from ser_train.gate_sweep import Scored, Setting, cells, choose, grid


def _scored(low: float, cells_: dict[str, dict[str, tuple[float, float]]]) -> Scored:
    return Scored(Setting(HistoryGate(low, 8.0, 2.0), 0.5), cells_)


def test_the_bound_comes_before_the_mean():
    erases = _scored(3.0, {"a": {"held": (0.60, -0.05), "balanced": (0.90, 0.10)}})
    keeps = _scored(4.0, {"a": {"held": (0.64, -0.009), "balanced": (0.80, 0.02)}})
    keeps_less = _scored(5.0, {"a": {"held": (0.65, 0.0), "balanced": (0.75, 0.0)}})
    assert erases.mean_accuracy() > keeps.mean_accuracy() > keeps_less.mean_accuracy()
    assert choose([erases, keeps, keeps_less]) is keeps
    assert choose([erases]) is None


def test_the_first_utterance_counts_in_the_mean_not_in_the_bound():
    # "first" reads each utterance alone: its change is 0 by construction and not a bound
    a = _scored(3.0, {"p": {"first": (0.70, -0.5), "held": (0.60, 0.0)}})
    b = _scored(4.0, {"p": {"first": (0.60, 0.0), "held": (0.62, 0.0)}})
    assert a.worst_change() == 0.0
    assert choose([a, b]) is a  # 0.65 against 0.61


def test_equal_means_go_to_the_wider_margin():
    near = _scored(3.0, {"p": {"held": (0.70, -0.009), "balanced": (0.80, 0.0)}})
    wide = _scored(4.0, {"p": {"held": (0.70, -0.002), "balanced": (0.80, 0.0)}})
    assert choose([near, wide]) is wide
    assert choose([wide, near]) is wide


def test_grid_skips_low_at_or_above_high_and_keeps_its_order():
    settings = grid((4.0, 8.0), (6.0, 8.0), (2.0,), (0.5, 1.0))
    assert [(s.gate.low, s.gate.high, s.alone_weight) for s in settings] == [
        (4.0, 6.0, 0.5),
        (4.0, 8.0, 0.5),
        (4.0, 6.0, 1.0),
        (4.0, 8.0, 1.0),
    ]


def test_cells_read_the_means_over_folds_of_every_protocol_and_kind():
    evaluation = {
        "protocol": "ravdess",
        "summary": {
            "sessions": {
                "held": {"accuracy": {"mean": 0.7, "std": 0.1}, "change": {"mean": -0.01}},
                "first": {"accuracy": {"mean": 0.72}, "change": {"mean": 0.0}},
            }
        },
    }
    got = cells([evaluation])
    assert got == {"ravdess": {"held": (0.7, -0.01), "first": (0.72, 0.0)}}
    assert _scored(4.0, got).mean_accuracy() == pytest.approx(0.71)
