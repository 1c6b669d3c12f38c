"""Familiar recordings: how far an utterance's unadapted encoder embedding lies from the
training recordings' (a Mahalanobis distance in a PCA subspace), and the weight a bundle's
alone network gets from it.

An utterance read alone (no speaker history) must be judged on absolute cues (level, pitch,
timbre, the encoder's view of the voice), and those carry the corpus, the language and the
microphone with them: a network trained on them reads new speakers of familiar recordings much
better than the speaker-relative networks do, and unfamiliar ones worse. So the alone network's
reading is mixed in only where the recording is familiar: at distance <= `threshold` (the
distances of training speakers held out from the fit, at the quantile the bundle records), with
`weight`; elsewhere the speaker-relative networks' reading stands alone. Pure: no I/O here
(`load_familiarity` reads the arrays)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

FAMILIAR_FILE = "familiar.npz"
# how a manifest's familiar method names the alone network's share: by its key, beside it in the
# manifest (the number may be chosen again: ser_train.record_variants --adopt-gate)
WEIGHT_IN_METHOD = "weight (alone.weight)"


@dataclass(frozen=True, eq=False)
class Familiarity:
    """A Gaussian over the training embeddings in a `k`-dimensional PCA subspace.

    mean: (dim,) float64 embedding mean; components: (k, dim) PCA axes; location: (k,) the
    Gaussian's mean in the subspace; precision: (k, k) its inverse (shrunk) covariance;
    threshold: the largest distance still familiar; weight: the alone network's share in the
    geometric mix for a familiar utterance (0 for an unfamiliar one)."""

    mean: npt.NDArray[np.float64]
    components: npt.NDArray[np.float64]
    location: npt.NDArray[np.float64]
    precision: npt.NDArray[np.float64]
    threshold: float
    weight: float

    def distance(self, embeddings: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(n, dim) or (dim,) unadapted embeddings -> (n,) or () Mahalanobis distances."""
        e = np.asarray(embeddings, dtype=np.float64)
        z = (e - self.mean) @ self.components.T - self.location
        squared = np.einsum("...i,ij,...j->...", z, self.precision, z)
        return np.asarray(np.sqrt(np.maximum(squared, 0.0)), dtype=np.float64)

    def alone_weight(self, embeddings: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(n, dim) or (dim,) -> the alone network's weight: `weight` where familiar, else 0."""
        return np.where(self.distance(embeddings) <= self.threshold, self.weight, 0.0)

    def arrays(self) -> dict[str, npt.NDArray[np.float64]]:
        return {
            "mean": self.mean,
            "components": self.components,
            "location": self.location,
            "precision": self.precision,
        }


def load_familiarity(path: Path, threshold: float, weight: float) -> Familiarity:
    """The arrays `Familiarity.arrays` saved in `path` (.npz), with the manifest's numbers."""
    with np.load(path, allow_pickle=False) as stored:
        arrays = {k: np.asarray(stored[k], dtype=np.float64) for k in stored.files}
    k, dim = arrays["components"].shape
    if arrays["mean"].shape != (dim,) or arrays["location"].shape != (k,):
        raise ValueError(f"{path}: mean/location do not match components {k} x {dim}")
    if arrays["precision"].shape != (k, k):
        raise ValueError(f"{path}: precision is {arrays['precision'].shape}, expected {(k, k)}")
    return Familiarity(
        arrays["mean"],
        arrays["components"],
        arrays["location"],
        arrays["precision"],
        float(threshold),
        float(weight),
    )
