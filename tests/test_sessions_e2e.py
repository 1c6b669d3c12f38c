"""Sessions as people talk, end to end through `ser-live` with the shipped bundle: one nEMO
speaker holding one emotion for 20 utterances in one stream. The shipped bundle's speaker
history erased a held emotion (EXPERIMENTS.md, "Sessions as people talk") until the history
gate; the gated history must score such a stream about as well as `--no-adaptation`, far
better than the history ungated, and keep a neutral-only stream neutral."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from .live import parse_results, run_live

pytestmark = pytest.mark.slow

SPEAKERS = ("EB0", "WR0")  # a woman and a man
# data.tsv's names -> ours (the corpus README)
EMOTIONS = {
    "neutral": "neutral",
    "sadness": "sad",
    "anger": "angry",
    "happiness": "happy",
    "fear": "fearful",
    "surprised": "surprised",
}
PER_STREAM = 20
GAP_S = 0.8


def _clips(nemo: Path) -> dict[tuple[str, str], list[Path]]:
    with open(nemo / "data.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    out: dict[tuple[str, str], list[Path]] = {}
    for row in sorted(rows, key=lambda r: r["file_id"]):
        key = (row["speaker_id"], EMOTIONS[row["emotion"]])
        if row["speaker_id"] in SPEAKERS and len(out.setdefault(key, [])) < PER_STREAM:
            out[key].append(nemo / "samples" / row["file_id"])
    return out


def _stream(paths: list[Path]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The clips one after another with GAP_S of silence; (start, end) of each in seconds."""
    pieces, spans, at = [], [], 0.0
    for path in paths:
        audio, rate = sf.read(path, dtype="float32")
        assert rate == 16_000
        pieces += [audio, np.zeros(int(GAP_S * rate), np.float32)]
        spans.append((at, at + audio.size / rate))
        at += audio.size / rate + GAP_S
    return np.concatenate(pieces), spans


def _per_clip(results: list[dict], spans: list[tuple[float, float]]) -> list[str]:
    """Each clip's answer: its longest utterance's emotion ("none" if none was found)."""
    best: dict[int, tuple[float, str]] = {}
    for r in results:
        middle = (r["start_s"] + r["end_s"]) / 2
        for i, (a, b) in enumerate(spans):
            if a - 0.1 <= middle <= b + 0.1:
                length = r["end_s"] - r["start_s"]
                if length > best.get(i, (0.0, ""))[0]:
                    best[i] = (length, r["emotion"])
    return [best.get(i, (0.0, "none"))[1] for i in range(len(spans))]


def test_held_emotion_streams_are_not_worse_than_clips_alone(nemo, tmp_path):
    clips = _clips(nemo)
    held_dir, alone_dir = tmp_path / "held", tmp_path / "alone"
    held_dir.mkdir()
    alone_dir.mkdir()
    spans: dict[str, list[tuple[float, float]]] = {}
    truth: dict[str, str] = {}
    for (speaker, emotion), paths in clips.items():
        assert len(paths) == PER_STREAM
        name = f"{speaker}-{emotion}"
        audio, spans[name] = _stream(paths)
        sf.write(held_dir / f"{name}.wav", audio, 16_000, subtype="PCM_16")
        truth[name] = emotion
        for i, path in enumerate(paths):
            (alone_dir / f"{name}-{i:02d}.flac").symlink_to(path)
    # each held file is one source, one speaker history; each alone file its own (a fresh one)
    held_args = ("--input", str(held_dir), "--json")
    held = parse_results(run_live(*held_args, timeout=600).stdout)
    held_off = parse_results(run_live(*held_args, "--no-adaptation", timeout=600).stdout)
    always = ("--set", "pipeline.adaptation=always")  # the history without the gate
    held_ungated = parse_results(run_live(*held_args, *always, timeout=600).stdout)
    alone = parse_results(run_live("--input", str(alone_dir), "--json", timeout=600).stdout)
    hits_held, hits_off, hits_alone, hits_ungated = [], [], [], []
    for name, emotion in truth.items():
        answers = _per_clip([r for r in held if Path(r["source"]).stem == name], spans[name])
        hits_held += [a == emotion for a in answers]
        mine = [r for r in held_ungated if Path(r["source"]).stem == name]
        hits_ungated += [a == emotion for a in _per_clip(mine, spans[name])]
        answers = _per_clip([r for r in held_off if Path(r["source"]).stem == name], spans[name])
        hits_off += [a == emotion for a in answers]
        for i in range(PER_STREAM):
            own = [r for r in alone if Path(r["source"]).stem == f"{name}-{i:02d}"]
            longest = max(own, key=lambda r: r["end_s"] - r["start_s"], default=None)
            hits_alone.append(longest is not None and longest["emotion"] == emotion)
    accuracy_held, accuracy_alone = float(np.mean(hits_held)), float(np.mean(hits_alone))
    accuracy_off, accuracy_ungated = float(np.mean(hits_off)), float(np.mean(hits_ungated))
    print(
        f"held streams {accuracy_held:.1%} (--no-adaptation {accuracy_off:.1%}, history "
        f"without the gate {accuracy_ungated:.1%}), clips alone {accuracy_alone:.1%}"
    )
    assert len(hits_held) == len(hits_off) == len(SPEAKERS) * len(EMOTIONS) * PER_STREAM
    # measured: 85.4 % with the gated history (the default), 87.5 % without history, 45.4 %
    # with the history ungated, 97.9 % for the files alone (with the gate and the alone share
    # before their re-choice, 4,8,2 and 0.5: 85.8, 86.2, 45.4 and 95.4 %; before the familiar
    # alone network: 67.1, 68.8, 44.6 and 72.9 %). These are clips `default` was trained on,
    # and nEMO's studio is familiar, so the alone network (trained on these very files; its
    # share now 0.9) reads whole files nearly all right; the VAD cuts a stream of clips a
    # little differently from each file on its own, which costs more on memorised files than
    # on new speakers (RAVDESS's folds, the networks' own reading: 79.9 % whole, 79.0 % cut by
    # the live VAD). The gate
    # keeps a held mood
    assert accuracy_held >= accuracy_off - 0.05
    assert accuracy_held >= accuracy_ungated + 0.15
    assert accuracy_off >= accuracy_alone - 0.12


def test_a_neutral_stream_on_stdin_stays_mostly_neutral(nemo):
    paths = _clips(nemo)[("EB0", "neutral")]
    audio, spans = _stream(paths)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    args = ("--input", "-", "--json")  # the default: the speaker's history, gated
    results = parse_results(run_live(*args, stdin=pcm, timeout=300).stdout)
    answers = _per_clip(results, spans)
    neutral = sum(a == "neutral" for a in answers) / len(answers)
    print(f"neutral stream: {neutral:.0%} neutral ({answers})")
    assert neutral >= 0.6
    # the history did not wander off later in the stream either
    assert sum(a == "neutral" for a in answers[PER_STREAM // 2 :]) >= 0.5 * (PER_STREAM // 2)
