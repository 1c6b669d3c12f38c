"""Familiar recordings (ser/familiar.py, ser_train/familiar.py): the distance is sklearn's
Mahalanobis distance in the PCA subspace, new speakers of a known corpus are familiar and
another corpus is not, the arrays round-trip through the bundle's file, and the evaluation
mixes the alone network in by it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA

from ser.familiar import load_familiarity
from ser_train.evaluate import mix_rows, with_alone_readings
from ser_train.familiar import fit_familiarity, held_out_distances


def _corpus(rng, n_speakers, offset, *, per=40, dim=64, first=0):
    """Clips of speakers around a corpus centre `offset`: (n, dim) and (n,) speaker keys."""
    centre = np.full(dim, offset, float)
    x, who = [], []
    for s in range(n_speakers):
        voice = centre + rng.normal(0, 1.0, dim)
        x.append(voice + rng.normal(0, 1.0, (per, dim)))
        who += [f"c{offset}:{first + s}"] * per
    return np.vstack(x), np.array(who)


def test_distance_is_sklearn_mahalanobis_in_the_pca_subspace():
    rng = np.random.default_rng(0)
    x, who = _corpus(rng, 6, 0.0)
    fam = fit_familiarity(x, who, weight=0.5)
    pca = PCA(32, random_state=0).fit(x)
    lw = LedoitWolf().fit(pca.transform(x))
    probe = rng.normal(0, 2, (5, x.shape[1]))
    want = np.sqrt(lw.mahalanobis(pca.transform(probe)))
    np.testing.assert_allclose(fam.distance(probe), want, rtol=1e-9)
    assert fam.distance(probe[0]).shape == ()  # one embedding -> a scalar
    # the threshold: the 95 % quantile of speakers held out of the fit
    assert fam.threshold == pytest.approx(np.quantile(held_out_distances(x, who), 0.95))


def test_new_speakers_of_a_known_corpus_are_familiar_another_corpus_is_not():
    rng = np.random.default_rng(1)
    train, who = _corpus(rng, 8, 0.0)
    new, _ = _corpus(rng, 3, 0.0, first=100)  # speakers the fit never saw, same corpus
    other, _ = _corpus(rng, 3, 3.0)  # another corpus (shifted centre)
    fam = fit_familiarity(train, who, weight=0.5)
    assert (fam.alone_weight(new) == 0.5).mean() >= 0.85
    assert (fam.alone_weight(other) == 0.0).all()
    # a threshold from held-out speakers is wider than the clips' own spread in the fit
    assert fam.threshold > np.quantile(fam.distance(train), 0.95)


def test_one_training_speaker_uses_its_own_distances():
    rng = np.random.default_rng(2)
    x, who = _corpus(rng, 1, 0.0)
    fam = fit_familiarity(x, who, weight=1.0)
    assert fam.threshold == pytest.approx(np.quantile(fam.distance(x), 0.95))
    with pytest.raises(ValueError, match="2 training speakers"):
        held_out_distances(x, who)


def test_arrays_round_trip_through_the_bundle_file(tmp_path):
    rng = np.random.default_rng(3)
    x, who = _corpus(rng, 4, 0.0)
    fam = fit_familiarity(x, who, weight=0.5)
    path = tmp_path / "familiar.npz"
    np.savez(path, allow_pickle=False, **fam.arrays())
    back = load_familiarity(path, fam.threshold, fam.weight)
    np.testing.assert_array_equal(back.distance(x), fam.distance(x))
    arrays = fam.arrays()
    arrays["location"] = arrays["location"][:-1]
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="location"):
        load_familiarity(path, 1.0, 0.5)


def test_alone_readings_mix_by_weight_per_clip():
    rng = np.random.default_rng(4)
    adapted = rng.dirichlet(np.ones(8), 3).astype(np.float32)
    network = rng.dirichlet(np.ones(8), 3).astype(np.float32)
    test = np.array([False, True, True, True])
    predictions = {"clean": adapted, "variant:first_utterance": adapted}
    out = with_alone_readings(predictions, {"clean": network}, test, np.array([0.0, 0.5, 1.0]))
    reading = out["variant:first_utterance"]
    np.testing.assert_allclose(reading[0], adapted[0], atol=1e-6)  # unfamiliar: as before
    np.testing.assert_allclose(reading[2], network[2], atol=1e-6)
    mean = np.sqrt(network[1] * adapted[1])
    np.testing.assert_allclose(reading[1], mean / mean.sum(), atol=1e-6)
    np.testing.assert_array_equal(out["variant:first_adapted"], adapted)
    np.testing.assert_array_equal(out["variant:alone_network"], network)
    np.testing.assert_allclose(mix_rows(network, adapted, np.ones(3)), network, atol=1e-6)
    # no weights: the alone network's reading alone (the option's first design)
    plain = with_alone_readings(predictions, {"clean": network}, test)
    np.testing.assert_array_equal(plain["variant:first_utterance"], network)


def test_readings_calibrated_before_the_mix_as_live_mixes_them():
    """`calibrated_readings` (ser-train --calibrated-as): each reading calibrated with its
    network's temperature before the alone mix, as `Classifier._predict_alone` mixes the alone
    network's calibrated reading with the adapted networks' calibrated one; row indices and
    each network's own readings untouched (but the alone network's, whose encoder head is the
    alone reading). The order matters: mixing first can pick another label."""
    from ser.adaptation import mix_geometric
    from ser.scoring import apply_temperature
    from ser_train.evaluate import calibrated_readings

    adapted = np.array([[0.80, 0.15, 0.05]], np.float32)  # label 0
    network = np.array([[0.04, 0.80, 0.16]], np.float32)  # label 1, over-confident
    predictions = {"clean": adapted, "variant:first_utterance": adapted}
    predictions["component:statistics"] = adapted
    alone = {"clean": network, "component:encoder": network}
    test = np.array([False, True])
    t_main, t_alone = 1.1, 2.1

    main = calibrated_readings(predictions, t_main)
    np.testing.assert_array_equal(main["clean"], apply_temperature(adapted, t_main))
    assert main["component:statistics"] is adapted
    rows = np.array([7])
    assert calibrated_readings({"rows:first": rows}, t_main)["rows:first"] is rows
    alone_live = calibrated_readings(alone, t_alone, components=True)
    np.testing.assert_array_equal(
        alone_live["component:encoder"], apply_temperature(network, t_alone)
    )
    assert calibrated_readings(predictions, 1.0) is predictions

    weight = np.array([0.5])
    live = with_alone_readings(main, alone_live, test, weight)["variant:first_utterance"]
    expected = mix_geometric(
        apply_temperature(network[0], t_alone), apply_temperature(adapted[0], t_main), 0.5
    )
    np.testing.assert_allclose(live[0], expected, atol=1e-6)
    mixed_first = with_alone_readings(predictions, alone, test, weight)["variant:first_utterance"]
    assert mixed_first[0].argmax() == 1 and live[0].argmax() == 0


def test_alone_weights_kept_per_fold_scale_with_the_weight_alone():
    """`AloneMix.weights` with a fold's memo: the familiar clips are judged once (the gate
    sweep mixes each fold at several weights), and a weight only scales them."""
    from types import SimpleNamespace

    from ser_train.evaluate import AloneMix

    rng = np.random.default_rng(3)
    train, who = _corpus(rng, 8, 0.0)
    new, _ = _corpus(rng, 2, 0.0, first=100)
    other, _ = _corpus(rng, 2, 3.0)
    x = np.vstack([train, new, other])
    test = np.arange(len(x)) >= len(train)
    data = SimpleNamespace(
        embeddings={"clean": x}, speakers=np.concatenate([who, ["n"] * (len(x) - len(who))])
    )
    fold = SimpleNamespace(train=~test, test=test, number=1)
    fresh = {w: AloneMix(weight=w).weights(data, fold) for w in (0.5, 0.3)}
    assert set(np.unique(fresh[0.5])) == {0.0, 0.5}  # new speakers familiar, the other corpus not
    memo: dict[str, np.ndarray] = {}
    np.testing.assert_array_equal(AloneMix(weight=0.5).weights(data, fold, memo), fresh[0.5])
    data.embeddings = {"clean": rng.normal(0, 9, x.shape)}  # judged again, it would differ
    np.testing.assert_array_equal(AloneMix(weight=0.3).weights(data, fold, memo), fresh[0.3])
    assert len(memo) == 1
    everywhere = AloneMix(weight=0.4, familiar=False).weights(data, fold, memo)
    np.testing.assert_array_equal(everywhere, np.full(test.sum(), 0.4))
