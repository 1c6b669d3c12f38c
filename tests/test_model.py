"""The training loop: mixup trains a working model and softens its confidence."""

from __future__ import annotations

import numpy as np
import pytest

from ser_train.model import TrainConfig, fit, predict


def blobs(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(8, 16))
    y = np.repeat(np.arange(8), n_per_class)
    x = centres[y] + rng.normal(0, 1, size=(len(y), 16))
    return x.astype(np.float32), y


def test_mixup_learns_the_task_with_softer_confidence():
    x, y = blobs(40, seed=0)
    x_test, y_test = blobs(20, seed=0)  # same centres, fresh noise
    x_test = x_test + np.random.default_rng(1).normal(0, 0.1, x_test.shape).astype(np.float32)
    epochs: list[int] = []
    plain = fit(x, y, 8, TrainConfig(hidden_units=32, epochs=15, ensemble=1))
    mixed = fit(
        x,
        y,
        8,
        TrainConfig(hidden_units=32, epochs=15, ensemble=1, mixup_alpha=0.4),
        on_epoch=epochs.append,
    )
    assert epochs == list(range(15))
    p_plain, p_mixed = predict(plain, x_test), predict(mixed, x_test)
    assert (p_mixed.argmax(1) == y_test).mean() > 0.9
    assert p_mixed.max(1).mean() < p_plain.max(1).mean()


def test_speaker_split_ensemble_members_each_leave_out_a_speaker_group():
    x, y = blobs(40, seed=2)
    keep = y < 2  # two classes; speakers 0-1 said only class 0, speakers 2-3 only class 1
    x, y = x[keep], y[keep]
    speakers = np.where(y == 0, np.arange(len(y)) % 2, 2 + np.arange(len(y)) % 2)
    config = TrainConfig(hidden_units=16, epochs=10, ensemble=2, ensemble_split="speakers")
    model = fit(x, y, 8, config, speakers=speakers)
    members = [layer for layer in model.layers if layer.name.startswith("member")]
    assert len(members) == 2
    # member 0 never saw speakers 0-1, hence never class 0; member 1 never saw class 1
    assert (predict(members[0], x[y == 0]).argmax(1) != 0).all()
    assert (predict(members[1], x[y == 1]).argmax(1) != 1).all()
    with pytest.raises(ValueError, match="needs the speaker"):
        fit(x, y, 8, config)
