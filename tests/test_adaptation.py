"""Speaker adaptation: causal per-stream normalisation with a population prior."""

from __future__ import annotations

import numpy as np
import pytest

from ser.adaptation import (
    AdaptationPrior,
    AdaptiveCentering,
    AdaptiveNormalizer,
    adapt_in_order,
    adapt_sessions,
)

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


def test_centring_subtracts_the_streams_running_band_mean_shrunk_to_the_prior():
    prior = AdaptationPrior(np.full(3, -20.0), np.ones(3), prior_weight=2.0, max_history=60)
    centring = AdaptiveCentering(prior)
    first = np.array([[-10.0, -30.0, -20.0], [-14.0, -26.0, -20.0]])  # band means -12, -28, -20
    out = centring.push("a", first)
    offset = (np.array([-12.0, -28.0, -20.0]) + 2 * -20.0) / 3
    np.testing.assert_allclose(out, first - offset, rtol=1e-6)
    assert out.dtype == np.float32 and out.shape == first.shape
    # a second utterance of the same stream is centred with both utterances' band means
    second = np.full((4, 3), -5.0)
    offset = (np.array([-12.0, -28.0, -20.0]) + np.full(3, -5.0) + 2 * -20.0) / 4
    np.testing.assert_allclose(centring.push("a", second), second - offset, rtol=1e-6)
    # another stream starts from the prior alone
    np.testing.assert_allclose(
        centring.push("b", second), second - (np.full(3, -5.0) + 2 * -20.0) / 3, rtol=1e-6
    )


def test_centring_history_fades_like_the_normaliser():
    prior = AdaptationPrior(np.zeros(2), np.ones(2), prior_weight=2.0, max_history=10)
    centring = AdaptiveCentering(prior)
    for _ in range(100):
        centring.offset("a", np.full(2, -40.0))
    for _ in range(30):  # a new speaker, 10 dB louder, on the same stream
        offset = centring.offset("a", np.full(2, -30.0))
    # a 10-utterance memory (beside the prior's 2) keeps 0.9**30 ~ 4 % of the old speaker
    assert offset == pytest.approx(np.full(2, 10 * -30.0 / 12), abs=0.6)


DUAL = AdaptationPrior(np.zeros(DIM), np.ones(DIM), 2.0, 60, inputs="raw+z+history")


def test_dual_inputs_are_raw_normalised_and_history():
    x = np.array([3.0, -3.0, 0.0, 1.0, 10.0])
    dual, plain = AdaptiveNormalizer(DUAL), AdaptiveNormalizer(PRIOR)
    first = dual.push("a", x)
    assert first.shape == (DUAL.output_dim(DIM),) == (2 * DIM + 1,)
    np.testing.assert_allclose(first[:DIM], x, rtol=1e-6)  # the utterance on its own
    np.testing.assert_allclose(first[DIM:-1], plain.push("a", x), rtol=1e-6)
    assert first[-1] == pytest.approx(1 / 3)  # one utterance beside a prior worth two
    for _ in range(7):
        later = dual.push("a", x)
    assert later[-1] == pytest.approx(8 / 10)
    # the raw part never depends on history; the normalised part does
    np.testing.assert_allclose(later[:DIM], x, rtol=1e-6)
    assert not np.allclose(later[DIM:-1], first[DIM:-1])


def test_inputs_round_trip_and_old_manifests_read_as_z():
    again = AdaptationPrior.from_dict(DUAL.to_dict())
    assert again.inputs == "raw+z+history"
    old = DUAL.to_dict()
    del old["inputs"]  # a bundle written before session kinds
    assert AdaptationPrior.from_dict(old).inputs == "z"
    with pytest.raises(ValueError, match="inputs"):
        AdaptationPrior(np.zeros(2), np.ones(2), inputs="raw")


def test_adapt_sessions_gives_each_session_a_fresh_history():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, DIM))
    sessions = [np.array([3, 1, 4]), np.array([1, 5]), np.array([9])]
    out = adapt_sessions(x, sessions, DUAL)
    assert out.shape == (6, 2 * DIM + 1)
    expected = []
    for rows in sessions:
        norm = AdaptiveNormalizer(DUAL)
        expected += [norm.push("s", x[i]) for i in rows]
    np.testing.assert_allclose(out, np.stack(expected), rtol=1e-6)
    # row 1 appears twice: second in one session, first in the other -> different inputs
    assert not np.allclose(out[1], out[3])
    assert adapt_sessions(x, [], DUAL).shape == (0, 2 * DIM + 1)


# ---- the history gate ----


def _onehot(i: int, sure: float = 0.9, n: int = 8) -> np.ndarray:
    p = np.full(n, (1 - sure) / (n - 1))
    p[i] = sure
    return p


def test_effective_labels_counts_how_many_emotions_a_distribution_holds():
    from ser.adaptation import effective_labels

    assert effective_labels(np.eye(8)[3]) == pytest.approx(1.0, abs=1e-3)
    assert effective_labels(np.full(8, 1 / 8)) == pytest.approx(8.0)
    assert effective_labels([0.5, 0.5, 0, 0]) == pytest.approx(2.0, abs=1e-3)


def test_a_held_mood_keeps_the_alone_reading_and_a_varied_one_trusts_history():
    from ser.adaptation import GatedHistory, HistoryGate

    gate = HistoryGate(low=3.5, high=8.0, warmup=5.0)
    held, varied = GatedHistory(gate), GatedHistory(gate)
    history_says = _onehot(0)  # the normalised reading: "neutral" (the held mood erased)
    for t in range(40):
        alone = _onehot(3)  # every alone reading: sad
        out_held = held.push("caller", history_says, alone)
        assert np.argmax(out_held) == 3  # the held mood is never erased
        out_varied = varied.push("talk", history_says, _onehot(t % 8, sure=0.6))
    assert np.argmax(out_varied) == 0  # many emotions shown: the speaker-relative reading wins
    assert gate.weight(np.full(8, 1 / 8), 1) == 0.0  # a first utterance stands on its own
    assert gate.weight(np.full(8, 1 / 8), 41) == pytest.approx(40 / 45)


def test_gate_state_is_per_stream_fades_and_resets():
    from ser.adaptation import GatedHistory, HistoryGate

    gate = HistoryGate(low=3.5, high=8.0, warmup=0.0, max_history=10)
    state = GatedHistory(gate)
    for t in range(30):  # a varied start ...
        state.push("s", _onehot(0), _onehot(t % 8, sure=0.5))
    varied = state.push("s", _onehot(0), _onehot(3))
    assert np.argmax(varied) == 0
    for _ in range(30):  # ... then one mood held: the old variety fades within max_history
        out = state.push("s", _onehot(0), _onehot(3))
    assert np.argmax(out) == 3
    assert np.argmax(state.push("other", _onehot(0), _onehot(5))) == 5  # a new stream: alone
    state.reset("s")
    assert np.argmax(state.push("s", _onehot(0), _onehot(2))) == 2


def test_gate_in_order_simulates_streams_in_their_order():
    from ser.adaptation import GatedHistory, HistoryGate, gate_in_order

    gate = HistoryGate()
    rng = np.random.default_rng(0)
    h = rng.dirichlet(np.ones(8), size=12)
    a = rng.dirichlet(np.ones(8), size=12)
    order = [np.array([5, 0, 7, 2]), np.array([1, 3, 4, 6, 8, 9, 10, 11])]
    got = gate_in_order(h, a, order, gate)
    for rows in order:
        state = GatedHistory(gate)
        for i in rows:
            assert np.allclose(got[i], state.push(0, h[i], a[i]))


def test_first_copies_add_every_clip_adapted_as_a_streams_first_utterance():
    from ser_train.evaluate import adapted_training_set

    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 4))
    y = np.arange(12) % 3
    speakers = np.repeat(["a", "b", "c"], 4)
    prior = AdaptationPrior.from_features(x)
    base = adapted_training_set({"clean": x}, y, speakers, prior, seed=0)
    more = adapted_training_set({"clean": x}, y, speakers, prior, seed=0, first_copies=2)
    n = len(base[0])
    assert len(more[0]) == n + 2 * 12
    np.testing.assert_array_equal(more[0][:n], base[0])  # the usual copies are unchanged
    alone = np.stack([AdaptiveNormalizer(prior).push(0, row) for row in x])
    for k in range(2):  # each clip normalised with no history: its own stream
        copy = slice(n + 12 * k, n + 12 * (k + 1))
        np.testing.assert_allclose(more[0][copy], alone, rtol=1e-6)
        np.testing.assert_array_equal(more[1][copy], y)
        np.testing.assert_array_equal(more[2][copy], speakers)
    # without adaptation there is nothing to copy
    plain = adapted_training_set({"clean": x}, y, speakers, None, seed=0, first_copies=2)
    assert len(plain[0]) == 12
