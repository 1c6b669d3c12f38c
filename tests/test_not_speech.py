"""The "not speech" outcome: generated noise, tones and music get past the VAD but are reported
as not_speech; real speech is not (the shipped bundle's speech detector, through `ser-live`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from ser.bundle import load_bundle, resolve_bundle_path
from ser.messages import NOT_SPEECH
from ser_train import nonspeech

from .live import parse_results, run_live

RATE = 16_000
GAP_S = 1.2


def test_generators_are_seeded_and_stay_in_range():
    for kind in nonspeech.KINDS:
        a, b = nonspeech.clip(kind, 7), nonspeech.clip(kind, 8)
        np.testing.assert_array_equal(a, nonspeech.clip(kind, 7))
        assert a.dtype == np.float32 and (a.shape != b.shape or not np.array_equal(a, b))
        assert 1.0 <= a.size / RATE <= 4.0
        peak_db = 20 * np.log10(np.abs(a).max())
        assert -40.01 <= peak_db <= -2.99, (kind, peak_db)
    with pytest.raises(ValueError, match="unknown non-speech kind"):
        nonspeech.clip("speech", 0)


def _at(audio: np.ndarray, peak_dbfs: float) -> np.ndarray:
    return (audio / np.abs(audio).max() * 10 ** (peak_dbfs / 20)).astype(np.float32)


def test_shipped_bundle_says_not_speech_for_generated_signals_and_not_for_speech(ravdess):
    bundle = load_bundle(resolve_bundle_path("default"))
    assert bundle.speech is not None, "the shipped bundle has a speech detector"
    speech_files = [
        ravdess / "Actor_02" / "03-01-05-02-01-01-02.flac",
        ravdess / "Actor_17" / "03-01-02-01-02-01-17.flac",
        ravdess / "Actor_22" / "03-01-04-02-01-02-22.flac",
    ]
    pieces: list[np.ndarray] = []
    spans: list[tuple[str, float, float]] = []  # (what, start_s, end_s)
    t = 0.0
    gap = np.zeros(int(GAP_S * RATE), np.float32)
    signals = [(k, _at(nonspeech.clip(k, 5_000_000), -12.0)) for k in nonspeech.KINDS]
    speech = [(p.stem, sf.read(p, dtype="float32")[0]) for p in speech_files]
    for what, audio in [*signals, *speech]:
        pieces += [gap, audio]
        spans.append((what, t + GAP_S, t + GAP_S + audio.size / RATE))
        t += GAP_S + audio.size / RATE
    pieces.append(gap)
    pcm = np.round(np.concatenate(pieces) * 32767).astype("<i2").tobytes()
    proc = run_live("--input", "-", "--json", stdin=pcm)
    assert proc.returncode == 0, proc.stderr.decode()
    results = parse_results(proc.stdout)

    def source_of(r: dict[str, object]) -> str:
        mid = (float(r["start_s"]) + float(r["end_s"])) / 2  # type: ignore[arg-type]
        return next(w for w, s, e in spans if s - 0.4 <= mid <= e + 0.4)

    by_what: dict[str, list[str]] = {}
    for r in results:
        by_what.setdefault(source_of(r), []).append(str(r["emotion"]))
    for stem, _ in speech:  # every speech clip: one result, an emotion
        assert len(by_what[stem]) == 1 and by_what[stem][0] != NOT_SPEECH, by_what
    noise_results = [e for w, es in by_what.items() if w in nonspeech.KINDS for e in es]
    assert len(noise_results) >= 6, by_what  # the VAD let most of them through
    accepted = sum(e != NOT_SPEECH for e in noise_results)
    assert accepted <= 1, by_what
    for r in results:
        if r["emotion"] == NOT_SPEECH:
            assert r["speech"] < bundle.speech.threshold


def test_speech_in_natural_conditions_is_speech(ravdess, nemo, tmp_path):
    """Speech over music, babble, laughter or applause, shouted, broadcast-compressed, far or on
    the phone (train/robustness.py NATURAL_VARIANTS) is not refused, through ser-live; and the
    bundle's held-out evaluation says at most 1 % refused in every such condition."""
    from ser_train.robustness import NATURAL_VARIANTS, make_variant

    bundle = load_bundle(resolve_bundle_path("default"))
    assert bundle.speech is not None
    held_out = bundle.manifest["speech"]["evaluation"]["speech_rejected"]
    for corpus in ("ravdess", "nemo"):
        for variant in NATURAL_VARIANTS:
            assert held_out[corpus][variant] <= 0.01, (corpus, variant)
    clips = [
        ravdess / "Actor_09" / "03-01-08-02-02-01-09.flac",  # surprised
        ravdess / "Actor_16" / "03-01-04-01-01-01-16.flac",  # sad
        nemo / "samples" / "KD0_happiness_12.flac",
    ]
    folder = tmp_path / "natural"
    folder.mkdir()
    for path in clips:
        audio, rate = sf.read(path, dtype="float32")
        for variant in NATURAL_VARIANTS:
            out = make_variant(audio, variant, seed=11)
            sf.write(folder / f"{path.stem}-{variant}.wav", out, rate, subtype="PCM_16")
    proc = run_live("--input", str(folder), "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    results = parse_results(proc.stdout)
    longest: dict[str, dict] = {}
    for r in results:  # a burst in a pause may be an utterance of its own (and not speech)
        best = longest.get(r["source"])
        if best is None or r["end_s"] - r["start_s"] > best["end_s"] - best["start_s"]:
            longest[r["source"]] = r
    # the VAD found speech in (nearly) every file; it cut nothing from the telephone-band copy
    # of the surprised clip (a VAD miss, not a refusal: noted in EXPERIMENTS.md)
    assert len(longest) >= len(clips) * len(NATURAL_VARIANTS) - 1
    refused = [s for s, r in longest.items() if r["emotion"] == NOT_SPEECH]
    assert not refused, refused


def test_min_speech_zero_turns_the_detector_off(tmp_path):
    tone = _at(nonspeech.clip("music", 5_000_001), -12.0)
    gap = np.zeros(RATE, np.float32)
    path = tmp_path / "music.wav"
    sf.write(path, np.concatenate([gap, tone, gap]), RATE)
    config = tmp_path / "config.toml"
    config.write_text("[pipeline]\nmin_speech = 0.0\n")
    on = parse_results(run_live("--input", str(path), "--json").stdout)
    off = parse_results(run_live("--input", str(path), "--json", "--config", str(config)).stdout)
    assert on and off and len(on) == len(off)
    assert all(r["emotion"] == NOT_SPEECH for r in on), json.dumps(on)
    assert all(r["emotion"] != NOT_SPEECH for r in off)
    assert [r["speech"] for r in on] == [r["speech"] for r in off]
