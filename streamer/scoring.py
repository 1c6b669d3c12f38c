"""Label maths on class probabilities (pure): temperature calibration and arousal/valence.

Arousal and valence are read off the probabilities with fixed circumplex coordinates per label.
The coordinates are estimates placed after Russell's circumplex model of affect (Russell 1980,
J. Pers. Soc. Psychol. 39(6):1161-1178) and the affective norms it inspired; they are not
measured on RAVDESS and not part of the model: arousal = sum_k p_k * a_k,
valence = sum_k p_k * v_k, each in [-1, 1].
"""

from __future__ import annotations

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


def apply_temperature(
    probs: npt.NDArray[np.floating], temperature: float
) -> npt.NDArray[np.float32]:
    """softmax(log(p) / T) along the last axis; T > 1 softens, T < 1 sharpens, T = 1 is identity."""
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return np.asarray(e / e.sum(axis=-1, keepdims=True), dtype=np.float32)


def arousal_valence(probabilities: dict[str, float]) -> tuple[float, float]:
    """(arousal, valence) in [-1, 1] from {label: probability}; unknown labels count as 0."""
    arousal = sum(p * CIRCUMPLEX.get(label, (0.0, 0.0))[1] for label, p in probabilities.items())
    valence = sum(p * CIRCUMPLEX.get(label, (0.0, 0.0))[0] for label, p in probabilities.items())
    return float(arousal), float(valence)
