"""The default uncertainty threshold chosen from held-out predictions."""

from __future__ import annotations

import numpy as np
import pytest

from ser_train.calibration import uncertainty_threshold


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


def test_combination_report_scores_each_rule_on_the_same_folds():
    """`ser-train --combine-report`: two calibrated networks with independent errors; every rule
    scored on the same folds, the combinations more accurate than the weaker network and, having
    agreeing evidence averaged rather than added, under-confident (T < 1)."""
    from ser.labels import LABELS
    from ser_train.evaluate import compare_combinations

    rng = np.random.default_rng(0)
    n, k = 600, len(LABELS)
    y = rng.integers(0, k, n)
    fold_of = np.repeat(np.arange(1, 7), n // 6)

    def network(right: float, sure: float) -> np.ndarray:
        top = np.where(rng.random(n) < right, y, rng.integers(0, k, n))
        p = np.full((n, k), (1 - sure) / (k - 1))
        p[np.arange(n), top] = sure
        return p

    evaluation = {
        "labels": list(LABELS),
        "_components": {"stats": network(0.6, 0.6), "encoder": network(0.8, 0.8)},
        "_y": y,
        "_fold": fold_of,
    }
    rows = {r["combination"]: r for r in compare_combinations(evaluation)}
    assert list(rows) == [
        "stats alone",
        "encoder alone",
        "mean",
        "weighted mean, 0.67 encoder",
        "weighted mean, 0.75 encoder",
        "geometric mean",
    ]
    stats = evaluation["_components"]["stats"]
    want = np.mean([(stats[fold_of == f].argmax(1) == y[fold_of == f]).mean() for f in range(1, 7)])
    assert rows["stats alone"]["accuracy"] == pytest.approx(want)
    assert rows["encoder alone"]["accuracy"] > rows["stats alone"]["accuracy"]
    for name in ("mean", "geometric mean"):
        assert rows[name]["accuracy"] > rows["stats alone"]["accuracy"]
        assert rows[name]["temperature"] < 1.0
    assert 0.7 < rows["encoder alone"]["temperature"] < 1.4  # calibrated alone
    for row in rows.values():
        assert 0 <= row["ece_after_pooled"] <= 1
    # cross-corpus protocols (fewer labels) and one-network bundles have nothing to compare
    assert compare_combinations({**evaluation, "labels": list(LABELS[:6])}) == []
    assert compare_combinations({**evaluation, "_components": {}}) == []
