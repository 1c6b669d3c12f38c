"""Session kinds: how a held-out speaker's clips are played to the model as live streams (pure).

Speaker adaptation reads a stream's earlier utterances, so a score depends on what the stream
held before each utterance. Acted corpora record every emotion of a speaker equally; people do
not talk that way. Each kind below draws, from a fold's test rows, sessions (streams) whose
utterances are adapted causally in order, as `ser-live` runs them, with a fresh history each:

- "balanced": every clip of a speaker in random order (the one kind published before);
- "held": one emotion only: all of a speaker's clips of one label, random order (one session
  per speaker and label);
- "neutral-dominant": all of a speaker's neutral and calm clips, plus clips of the other labels
  drawn at random so that about `NEUTRAL_SHARE` of the session is neutral/calm, shuffled;
- "switch": two speakers of the same fold in one stream, taking turns of 1-4 utterances, no
  reset (speakers paired in sorted order; with an odd count the last pairs with the first);
- "first": each clip alone (no history);
- "short": a speaker's clips in random order cut into sessions of `SHORT_LENGTH`.

Every draw is a pure function of the rows, labels, speakers and the seed (`draw_sessions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ser.labels import LABELS

SESSION_KINDS: tuple[str, ...] = (
    "balanced",
    "held",
    "neutral-dominant",
    "switch",
    "first",
    "short",
)
NEUTRAL_LABELS = ("neutral", "calm")
NEUTRAL_SHARE = 0.7
SHORT_LENGTH = 3
MAX_TURN = 4  # "switch": a speaker holds the stream for 1..MAX_TURN utterances

Rows = npt.NDArray[np.intp]

# how the sessions of an evaluation are drawn (recorded beside their scores)
DRAW = (
    "per fold, from its held-out speakers' clips, with numpy's default_rng([seed, kind index]), "
    "seed = the fold's utterance-order seed (training seed + 1000 + fold - 1): balanced (each "
    "speaker's clips in random order), held (one session per speaker and label), "
    f"neutral-dominant ({NEUTRAL_SHARE:.0%} neutral/calm, the rest drawn from the other labels), "
    f"switch (speakers paired in sorted order, turns of 1-{MAX_TURN} utterances), first (each "
    f"clip alone), short (sessions of {SHORT_LENGTH}); each session is one stream with a fresh "
    "history, adapted causally as ser-live does; 'alone' is the same utterances with no history"
)


@dataclass(frozen=True)
class Session:
    """One live stream: row indices (into the data set) in utterance order."""

    kind: str
    rows: Rows
    speakers: tuple[str, ...]  # who talks in it (two for "switch")
    label: str | None = None  # "held": the label held


def draw_sessions(
    kind: str,
    rows: npt.ArrayLike,
    y: npt.NDArray[np.integer],
    speakers: npt.NDArray[np.str_],
    seed: int,
) -> list[Session]:
    """Sessions of `kind` over the data set rows `rows` (e.g. a fold's test rows); `y` (n,)
    label indices into LABELS and `speakers` (n,) speaker keys of the whole data set.
    Deterministic in `seed`; speakers in sorted order."""
    if kind not in SESSION_KINDS:
        raise ValueError(f"unknown session kind {kind!r}; choose from {', '.join(SESSION_KINDS)}")
    rows = np.asarray(rows)
    rows = np.flatnonzero(rows) if rows.dtype == np.bool_ else rows.astype(np.intp)
    rng = np.random.default_rng([seed, SESSION_KINDS.index(kind)])
    by_speaker = {s: rows[speakers[rows] == s] for s in sorted(set(speakers[rows].tolist()))}
    out: list[Session] = []
    if kind == "first":
        return [Session(kind, np.array([r], dtype=np.intp), (str(speakers[r]),)) for r in rows]
    if kind == "switch":
        names = list(by_speaker)
        if len(names) < 2:
            return []
        pairs = [(names[i], names[i + 1]) for i in range(0, len(names) - 1, 2)]
        if len(names) % 2:
            pairs.append((names[-1], names[0]))
        for a, b in pairs:
            out.append(Session(kind, _turns(rng, by_speaker[a], by_speaker[b]), (a, b)))
        return out
    for speaker, own in by_speaker.items():
        order = rng.permutation(own)
        if kind == "balanced":
            out.append(Session(kind, order, (speaker,)))
        elif kind == "short":
            for start in range(0, len(order), SHORT_LENGTH):
                out.append(Session(kind, order[start : start + SHORT_LENGTH], (speaker,)))
        elif kind == "held":
            for label in sorted(set(y[own].tolist())):
                held = order[y[order] == label]
                out.append(Session(kind, held, (speaker,), LABELS[int(label)]))
        else:  # neutral-dominant
            calm = np.isin([LABELS[int(i)] for i in y[order]], NEUTRAL_LABELS)
            base, others = order[calm], order[~calm]
            if len(base) == 0:
                continue
            n_other = min(len(others), round(len(base) * (1 - NEUTRAL_SHARE) / NEUTRAL_SHARE))
            chosen = rng.choice(others, size=n_other, replace=False) if n_other else others[:0]
            out.append(Session(kind, rng.permutation(np.concatenate([base, chosen])), (speaker,)))
    return out


def _turns(rng: np.random.Generator, a: Rows, b: Rows) -> Rows:
    """Both speakers' clips (each in random order) interleaved in turns of 1..MAX_TURN
    utterances, starting with `a`, until one runs out; the other's turn ends the session."""
    queues = [list(rng.permutation(a)), list(rng.permutation(b))]
    out: list[int] = []
    who = 0
    while queues[who]:
        take = int(rng.integers(1, MAX_TURN + 1))
        out += queues[who][:take]
        del queues[who][:take]
        who = 1 - who
    return np.array(out, dtype=np.intp)


def training_sessions(
    y: npt.NDArray[np.integer],
    speakers: npt.NDArray[np.str_],
    rng: np.random.Generator,
    concentration: float,
    max_length: int = 40,
) -> list[Rows]:
    """Every row once, cut into per-speaker sessions whose emotion mix is drawn at random:
    each session draws label weights from a symmetric Dirichlet(`concentration`) over the
    speaker's labels and a length of 3..`max_length`, then takes clips label by label from
    those weights until it is long enough or its labels run out. A small concentration makes
    held and skewed sessions common (0.3 over 8 labels: most weight on one or two)."""
    out: list[Rows] = []
    for speaker in sorted(set(speakers.tolist())):
        own = rng.permutation(np.flatnonzero(speakers == speaker))
        labels = sorted(set(y[own].tolist()))
        pools = {label: list(own[y[own] == label]) for label in labels}
        while any(pools.values()):
            weights = rng.dirichlet([concentration] * len(labels))
            length = int(rng.integers(3, max_length + 1))
            session: list[int] = []
            while len(session) < length:
                left = np.array([bool(pools[lab]) for lab in labels])
                alive = np.where(left, weights, 0.0)
                if alive.sum() < 0.05:  # the labels this session is about ran out
                    break
                label = labels[int(rng.choice(len(labels), p=alive / alive.sum()))]
                session.append(pools[label].pop())
            if not session:  # weights on exhausted labels only: take what is left instead
                session = [pools[lab].pop() for lab in labels if pools[lab]][:length]
            out.append(np.array(session, dtype=np.intp))
    return out


def session_rows(sessions: Sequence[Session]) -> Rows:
    """All sessions' rows, concatenated in session and utterance order."""
    if not sessions:
        return np.empty(0, dtype=np.intp)
    return np.concatenate([s.rows for s in sessions]).astype(np.intp)
