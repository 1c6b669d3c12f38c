"""Combining networks, calibration and arousal/valence maths."""

from __future__ import annotations

import numpy as np
import pytest

from ser.labels import LABELS
from ser.scoring import CIRCUMPLEX, apply_temperature, arousal_valence, combine
from ser_train.calibration import ece_sampling_floor, expected_calibration_error, fit_temperature


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_temperature_one_is_identity_and_order_is_kept():
    p = _softmax(np.random.default_rng(0).normal(size=(20, 8)))
    np.testing.assert_allclose(apply_temperature(p, 1.0), p, rtol=1e-5)
    soft = apply_temperature(p, 3.0)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-5)
    assert (soft.argmax(axis=1) == p.argmax(axis=1)).all()
    assert (soft.max(axis=1) < p.max(axis=1)).all()


def test_fit_recovers_an_overconfidence_factor_and_ece_drops():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1.5, size=(4000, 8))
    true_p = _softmax(logits)
    labels = np.array([rng.choice(8, p=row) for row in true_p])
    overconfident = _softmax(3.0 * logits)
    t = fit_temperature(overconfident, labels)
    assert t == pytest.approx(3.0, rel=0.15)
    before = expected_calibration_error(overconfident, labels)
    after = expected_calibration_error(apply_temperature(overconfident, t), labels)
    assert before > 0.15 and after < 0.03


def test_ece_of_a_perfectly_calibrated_predictor_is_small():
    rng = np.random.default_rng(2)
    p = _softmax(rng.normal(0, 2, size=(20000, 8)))
    labels = np.array([rng.choice(8, p=row) for row in p])
    assert expected_calibration_error(p, labels) < 0.02


def test_ece_sampling_floor_shrinks_with_sample_size_and_matches_simulation():
    rng = np.random.default_rng(3)
    p = _softmax(rng.normal(0, 2, size=(20000, 8)))
    small, large = ece_sampling_floor(p[:240]), ece_sampling_floor(p[:5000], draws=50)
    assert 0.03 < small < 0.12  # 240 clips in 15 bins: several points of ECE from noise alone
    assert large < small / 3
    # the floor is what a calibrated predictor scores on fresh labels, on average
    fresh = [
        expected_calibration_error(p[:240], np.array([rng.choice(8, p=row) for row in p[:240]]))
        for _ in range(100)
    ]
    assert np.mean(fresh) == pytest.approx(small, rel=0.15)


def test_arousal_valence_from_probabilities():
    one_hot = {label: float(label == "angry") for label in LABELS}
    assert arousal_valence(one_hot) == pytest.approx((0.8, -0.6))
    uniform = dict.fromkeys(LABELS, 1 / 8)
    arousal, valence = arousal_valence(uniform)
    assert arousal == pytest.approx(np.mean([a for _, a in CIRCUMPLEX.values()]))
    assert valence == pytest.approx(np.mean([v for v, _ in CIRCUMPLEX.values()]))
    assert set(CIRCUMPLEX) == set(LABELS)
    assert all(-1 <= c <= 1 for pair in CIRCUMPLEX.values() for c in pair)


def test_combine_mean_and_geometric():
    rng = np.random.default_rng(1)
    a, b = _softmax(rng.normal(size=(5, 8))), _softmax(3 * rng.normal(size=(5, 8)))
    np.testing.assert_allclose(combine([a, b]), (a + b) / 2, rtol=1e-6)
    geometric = combine([a, b], "geometric")
    want = np.sqrt(a * b) / np.sqrt(a * b).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(geometric, want, rtol=1e-5)
    assert geometric.dtype == np.float32
    np.testing.assert_allclose(geometric.sum(axis=1), 1.0, rtol=1e-6)
    # one network: itself under either rule; identical networks: themselves
    for rule in ("mean", "geometric"):
        np.testing.assert_allclose(combine([a], rule), a, rtol=1e-6)
        np.testing.assert_allclose(combine([a, a], rule), a, rtol=1e-5)
    # a sure network beside a flat one: the mean halves its confidence, the geometric mean
    # keeps its ranking and more of its confidence
    sure, flat = np.full(8, 0.01), np.full(8, 1 / 8)
    sure[2] = 0.93
    assert combine([sure, flat])[2] == pytest.approx((0.93 + 0.125) / 2)
    assert combine([sure, flat], "geometric")[2] > combine([sure, flat])[2]
    # a zero probability does not make the log-linear pool fail
    zero = np.zeros(8)
    zero[0] = 1.0
    assert np.isfinite(combine([zero, flat], "geometric")).all()
    with pytest.raises(ValueError, match="mean, geometric"):
        combine([a, b], "median")
