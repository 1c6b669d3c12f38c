from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ser.audio_io import resample
from ser.features import (
    FEATURE_SPEC,
    FeatureSpec,
    analyse,
    extract,
    log_mel_frames,
    log_mel_windows,
)

from .synth import harmonic, silence


@pytest.fixture(scope="module")
def clip(ravdess):
    audio, rate = sf.read(ravdess / "Actor_01" / "03-01-05-02-01-01-01.flac", dtype="float32")
    assert rate == 16_000
    return audio


def test_log_mel_frames_are_the_sequence_extract_summarises(clip):
    frames = log_mel_frames(clip)
    assert frames.dtype == np.float32 and frames.shape[1] == FEATURE_SPEC.n_mels
    # trimmed to the loud span (this clip has ~1 s of near-silence before the sentence)
    assert 100 < frames.shape[0] < clip.size / 160 - 50
    stats = extract(clip).reshape(-1, 8)[: FEATURE_SPEC.n_mels]  # (band, statistic)
    np.testing.assert_allclose(frames.mean(axis=0), stats[:, 0], atol=1e-3)  # mean
    np.testing.assert_allclose(frames.max(axis=0), stats[:, 3], atol=1e-3)  # max
    # level-invariant like the vector
    np.testing.assert_allclose(log_mel_frames(clip * 0.1), frames, atol=1e-2)
    # analyse gives both halves at once, identical to the separate calls
    both = analyse(clip)
    np.testing.assert_array_equal(both.vector, extract(clip))
    np.testing.assert_array_equal(both.log_mel, frames)


def test_log_mel_windows_cover_the_sequence():
    seq = np.arange(700, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    windows = log_mel_windows(seq, 300)
    assert windows.shape == (4, 300, 3)  # starts 0, 150, 300 and 400 (flush with the end)
    assert [w[0, 0] for w in windows] == [0, 150, 300, 400]
    assert windows[-1][-1, 0] == 699
    exact = log_mel_windows(seq[:300], 300)
    assert exact.shape == (1, 300, 3) and exact[0, -1, 0] == 299
    short = log_mel_windows(seq[:120], 300)  # repeated to length
    assert short.shape == (1, 300, 3)
    np.testing.assert_array_equal(short[0, 120:240], seq[:120])
    assert short[0, -1, 0] == 59
    with pytest.raises(ValueError, match="empty"):
        log_mel_windows(seq[:0], 300)


def test_shape_dtype_and_determinism(clip):
    a = extract(clip, 16_000)
    b = extract(clip.copy(), 16_000)
    assert a.shape == (FEATURE_SPEC.dim,) == (696,)
    assert a.dtype == np.float32
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)


def test_different_emotions_give_different_vectors(ravdess, clip):
    other, _ = sf.read(ravdess / "Actor_01" / "03-01-04-01-01-01-01.flac", dtype="float32")
    assert np.abs(extract(clip) - extract(other)).mean() > 0.1


def test_48k_input_is_resampled_to_nearly_the_same_features(clip):
    native = extract(clip, 16_000)
    upsampled = resample(clip, 16_000, 48_000)
    assert upsampled.size == clip.size * 3
    from48 = extract(upsampled, 48_000)
    scale = np.abs(native) + 1.0
    assert np.median(np.abs(native - from48) / scale) < 1e-3
    assert np.mean(np.abs(native - from48) / scale) < 0.02


def test_level_invariance(clip):
    np.testing.assert_allclose(extract(clip * 0.25), extract(clip), atol=0.05)


def test_int16_input_is_scaled(clip):
    as_int = (clip * 32767).astype(np.int16)
    np.testing.assert_array_equal(extract(as_int), extract(as_int.astype(np.float32) / 32768.0))


@pytest.mark.parametrize("n_samples", [0, 1, 100, 1599, 1600])
def test_too_short_input_is_padded_and_finite(n_samples):
    out = extract(harmonic(1.0)[:n_samples])
    assert out.shape == (FEATURE_SPEC.dim,)
    assert np.isfinite(out).all()


def test_silence_gives_finite_constant_features():
    out = extract(silence(1.0))
    assert np.isfinite(out).all()
    # Nothing varies in digital silence: every standard deviation and slope is zero.
    stats = out.reshape(FEATURE_SPEC.n_descriptors, 8)
    assert np.abs(stats[:, 1]).max() < 1e-6 and np.abs(stats[:, 7]).max() < 1e-6


def test_stereo_is_rejected_with_a_clear_error():
    with pytest.raises(ValueError, match="mono"):
        extract(np.zeros((1600, 2), dtype=np.float32))


def test_spec_digest_changes_with_any_parameter():
    assert FeatureSpec(n_mels=41).digest() != FEATURE_SPEC.digest()
    assert FeatureSpec().digest() == FEATURE_SPEC.digest()


# ---- the numpy DSP reproduces librosa's definitions (librosa is the test reference) ----


def test_dsp_steps_match_librosa(clip):
    librosa = pytest.importorskip("librosa")
    from ser import features as f

    spec = FEATURE_SPEC
    x = clip.astype(np.float64)
    ref_power = np.abs(librosa.stft(clip, n_fft=512, hop_length=160, win_length=410)) ** 2
    frames = f._frames(np.pad(x, 256), 512, 160) * f._window(spec)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).T
    assert np.abs(power - ref_power).max() < 1e-5 * ref_power.max()

    ref_mel = librosa.filters.mel(sr=16_000, n_fft=512, n_mels=40, fmax=8000)
    np.testing.assert_allclose(f._mel_filters(spec), ref_mel, atol=1e-6)

    log_mel = librosa.power_to_db(ref_mel @ power)
    ref_mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=20)
    np.testing.assert_allclose(f._dct_matrix(20, 40) @ log_mel, ref_mfcc, atol=1e-8)
    np.testing.assert_allclose(
        f._delta(ref_mfcc), librosa.feature.delta(ref_mfcc, width=9, mode="nearest"), atol=1e-8
    )
    ref_zcr = librosa.feature.zero_crossing_rate(clip, frame_length=410, hop_length=160)[0]
    np.testing.assert_array_equal(f._zero_crossing_rate(x, spec), ref_zcr)
    np.testing.assert_array_equal(f._zero_crossing_rate(x, spec, 7, 40), ref_zcr[7:40])

    ref_f0 = librosa.yin(clip, fmin=60, fmax=500, sr=16_000, frame_length=1024, hop_length=160)
    cents = 1200 * np.abs(np.log2(f._yin(x, spec) / ref_f0))
    assert np.percentile(cents, 99) < 1.0


def test_yin_matches_librosa_where_the_lag_is_at_either_end_of_its_range():
    """Tones at f0_max_hz and f0_min_hz, and noise: the chosen lag at the first or the last
    place of its range (no parabolic refinement there) or anywhere."""
    librosa = pytest.importorskip("librosa")
    from ser import features as f

    rng = np.random.default_rng(3)
    for y in (
        harmonic(0.5, f0_hz=500.0),
        harmonic(0.5, f0_hz=60.0),
        (0.1 * rng.standard_normal(8000)).astype(np.float32),
    ):
        ref = librosa.yin(y, fmin=60, fmax=500, sr=16_000, frame_length=1024, hop_length=160)
        cents = 1200 * np.abs(np.log2(f._yin(y.astype(np.float64), FEATURE_SPEC) / ref))
        assert np.percentile(cents, 99) < 1.0


def test_yin_finds_the_pitch_of_a_harmonic_tone():
    from ser import features as f

    for f0 in (90.0, 140.0, 220.0, 400.0):
        est = f._yin(harmonic(0.5, f0_hz=f0).astype(np.float64), FEATURE_SPEC)
        assert np.median(np.abs(1200 * np.log2(est[10:-10] / f0))) < 5  # cents


def test_first_call_needs_no_heavy_imports():
    import subprocess
    import sys

    code = (
        "import sys; from ser.features import warm_up; warm_up(); "
        "print(sorted(m for m in ('librosa', 'numba', 'scipy', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
