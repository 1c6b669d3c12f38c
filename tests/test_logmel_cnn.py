"""The log-mel CNN experiment's input preparation (train/logmel_cnn.py)."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.adaptation import stream_orders
from train.logmel_cnn import FRAMES, PRIOR_WEIGHT, fixed_length, speaker_offsets, spec_augment


def test_speaker_offsets_are_causal_running_means_in_the_simulated_order():
    rng = np.random.default_rng(0)
    band_means = rng.normal(size=(10, 3))
    speakers = np.array([1, 2] * 5)
    population = np.zeros(3)
    offsets = speaker_offsets(band_means, speakers, population, np.random.default_rng(7))
    for _, rows in stream_orders(speakers, np.random.default_rng(7)):
        for k, i in enumerate(rows):
            seen = band_means[rows[: k + 1]]
            expected = (PRIOR_WEIGHT * population + seen.sum(0)) / (PRIOR_WEIGHT + k + 1)
            np.testing.assert_allclose(offsets[i], expected)


def test_fixed_length_repeats_short_and_crops_long_sequences():
    short = np.arange(100, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    padded = fixed_length(short, None)
    assert padded.shape == (FRAMES, 4)
    np.testing.assert_array_equal(padded[100:200], short)
    long = np.arange(500, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    assert fixed_length(long, None)[0, 0] == 100  # centred
    crops = {fixed_length(long, np.random.default_rng(s))[0, 0] for s in range(20)}
    assert len(crops) > 5 and min(crops) >= 0 and max(crops) <= 200


def test_spec_augment_masks_at_most_two_time_and_two_band_stripes():
    x = np.ones((50, FRAMES, 40), dtype=np.float32)
    spec_augment(x, np.random.default_rng(1))
    masked_frames = (x == 0).all(axis=2).sum(axis=1)
    masked_bands = (x == 0).all(axis=1).sum(axis=1)
    assert masked_frames.max() <= 50 and masked_bands.max() <= 10
    assert masked_frames.mean() > 5 and masked_bands.mean() > 1
    # on average 25 of 300 frames and 4 of 40 bands: about 18 % of the cells
    assert (x == 0).mean() == pytest.approx(0.18, abs=0.04)
