"""Corpora without calm or disgust must not teach "never calm": the masked loss (synthetic)."""

from __future__ import annotations

import numpy as np
import pytest

from ser.labels import LABELS
from ser_train.model import TrainConfig, fit, mix_targets, predict, targets_of

CALM, NEUTRAL = LABELS.index("calm"), LABELS.index("neutral")


def _two_corpora(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corpus A: 8 labels, 40 rows each, one cluster per label. Corpus B (5x bigger, no calm or
    disgust): its neutral sits where A's calm sits, as a voice "that sounds like nEMO" would."""
    centres = rng.normal(0, 4, (8, 16))
    xa = np.concatenate([centres[i] + rng.normal(0, 1, (40, 16)) for i in range(8)])
    ya = np.repeat(np.arange(8), 40)
    b_labels = [i for i in range(8) if LABELS[i] not in ("calm", "disgust")]
    xb = np.concatenate(
        [
            (centres[CALM] if i == NEUTRAL else centres[i]) + rng.normal(0, 1, (200, 16))
            for i in b_labels
        ]
    )
    yb = np.repeat(b_labels, 200)
    mask = np.ones((len(ya) + len(yb), 8), dtype=bool)
    mask[len(ya) :, [CALM, LABELS.index("disgust")]] = False
    return np.concatenate([xa, xb]).astype(np.float32), np.concatenate([ya, yb]), mask


def test_masked_loss_still_says_calm_for_the_corpus_that_has_it():
    pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    x, y, mask = _two_corpora(rng)
    config = TrainConfig(epochs=15, ensemble=1, hidden_units=0, input_dropout=0.0)
    test_calm = x[:320][y[:320] == CALM]  # corpus A's calm clips (seen in training)

    masked_model = fit(x, y, 8, config, label_mask=mask)
    masked = predict(masked_model, test_calm)
    plain = predict(fit(x, y, 8, config), test_calm)
    # With the plain loss, B's many "neutral" rows in the calm region teach "never calm";
    # masked, B's rows never compete with calm, so A's calm keeps its region.
    assert (masked.argmax(1) == CALM).mean() > 0.6
    assert (plain.argmax(1) == CALM).mean() < 0.4
    # and B's own rows still learn their labels among the ones B has
    b_neutral = x[320:][y[320:] == NEUTRAL]
    b_probs = predict(masked_model, b_neutral)
    assert (b_probs[:, [i for i in range(8) if i != CALM]].argmax(1) == NEUTRAL).mean() > 0.8


def test_targets_carry_masks_and_mixup_unites_them():
    y = np.array([0, 3])
    mask = np.array([[True] * 8, [True, False] * 4])
    t = targets_of(y, 8, mask)
    assert t.shape == (2, 16) and t[0, 0] == 1 and t[1, 3] == 1
    np.testing.assert_array_equal(t[:, 8:], mask.astype(np.float32))
    assert targets_of(y, 8, None).shape == (2, 8)
    mixed = mix_targets(t[:1], t[1:], np.array([[0.25]]), 8)
    assert mixed[0, 0] == pytest.approx(0.25) and mixed[0, 3] == pytest.approx(0.75)
    assert mixed[0, 8:].tolist() == [1.0] * 8


def test_corpus_weights_give_each_corpus_the_same_total():
    from ser_train.evaluate import corpus_weights

    speakers = np.array(["ravdess:1"] * 10 + ["nemo:EB0"] * 25 + ["nemo:WR0"] * 5)
    w = corpus_weights(speakers)
    assert w[:10].sum() == pytest.approx(w[10:].sum()) and w.mean() == pytest.approx(1.0)
    assert len(set(w[10:].tolist())) == 1  # within a corpus every clip weighs the same
