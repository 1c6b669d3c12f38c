"""Label maths on class probabilities (pure): combining networks, temperature calibration and
arousal/valence.

Arousal and valence are read off the probabilities with fixed circumplex coordinates per label.
The coordinates are estimates placed after Russell's circumplex model of affect (Russell 1980,
J. Pers. Soc. Psychol. 39(6):1161-1178) and the affective norms it inspired; they are not
measured on RAVDESS and not part of the model: arousal = sum_k p_k * a_k,
valence = sum_k p_k * v_k, each in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

# label: (valence, arousal), both in [-1, 1]
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    "calm": (0.4, -0.6),
    "happy": (0.8, 0.5),
    "sad": (-0.7, -0.5),
    "angry": (-0.6, 0.8),
    "fearful": (-0.7, 0.6),
    "disgust": (-0.7, 0.3),
    "surprised": (0.3, 0.8),
}


# how a bundle's networks' probabilities become one: their mean (a linear pool) or their
# normalised geometric mean (a log-linear pool)
COMBINE_RULES = ("mean", "geometric")


def combine(parts: Sequence[npt.ArrayLike], rule: str = "mean") -> npt.NDArray[np.float32]:
    """Several networks' (..., n_labels) probabilities -> one (..., n_labels) float32 array whose
    rows sum to 1.

    "mean" averages them. "geometric" takes exp(mean(log p)) and renormalises: the average of
    networks of different confidence is pulled towards the flatter one (a linear pool of
    calibrated forecasts is under-confident; Ranjan & Gneiting 2010, J. R. Stat. Soc. B 72(1)),
    the geometric mean much less. One part is returned as it is under either rule.
    """
    if rule not in COMBINE_RULES:
        raise ValueError(f"combine rule {rule!r}: use one of {', '.join(COMBINE_RULES)}")
    arrays = [np.asarray(p, dtype=np.float64) for p in parts]
    if not arrays:
        raise ValueError("combine: no probabilities given")
    if len(arrays) == 1:
        return np.asarray(arrays[0], dtype=np.float32)
    if rule == "mean":
        return np.asarray(np.mean(arrays, axis=0), dtype=np.float32)
    return _softmax(np.mean([_log(a) for a in arrays], axis=0))


def apply_temperature(
    probs: npt.NDArray[np.floating], temperature: float
) -> npt.NDArray[np.float32]:
    """softmax(log(p) / T) along the last axis; T > 1 softens, T < 1 sharpens, T = 1 is identity."""
    return _softmax(_log(np.asarray(probs, dtype=np.float64)) / temperature)


def _log(probs: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.log(np.clip(probs, 1e-12, 1.0))


def _softmax(logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """Along the last axis, as float32 rows summing to 1."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True), dtype=np.float32)


def arousal_valence(probabilities: dict[str, float]) -> tuple[float, float]:
    """(arousal, valence) in [-1, 1] from {label: probability}; unknown labels count as 0."""
    arousal = sum(p * CIRCUMPLEX.get(label, (0.0, 0.0))[1] for label, p in probabilities.items())
    valence = sum(p * CIRCUMPLEX.get(label, (0.0, 0.0))[0] for label, p in probabilities.items())
    return float(arousal), float(valence)
