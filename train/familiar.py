"""Fit `ser.familiar.Familiarity` on training embeddings: PCA to `DIMENSIONS`, a Ledoit-Wolf
Gaussian there, and the familiar threshold from training speakers held out of the fit (a new
speaker of a known corpus is what "familiar" must accept)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA

from ser.familiar import Familiarity

DIMENSIONS = 32
QUANTILE = 0.95  # of held-out training speakers' distances: the familiar threshold
GROUPS = 4  # speaker groups held out in turn for that threshold


def _fit_gaussian(x: npt.NDArray[np.float64]) -> Familiarity:
    pca = PCA(min(DIMENSIONS, *x.shape), random_state=0).fit(x)
    z = pca.transform(x)
    lw = LedoitWolf().fit(z)
    return Familiarity(
        np.asarray(pca.mean_, np.float64),
        np.asarray(pca.components_, np.float64),
        np.asarray(lw.location_, np.float64),
        np.asarray(lw.precision_, np.float64),
        threshold=np.inf,
        weight=0.0,
    )


def held_out_distances(
    embeddings: npt.ArrayLike, speakers: npt.ArrayLike, seed: int = 0
) -> npt.NDArray[np.float64]:
    """(n,) distances of each clip from a Gaussian fitted without its speaker's group (the
    speakers split at random into `GROUPS`). embeddings (n, dim), speakers (n,) keys."""
    e = np.asarray(embeddings, dtype=np.float64)
    who = np.asarray(speakers)
    unique = np.unique(who)
    if len(unique) < 2:
        raise ValueError("the familiar threshold needs at least 2 training speakers")
    order = np.random.default_rng(seed).permutation(unique)
    out = np.empty(len(e))
    for group in np.array_split(order, min(GROUPS, len(unique))):
        held = np.isin(who, group)
        out[held] = _fit_gaussian(e[~held]).distance(e[held])
    return out


def fit_familiarity(
    embeddings: npt.ArrayLike,
    speakers: npt.ArrayLike,
    weight: float,
    quantile: float = QUANTILE,
    seed: int = 0,
) -> Familiarity:
    """The familiarity of the training clips (n, dim) of (n,) speakers: fitted on all of
    them, familiar up to the `quantile` of `held_out_distances`; `weight` for the alone
    network where familiar."""
    e = np.asarray(embeddings, dtype=np.float64)
    fitted = _fit_gaussian(e)
    if len(np.unique(np.asarray(speakers))) >= 2:
        distances = held_out_distances(e, speakers, seed)
    else:  # one speaker: nobody to hold out; its own clips' distances (a tighter threshold)
        distances = fitted.distance(e)
    return replace(fitted, threshold=float(np.quantile(distances, quantile)), weight=weight)
