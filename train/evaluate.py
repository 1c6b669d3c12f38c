"""Speaker-independent evaluation of the bundle's networks under a protocol (train/protocols.py).

For each fold: train on the fold's training rows (adapted per speaker, augmented, loss masked to
each corpus's labels), predict the test rows as `ser-live` would meet them (causal per-speaker
adaptation in a random utterance order; and each test variant, and each clip alone), score in
the protocol's label space. A fold's predictions are cached on disk, keyed by everything that
decides them (clips, features, configs, protocol, code version), so an interrupted or repeated
run reuses every fold that did not change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ser.adaptation import (
    AdaptationPrior,
    HistoryGate,
    adapt_in_order,
    adapt_sessions,
    gate_in_order,
    stream_orders,
)
from ser.features import FEATURE_SPEC
from ser.labels import LABELS
from ser.scoring import apply_temperature, combine
from ser_train.calibration import (
    ece_sampling_floor,
    expected_calibration_error,
    fit_temperature,
    uncertainty_threshold,
)
from ser_train.cnn import CnnConfig, Mels, TrainedCnn
from ser_train.dataset import Dataset
from ser_train.metrics import mean_std, scores_of_probabilities
from ser_train.protocols import Fold, Protocol
from ser_train.robustness import TEST_VARIANTS
from ser_train.sessions import DRAW, SESSION_KINDS, Session, draw_sessions, training_sessions

logger = logging.getLogger(__name__)

N_ORDERS = 3  # random utterance orders per training speaker when simulating adaptation
FOLD_CACHE_VERSION = 2  # bump when the training or prediction code changes what a fold yields


def default_fold_cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "ser" / "folds"


def adapted_training_set(
    features: dict[str, np.ndarray],
    y: np.ndarray,
    speakers: np.ndarray,
    prior: AdaptationPrior | None,
    seed: int,
    *,
    augment: tuple[str, ...] = (),
    label_mask: np.ndarray | None = None,
    concentration: float = 0.0,
    first_copies: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Training features as the model will meet them live: adapted causally per speaker, the
    clean clips in N_ORDERS random orders, each `augment` variant (noisy, reverberant, channel
    or speed-changed copies of the training audio) in one more (prior None: unadapted, once
    each). `concentration` > 0: every copy but each third is cut into sessions whose emotion
    mix is drawn from a Dirichlet(concentration) (train/sessions.py `training_sessions`), so
    held and skewed sessions are common; 0: every copy is one balanced session per speaker.
    `first_copies` > 0: that many more clean copies with every clip adapted as a stream's first
    utterance (no history), so the networks also learn to read an utterance alone.
    Returns features, labels, the speaker of each row and its label mask (if given)."""
    sets = [("clean", r) for r in range(N_ORDERS if prior is not None else 1)]
    sets += [(variant, N_ORDERS + k) for k, variant in enumerate(augment)]
    if prior is not None:
        sets += [("first", N_ORDERS + len(augment) + k) for k in range(first_copies)]
    xs, order = [], []
    for variant, r in sets:
        rng = np.random.default_rng(seed + r)
        if variant == "first" and prior is not None:  # every clip its own stream
            clips = np.arange(len(y))
            xs.append(adapt_in_order(features["clean"], clips, prior, rng))
            order.append(clips)
        elif prior is None:
            xs.append(features[variant])
            order.append(np.arange(len(y)))
        elif concentration > 0 and r % 3:
            sessions = training_sessions(y, speakers, rng, concentration)
            xs.append(adapt_sessions(features[variant], sessions, prior))
            order.append(np.concatenate(sessions))
        else:
            xs.append(adapt_in_order(features[variant], speakers, prior, rng))
            order.append(np.arange(len(y)))
    rows = np.concatenate(order)
    mask = None if label_mask is None else label_mask[rows]
    return np.concatenate(xs), y[rows], speakers[rows], mask


def adapted_test_set(
    x: np.ndarray, speakers: np.ndarray, prior: AdaptationPrior | None, seed: int
) -> np.ndarray:
    """Test features adapted per held-out speaker in one random order (causal, as live)."""
    if prior is None:
        return x
    return adapt_in_order(x, speakers, prior, np.random.default_rng(seed))


def _rows(seqs: Mels, keep: np.ndarray) -> Mels:
    """The sequences where the boolean mask `keep` is true."""
    return [m for m, k in zip(seqs, keep, strict=True) if k]


@dataclass(frozen=True)
class FoldModels:
    """One fold's trained networks and the statistics model's adaptation prior."""

    stats: Any  # None: the setup has no statistics network (`Setup.statistics`)
    prior: AdaptationPrior | None
    cnn: TrainedCnn | None = None
    frames: int = 0
    head: Any = None  # the network over encoder embeddings, when the setup has one
    head_prior: AdaptationPrior | None = None
    combine: str = "mean"  # how `parts` become one (streamer.scoring.COMBINE_RULES)

    def parts(
        self,
        features: np.ndarray,
        mels: Mels | None,
        streams: np.ndarray,
        order: int,
        embeddings: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Each network's (n, n_labels) probabilities for test clips, adapted per stream in
        the order rng(order) draws: "stats", and "cnn" and "encoder" where trained."""
        from ser_train.cnn import predict_cnn
        from ser_train.model import predict

        parts = {}
        if self.stats is not None:
            adapted_stats = adapted_test_set(features, streams, self.prior, order)
            parts["stats"] = predict(self.stats, adapted_stats)
        if self.cnn is not None and mels is not None:
            parts["cnn"] = predict_cnn(self.cnn, mels, streams, order, self.frames)
        if self.head is not None and embeddings is not None:
            adapted = adapted_test_set(embeddings, streams, self.head_prior, order)
            parts["encoder"] = predict(self.head, adapted)
        return parts

    def session_probs(
        self, data: Dataset, sessions: list[Session], variant: str = "clean"
    ) -> np.ndarray:
        """(sum of session lengths, n_labels) probabilities of the sessions' utterances, each
        session one live stream with a fresh history (train/sessions.py), every network's
        adaptation (statistics, log-mel centring, embeddings) simulated as live runs it."""
        from ser_train.cnn import predict_cnn_sessions
        from ser_train.model import predict

        rows = [s.rows for s in sessions]
        x = data.features[variant]
        parts = []
        if self.stats is not None:
            parts.append(predict(self.stats, _adapt_or_take(x, rows, self.prior)))
        if self.cnn is not None and data.mels is not None:
            parts.append(predict_cnn_sessions(self.cnn, data.mels[variant], rows, self.frames))
        if self.head is not None and data.embeddings is not None:
            e = data.embeddings[variant]
            parts.append(predict(self.head, _adapt_or_take(e, rows, self.head_prior)))
        return combine(parts, self.combine)

    def probs(
        self,
        features: np.ndarray,
        mels: Mels | None,
        streams: np.ndarray,
        order: int,
        embeddings: np.ndarray | None = None,
    ) -> np.ndarray:
        """The bundle's output before calibration: `parts` combined."""
        parts = self.parts(features, mels, streams, order, embeddings)
        return combine(list(parts.values()), self.combine)


def _adapt_or_take(
    x: np.ndarray, sessions: list[np.ndarray], prior: AdaptationPrior | None
) -> np.ndarray:
    """The sessions' network inputs: adapted as live, or the rows as they are (no prior)."""
    if prior is None:
        return x[np.concatenate(sessions)] if sessions else x[:0]
    return adapt_sessions(x, sessions, prior)


@dataclass(frozen=True)
class Setup:
    """Everything besides the data that decides a fold's predictions."""

    config: Any  # train.model.TrainConfig
    cnn: CnnConfig | None
    adapt: bool
    augment: tuple[str, ...]
    # the loss sees only the labels of each row's corpus (False: the plain loss, for comparison)
    mask_labels: bool = True
    # the statistics network weighs each corpus equally (rows of a corpus with fewer clips count
    # more), instead of each clip equally
    balance_corpora: bool = False
    # the network over encoder embeddings (train.model.TrainConfig) and what it reads
    head: Any = None
    encoder: dict[str, Any] | None = None  # {"sha256": encoder file, "layers": [...]}
    # how the networks' probabilities become one (streamer.scoring.COMBINE_RULES)
    combine: str = "mean"
    # a network over the utterance statistics beside the others (False: the encoder's head
    # alone, so that live feature workers compute no statistics; needs `head`)
    statistics: bool = True
    # what the networks read (streamer.adaptation.INPUTS) and the Dirichlet concentration of
    # the training sessions' emotion mix (0: balanced sessions only)
    inputs: str = "z"
    concentration: float = 0.0
    # clean training copies with every clip adapted as a stream's first utterance (0: none)
    first_copies: int = 0
    # also train a network on the unadapted inputs to read each utterance alone (a stream's
    # first, and what the history gate weighs the speaker-adapted reading against: the head
    # over the encoder's embedding where there is one, else the statistics network). Not in
    # `to_dict`: its folds are `alone_setup()`'s, cached under that setup's fold key
    alone: bool = False

    def alone_setup(self) -> Setup:
        """The setup of the networks that read an utterance alone: no adaptation, no CNN, and
        the plain loss. Unadapted features tell the corpora apart, so a loss masked to each
        corpus's labels lets these networks say "calm" at no cost to voices like a corpus that
        has no calm (measured: 40 % of nEMO's held-out clips called calm, 29.7 % accuracy on
        its fold 1); the plain loss teaches them it does not occur there."""
        return replace(
            self,
            cnn=None,
            adapt=False,
            inputs="z",
            concentration=0.0,
            alone=False,
            mask_labels=False,
            first_copies=0,
        )

    @property
    def has_alone(self) -> bool:
        """Whether this setup trains an alone network beside its speaker-adapted ones."""
        return self.alone and self.adapt and self.cnn is None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "config": self.config.to_dict(),
            "cnn": self.cnn.to_dict() if self.cnn is not None else None,
            "adapt": self.adapt,
            "augment": list(self.augment),
            "mask_labels": self.mask_labels,
        } | ({"balance_corpora": True} if self.balance_corpora else {})
        out |= {"combine": self.combine} if self.combine != "mean" else {}
        out |= {} if self.statistics else {"statistics": False}
        out |= {"inputs": self.inputs} if self.inputs != "z" else {}
        out |= {"concentration": self.concentration} if self.concentration else {}
        out |= {"first_copies": self.first_copies} if self.first_copies else {}
        if self.head is not None:
            out |= {"head": self.head.to_dict(), "encoder": self.encoder}
        return out

    def label_mask(self, data: Dataset) -> np.ndarray | None:
        return data.label_mask if self.mask_labels else None

    def epochs_per_fold(self) -> int:
        stats = int(self.config.epochs) * int(self.config.ensemble) if self.statistics else 0
        head = int(self.head.epochs) * int(self.head.ensemble) if self.head is not None else 0
        alone = self.alone_setup().epochs_per_fold() if self.has_alone else 0
        return stats + head + (self.cnn.epochs if self.cnn else 0) + alone


def train_fold(
    data: Dataset, fold: Fold, setup: Setup, on_epoch: Callable[[int], None] | None
) -> FoldModels:
    """Every network of the setup trained on `fold.train` rows."""
    from ser_train.cnn import fit_cnn

    train = fold.train
    full_mask = setup.label_mask(data)
    mask = None if full_mask is None else full_mask[train]
    dense = partial(fit_dense, data=data, train=train, setup=setup, mask=mask, on_epoch=on_epoch)
    model, prior = dense(data.features, config=setup.config) if setup.statistics else (None, None)
    cnn = None
    if data.mels is not None and setup.cnn is not None:
        cnn = fit_cnn(
            {v: _rows(ms, train) for v, ms in data.mels.items()},
            data.y[train],
            data.speakers[train],
            len(LABELS),
            setup.cnn,
            adapt=setup.adapt,
            augment=setup.augment,
            on_epoch=on_epoch,
            label_mask=mask,
        )
    head, head_prior = None, None
    if data.embeddings is not None and setup.head is not None:
        head, head_prior = dense(data.embeddings, config=setup.head)
    frames = setup.cnn.frames if setup.cnn else 0
    return FoldModels(model, prior, cnn, frames, head, head_prior, setup.combine)


def fit_dense(
    inputs: dict[str, np.ndarray],
    *,
    data: Dataset,
    config: Any,
    train: np.ndarray,
    setup: Setup,
    mask: np.ndarray | None,
    on_epoch: Callable[[int], None] | None,
) -> tuple[Any, AdaptationPrior | None]:
    """A dense network (train.model, `config`) over per-variant (n, dim) `inputs` (the
    statistics, or the encoder embeddings), trained on `train` rows: adapted per speaker as live,
    augmented, loss masked to each corpus's labels, corpora weighted as the setup says."""
    from ser_train.model import fit

    prior = (
        AdaptationPrior.from_features(inputs["clean"][train], inputs=setup.inputs)
        if setup.adapt
        else None
    )
    x, y, speakers, rows_mask = adapted_training_set(
        {name: rows[train] for name, rows in inputs.items()},
        data.y[train],
        data.speakers[train],
        prior,
        config.seed,
        augment=setup.augment,
        label_mask=mask,
        concentration=setup.concentration,
        first_copies=setup.first_copies,
    )
    model = fit(
        x,
        y,
        len(LABELS),
        config,
        on_epoch=on_epoch,
        speakers=speakers,
        label_mask=rows_mask,
        sample_weight=corpus_weights(speakers) if setup.balance_corpora else None,
    )
    return model, prior


def corpus_weights(speakers: np.ndarray) -> np.ndarray:
    """(n,) weights from speaker keys ("nemo:EB0"): every corpus sums to the same total, and the
    weights average 1."""
    corpus = np.array([str(s).split(":", 1)[0] for s in speakers])
    names, counts = np.unique(corpus, return_counts=True)
    per_row = {name: len(corpus) / (len(names) * n) for name, n in zip(names, counts, strict=True)}
    return np.array([per_row[c] for c in corpus], dtype=np.float64)


def predict_fold(
    data: Dataset, fold: Fold, models: FoldModels, order_seed: int
) -> dict[str, np.ndarray]:
    """(n_test, len(LABELS)) probabilities: "clean", each network alone ("component:stats",
    "component:cnn", "component:encoder" when there are several), each test variant
    ("variant:snr10", ...) and "variant:first_utterance" (each clip alone, no speaker
    history)."""
    test = fold.test
    speakers = data.speakers[test]
    mels = {v: _rows(ms, test) for v, ms in data.mels.items()} if data.mels is not None else {}
    emb = {v: e[test] for v, e in data.embeddings.items()} if data.embeddings is not None else {}
    clean = data.features["clean"][test]
    parts = models.parts(clean, mels.get("clean"), speakers, order_seed, emb.get("clean"))
    out = {"clean": combine(list(parts.values()), models.combine)}
    if len(parts) > 1:
        out |= {f"component:{n}": np.asarray(p, np.float32) for n, p in parts.items()}
    for name, feats in data.features.items():
        if name in TEST_VARIANTS:
            out[f"variant:{name}"] = models.probs(
                feats[test], mels.get(name), speakers, order_seed, emb.get(name)
            )
    if models.prior is not None or models.head_prior is not None:  # speaker-adapted
        alone = np.arange(int(test.sum()))
        out["variant:first_utterance"] = models.probs(
            clean, mels.get("clean"), alone, 0, emb.get("clean")
        )
    for kind in SESSION_KINDS:
        sessions = draw_sessions(kind, test, data.y, data.speakers, order_seed)
        if sessions:
            out[f"session:{kind}"] = models.session_probs(data, sessions)
            out[f"rows:{kind}"] = np.concatenate([s.rows for s in sessions])
    return out


def fold_key(data: Dataset, protocol: Protocol, fold: Fold, setup: Setup) -> str:
    """Content key of a fold's predictions (see the module docstring)."""
    material = {
        "version": FOLD_CACHE_VERSION,
        "protocol": protocol.name,
        "fold": fold.number,
        "train": data.fingerprint(fold.train),
        "test": data.fingerprint(fold.test),
        "features": FEATURE_SPEC.digest(),
        "variants": sorted(data.features),
        "mels": data.mels is not None,
        "setup": setup.to_dict(),
    } | ({"embeddings": sorted(data.embeddings)} if data.embeddings is not None else {})
    if setup.cnn is not None:  # a CNN's folds cached before its sessions were simulated lack them
        material["cnn_sessions"] = True
    if "vadview" in data.features:  # its statistics once read the whole cut; now the head
        material["vadview_statistics"] = "head"
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


# per session kind: accuracy and unweighted accuracy of its utterances, the accuracy of the
# same utterances each alone (no history), and the change history makes (accuracy - alone)
SESSION_SCORES = ("accuracy", "unweighted_accuracy", "alone", "change")


def gate_predictions(
    predictions: dict[str, np.ndarray],
    data: Dataset,
    fold: Fold,
    order_seed: int,
    gate: HistoryGate,
) -> dict[str, np.ndarray]:
    """A fold's predictions with the bundle's history gate applied as live applies it: each
    reading with history mixed with the same utterance's alone reading ("variant:
    first_utterance"), per stream in utterance order: the protocol's own per-speaker orders
    ("clean") and every drawn session ("session:KIND"). The ungated clean readings stay under
    "ungated:clean" (calibration and the check that cached folds are the same models use
    them). Noise and channel variants stay ungated (no alone reading of them is kept)."""
    if "variant:first_utterance" not in predictions:
        return predictions
    out = dict(predictions)
    speakers = data.speakers[fold.test]
    orders = [rows for _, rows in stream_orders(speakers, np.random.default_rng(order_seed))]
    out["ungated:clean"] = predictions["clean"]
    out["clean"] = gate_in_order(
        predictions["clean"], predictions["variant:first_utterance"], orders, gate
    )
    if "session:first" not in predictions:
        return out
    alone = dict(zip(predictions["rows:first"].tolist(), predictions["session:first"], strict=True))
    for kind in SESSION_KINDS:
        if kind == "first" or f"session:{kind}" not in predictions:
            continue
        rows = predictions[f"rows:{kind}"]
        lengths = [
            len(s.rows) for s in draw_sessions(kind, fold.test, data.y, data.speakers, order_seed)
        ]
        starts = np.cumsum([0, *lengths[:-1]])
        streams = [np.arange(a, a + n) for a, n in zip(starts, lengths, strict=True)]
        alone_rows = np.stack([alone[int(r)] for r in rows])
        out[f"session:{kind}"] = gate_in_order(
            predictions[f"session:{kind}"], alone_rows, streams, gate
        )
    return out


def session_scores(
    predictions: dict[str, np.ndarray], y: np.ndarray, protocol: Protocol
) -> dict[str, dict[str, float]]:
    """`SESSION_SCORES` of each session kind a fold's predictions hold ("session:KIND"
    probabilities of the rows "rows:KIND"), in the protocol's label space; {} without them."""
    if "session:first" not in predictions:
        return {}
    alone = dict(zip(predictions["rows:first"].tolist(), predictions["session:first"], strict=True))
    out = {}
    for kind in SESSION_KINDS:
        if f"session:{kind}" not in predictions:
            continue
        rows = predictions[f"rows:{kind}"]
        labels, probs = protocol.scored(y[rows], predictions[f"session:{kind}"])
        _, probs_alone = protocol.scored(y[rows], np.stack([alone[int(r)] for r in rows]))
        got = scores_of_probabilities(labels, probs, protocol.scored_labels)
        hit_alone = float((probs_alone.argmax(1) == labels).mean())
        out[kind] = {
            "accuracy": got["accuracy"],
            "unweighted_accuracy": got["unweighted_accuracy"],
            "alone": hit_alone,
            "change": got["accuracy"] - hit_alone,
            "utterances": len(rows),
        }
    return out


@dataclass(frozen=True)
class AloneMix:
    """How an alone network's reading joins the speaker-adapted networks' reading of an
    utterance alone: geometric mix with `weight` on the alone network, where the recording is
    familiar (`familiar`: ser.familiar, fitted on each fold's training clips; the threshold at
    `quantile` of held-out training speakers' distances), else everywhere. Post-processing of
    cached folds, like the history gate: not part of any fold key."""

    weight: float = 0.5
    familiar: bool = True
    quantile: float = 0.95

    def weights(
        self, data: Dataset, fold: Fold, memo: dict[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """(n_test,) the alone network's weight per test clip of `fold`. `memo`: the fold's
        familiar clips kept under this mix's judgement (the weight only scales them), so a
        second mix of the same fold fits nothing again."""
        n = int(fold.test.sum())
        if not self.familiar:
            return np.full(n, self.weight)
        key = f"familiar:{self.quantile!r}"
        familiar = memo.get(key) if memo is not None else None
        if familiar is None:
            familiar = self._familiar(data, fold)
            if memo is not None:
                memo[key] = familiar
        return np.where(familiar, self.weight, 0.0)

    def _familiar(self, data: Dataset, fold: Fold) -> np.ndarray:
        """(n_test,) bool: the test clips of `fold` within what its training speakers' held-out
        clips look like (ser.familiar)."""
        if data.embeddings is None:
            raise ValueError("familiar recordings are judged on the encoder's embedding")
        from ser_train.familiar import fit_familiarity

        embeddings = data.embeddings["clean"]
        familiarity = fit_familiarity(
            embeddings[fold.train],
            data.speakers[fold.train],
            1.0,
            self.quantile,
            seed=fold.number,
        )
        return np.asarray(familiarity.alone_weight(embeddings[fold.test]) > 0)

    def to_dict(self) -> dict[str, Any]:
        return {"weight": self.weight, "familiar": self.familiar, "quantile": self.quantile}


def mix_rows(alone: np.ndarray, adapted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Row-wise `mix_geometric`: alone^w * adapted^(1 - w), renormalised; (n, k) float32."""
    w = np.asarray(weights, dtype=np.float64)[:, None]
    log = w * np.log(np.clip(alone, 1e-7, 1.0)) + (1 - w) * np.log(np.clip(adapted, 1e-7, 1.0))
    e = np.exp(log - log.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float32)


def calibrated_readings(
    predictions: dict[str, np.ndarray], temperature: float, *, components: bool = False
) -> dict[str, np.ndarray]:
    """A fold's predictions as live reads them: every reading calibrated with `temperature`
    (`apply_temperature`); the row indices ("rows:") as they are, and each network's own
    reading ("component:") too unless `components` (an alone network's predictions: its
    encoder head's component is the alone reading, `with_alone_readings`). Live calibrates
    each reading before it mixes an alone reading or gates the history
    (streamer/classifier.py); argmax of a reading alone does not change, of a mix it may."""
    if temperature == 1.0:
        return predictions
    kept = ("rows:",) if components else ("rows:", "component:")
    return {
        key: value if key.startswith(kept) else apply_temperature(value, temperature)
        for key, value in predictions.items()
    }


def with_alone_readings(
    predictions: dict[str, np.ndarray],
    alone: dict[str, np.ndarray],
    test: np.ndarray,
    weights: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """A fold's predictions with each utterance's alone reading taken from the alone network
    (`alone`: the same fold's predictions by `Setup.alone_setup()`; `test`: the fold's boolean
    test mask): its encoder head where it has one, else its statistics network; with
    `weights` ((n_test,), `AloneMix.weights`) mixed with the speaker-adapted networks' own
    reading of each clip alone, as live mixes them (None: the alone network's alone). The
    "variant:first_utterance" and "first" sessions become that reading; the speaker-adapted
    networks' own reading of each clip alone stays under "variant:first_adapted", the alone
    network's under "variant:alone_network"."""
    network = alone.get("component:encoder", alone["clean"])
    out = dict(predictions)
    adapted = predictions.get("variant:first_utterance")
    if adapted is not None:
        out["variant:first_adapted"] = adapted
    reading = network if weights is None or adapted is None else mix_rows(network, adapted, weights)
    out["variant:alone_network"] = network
    out["variant:first_utterance"] = reading
    if "rows:first" in predictions:  # each clip alone: no history, so its clean reading
        position = {int(r): j for j, r in enumerate(np.flatnonzero(test))}
        out["session:first"] = reading[[position[int(r)] for r in predictions["rows:first"]]]
    return out


def _dtype_of(key: str) -> type:
    """What a fold cache entry's array holds: row indices ("rows:KIND") or probabilities."""
    return np.intp if key.startswith("rows:") else np.float32


def _load_cached(path: Path, n_test: int) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            out: dict[str, np.ndarray] = {
                key: np.asarray(stored[key], dtype=_dtype_of(key)) for key in stored.files
            }
    except (OSError, ValueError, KeyError):
        logger.warning("ignoring unreadable fold cache entry %s", path)
        return None
    per_clip = [v for k, v in out.items() if not k.startswith(("rows:", "session:"))]
    if "clean" not in out or any(v.shape != (n_test, len(LABELS)) for v in per_clip):
        return None
    return out


def _save_cached(path: Path, predictions: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **predictions)  # type: ignore[arg-type]
    tmp.replace(path)


def _fold_predictions(
    data: Dataset,
    protocol: Protocol,
    fold: Fold,
    setup: Setup,
    *,
    cache_dir: Path | None,
    on_epoch: Callable[[int], None] | None,
    memo: dict[str, dict[str, np.ndarray]] | None = None,
) -> tuple[dict[str, np.ndarray], bool]:
    """`setup`'s predictions of `fold` (`predict_fold`) from `memo` or the cache, or trained
    and cached; and whether they came from the cache (or `memo`)."""
    key = fold_key(data, protocol, fold, setup)
    if memo is not None and key in memo:
        return memo[key], True
    path = _fold_path(cache_dir, key)
    predictions = _load_cached(path, int(fold.test.sum())) if path is not None else None
    cached = predictions is not None
    if predictions is None:
        models = train_fold(data, fold, setup, on_epoch)
        # fold i (0-based) tests in the utterance order seed + 1000 + i, as before corpora
        order_seed = setup.config.seed + 1000 + fold.number - 1
        predictions = predict_fold(data, fold, models, order_seed)
        if path is not None:
            _save_cached(path, predictions)
    if memo is not None:
        memo[key] = predictions
    return predictions, cached


def _fold_path(cache_dir: Path | None, key: str) -> Path | None:
    return cache_dir / key[:2] / f"{key}.npz" if cache_dir is not None else None


def folds_to_train(
    data: Dataset, protocols: Sequence[Protocol], setup: Setup, cache_dir: Path | None
) -> int:
    """How many fold trainings `evaluate_protocol` will run for `protocols`: those of `setup`
    (and of its alone network) not in the fold cache."""
    setups = [setup, setup.alone_setup()] if setup.has_alone else [setup]
    paths = (
        _fold_path(cache_dir, fold_key(data, protocol, fold, one))
        for protocol in protocols
        for fold in protocol.folds(data.corpus, data.speakers, data.y)
        for one in setups
    )
    return sum(path is None or not path.is_file() for path in paths)


def evaluate_protocol(
    data: Dataset,
    protocol: Protocol,
    setup: Setup,
    *,
    cache_dir: Path | None,
    on_epoch: Callable[[int], None] | None = None,
    on_fold: Callable[[Fold, bool], None] | None = None,
    gate: HistoryGate | None = None,
    alone_mix: AloneMix | None = None,
    temperatures: tuple[float, float] | None = None,
    memo: dict[str, dict[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Train and test once per fold of `protocol`; `on_fold(fold, cached)` after each.
    `alone_mix`: how an alone network's reading is mixed (None: it stands alone).
    `temperatures`: (the bundle's, its alone network's) calibration temperatures, applied to
    each reading before the alone mix and the history gate, as live applies them
    (`calibrated_readings`); None: the networks' own readings are mixed and gated. `memo`:
    fold predictions by fold key, kept across calls (a second pass over the same folds trains
    and loads nothing).
    Returns the evaluation (JSON-able) with its out-of-fold 8-label probabilities under
    "_oof" (rows where "_fold" >= 0), which the caller pools for calibration."""
    started = time.perf_counter()
    folds = protocol.folds(data.corpus, data.speakers, data.y)
    if not folds:
        raise ValueError(f"protocol {protocol.name}: no fold has both training and test speakers")
    oof = np.zeros((len(data.y), len(LABELS)), dtype=np.float32)
    oof_alone = np.zeros_like(oof) if setup.has_alone else None  # the alone network's
    components: dict[str, np.ndarray] = {}  # each network alone, out of fold
    fold_of = np.full(len(data.y), -1)
    results: list[dict[str, Any]] = []
    n_cached = 0
    for fold in folds:
        predictions, cached = _fold_predictions(
            data, protocol, fold, setup, cache_dir=cache_dir, on_epoch=on_epoch, memo=memo
        )
        weights = None
        if temperatures is not None:
            predictions = calibrated_readings(predictions, temperatures[0])
        if setup.has_alone:
            alone, _ = _fold_predictions(
                data,
                protocol,
                fold,
                setup.alone_setup(),
                cache_dir=cache_dir,
                on_epoch=on_epoch,
                memo=memo,
            )
            if temperatures is not None:
                alone = calibrated_readings(alone, temperatures[1], components=True)
            kept = None  # the fold's familiar clips, beside its predictions in `memo` (one
            if memo is not None:  # run's memo: one data set, so protocol and fold name it)
                kept = memo.setdefault(f"mix:{protocol.name}:{fold.number}", {})
            weights = alone_mix.weights(data, fold, kept) if alone_mix is not None else None
            predictions = with_alone_readings(predictions, alone, fold.test, weights)
        n_cached += cached
        if gate is not None and setup.adapt:  # after the cache: the gate is post-processing
            seed = setup.config.seed + 1000 + fold.number - 1
            predictions = gate_predictions(predictions, data, fold, seed, gate)
        y = data.y[fold.test]
        # calibration is fitted on the networks' own readings (it is applied before the gate)
        oof[fold.test] = predictions.get("ungated:clean", predictions["clean"])
        if oof_alone is not None:
            oof_alone[fold.test] = predictions["variant:alone_network"]
        for k, v in predictions.items():
            if k.startswith("component:"):
                name = k.split(":", 1)[1]
                components.setdefault(name, np.zeros_like(oof))[fold.test] = v
        fold_of[fold.test] = fold.number

        def scores(probs: np.ndarray, y: np.ndarray = y) -> dict[str, Any]:
            labels, scored = protocol.scored(y, probs)
            return scores_of_probabilities(labels, scored, protocol.scored_labels)

        results.append(
            {
                "fold": fold.number,
                "test_speakers": list(fold.test_speakers),
                "n_train": int(fold.train.sum()),
                "scores": scores(predictions["clean"]),
                **(
                    {"ungated_scores": scores(predictions["ungated:clean"])}
                    if "ungated:clean" in predictions
                    else {}
                ),
                "variant_accuracy": {
                    k.split(":", 1)[1]: scores(v)["accuracy"]
                    for k, v in predictions.items()
                    if k.startswith("variant:")
                },
                "component_accuracy": {
                    k.split(":", 1)[1]: scores(v)["accuracy"]
                    for k, v in predictions.items()
                    if k.startswith("component:")
                },
                "sessions": session_scores(predictions, data.y, protocol),
                # the test clips the alone network had a share in (familiar recordings)
                **({"alone_share": float((weights > 0).mean())} if weights is not None else {}),
            }
        )
        if on_fold is not None:
            on_fold(fold, cached)
    summary: dict[str, Any] = {
        key: mean_std([r["scores"][key] for r in results])
        for key in ("accuracy", "unweighted_accuracy", "macro_f1")
    }
    summary["recall"] = {
        label: mean_std([r["scores"]["recall"][label] for r in results])
        for label in protocol.scored_labels
    }
    for group in ("variant_accuracy", "component_accuracy"):
        summary[group] = {
            name: mean_std([r[group][name] for r in results]) for name in results[0][group]
        }
    if all("alone_share" in r for r in results):
        summary["alone_share"] = mean_std([r["alone_share"] for r in results])
    if all("ungated_scores" in r for r in results):  # what the networks alone gave
        summary["ungated_accuracy"] = mean_std([r["ungated_scores"]["accuracy"] for r in results])
    summary["sessions"] = {
        kind: {
            key: mean_std([r["sessions"][kind][key] for r in results if kind in r["sessions"]])
            for key in SESSION_SCORES
        }
        for kind in SESSION_KINDS
        if any(kind in r["sessions"] for r in results)
    }
    evaluated = fold_of >= 0
    labels, scored = protocol.scored(data.y[evaluated], oof[evaluated])
    return {
        "protocol": protocol.name,
        "title": protocol.title
        if len(folds) == protocol.fold_count()
        else (
            f"{protocol.title}: {len(folds)} of {protocol.fold_count()} folds, "
            f"{len({s for f in folds for s in f.test_speakers})} test speakers"
        ),
        "adaptation": (
            f"causal per-speaker (network inputs: {setup.inputs}; training sessions: "
            + (
                f"Dirichlet({setup.concentration:g}) emotion mixes in every copy but each third)"
                if setup.concentration
                else "balanced)"
            )
            + (
                f"; history gate {gate.low:g}-{gate.high:g} effective emotions, warm-up "
                f"{gate.warmup:g}"
                if gate is not None
                else ""
            )
            + ("; utterances alone read by an unadapted network" if setup.has_alone else "")
            + (
                f" (weight {alone_mix.weight:g}"
                + (", where the recording is familiar)" if alone_mix.familiar else ")")
                if setup.has_alone and alone_mix is not None
                else ""
            )
            if setup.adapt
            else "none"
        ),
        "sessions_drawn": DRAW,
        "train_corpora": list(protocol.train_corpora or data.corpora),
        "folds_evaluated": len(results),
        "folds_total": protocol.fold_count(),
        "folds_from_cache": n_cached,
        "labels": list(protocol.scored_labels),
        "folds": results,
        "summary": summary,
        "pooled": scores_of_probabilities(labels, scored, protocol.scored_labels),
        "seconds": round(time.perf_counter() - started, 1),
        "_oof": oof[evaluated],
        **({"_oof_alone": oof_alone[evaluated]} if oof_alone is not None else {}),
        "_components": {name: p[evaluated] for name, p in components.items()},
        "_y": data.y[evaluated],
        "_fold": fold_of[evaluated],
    }


def calibrate(probs: np.ndarray, y: np.ndarray, fold_of: np.ndarray) -> dict[str, Any]:
    """Temperature scaling on out-of-fold predictions. ECE per fold uses a T fitted on the
    other folds only; the bundle's T is fitted on all out-of-fold predictions, and applied only
    when those cross-fitted temperatures lower the pooled held-out ECE (T minimises NLL, which
    can leave a recipe's confidences worse calibrated than they were; then T = 1)."""
    before, fitted_after, floor = [], [], []
    cross_fitted = probs.copy()
    for fold in np.unique(fold_of):
        held = fold_of == fold
        before.append(expected_calibration_error(probs[held], y[held]))
        if (~held).any():
            t = fit_temperature(probs[~held], y[~held])
            cross_fitted[held] = apply_temperature(probs[held], t)
            fitted_after.append(expected_calibration_error(cross_fitted[held], y[held]))
    ece_before_pooled = expected_calibration_error(probs, y)
    ece_fitted_pooled = expected_calibration_error(cross_fitted, y) if fitted_after else None
    fitted = fit_temperature(probs, y)
    applied = ece_fitted_pooled is not None and ece_fitted_pooled <= ece_before_pooled
    calibrated = cross_fitted if applied else probs
    after = fitted_after if applied else before if fitted_after else []
    for fold in np.unique(fold_of):
        if after:
            floor.append(ece_sampling_floor(calibrated[fold_of == fold]))
    method = "temperature scaling on out-of-fold predictions (ECE: 15 bins, top label)"
    if fitted_after and not applied:
        method += (
            f"; not applied: the temperatures fitted on the other folds raised the pooled "
            f"held-out ECE ({ece_before_pooled:.3f} -> {ece_fitted_pooled:.3f}), so T = 1"
        )
    return {
        "method": method,
        "temperature": fitted if applied else 1.0,
        # the NLL-fitted T and the pooled held-out ECE it gives (cross-fitted), applied or not
        "temperature_fitted": fitted,
        "ece_fitted_pooled": ece_fitted_pooled,
        "ece_before": mean_std(before),
        "ece_after": mean_std(after) if after else None,
        # over all out-of-fold predictions at once (each calibrated with its other folds' T):
        # less small-sample noise than per fold (240 clips)
        "ece_before_pooled": ece_before_pooled,
        "ece_after_pooled": expected_calibration_error(calibrated, y) if after else None,
        # the mean ECE a perfectly calibrated model with the same confidences scores on as
        # many clips (small-sample noise alone): an ECE near these is as good as can be shown
        "ece_floor": mean_std(floor) if floor else None,
        "ece_floor_pooled": ece_sampling_floor(calibrated) if after else None,
        # `ser-live`'s default pipeline.min_confidence, from the held-out calibrated predictions
        "uncertainty": uncertainty_threshold(calibrated, y),
    }


def as_live_reads(
    first: dict[str, Any], second: dict[str, Any], temperatures: tuple[float, float]
) -> dict[str, Any]:
    """A protocol's evaluation scored as live reads it (`second`: `evaluate_protocol` with
    `temperatures`), with what the first pass measured and the second cannot: its out-of-fold
    readings before calibration (what calibration and `compare_combinations` are fitted on),
    the folds taken from the cache and the time taken."""
    out = dict(second)
    for key in ("_oof", "_oof_alone", "_components", "folds_from_cache", "seconds"):
        if key in first:
            out[key] = first[key]
    out["readings_calibrated"] = {
        "temperature": temperatures[0],
        "alone_temperature": temperatures[1],
        "applied": "to each reading before the alone mix and the history gate, as live does",
    }
    return out


def calibrate_protocols(
    evaluations: Sequence[dict[str, Any]], key: str = "_oof"
) -> dict[str, Any] | None:
    """`calibrate` over the pooled out-of-fold predictions (`key`: "_oof" the bundle's
    networks', "_oof_alone" its alone network's) of the in-corpus protocols (the 8-label ones:
    every clip is held out once there); None when none ran."""
    pooled = [e for e in evaluations if e["labels"] == list(LABELS) and key in e]
    if not pooled:
        return None
    probs = np.concatenate([e[key] for e in pooled])
    y = np.concatenate([e["_y"] for e in pooled])
    fold_of = np.concatenate([e["_fold"] + 100 * i for i, e in enumerate(pooled)])
    result = calibrate(probs, y, fold_of)
    result["protocols"] = [e["protocol"] for e in pooled]
    return result


# weights of the second network in the weighted means `compare_combinations` also tries
COMPARED_WEIGHTS = (0.67, 0.75)


def compare_combinations(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """How else the networks' out-of-fold predictions of an in-corpus protocol (8 labels) could
    have been combined: each network alone, the mean, weighted means (`COMPARED_WEIGHTS` on the
    second network) and the geometric mean; for each, the accuracy (mean over folds) and
    `calibrate`'s temperature and pooled ECE before / after. Offline, from the same folds: a
    choice made on these rows is made on the test folds (say so where it is reported). Empty
    when the protocol is cross-corpus or the bundle has one network."""
    parts = evaluation.get("_components", {})
    if evaluation["labels"] != list(LABELS) or len(parts) < 2:
        return []
    y, fold_of = evaluation["_y"], evaluation["_fold"]
    names = list(parts)
    candidates: list[tuple[str, np.ndarray]] = [(f"{n} alone", parts[n]) for n in names]
    candidates.append(("mean", combine([parts[n] for n in names], "mean")))
    if len(names) == 2:
        first, second = parts[names[0]], parts[names[1]]
        for w in COMPARED_WEIGHTS:
            candidates.append((f"weighted mean, {w:.2f} {names[1]}", (1 - w) * first + w * second))
    candidates.append(("geometric mean", combine([parts[n] for n in names], "geometric")))
    rows = []
    for name, probs in candidates:
        accuracy = mean_std(
            [
                float((probs[fold_of == f].argmax(1) == y[fold_of == f]).mean())
                for f in np.unique(fold_of)
            ]
        )
        cal = calibrate(probs, y, fold_of)
        rows.append(
            {
                "combination": name,
                "accuracy": accuracy["mean"],
                "temperature": cal["temperature_fitted"],
                "ece_before_pooled": cal["ece_before_pooled"],
                "ece_after_pooled": cal["ece_fitted_pooled"],
            }
        )
    return rows


def public(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The evaluation without its arrays (for JSON)."""
    return {k: v for k, v in evaluation.items() if not k.startswith("_")}
