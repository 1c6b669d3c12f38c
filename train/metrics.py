"""Classification scores from integer labels (pure numpy, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Scores:
    """Scores of one evaluation; recall per class in label order."""

    accuracy: float
    unweighted_accuracy: float  # mean per-class recall (UA)
    macro_f1: float
    recall: tuple[float, ...]
    confusion: tuple[tuple[int, ...], ...]  # rows: true label, columns: predicted
    n: int

    def to_dict(self, labels: tuple[str, ...]) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "unweighted_accuracy": self.unweighted_accuracy,
            "macro_f1": self.macro_f1,
            "recall": dict(zip(labels, self.recall, strict=True)),
            "confusion": [list(row) for row in self.confusion],
            "n": self.n,
        }


def confusion_matrix(
    true: npt.NDArray[np.integer], pred: npt.NDArray[np.integer], n_classes: int
) -> npt.NDArray[np.int64]:
    """(n_classes, n_classes) counts; rows are true labels, columns predictions."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true), np.asarray(pred)), 1)
    return matrix


def scores_from_confusion(matrix: npt.NDArray[np.int64]) -> Scores:
    """Accuracy, UA, macro-F1 and recalls; classes absent from the truth are left out of UA/F1."""
    matrix = np.asarray(matrix, dtype=np.int64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    hits = np.diag(matrix).astype(np.float64)
    total = int(matrix.sum())
    present = support > 0
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(hits), where=denom > 0)
    return Scores(
        accuracy=float(hits.sum() / total) if total else 0.0,
        unweighted_accuracy=float(recall[present].mean()) if present.any() else 0.0,
        macro_f1=float(f1[present].mean()) if present.any() else 0.0,
        recall=tuple(float(r) for r in recall),
        confusion=tuple(tuple(int(v) for v in row) for row in matrix),
        n=total,
    )


def mean_std(values: list[float]) -> dict[str, float]:
    """{"mean": ..., "std": ...} (population std over folds)."""
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std())}


def scores_of_probabilities(
    y: npt.NDArray[np.integer], probs: npt.NDArray[np.floating], labels: tuple[str, ...]
) -> dict[str, Any]:
    """Scores (as `Scores.to_dict`) of the arg-max predictions of probs (n, len(labels))."""
    return scores_from_confusion(
        confusion_matrix(np.asarray(y), np.asarray(probs).argmax(axis=1), len(labels))
    ).to_dict(labels)
