"""The audio variants used for augmentation and robustness scores do what their names say."""

from __future__ import annotations

import numpy as np
import pytest

from ser_train.robustness import (
    CHANNELS,
    TEST_VARIANTS,
    add_noise,
    add_reverb,
    at_level,
    change_speed,
    cheap_microphone,
    check_variant,
    clip,
    make_variant,
    microphone_response,
    room_impulse_response,
    telephone,
)

RATE = 16_000


def tone(freq_hz: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def dominant_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.argmax(spectrum) * RATE / audio.size)


def test_noise_is_added_at_the_requested_snr():
    clean = tone(300.0, 2.0)
    for snr_db in (20.0, 10.0):
        noisy = add_noise(clean, snr_db, seed=1)
        measured = 10 * np.log10((clean**2).mean() / ((noisy - clean) ** 2).mean())
        assert measured == pytest.approx(snr_db, abs=0.3)


def test_speed_changes_duration_and_pitch_together():
    fast = change_speed(tone(200.0, 2.0), 110)
    assert fast.size == pytest.approx(2 * RATE / 1.1, abs=2)
    assert dominant_hz(fast) == pytest.approx(220.0, abs=2.0)
    slow = change_speed(tone(200.0, 2.0), 90)
    assert dominant_hz(slow) == pytest.approx(180.0, abs=2.0)


def test_impulse_response_decays_by_60_db_in_rt60():
    for rt60_ms in (300, 700):
        rir = room_impulse_response(rt60_ms, seed=3)
        tail = rir[1:] ** 2
        # Schroeder backward integration: the energy decay curve, fitted between -5 and -25 dB
        edc = 10 * np.log10(np.cumsum(tail[::-1])[::-1] / tail.sum())
        t = np.arange(edc.size) / RATE
        fit = (edc <= -5) & (edc >= -25)
        slope_db_per_s = np.polyfit(t[fit], edc[fit], 1)[0]
        assert -60.0 / slope_db_per_s == pytest.approx(rt60_ms / 1000, rel=0.15)
        assert tail.sum() == pytest.approx(1.0)  # direct-to-reverberant ratio 0 dB


def test_reverb_keeps_length_and_peak_and_smears_the_signal():
    burst = np.zeros(RATE, dtype=np.float32)
    burst[1000:1400] = tone(500.0, 0.025)
    wet = add_reverb(burst, 500, seed=2)
    assert wet.shape == burst.shape and wet.dtype == np.float32
    assert np.abs(wet).max() == pytest.approx(np.abs(burst).max(), rel=1e-5)
    after = slice(1400 + RATE // 10, 1400 + RATE // 5)  # 100-200 ms after the burst ended
    assert np.abs(burst[after]).max() == 0.0
    assert np.sqrt((wet[after] ** 2).mean()) > 1e-3
    np.testing.assert_array_equal(wet, add_reverb(burst, 500, seed=2))


def test_variant_names_are_checked():
    for name in ("clean", "vad", "snr15", "snr-5", "reverb500", "speed90", "speed110"):
        assert check_variant(name) == name
    for name in ("noise", "snr", "reverb", "speed0", "reverbx", "speed-10"):
        with pytest.raises(ValueError, match="unknown audio variant"):
            check_variant(name)
    with pytest.raises(ValueError, match="unknown audio variant"):
        make_variant(tone(100.0), "echo", seed=0)


def _level_db(audio: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(audio.astype(np.float64) ** 2) + 1e-20))


def test_telephone_keeps_the_voice_band_and_removes_the_rest():
    assert telephone(tone(1000.0)).size == RATE
    kept = _level_db(telephone(tone(1000.0))[800:-800]) - _level_db(tone(1000.0))
    low = _level_db(telephone(tone(100.0))[800:-800]) - _level_db(tone(100.0))
    high = _level_db(telephone(tone(5000.0))[800:-800]) - _level_db(tone(5000.0))
    assert abs(kept) < 1.0  # 1 kHz passes (mu-law noise is ~38 dB down)
    assert low < -20.0 and high < -40.0  # below 300 Hz / above 4 kHz (8 kHz rate) gone


def test_telephone_quantises_like_8_bit_mu_law():
    quiet = tone(1000.0) * 0.01
    out = telephone(quiet)[800:-800]
    noise = out - quiet[800:-800]
    snr = _level_db(quiet[800:-800]) - _level_db(noise)
    assert 20.0 < snr < 45.0  # 8-bit companding noise, not 16-bit (~90 dB)


def test_cheap_microphone_is_seeded_keeps_level_and_colours_the_spectrum():
    noise = np.random.default_rng(0).normal(0, 0.1, RATE).astype(np.float32)
    a, b = cheap_microphone(noise, 1), cheap_microphone(noise, 2)
    np.testing.assert_array_equal(a, cheap_microphone(noise, 1))
    assert not np.allclose(a, b)
    assert abs(_level_db(a) - _level_db(noise)) < 0.01
    gains = 20 * np.log10(microphone_response(RATE, 1)[1:])
    assert gains[:50].mean() < -10.0  # the high-pass below 100-300 Hz
    assert gains[500:].max() - gains[500:].min() > 6.0  # tilt and resonances: not flat


def test_clipping_and_low_level():
    clipped = clip(tone(440.0), gain_db=12.0)
    assert np.abs(clipped).max() == 1.0
    assert 0.5 < float(np.mean(np.abs(clipped) == 1.0)) < 0.95  # most of each cycle flattened
    quiet = at_level(tone(440.0), peak_dbfs=-40.0)
    assert 20 * np.log10(np.abs(quiet).max()) == pytest.approx(-40.0, abs=0.01)
    steps = np.unique(np.round(quiet * 32767.0, 6))
    np.testing.assert_allclose(steps, np.round(steps))  # on the 16-bit grid
    assert len(steps) <= 2 * 328 + 1


def test_channels_are_test_variants_and_augmentations():
    assert set(CHANNELS) <= set(TEST_VARIANTS)
    for name in CHANNELS:
        assert check_variant(name) == name
        out = make_variant(tone(440.0), name, seed=3)
        assert out.dtype == np.float32 and out.size == RATE


def _voice(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: a 120-220 Hz harmonic glide, syllable-modulated."""
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 120 + 100 * t / seconds
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    syllables = np.clip(np.sin(2 * np.pi * 4 * t), 0, None)
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return (0.2 * voiced * syllables / 2 + noise).astype(np.float32)


def test_natural_conditions_are_seeded_variants_of_the_same_length():
    from ser_train.robustness import NATURAL_VARIANTS, check_variant, make_variant, speech_power

    voice = _voice()
    for name in NATURAL_VARIANTS:
        assert check_variant(name) == name
        out = make_variant(voice, name, seed=7)
        assert out.dtype == np.float32 and out.shape == voice.shape, name
        assert np.isfinite(out).all() and np.abs(out).max() <= 1.0, name
        assert not np.allclose(out, voice, atol=1e-3), name
        np.testing.assert_array_equal(out, make_variant(voice, name, seed=7))
        assert speech_power(out) > 0, name


def test_mixtures_are_at_their_stated_level():
    from ser_train.robustness import mix_at, speech_power, with_music

    voice = _voice()
    other = np.random.default_rng(1).normal(size=voice.size)
    for snr in (0.0, 5.0, 15.0):
        added = mix_at(voice, other, snr).astype(np.float64) - voice
        ratio = speech_power(voice) / float(np.mean(added**2))
        assert 10 * np.log10(ratio) == pytest.approx(snr, abs=0.1)
    music = with_music(voice, 3).astype(np.float64) - voice
    assert 10 * np.log10(speech_power(voice) / np.mean(music**2)) == pytest.approx(5.0, abs=0.2)


def test_shout_clips_and_broadcast_compresses_the_dynamics():
    from ser_train.robustness import compress, make_variant

    voice = _voice()
    shouted = make_variant(voice, "shout", 0)
    assert (np.abs(shouted) >= 0.999).mean() > 0.05  # much of it at full scale
    quiet_then_loud = np.concatenate([0.01 * voice, 0.5 * voice])
    squeezed = compress(quiet_then_loud)
    half = voice.size

    def rms(x: np.ndarray) -> float:
        return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))

    before = 20 * np.log10(rms(quiet_then_loud[half:]) / rms(quiet_then_loud[:half]))
    after = 20 * np.log10(rms(squeezed[half:]) / rms(squeezed[:half]))
    assert before == pytest.approx(34.0, abs=0.1) and after < before - 10


def test_the_view_variant_is_the_live_cut_as_the_live_encoder_reads_it(ravdess):
    """ "vadview": the "vad" cut with the hangover after the encoder's tail (150 ms)
    replaced by its first samples, as `ser-live`'s encoder reads it; a clip that ends before a
    hangover does is read whole."""
    import soundfile as sf

    from ser.encoder import encoder_view
    from ser_train.robustness import vad_cut, vad_view

    audio, _ = sf.read(ravdess / "Actor_05" / "03-01-05-01-01-01-05.flac", dtype="float32")
    cut, view = vad_cut(audio), vad_view(audio)
    replaced = 150 * 16  # the 300 ms hangover's last 150 ms
    assert view.size == cut.size
    np.testing.assert_array_equal(view, encoder_view(cut[: cut.size - replaced], replaced))
    assert not np.array_equal(view, cut)
    assert make_variant(audio, "vadview", seed=0).tolist() == view.tolist()
    assert "vadview" in TEST_VARIANTS and check_variant("vadview") == "vadview"
    # the clip ends during its speech: cut at the end of the input, no hangover to replace
    speech_to_the_end = audio[: int(np.flatnonzero(np.abs(audio) > 0.05)[-1])]
    np.testing.assert_array_equal(vad_view(speech_to_the_end), vad_cut(speech_to_the_end))


def test_the_view_variant_s_statistics_read_the_cut_without_the_replaced_part(ravdess, tmp_path):
    """ "vadview"'s statistics are computed as live computes them: from the cut without the
    part of the hangover the view replaces ("vadhead", cached under its own key); the silence
    at both ends is trimmed either way, so they rarely differ from the whole cut's (not at all
    for this clip)."""
    import soundfile as sf

    from ser.features import analyse
    from ser_train.featurize import featurize_file
    from ser_train.robustness import statistics_variant, vad_cut, vad_head

    assert (statistics_variant("vadview"), statistics_variant("snr20")) == ("vadhead", "snr20")
    clip = ravdess / "Actor_05" / "03-01-05-01-01-01-05.flac"
    audio, _ = sf.read(clip, dtype="float32")
    head, cut = vad_head(audio), vad_cut(audio)
    np.testing.assert_array_equal(head, cut[: cut.size - 150 * 16])
    cut_features = featurize_file(clip, tmp_path, "vad")
    view = featurize_file(clip, tmp_path, "vadview")
    assert not cut_features.cached and not view.cached
    assert featurize_file(clip, tmp_path, "vadview").cached
    assert view.vector is not None and cut_features.vector is not None
    np.testing.assert_array_equal(view.vector, analyse(head).vector)
    np.testing.assert_array_equal(view.vector, cut_features.vector)
    assert not featurize_file(clip, tmp_path, "snr20").cached  # other variants: their own
