"""RAVDESS loader over the three layouts users download, generated in a temp dir (nEMO's:
test_corpora.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_train.corpora import DataError, scan
from ser_train.featurize import featurize_all

from .synth import harmonic


def _write(path: Path, audio: np.ndarray, rate: int, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate, format=fmt)
    return path


def _clip(rate: int) -> np.ndarray:
    return harmonic(0.5, rate)


def test_official_48k_wav_layout_with_stereo(tmp_path):
    mono = _write(tmp_path / "Actor_01" / "03-01-05-02-01-01-01.wav", _clip(48_000), 48_000)
    stereo = np.stack([_clip(48_000), 0.5 * _clip(48_000)], axis=1)
    _write(tmp_path / "Actor_02" / "03-01-01-01-02-01-02.wav", stereo, 48_000)
    found = scan(tmp_path)
    assert [c.path.name for c in found.clips] == [
        "03-01-01-01-02-01-02.wav",
        "03-01-05-02-01-01-01.wav",
    ]
    assert [(c.label, c.speaker, c.corpus) for c in found.clips] == [
        ("neutral", "2", "ravdess"),
        ("angry", "1", "ravdess"),
    ]
    assert found.clips[0].speaker_key == "ravdess:2"
    assert found.duplicates_dropped == 0
    results = featurize_all([c.path for c in found.clips], None, workers=1)
    assert all(r.vector is not None and r.vector.shape == (696,) for r in results)
    assert results[1].path == mono


def test_flac_16k_layout(tmp_path):
    _write(tmp_path / "Actor_03" / "03-01-04-01-01-01-03.flac", _clip(16_000), 16_000)
    found = scan(tmp_path)
    assert len(found.clips) == 1 and found.clips[0].label == "sad"


def test_kaggle_layout_is_deduplicated_by_name(tmp_path):
    for root in (tmp_path, tmp_path / "audio_speech_actors_01-24"):
        for name in ("03-01-02-01-01-01-05", "03-01-03-01-01-01-05"):
            _write(root / "Actor_05" / f"{name}.wav", _clip(48_000), 48_000)
    found = scan(tmp_path)
    assert len(found.clips) == 2
    assert found.duplicates_dropped == 2
    # the shallower copy wins
    assert all("audio_speech_actors" not in str(c.path) for c in found.clips)


def test_song_and_foreign_files_are_counted_not_used(tmp_path):
    _write(tmp_path / "Actor_01" / "03-01-05-02-01-01-01.wav", _clip(16_000), 16_000)
    _write(tmp_path / "Actor_01" / "03-02-05-02-01-01-01.wav", _clip(16_000), 16_000)
    _write(tmp_path / "other" / "note.wav", _clip(16_000), 16_000)
    found = scan(tmp_path)
    assert len(found.clips) == 1
    assert sorted(p.name for p in found.ignored) == ["03-02-05-02-01-01-01.wav", "note.wav"]


def test_unreadable_and_empty_files_are_reported(tmp_path):
    good = _write(tmp_path / "Actor_01" / "03-01-05-02-01-01-01.wav", _clip(16_000), 16_000)
    text = tmp_path / "Actor_01" / "03-01-05-02-01-02-01.wav"
    text.write_text("this is not audio\n")
    empty = _write(tmp_path / "Actor_01" / "03-01-05-02-02-01-01.wav", np.zeros(0), 16_000)
    results = featurize_all([good, text, empty], None, workers=1)
    assert results[0].vector is not None
    assert results[1].vector is None and "not readable as audio" in (results[1].error or "")
    assert results[2].vector is None and "no audio samples" in (results[2].error or "")


def test_feature_cache_hits_on_second_run(tmp_path):
    path = _write(tmp_path / "d" / "Actor_01" / "03-01-05-02-01-01-01.wav", _clip(16_000), 16_000)
    cache = tmp_path / "cache"
    first = featurize_all([path], cache, workers=1)[0]
    second = featurize_all([path], cache, workers=1)[0]
    assert not first.cached and second.cached
    np.testing.assert_array_equal(first.vector, second.vector)
    assert len(list(cache.rglob("*.npy"))) == 1
    assert second.log_mel is None  # not asked for
    # asking for the log-mel sequence too computes it once, then both come from the cache
    third = featurize_all([path], cache, workers=1, log_mel=True)[0]
    fourth = featurize_all([path], cache, workers=1, log_mel=True)[0]
    assert not third.cached and fourth.cached
    assert third.log_mel is not None and fourth.log_mel is not None
    np.testing.assert_array_equal(third.log_mel, fourth.log_mel)
    np.testing.assert_array_equal(fourth.vector, first.vector)
    assert len(list(cache.rglob("*.npy"))) == 2


def test_empty_directory_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no known corpus"):
        scan(tmp_path)
    with pytest.raises(DataError, match="no RAVDESS speech audio"):
        scan(f"ravdess={tmp_path}")


def test_missing_directory_is_an_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        scan(tmp_path / "nope")
