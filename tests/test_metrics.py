from __future__ import annotations

import numpy as np
import pytest

from ser_train.metrics import confusion_matrix, mean_std, scores_from_confusion


def test_scores_match_hand_computation():
    true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    matrix = confusion_matrix(true, pred, 3)
    assert matrix.tolist() == [[3, 1, 0], [0, 1, 1], [0, 0, 2]]
    s = scores_from_confusion(matrix)
    assert s.accuracy == pytest.approx(6 / 8)
    assert s.recall == pytest.approx((0.75, 0.5, 1.0))
    assert s.unweighted_accuracy == pytest.approx(0.75)
    # precision: 1.0, 0.5, 2/3 -> F1: 6/7, 0.5, 0.8
    assert s.macro_f1 == pytest.approx((6 / 7 + 0.5 + 0.8) / 3)
    assert s.n == 8


def test_absent_classes_do_not_count_in_ua():
    s = scores_from_confusion(confusion_matrix(np.array([0, 0]), np.array([0, 1]), 3))
    assert s.unweighted_accuracy == pytest.approx(0.5)


def test_mean_std():
    assert mean_std([0.5, 0.7]) == pytest.approx({"mean": 0.6, "std": 0.1})
