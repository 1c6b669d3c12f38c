"""nEMO's layouts (tiny generated files), corpus detection, `--data NAME=PATH`, labels, folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.labels import LABELS
from ser_train.corpora import CORPORA, DataError, detect, parse_data_arg, scan
from ser_train.corpora.nemo import LABEL_MAP

from .synth import harmonic

HEADER = "file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage\n"


def _wav(path: Path, rate: int, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, harmonic(0.3, rate), rate, format=fmt)


def _original_nemo(root: Path) -> None:
    """The upstream layout: 24 kHz WAV, MP0 included, data.tsv fields padded with spaces."""
    rows = [
        ("EB0_anger_1.wav", "anger", "EB0"),
        ("EB0_neutral_2.wav", "neutral", "EB0"),
        ("WR0_sadness_3.wav", "sadness", "WR0"),
        ("MP0_fear_4.wav", "fear", "MP0"),
        ("KS0_happiness_5.wav", "happiness", "KS0"),
        ("KS0_surprised_6.wav", "surprised", "KS0"),
    ]
    lines = [HEADER.replace("\t", " \t")]
    for file_id, emotion, speaker in rows:
        _wav(root / "samples" / file_id, 24_000)
        lines.append(f"{file_id}  \t {emotion} \tZdanie.\tzdanie\t {speaker}  \tfemale\t 27\n")
    (root / "data.tsv").write_text("".join(lines), encoding="utf-8")


def test_nemo_original_wav_layout_with_padded_tsv_and_mp0(tmp_path):
    _original_nemo(tmp_path)
    assert detect(tmp_path).name == "nemo"
    found = scan(tmp_path)
    assert found.corpus.name == "nemo" and found.layout == ".wav files with data.tsv"
    got = [(c.path.name, c.speaker, c.label) for c in found.clips]
    assert got == [
        ("EB0_anger_1.wav", "EB0", "angry"),
        ("EB0_neutral_2.wav", "EB0", "neutral"),
        ("KS0_happiness_5.wav", "KS0", "happy"),
        ("KS0_surprised_6.wav", "KS0", "surprised"),
        ("MP0_fear_4.wav", "MP0", "fearful"),
        ("WR0_sadness_3.wav", "WR0", "sad"),
    ]
    assert found.counts() == {
        "neutral": 1,
        "happy": 1,
        "sad": 1,
        "angry": 1,
        "fearful": 1,
        "surprised": 1,
    }
    # MP0 is in no fold: it always trains
    with pytest.raises(ValueError, match="MP0"):
        found.corpus.fold_of("MP0")


def test_nemo_flac_copy_and_names_without_tsv(tmp_path):
    _wav(tmp_path / "samples" / "IC0_anger_10.flac", 16_000)
    _wav(tmp_path / "samples" / "SM0_fear_11.flac", 16_000)
    (tmp_path / "samples" / "notes.wav").write_bytes(b"")  # not a nEMO name: ignored
    found = scan(f"nemo={tmp_path}")
    assert [(c.speaker, c.label) for c in found.clips] == [("IC0", "angry"), ("SM0", "fearful")]
    assert found.layout == ".flac files" and [p.name for p in found.ignored] == ["notes.wav"]


def test_nemo_tsv_that_contradicts_the_names_is_an_error(tmp_path):
    _wav(tmp_path / "samples" / "EB0_anger_1.flac", 16_000)
    (tmp_path / "data.tsv").write_text(HEADER + "EB0_anger_1.flac\tanger\tx\tx\tKD0\tfemale\t20\n")
    with pytest.raises(DataError, match="mixes two copies"):
        scan(tmp_path)


def test_data_argument_names_or_detects_the_corpus(tmp_path):
    assert parse_data_arg("nemo=/x/y") == (CORPORA["nemo"], Path("/x/y"))
    assert parse_data_arg("/x/y") == (None, Path("/x/y"))
    with pytest.raises(DataError, match="unknown corpus 'crema'"):
        parse_data_arg("crema=/x")
    with pytest.raises(DataError, match="does not exist"):
        scan(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    sf.write(tmp_path / "other" / "hello.wav", harmonic(0.3), 16_000)
    with pytest.raises(DataError, match="no known corpus"):
        scan(tmp_path / "other")


def test_label_maps_land_on_our_labels_and_name_what_is_missing():
    assert set(LABEL_MAP.values()) == set(CORPORA["nemo"].labels)
    assert CORPORA["nemo"].missing_labels == ("calm", "disgust")
    assert CORPORA["ravdess"].labels == LABELS and CORPORA["ravdess"].missing_labels == ()


@pytest.mark.parametrize("name", ["ravdess", "nemo"])
def test_folds_hold_every_speaker_out_exactly_once(name):
    corpus = CORPORA[name]
    held = [s for fold in corpus.folds for s in fold]
    assert len(held) == len(set(held))
    expected = 24 if name == "ravdess" else 8
    assert len(held) == expected


def test_real_corpora_match_their_readmes(ravdess, nemo):
    r, n = scan(ravdess), scan(nemo)
    assert (r.corpus.name, len(r.clips), len({c.speaker for c in r.clips})) == ("ravdess", 1440, 24)
    assert (n.corpus.name, len(n.clips)) == ("nemo", 4225)
    assert n.counts() == {
        "neutral": 719,
        "happy": 719,
        "sad": 720,
        "angry": 720,
        "fearful": 719,
        "surprised": 628,
    }
    speakers = {c.speaker for c in n.clips}
    assert speakers == {s for fold in n.corpus.folds for s in fold}
    assert np.all([c.path.suffix == ".flac" for c in n.clips])
