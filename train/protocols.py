"""How a model is evaluated: the protocols `ser-train` runs, their folds and scoring (pure).

1. "ravdess": RAVDESS, EmoBox's 6 actor folds; every other clip (other actors, other corpora)
   may train. The number that compares with EmoBox.
2. "nemo": nEMO, the 4 speaker folds of its README; RAVDESS and the other nEMO speakers train.
3. "ravdess-to-nemo" / "nemo-to-ravdess": cross-corpus, one corpus held out entirely and the
   other trains; scored on the labels both have with calm counted as neutral (the model's calm
   probability is added to neutral's, disgust's is dropped, the rest renormalised). The number
   closest to "a voice from somewhere else".

No speaker is ever on both sides of a fold (`folds` asserts it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ser.labels import LABELS
from ser_train.corpora import CORPORA, DataError

SHARED_LABELS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "surprised")
MERGED = {"calm": "neutral"}  # scored as the label both corpora have


@dataclass(frozen=True)
class Fold:
    """One train/test split over a data set's rows."""

    number: int  # 1-based, as the corpus README numbers them
    test_speakers: tuple[str, ...]  # speaker keys, e.g. "ravdess:1"
    train: npt.NDArray[np.bool_]
    test: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Protocol:
    """A named evaluation: which corpus is tested, which may train, on which labels."""

    name: str
    title: str
    test_corpus: str
    train_corpora: tuple[str, ...] | None  # None: every corpus present may train
    scored_labels: tuple[str, ...]

    @property
    def cross_corpus(self) -> bool:
        return self.train_corpora is not None and self.test_corpus not in self.train_corpora

    def applies_to(self, corpora: Sequence[str]) -> bool:
        """Whether the corpora present let this protocol run."""
        if self.test_corpus not in corpora:
            return False
        return not self.cross_corpus or any(c in corpora for c in self.train_corpora or ())

    def folds(self, corpus: npt.ArrayLike, speakers: npt.ArrayLike, y: npt.ArrayLike) -> list[Fold]:
        """Folds over rows with (n,) corpus names, (n,) speaker keys and (n,) label indices;
        test rows are those with a label the protocol scores (cross-corpus: RAVDESS's disgust
        clips are left out). Folds without test or training rows are skipped."""
        corpus, speakers = np.asarray(corpus), np.asarray(speakers)
        scorable = np.isin(
            [MERGED.get(LABELS[int(i)], LABELS[int(i)]) for i in np.asarray(y)],
            self.scored_labels,
        )
        trainable = (
            np.ones(len(corpus), dtype=bool)
            if self.train_corpora is None
            else np.isin(corpus, self.train_corpora)
        )
        if self.cross_corpus:
            groups: tuple[tuple[str, ...], ...] = (
                tuple(sorted(set(speakers[corpus == self.test_corpus].tolist()))),
            )
        else:
            folds = CORPORA[self.test_corpus].folds
            groups = tuple(tuple(f"{self.test_corpus}:{s}" for s in fold) for fold in folds)
        out = []
        for number, group in enumerate(groups, start=1):
            test = np.isin(speakers, group) & (corpus == self.test_corpus) & scorable
            train = trainable & ~np.isin(speakers, group)
            if set(speakers[train].tolist()) & set(speakers[test].tolist()):
                raise AssertionError(f"{self.name} fold {number}: a speaker on both sides")
            if test.any() and train.any():
                present = set(speakers[test].tolist())  # a subset run names only who was there
                out.append(Fold(number, tuple(s for s in group if s in present), train, test))
        return out

    def fold_count(self) -> int:
        """The folds the protocol defines (a subset of the speakers may run fewer)."""
        return 1 if self.cross_corpus else len(CORPORA[self.test_corpus].folds)

    def fold_groups(self) -> tuple[tuple[str, ...], ...]:
        """The speakers of each fold, as the corpus names them (cross-corpus: one group)."""
        if self.cross_corpus:
            return ()
        return tuple(tuple(str(s) for s in fold) for fold in CORPORA[self.test_corpus].folds)

    def scored(
        self, y: npt.NDArray[np.integer], probs: npt.NDArray[np.floating]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Labels (indices into LABELS) and (n, len(LABELS)) probabilities in this protocol's
        label space: indices into `scored_labels` and (n, len(scored_labels))."""
        if self.scored_labels == LABELS:
            return np.asarray(y, dtype=np.int64), np.asarray(probs, dtype=np.float32)
        return to_label_space(y, probs, self.scored_labels)


def to_label_space(
    y: npt.NDArray[np.integer], probs: npt.NDArray[np.floating], labels: tuple[str, ...]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Map 8-label truths and probabilities onto `labels`: MERGED labels add to their target,
    others outside `labels` are dropped; probabilities renormalised to sum to 1."""
    probs = np.asarray(probs, dtype=np.float64)
    out = np.zeros((len(probs), len(labels)))
    for i, label in enumerate(LABELS):
        target = MERGED.get(label, label)
        if target in labels:
            out[:, labels.index(target)] += probs[:, i]
    out /= np.maximum(out.sum(axis=1, keepdims=True), 1e-12)
    names = [MERGED.get(LABELS[int(i)], LABELS[int(i)]) for i in np.asarray(y)]
    if not all(name in labels for name in names):
        raise ValueError(f"a true label outside {labels}")
    return np.array([labels.index(n) for n in names], dtype=np.int64), out.astype(np.float32)


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol("ravdess", "RAVDESS, EmoBox 6 actor folds", "ravdess", None, LABELS),
        Protocol("nemo", "nEMO, 4 speaker folds", "nemo", None, LABELS),
        Protocol(
            "ravdess-to-nemo",
            "cross-corpus: trained on RAVDESS, tested on nEMO",
            "nemo",
            ("ravdess",),
            SHARED_LABELS,
        ),
        Protocol(
            "nemo-to-ravdess",
            "cross-corpus: trained on nEMO, tested on RAVDESS",
            "ravdess",
            ("nemo",),
            SHARED_LABELS,
        ),
    )
}


def select(names: Sequence[str] | None, corpora: Sequence[str]) -> list[Protocol]:
    """The protocols to run: `names` (None or ["all"]: every one the corpora allow). Raises
    DataError for an unknown name or one the corpora present cannot run."""
    if not names or list(names) == ["all"]:
        return [p for p in PROTOCOLS.values() if p.applies_to(corpora)]
    chosen = []
    for name in names:
        if name not in PROTOCOLS:
            raise DataError(
                f"--protocol {name!r}: unknown; choose from {', '.join(PROTOCOLS)} or all"
            )
        protocol = PROTOCOLS[name]
        if not protocol.applies_to(corpora):
            need = sorted({protocol.test_corpus, *(protocol.train_corpora or ())})
            raise DataError(
                f"--protocol {name} needs the corpora {', '.join(need)}; add them with --data"
            )
        chosen.append(protocol)
    return chosen
