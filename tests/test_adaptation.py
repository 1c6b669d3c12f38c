"""Speaker adaptation: causal per-stream normalisation with a population prior."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.adaptation import AdaptationPrior, AdaptiveNormalizer, adapt_in_order

DIM = 5
PRIOR = AdaptationPrior(np.zeros(DIM), np.ones(DIM), prior_weight=2.0, max_history=60)


def test_first_utterance_is_shrunk_towards_the_prior():
    x = np.array([3.0, -3.0, 0.0, 1.0, 10.0])
    out = AdaptiveNormalizer(PRIOR).push("a", x)
    mean = x / 3.0  # (x + 2 * 0) / (1 + 2)
    var = ((x - mean) ** 2 + 2.0 * 1.0) / 3.0
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var), rtol=1e-6)


def test_long_history_converges_to_the_speakers_own_statistics():
    rng = np.random.default_rng(0)
    speaker_mean, speaker_std = np.arange(DIM) + 5.0, np.full(DIM, 3.0)
    norm = AdaptiveNormalizer(AdaptationPrior(np.zeros(DIM), np.ones(DIM), 2.0, max_history=10**6))
    for _ in range(5000):
        norm.push("a", rng.normal(speaker_mean, speaker_std))
    probe = speaker_mean + speaker_std  # one standard deviation above the speaker's mean
    np.testing.assert_allclose(norm.push("a", probe), np.ones(DIM), atol=0.1)


def test_streams_are_independent_and_reset():
    norm = AdaptiveNormalizer(PRIOR)
    first_b = AdaptiveNormalizer(PRIOR).push("b", np.ones(DIM))
    for _ in range(20):
        norm.push("a", np.full(DIM, 7.0))
    np.testing.assert_array_equal(norm.push("b", np.ones(DIM)), first_b)
    assert norm.history("a") == 20
    norm.reset("a")
    assert norm.history("a") == 0


def test_history_fades_after_max_history():
    norm = AdaptiveNormalizer(AdaptationPrior(np.zeros(DIM), np.ones(DIM), 2.0, max_history=30))
    for _ in range(200):
        norm.push("a", np.ones(DIM))
    assert norm.history("a") == pytest.approx(30.0)


def test_adapt_in_order_is_causal_per_stream():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, DIM))
    streams = np.array([1, 2] * 6)
    out = adapt_in_order(x, streams, PRIOR, np.random.default_rng(7))
    # Replay: the same permutations, row by row, give the same outputs.
    replay = AdaptiveNormalizer(PRIOR)
    order_rng = np.random.default_rng(7)
    for stream in (1, 2):
        rows = np.flatnonzero(streams == stream)
        for i in order_rng.permutation(rows):
            np.testing.assert_allclose(out[i], replay.push(stream, x[i]), rtol=1e-6)


def test_prior_round_trips_through_the_manifest():
    prior = AdaptationPrior.from_features(np.random.default_rng(0).normal(size=(50, DIM)))
    again = AdaptationPrior.from_dict(prior.to_dict())
    np.testing.assert_allclose(again.mean, prior.mean)
    np.testing.assert_allclose(again.std, prior.std)
    assert (again.prior_weight, again.max_history) == (prior.prior_weight, prior.max_history)
