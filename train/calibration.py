"""Confidence calibration: temperature scaling fitted on held-out predictions, and ECE."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ser.scoring import apply_temperature


def nll(probs: npt.NDArray[np.floating], labels: npt.NDArray[np.integer]) -> float:
    """Mean negative log-likelihood of the true labels."""
    p = np.clip(np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), labels], 1e-12, 1.0)
    return float(-np.log(p).mean())


def fit_temperature(probs: npt.NDArray[np.floating], labels: npt.NDArray[np.integer]) -> float:
    """The T in [0.05, 20] minimising NLL of softmax(log p / T) (log-grid, then refined)."""
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))
    losses = [nll(apply_temperature(probs, t), labels) for t in grid]
    best = int(np.argmin(losses))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    fine = np.linspace(lo, hi, 41)
    return float(fine[int(np.argmin([nll(apply_temperature(probs, t), labels) for t in fine]))])


def expected_calibration_error(
    probs: npt.NDArray[np.floating], labels: npt.NDArray[np.integer], n_bins: int = 15
) -> float:
    """Top-label ECE: sum over equal-width confidence bins of |accuracy - confidence| * share."""
    p = np.asarray(probs, dtype=np.float64)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == labels).astype(np.float64)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def ece_sampling_floor(
    probs: npt.NDArray[np.floating], n_bins: int = 15, draws: int = 200, seed: int = 0
) -> float:
    """Mean ECE of a perfectly calibrated predictor with these probabilities, (n, k): labels are
    drawn from the probabilities themselves, so any ECE left is small-sample noise. Compare a
    measured ECE on n clips against this floor for the same n."""
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(p, axis=1)
    values = []
    for _ in range(draws):
        u = rng.random((len(p), 1))
        labels = np.minimum((u > cumulative).sum(axis=1), p.shape[1] - 1)
        values.append(expected_calibration_error(p, labels, n_bins))
    return float(np.mean(values))


def uncertainty_threshold(
    probs: npt.NDArray[np.floating], labels: npt.NDArray[np.integer], max_accuracy: float = 0.5
) -> dict[str, float]:
    """The default `pipeline.min_confidence`: the highest top-label confidence threshold t
    (rounded down to 0.01) such that the predictions below t are right less than `max_accuracy`
    of the time. probs (n, k), labels (n,). Returns t with the share of predictions it marks,
    their accuracy, and the accuracy of the rest (t = 0: no such threshold)."""
    p = np.asarray(probs, dtype=np.float64)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == labels).astype(np.float64)
    best = 0.0
    for t in np.arange(1, 100) / 100:
        marked = confidence < t
        if marked.any() and correct[marked].mean() < max_accuracy:
            best = float(t)
    marked = confidence < best
    return {
        "min_confidence": best,
        "marked_share": float(marked.mean()),
        "marked_accuracy": float(correct[marked].mean()) if marked.any() else 0.0,
        "unmarked_accuracy": float(correct[~marked].mean()) if (~marked).any() else 0.0,
    }
