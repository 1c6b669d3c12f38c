"""The log-mel CNN (train/cnn.py): input preparation, training and export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ser.adaptation import AdaptationPrior, stream_orders
from ser_train.cnn import CnnConfig, centred_in_order, random_window, spec_augment

N_MELS = 6


def test_centring_in_order_uses_each_speakers_earlier_sequences_only():
    rng = np.random.default_rng(0)
    mels = [
        rng.normal(size=(int(rng.integers(5, 20)), N_MELS)).astype(np.float32) for _ in range(10)
    ]
    speakers = np.array([1, 2] * 5)
    prior = AdaptationPrior(np.full(N_MELS, 0.5), np.ones(N_MELS), prior_weight=2.0)
    out = centred_in_order(mels, speakers, prior, np.random.default_rng(7))
    for _, rows in stream_orders(speakers, np.random.default_rng(7)):
        for k, i in enumerate(rows):
            seen = np.stack([mels[j].mean(0) for j in rows[: k + 1]])
            offset = (2.0 * prior.mean + seen.sum(0)) / (2.0 + k + 1)
            np.testing.assert_allclose(out[i], mels[i] - offset, rtol=1e-5, atol=1e-6)


def test_random_window_repeats_short_and_crops_long_sequences():
    short = np.arange(100, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    padded = random_window(short, 300, np.random.default_rng(0))
    assert padded.shape == (300, 4)
    np.testing.assert_array_equal(padded[100:200], short)
    long = np.arange(500, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    starts = {random_window(long, 300, np.random.default_rng(s))[0, 0] for s in range(20)}
    assert len(starts) > 5 and min(starts) >= 0 and max(starts) <= 200


def test_spec_augment_masks_stripes_with_the_band_means():
    config = CnnConfig()
    x = np.full((50, config.frames, 40), 100.0, dtype=np.float32)
    fill = np.arange(40, dtype=np.float32)
    spec_augment(x, fill, config, np.random.default_rng(1))
    masked = x != 100.0
    np.testing.assert_array_equal(x[masked], np.broadcast_to(fill, x.shape)[masked])
    masked_frames = masked.all(axis=2).sum(axis=1)
    masked_bands = masked.all(axis=1).sum(axis=1)
    assert masked_frames.max() <= 50 and masked_bands.max() <= 10
    assert masked_frames.mean() > 5 and masked_bands.mean() > 1
    # on average 25 of 300 frames and 4 of 40 bands: about 18 % of the cells
    assert masked.mean() == pytest.approx(0.18, abs=0.04)


def _steady_and_pulsed(n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """Sequences at random levels and lengths, steady (class 0) or pulsing +-12 dB every 3
    frames (class 1): a local time pattern, the kind a small convolution sees."""
    mels, y = [], rng.integers(0, 2, n)
    for label in y:
        t = int(rng.integers(150, 400))
        pulse = 12.0 * np.where(np.arange(t) // 3 % 2 == 0, 1.0, -1.0) * label
        seq = rng.normal(-30.0, 5.0) + pulse[:, None] + rng.normal(0.0, 2.0, (t, N_MELS))
        mels.append(seq.astype(np.float32))
    return mels, y


def test_cnn_learns_a_local_pattern_and_exports_to_keras_and_litert(tmp_path):
    keras = pytest.importorskip("keras")
    from ai_edge_litert.interpreter import Interpreter

    from ser.adaptation import stream_orders
    from ser_train.cnn import fit_cnn, predict_cnn, predict_cnn_sessions, stats_pooling_class
    from ser_train.model import for_export, to_tflite

    rng = np.random.default_rng(0)
    mels, y = _steady_and_pulsed(128, rng)
    speakers = np.arange(128) % 8
    config = CnnConfig(epochs=8, frames=200, filters=(16, 32))
    trained = fit_cnn({"clean": mels}, y, speakers, 2, config, adapt=True)
    assert trained.prior is not None and trained.prior.mean.shape == (N_MELS,)
    test_mels, test_y = _steady_and_pulsed(40, np.random.default_rng(1))
    streams = np.arange(40) % 4
    probs = predict_cnn(trained, test_mels, streams, order_seed=3, frames=config.frames)
    assert probs.shape == (40, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs.argmax(axis=1) == test_y).mean() >= 0.75  # 0.88 measured; chance 0.5
    # sessions in the orders predict_cnn drew, each a fresh stream: the same readings
    sessions = [rows for _, rows in stream_orders(streams, np.random.default_rng(3))]
    in_sessions = predict_cnn_sessions(trained, test_mels, sessions, config.frames)
    np.testing.assert_allclose(in_sessions, probs[np.concatenate(sessions)], atol=1e-5)
    # one session holding every clip is one stream: centred unlike per-speaker streams
    one = predict_cnn_sessions(trained, test_mels, [np.arange(40)], config.frames)
    assert np.abs(one[4:] - probs[4:]).max() > 1e-3

    exported = for_export(trained.model)
    exported.save(tmp_path / "cnn.keras")
    (tmp_path / "cnn.tflite").write_bytes(to_tflite(exported))
    stats_pooling_class()  # registers the custom layer for safe-mode loading
    reloaded = keras.models.load_model(tmp_path / "cnn.keras", safe_mode=True)
    window = np.stack([random_window(m, config.frames, rng) for m in test_mels[:3]])
    reference = trained.model.predict(window, verbose=0)
    np.testing.assert_allclose(reloaded.predict(window, verbose=0), reference, atol=1e-5)
    lite = Interpreter(model_path=str(tmp_path / "cnn.tflite"))
    lite.allocate_tensors()
    for row, ref in zip(window, reference, strict=True):
        lite.set_tensor(lite.get_input_details()[0]["index"], row[None])
        lite.invoke()
        np.testing.assert_allclose(
            lite.get_tensor(lite.get_output_details()[0]["index"])[0], ref, atol=1e-5
        )


@pytest.mark.slow
def test_sweep_packs_cached_features_within_its_quantisation_and_runs(ravdess, tmp_path, capsys):
    import shutil

    from ser_train.cnn_sweep import DB_STEP, PACK_VARIANTS, load_pack, main
    from ser_train.corpora import scan
    from ser_train.featurize import featurize_all

    data = tmp_path / "data"
    for actor in ("Actor_01", "Actor_02"):
        (data / actor).mkdir(parents=True)
        for path in sorted((ravdess / actor).glob("*.flac"))[:3]:
            shutil.copy(path, data / actor)
    cache, packed = tmp_path / "cache", tmp_path / "pack.npz"
    args = ["pack", "--data", str(data), "--cache-dir", str(cache), "--out", str(packed)]
    assert main([*args, "--workers", "1"]) == 0
    y, actors, vectors, mels = load_pack(packed)
    assert sorted(actors.tolist()) == [1, 1, 1, 2, 2, 2] and len(y) == 6
    paths = [c.path for c in scan(data).clips]
    for variant in PACK_VARIANTS:
        reference = featurize_all(paths, cache, 1, variant=variant, log_mel=True)
        assert all(e.cached for e in reference)  # packing filled the cache
        expected = np.stack([e.vector for e in reference])
        np.testing.assert_allclose(vectors[variant], expected, rtol=2e-3, atol=2e-3)
        for got, e in zip(mels[variant], reference, strict=True):
            assert e.log_mel is not None and got.shape == e.log_mel.shape
            kept = e.log_mel > -127.0  # below the pack's floor values are clipped
            assert np.abs(got - e.log_mel)[kept].max() <= DB_STEP / 2 + 1e-4

    # a one-epoch run of two settings on fold 1 (actor 1 held out, actor 2 trains)
    out = tmp_path / "sweep"
    args = ["run", "--pack", str(packed), "--out", str(out), "--configs", "base,no_speed"]
    assert main([*args, "--folds", "1", "--epochs", "1"]) == 0
    report = json.loads((out / "sweep.json").read_text())
    assert sorted(r["name"] for r in report["results"]) == ["base", "no_speed"]
    for result in report["results"]:
        assert [f["fold"] for f in result["per_fold"]] == [1]
        assert result["cnn_config"]["epochs"] == 1
    assert {r["name"]: r["augment"] for r in report["results"]}["no_speed"] == ["snr15"]
    with np.load(out / "sweep_oof.npz") as oof:
        held_out = actors == 1
        for key in ("base.cnn", "base.stats", "base.average"):
            np.testing.assert_allclose(oof[key][held_out].sum(axis=1), 1.0, atol=1e-5)
            assert not oof[key][~held_out].any()  # only held-out clips are scored
    # post-hoc averaging of the two settings' CNNs from the saved probabilities
    capsys.readouterr()
    args = ["average", "--pack", str(packed), "--oof", str(out / "sweep_oof.npz")]
    assert main([*args, "--members", "base,no_speed"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[1].split()[0] for line in lines] == ["CNNs", "CNNs"]
    assert all(line.startswith("base+no_speed:") and "±" in line for line in lines)
