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


def _network(
    rng: np.random.Generator, y: np.ndarray, k: int, right: float, sure: float
) -> np.ndarray:
    """(n, k) probabilities: the true label of `y` on top `right` of the time (else a random
    one), with probability `sure`, the rest shared evenly."""
    n = len(y)
    top = np.where(rng.random(n) < right, y, rng.integers(0, k, n))
    p = np.full((n, k), (1 - sure) / (k - 1))
    p[np.arange(n), top] = sure
    return p


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
        return _network(rng, y, k, right, sure)

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


def test_temperature_applied_only_when_it_lowers_held_out_ece():
    """`calibrate`: the NLL-fitted temperature is shipped only when the temperatures fitted on
    the other folds lower the pooled held-out ECE; otherwise T = 1 and the probabilities stay
    the networks' own (a recipe whose NLL wants a T that miscalibrates it, as `small`'s did)."""
    from ser.labels import LABELS
    from ser_train.evaluate import calibrate

    rng, k = np.random.default_rng(1), len(LABELS)
    y, fold_of = rng.integers(0, k, 1200), np.repeat(np.arange(1, 7), 200)
    # over-confident (sure 0.95, right ~0.6): a temperature > 1 fixes it and is applied
    over = calibrate(_network(rng, y, k, 0.6, 0.95), y, fold_of)
    assert over["temperature"] == over["temperature_fitted"] > 1.5
    assert over["ece_after_pooled"] == over["ece_fitted_pooled"] < over["ece_before_pooled"] / 2
    assert "not applied" not in over["method"]
    # the right answers hedge (0.7) and the wrong ones are near certain: their log-loss wants
    # a T that flattens every answer, moving the confidences away from the accuracies
    p = _network(rng, y, k, 0.7, 0.7)
    wrong = p.argmax(1) != y
    p[wrong] = np.eye(k)[p[wrong].argmax(1)] * 0.999 + 0.001 / k
    kept = calibrate(p, y, fold_of)
    assert kept["ece_fitted_pooled"] > kept["ece_before_pooled"]
    assert kept["temperature"] == 1.0 and kept["temperature_fitted"] != 1.0
    assert kept["ece_after_pooled"] == pytest.approx(kept["ece_before_pooled"])
    assert "not applied" in kept["method"]
