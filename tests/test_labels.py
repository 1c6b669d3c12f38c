from __future__ import annotations

from ser.labels import LABELS
from ser_train.corpora.ravdess import parse_ravdess_name


def test_parses_every_field():
    name = parse_ravdess_name("03-01-06-02-01-02-12")
    assert name is not None
    assert name.emotion == "fearful"
    assert (name.modality, name.channel, name.intensity) == (3, 1, 2)
    assert (name.statement, name.repetition, name.actor) == (1, 2, 12)


def test_all_eight_emotion_codes_in_order():
    got = [parse_ravdess_name(f"03-01-0{code}-01-01-01-01").emotion for code in range(1, 9)]
    assert tuple(got) == LABELS


def test_rejects_other_names():
    for stem in ("hello", "03-01-09-01-01-01-01", "03-01-01-01-01-01-25", "03-01-01-01-01-01"):
        assert parse_ravdess_name(stem) is None
