"""The default uncertainty threshold chosen from held-out predictions."""

from __future__ import annotations

import numpy as np
import pytest

from train.calibration import uncertainty_threshold


def _predictions(confidences: list[float], correct: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Two-class probabilities with these top confidences; label = top or the other."""
    probs = np.array([[c, 1 - c] for c in confidences])
    labels = np.array([0 if ok else 1 for ok in correct])
    return probs, labels


def test_threshold_is_where_marked_results_stop_being_mostly_wrong():
    # below 0.6: 1 right of 4; adding the 0.6 and 0.65 ones (both right) makes it 3 of 6 = 50 %
    conf = [0.51, 0.52, 0.55, 0.58, 0.6, 0.65, 0.8, 0.9, 0.95, 0.99]
    ok = [False, True, False, False, True, True, True, False, True, True]
    probs, labels = _predictions(conf, ok)
    u = uncertainty_threshold(probs, labels)
    # t = 0.61 marks the first 5 (2 right of 5 = 40 %); t = 0.66 would mark 6 at 50 %: not < 50 %
    assert u["min_confidence"] == pytest.approx(0.65)
    assert u["marked_share"] == pytest.approx(0.5)
    assert u["marked_accuracy"] == pytest.approx(0.4)
    assert u["unmarked_accuracy"] == pytest.approx(0.8)


def test_no_threshold_when_even_the_least_confident_are_mostly_right():
    probs, labels = _predictions([0.5, 0.6, 0.9], [True, True, True])
    assert uncertainty_threshold(probs, labels)["min_confidence"] == 0.0
