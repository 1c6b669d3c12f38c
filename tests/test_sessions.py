"""Session kinds (train/sessions.py): what each kind draws, deterministically."""

from __future__ import annotations

import numpy as np
import pytest

from ser.labels import LABELS
from ser_train.sessions import (
    NEUTRAL_SHARE,
    SESSION_KINDS,
    SHORT_LENGTH,
    draw_sessions,
    session_rows,
    training_sessions,
)


def corpus(n_speakers: int = 4, per_label: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """RAVDESS-like rows: every speaker has `per_label` clips of each of the 8 labels."""
    y = np.tile(np.repeat(np.arange(len(LABELS)), per_label), n_speakers)
    speakers = np.repeat([f"ravdess:{i}" for i in range(1, n_speakers + 1)], per_label * 8)
    return y, speakers


Y, SPEAKERS = corpus()
TEST = np.isin(SPEAKERS, ["ravdess:1", "ravdess:2", "ravdess:3"])


def test_every_kind_is_deterministic_and_stays_inside_the_test_rows():
    for kind in SESSION_KINDS:
        a = draw_sessions(kind, TEST, Y, SPEAKERS, seed=5)
        b = draw_sessions(kind, np.flatnonzero(TEST), Y, SPEAKERS, seed=5)
        c = draw_sessions(kind, TEST, Y, SPEAKERS, seed=6)
        assert a, kind
        assert [s.rows.tolist() for s in a] == [s.rows.tolist() for s in b], kind
        rows = session_rows(a)
        assert TEST[rows].all(), kind  # never a training speaker's clip
        if kind != "first":
            assert [s.rows.tolist() for s in a] != [s.rows.tolist() for s in c], kind
        for s in a:  # no clip twice in one session
            assert len(set(s.rows.tolist())) == len(s.rows), kind


def test_balanced_first_and_short_cover_every_test_clip_once():
    for kind in ("balanced", "first", "short"):
        rows = session_rows(draw_sessions(kind, TEST, Y, SPEAKERS, seed=0))
        assert sorted(rows.tolist()) == np.flatnonzero(TEST).tolist(), kind
    balanced = draw_sessions("balanced", TEST, Y, SPEAKERS, seed=0)
    assert [s.speakers for s in balanced] == [("ravdess:1",), ("ravdess:2",), ("ravdess:3",)]
    assert all(len(s.rows) == 1 for s in draw_sessions("first", TEST, Y, SPEAKERS, seed=0))
    short = draw_sessions("short", TEST, Y, SPEAKERS, seed=0)
    assert {len(s.rows) for s in short} <= {1, 2, SHORT_LENGTH}
    assert all(len(set(SPEAKERS[s.rows])) == 1 for s in short)


def test_held_sessions_hold_one_label_of_one_speaker():
    held = draw_sessions("held", TEST, Y, SPEAKERS, seed=0)
    assert len(held) == 3 * len(LABELS)  # one per speaker and label
    for s in held:
        assert set(Y[s.rows].tolist()) == {LABELS.index(s.label or "")}
        assert set(SPEAKERS[s.rows].tolist()) == set(s.speakers)
        assert len(s.rows) == 8


def test_neutral_dominant_is_about_seventy_percent_neutral_or_calm():
    y, speakers = corpus(n_speakers=2, per_label=40)  # long sessions, as nEMO's
    sessions = draw_sessions("neutral-dominant", np.ones(len(y), bool), y, speakers, seed=1)
    assert len(sessions) == 2
    for s in sessions:
        calm = np.isin(y[s.rows], [LABELS.index("neutral"), LABELS.index("calm")])
        assert calm.mean() == pytest.approx(NEUTRAL_SHARE, abs=0.02)
        assert len(set(y[s.rows][~calm].tolist())) >= 4  # the rest from the other emotions
        # shuffled: the neutral clips are not all at the start
        assert not calm[: int(calm.sum())].all()


def test_switch_alternates_two_speakers_in_one_stream():
    sessions = draw_sessions("switch", TEST, Y, SPEAKERS, seed=2)
    # three speakers: (1, 2) and the odd one out (3) with the first
    assert [s.speakers for s in sessions] == [
        ("ravdess:1", "ravdess:2"),
        ("ravdess:3", "ravdess:1"),
    ]
    for s in sessions:
        who = SPEAKERS[s.rows]
        assert set(who.tolist()) == set(s.speakers)
        changes = int((who[1:] != who[:-1]).sum())
        assert changes >= 10  # turns of 1-4 utterances over 64 + clips
        runs = np.diff(np.flatnonzero(np.r_[True, who[1:] != who[:-1], True]))
        assert runs[:-1].max() <= 4  # the last turn may hold what is left
    one = draw_sessions("switch", SPEAKERS == "ravdess:1", Y, SPEAKERS, seed=2)
    assert one == []  # one speaker cannot switch


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="session kind"):
        draw_sessions("mixed", TEST, Y, SPEAKERS, seed=0)


def test_training_sessions_use_every_row_once_and_are_often_held():
    y, speakers = corpus(n_speakers=6, per_label=30)
    sessions = training_sessions(y, speakers, np.random.default_rng(0), concentration=0.3)
    rows = np.concatenate(sessions)
    assert sorted(rows.tolist()) == list(range(len(y)))
    assert all(len(set(speakers[s].tolist())) == 1 for s in sessions)
    long = [s for s in sessions if len(s) >= 5]
    top_share = np.array([np.bincount(y[s]).max() / len(s) for s in long])
    top_two = np.array([np.sort(np.bincount(y[s]))[-2:].sum() / len(s) for s in long])
    assert (top_share >= 0.8).mean() > 0.15  # held or nearly held sessions are common
    assert np.median(top_two) >= 0.7  # most weight on one or two emotions
    mixed = training_sessions(y, speakers, np.random.default_rng(0), concentration=100.0)
    share = np.array([np.bincount(y[s]).max() / len(s) for s in mixed if len(s) >= 20])
    assert share.mean() < 0.4  # a large concentration mixes every emotion
    again = training_sessions(y, speakers, np.random.default_rng(0), concentration=0.3)
    assert [s.tolist() for s in again] == [s.tolist() for s in sessions]


def test_session_report_reads_evaluations_and_manifests(tmp_path):
    import json

    from ser_train.session_report import table

    def scores(acc: float, alone: float) -> dict:
        return {
            "accuracy": {"mean": acc, "std": 0.0},
            "unweighted_accuracy": {"mean": acc - 0.01, "std": 0.0},
            "alone": {"mean": alone, "std": 0.0},
            "change": {"mean": acc - alone, "std": 0.0},
        }

    summary = {"sessions": {"held": scores(0.5, 0.6), "first": scores(0.6, 0.6)}}
    evaluation = tmp_path / "run" / "evaluation.json"
    evaluation.parent.mkdir()
    evaluation.write_text(json.dumps({"protocols": {"ravdess": {"summary": summary}}}))
    manifest = tmp_path / "bundle" / "manifest.json"
    manifest.parent.mkdir()
    manifest.write_text(
        json.dumps({"evaluation": {"protocols": {"ravdess": {"summary": summary}}}})
    )
    text = table([evaluation, manifest])
    assert "run: acc / UA / alone / change" in text and "bundle:" in text
    assert "| ravdess | held | 50.0 % / 49.0 % / 60.0 % / -10.0 % |" in text
    assert "| ravdess | balanced | - | - |" in text  # a kind the run did not score
