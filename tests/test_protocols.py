"""Evaluation protocols: folds never share a speaker; cross-corpus scoring on shared labels."""

from __future__ import annotations

import numpy as np
import pytest

from ser.labels import LABELS
from ser_train.corpora import DataError
from ser_train.protocols import PROTOCOLS, SHARED_LABELS, select, to_label_space


def _rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every RAVDESS actor and nEMO speaker with one clip of each label its corpus has."""
    corpus, speakers, y = [], [], []
    for actor in range(1, 25):
        for i in range(8):
            corpus.append("ravdess"), speakers.append(f"ravdess:{actor}"), y.append(i)
    for speaker in ("EB0", "WR0", "KD0", "KS0", "MK0", "TP0", "IC0", "SM0"):
        for label in SHARED_LABELS:
            corpus.append("nemo"), speakers.append(f"nemo:{speaker}"), y.append(LABELS.index(label))
    return np.array(corpus), np.array(speakers), np.array(y)


def test_in_corpus_protocols_use_the_readme_folds_and_all_other_data():
    corpus, speakers, y = _rows()
    folds = PROTOCOLS["ravdess"].folds(corpus, speakers, y)
    assert folds[0].test_speakers == tuple(f"ravdess:{a}" for a in (1, 11, 20, 21))
    assert len(folds) == 6
    for fold in folds:
        assert not set(speakers[fold.train]) & set(speakers[fold.test])
        assert set(corpus[fold.test]) == {"ravdess"}
        assert fold.test.sum() == 4 * 8 and (corpus[fold.train] == "nemo").sum() == 8 * 6
    nemo = PROTOCOLS["nemo"].folds(corpus, speakers, y)
    assert [f.test_speakers for f in nemo] == [
        ("nemo:EB0", "nemo:WR0"),
        ("nemo:KD0", "nemo:KS0"),
        ("nemo:MK0", "nemo:TP0"),
        ("nemo:IC0", "nemo:SM0"),
    ]
    for fold in nemo:
        assert not set(speakers[fold.train]) & set(speakers[fold.test])
        assert (corpus[fold.train] == "ravdess").sum() == 24 * 8  # RAVDESS trains


def test_cross_corpus_holds_a_whole_corpus_out_and_scores_shared_labels():
    corpus, speakers, y = _rows()
    (fold,) = PROTOCOLS["nemo-to-ravdess"].folds(corpus, speakers, y)
    assert set(corpus[fold.train]) == {"nemo"} and set(corpus[fold.test]) == {"ravdess"}
    # RAVDESS's disgust clips cannot be scored on nEMO's labels: left out; calm stays (neutral)
    assert LABELS.index("disgust") not in y[fold.test]
    assert fold.test.sum() == 24 * 7
    (back,) = PROTOCOLS["ravdess-to-nemo"].folds(corpus, speakers, y)
    assert set(corpus[back.train]) == {"ravdess"} and back.test.sum() == 8 * 6


def test_label_space_merges_calm_into_neutral_and_renormalises():
    probs = np.zeros((2, 8))
    probs[0, LABELS.index("calm")] = 0.5
    probs[0, LABELS.index("neutral")] = 0.1
    probs[0, LABELS.index("disgust")] = 0.2
    probs[0, LABELS.index("sad")] = 0.2
    probs[1, LABELS.index("happy")] = 1.0
    y = np.array([LABELS.index("calm"), LABELS.index("happy")])
    labels, mapped = to_label_space(y, probs, SHARED_LABELS)
    assert labels.tolist() == [SHARED_LABELS.index("neutral"), SHARED_LABELS.index("happy")]
    np.testing.assert_allclose(mapped[0, SHARED_LABELS.index("neutral")], 0.6 / 0.8)
    np.testing.assert_allclose(mapped.sum(axis=1), 1.0)
    with pytest.raises(ValueError):
        to_label_space(np.array([LABELS.index("disgust")]), probs[:1], SHARED_LABELS)


def test_protocol_selection_follows_the_corpora_present():
    assert [p.name for p in select(None, ["ravdess"])] == ["ravdess"]
    assert [p.name for p in select(["all"], ["ravdess", "nemo"])] == list(PROTOCOLS)
    with pytest.raises(DataError, match="needs the corpora nemo, ravdess"):
        select(["ravdess-to-nemo"], ["ravdess"])
    with pytest.raises(DataError, match="unknown"):
        select(["iemocap"], ["ravdess"])


def test_a_subset_of_speakers_skips_empty_folds():
    corpus, speakers, y = _rows()
    keep = np.isin(speakers, ["ravdess:1", "ravdess:4", "ravdess:2", "nemo:EB0"])
    folds = PROTOCOLS["ravdess"].folds(corpus[keep], speakers[keep], y[keep])
    assert [f.number for f in folds] == [1, 2, 5]
