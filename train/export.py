"""The final networks on all data, exported: `.keras` and `.tflite` files and `manifest.json`.

The manifest records labels, the feature spec, every corpus (fingerprint, counts), the training
configuration, adaptation priors, calibration, the speech detector, and each protocol's scores.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ser.adaptation import AdaptationPrior, HistoryGate
from ser.bundle import (
    ALONE_TFLITE_FILE,
    CNN_KERAS_FILE,
    CNN_TFLITE_FILE,
    ENCODER_FILE,
    FORMAT_VERSION,
    HEAD_KERAS_FILE,
    HEAD_TFLITE_FILE,
    KERAS_FILE,
    MANIFEST,
    SPEECH_KERAS_FILE,
    SPEECH_TFLITE_FILE,
    TFLITE_FILE,
)
from ser.familiar import WEIGHT_IN_METHOD
from ser.features import FEATURE_SPEC
from ser.labels import LABELS
from ser_train.dataset import Dataset
from ser_train.evaluate import AloneMix, Setup, train_fold
from ser_train.protocols import Fold

PACKAGES = ("numpy", "soundfile", "soxr", "tensorflow", "keras", "ai-edge-litert")


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def corpora_record(data: Dataset) -> list[dict[str, Any]]:
    """Each corpus as the manifest records it."""
    out = []
    for found in data.scans:
        rows = data.corpus == found.corpus.name
        out.append(
            {
                "name": found.corpus.name,
                "title": found.corpus.title,
                "layout": found.layout,
                "clips": int(rows.sum()),
                "speakers": sorted(
                    {c.speaker for c in data.clips if c.corpus == found.corpus.name}
                ),
                "labels": {
                    label: int(((data.y == i) & rows).sum())
                    for i, label in enumerate(LABELS)
                    if label in found.corpus.labels
                },
                "missing_labels": list(found.corpus.missing_labels),
                "duplicates_dropped": found.duplicates_dropped,
                "fingerprint_sha256": data.fingerprint(rows),
                "licence": found.corpus.licence,
                "citation": found.corpus.citation,
            }
        )
    return out


def evaluation_record(evaluations: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The manifest's "evaluation": the first protocol's summary at the top (what `ser-live`
    shows), and every protocol's summary and per-fold headline scores under "protocols"."""
    if not evaluations:
        return None
    headline = ("accuracy", "unweighted_accuracy", "macro_f1")
    protocols = {
        e["protocol"]: {
            **{
                k: e[k]
                for k in (
                    "title",
                    "adaptation",
                    "sessions_drawn",
                    "train_corpora",
                    "labels",
                    "folds_evaluated",
                    "folds_total",
                    "summary",
                    "seconds",
                )
            },
            "per_fold": [
                {"fold": f["fold"], "test_speakers": f["test_speakers"]}
                | {k: f["scores"][k] for k in headline}
                | (  # the networks' own, before the history gate
                    {"ungated": {k: f["ungated_scores"][k] for k in headline}}
                    if "ungated_scores" in f
                    else {}
                )
                for f in e["folds"]
            ],
        }
        for e in evaluations
    }
    first = evaluations[0]
    return {
        "protocol": first["protocol"],
        "summary": first["summary"],
        "folds_evaluated": first["folds_evaluated"],
        "folds_total": first["folds_total"],
        "protocols": protocols,
    }


@dataclass(frozen=True)
class FinalModels:
    """The final networks (Keras, exportable) and their adaptation priors."""

    stats: Any | None  # None: no statistics network (`Setup.statistics`)
    prior: AdaptationPrior | None
    cnn: Any | None
    cnn_prior: AdaptationPrior | None
    head: Any | None = None  # the network over encoder embeddings
    head_prior: AdaptationPrior | None = None
    # the network that reads an utterance alone (an unadapted input; `Setup.alone`), and
    # whether that input is the encoder's embedding (else the statistics)
    alone: Any | None = None
    alone_reads_embedding: bool = False


def train_final(data: Dataset, setup: Setup, on_epoch: Callable[[int], None]) -> FinalModels:
    """Every network on every clip (adapted and augmented as in evaluation), ready to export."""
    from ser_train.model import for_export

    everything = np.ones(len(data.y), dtype=bool)
    trained = train_fold(data, Fold(0, (), everything, ~everything), setup, on_epoch)
    cnn = trained.cnn
    alone, reads_embedding = (
        train_final_alone(data, setup, on_epoch) if setup.has_alone else (None, False)
    )
    return FinalModels(
        for_export(trained.stats) if trained.stats is not None else None,
        trained.prior,
        for_export(cnn.model) if cnn is not None else None,
        cnn.prior if cnn is not None else None,
        for_export(trained.head) if trained.head is not None else None,
        trained.head_prior,
        alone,
        reads_embedding,
    )


def write_alone(
    out: Path,
    model: Any | None,
    reads_embedding: bool,
    calibration: dict[str, Any] | None,
    *,
    mix: AloneMix | None = None,
    data: Dataset | None = None,
) -> dict[str, Any] | None:
    """Save the alone network as `alone.tflite` in `out` (no `.keras` copy: the bundle's size
    budget) and, for a `mix` on familiar recordings, the familiarity of `data`'s clean
    embeddings as `familiar.npz`; returns the manifest's "alone" section, None without one
    (stale files removed). `mix` None: the alone network's reading stands alone (weight 1)."""
    from ser.familiar import FAMILIAR_FILE
    from ser_train.model import to_tflite

    (out / ALONE_TFLITE_FILE).unlink(missing_ok=True)
    (out / FAMILIAR_FILE).unlink(missing_ok=True)
    if model is None:
        return None
    (out / ALONE_TFLITE_FILE).write_bytes(to_tflite(model))
    section: dict[str, Any] = {
        "purpose": "reads each utterance alone (no speaker history): a stream's first, "
        "pipeline.adaptation = 'off', and what the history gate weighs the speaker-adapted "
        "reading against",
        "reads": "embedding" if reads_embedding else "statistics",
        "input": "unadapted, standardised inside; trained with the plain (unmasked) loss",
        "tflite": ALONE_TFLITE_FILE,
        "parameters": int(model.count_params()),
        "temperature": calibration["temperature"] if calibration else 1.0,
        "calibration": calibration or {"temperature": 1.0, "method": "none"},
        "weight": mix.weight if mix is not None else 1.0,
    }
    if mix is not None and mix.familiar:
        if data is None or data.embeddings is None:
            raise ValueError("familiar recordings are judged on the encoder's embedding")
        from ser_train.familiar import DIMENSIONS, GROUPS, fit_familiarity

        familiarity = fit_familiarity(
            data.embeddings["clean"], data.speakers, mix.weight, mix.quantile
        )
        np.savez(out / FAMILIAR_FILE, allow_pickle=False, **familiarity.arrays())
        section["familiar"] = {
            "file": FAMILIAR_FILE,
            "threshold": familiarity.threshold,
            "method": f"Mahalanobis distance of the unadapted embedding in {DIMENSIONS} PCA "
            f"dimensions (Ledoit-Wolf covariance) of the {len(data.y)} training clips; "
            f"familiar up to the {mix.quantile:.0%} quantile of the distances of training "
            f"speakers held out of the fit ({GROUPS} groups in turn); the alone network's "
            f"{WEIGHT_IN_METHOD} where familiar, 0 elsewhere (ser/familiar.py)",
            "quantile": mix.quantile,
            "dimensions": int(familiarity.components.shape[0]),
        }
    return section


def train_final_alone(
    data: Dataset, setup: Setup, on_epoch: Callable[[int], None]
) -> tuple[Any, bool]:
    """The alone network on every clip, ready to export, and whether it reads the encoder's
    embedding (when the setup has an encoder; else the statistics)."""
    from ser_train.evaluate import fit_dense
    from ser_train.model import for_export

    alone = setup.alone_setup()
    reads_embedding = data.embeddings is not None and alone.head is not None
    inputs = data.embeddings if reads_embedding else data.features
    assert inputs is not None
    model, _ = fit_dense(
        inputs,
        data=data,
        config=alone.head if reads_embedding else alone.config,
        train=np.ones(len(data.y), dtype=bool),
        setup=alone,
        mask=alone.label_mask(data),
        on_epoch=on_epoch,
    )
    return for_export(model), reads_embedding


def write_speech_detector(out: Path, model: Any, record: dict[str, Any]) -> dict[str, Any]:
    """Save the detector's files into `out`; returns the manifest's "speech" section."""
    from ser_train.model import for_export, to_tflite

    exported = for_export(model)
    exported.save(out / SPEECH_KERAS_FILE)
    (out / SPEECH_TFLITE_FILE).write_bytes(to_tflite(exported))
    return {"keras": SPEECH_KERAS_FILE, "tflite": SPEECH_TFLITE_FILE, **record}


def write_bundle(
    out: Path,
    data: Dataset,
    setup: Setup,
    final: FinalModels,
    *,
    device: str,
    evaluations: list[dict[str, Any]],
    calibration: dict[str, Any] | None,
    speech: dict[str, Any] | None,
    seconds: dict[str, float],
    encoder: Path | None = None,
    gate: HistoryGate | None = None,
    alone_calibration: dict[str, Any] | None = None,
    alone_mix: AloneMix | None = None,
) -> dict[str, Any]:
    """Write the model files and `manifest.json` into `out`; returns the manifest. `encoder`:
    the encoder file the head was trained on (copied in, with its convert record); `gate`:
    the history gate the evaluation applied (live applies it too); `alone_calibration`: the
    alone network's (`calibrate_protocols(..., "_oof_alone")`)."""
    from ser_train.model import to_tflite

    config, cnn_config = setup.config, setup.cnn
    in_place = encoder is not None and encoder.resolve() == (out / ENCODER_FILE).resolve()
    for stale in (CNN_KERAS_FILE, CNN_TFLITE_FILE, ENCODER_FILE, HEAD_KERAS_FILE, HEAD_TFLITE_FILE):
        if not (in_place and stale == ENCODER_FILE):
            (out / stale).unlink(missing_ok=True)
    encoder_manifest = None
    if final.head is not None and encoder is not None and setup.encoder is not None:
        encoder_manifest = write_encoder(out, encoder, setup, final.head, final.head_prior)
    if speech is None:
        for stale in (SPEECH_KERAS_FILE, SPEECH_TFLITE_FILE):
            (out / stale).unlink(missing_ok=True)
    cnn_manifest: dict[str, Any] | None = None
    if final.cnn is not None and cnn_config is not None:
        final.cnn.save(out / CNN_KERAS_FILE)
        (out / CNN_TFLITE_FILE).write_bytes(to_tflite(final.cnn))
        cnn_manifest = {
            "architecture": (
                f"log-mel CNN: conv blocks {'-'.join(map(str, cnn_config.filters))}"
                + (f", BiGRU {cnn_config.recurrent_units}" if cnn_config.recurrent_units else "")
                + f", {cnn_config.pooling} pooling over time (train/cnn.py)"
            ),
            "keras": CNN_KERAS_FILE,
            "tflite": CNN_TFLITE_FILE,
            "frames": cnn_config.frames,
            "n_mels": FEATURE_SPEC.n_mels,
            "parameters": int(final.cnn.count_params()),
            "config": cnn_config.to_dict(),
            "adaptation": final.cnn_prior.to_dict() if final.cnn_prior is not None else None,
        }
    stats_manifest = None
    if final.stats is None:
        for stale in (KERAS_FILE, TFLITE_FILE):
            (out / stale).unlink(missing_ok=True)
    else:
        final.stats.save(out / KERAS_FILE)
        (out / TFLITE_FILE).write_bytes(to_tflite(final.stats))
        stats_manifest = {
            "architecture": (
                f"average of {config.ensemble} x (standardize -> dropout -> "
                f"dense({config.hidden_units}, relu) -> dropout -> softmax)"
                if config.hidden_units
                else f"average of {config.ensemble} x (standardize -> dropout -> softmax)"
            ),
            "keras": KERAS_FILE,
            "tflite": TFLITE_FILE,
            "input_dim": FEATURE_SPEC.dim,
            "parameters": int(final.stats.count_params()),
        }
    adaptation = final.prior.to_dict() if final.prior is not None else {}
    if gate is not None and (final.prior is not None or final.head_prior is not None):
        adaptation |= {"gate": gate.to_dict()}
    alone_manifest = write_alone(
        out, final.alone, final.alone_reads_embedding, alone_calibration, mix=alone_mix, data=data
    )
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": out.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "labels": list(LABELS),
        "sample_rate": FEATURE_SPEC.sample_rate,
        "feature_spec": FEATURE_SPEC.to_dict(),
        # the network over the utterance statistics (None: the bundle has none, and live
        # feature workers compute no statistics unless a CNN or the speech detector reads them)
        "model": stats_manifest,
        "corpora": corpora_record(data),
        "training": {
            "config": config.to_dict(),
            "augment": list(setup.augment),
            "statistics_network": setup.statistics,
            # training sessions' emotion mix: Dirichlet concentration (0: balanced sessions)
            "session_mix": setup.concentration,
            # clean copies adapted as first utterances (train/evaluate.py; 0: none)
            "first_copies": setup.first_copies,
            "loss": "cross-entropy masked to the labels of each clip's corpus"
            if setup.mask_labels
            else "cross-entropy",
            "device": device,
            "n_clips": len(data.clips),
            "speakers": sorted(set(data.speakers.tolist())),
            "unreadable_skipped": len(data.unreadable),
            "data_fingerprint_sha256": data.fingerprint(),
            "seconds": seconds,
        },
        # the statistics' per-speaker prior (with a statistics network) and the history gate
        "adaptation": adaptation or None,
        # with a CNN, the bundle's output combines both networks' probabilities ("combine"),
        # then the calibration's temperature
        "cnn": cnn_manifest,
        # with an encoder, its head's probabilities join them
        "encoder": encoder_manifest,
        # how the networks' probabilities become one, before the temperature
        "combine": setup.combine,
        # the network that reads an utterance alone, when trained (Setup.alone)
        "alone": alone_manifest,
        "calibration": calibration or {"temperature": 1.0, "method": "none"},
        "speech": speech,
        "evaluation": evaluation_record(evaluations),
        "packages": package_versions(),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    from ser_train.model_card import CARD, render

    (out / CARD).write_text(render(out))  # the model card, from the manifest just written
    return manifest


def write_encoder(
    out: Path, encoder: Path, setup: Setup, head: Any, prior: AdaptationPrior | None
) -> dict[str, Any]:
    """Copy the encoder into `out`, save the head; returns the manifest's "encoder" section
    (the encoder's source, licence and checksums from `<encoder>.json` when it exists)."""
    import shutil

    from ser_train.model import to_tflite

    if encoder.resolve() != (out / ENCODER_FILE).resolve():  # a retrain in place keeps it
        shutil.copyfile(encoder, out / ENCODER_FILE)
    head.save(out / HEAD_KERAS_FILE)
    # float32: float16 weights halve the file but store the input standardisation in float16
    # too, which moved a probability by 3e-3 on raw features (tests/test_encoder.py)
    (out / HEAD_TFLITE_FILE).write_bytes(to_tflite(head))
    record_path = Path(f"{encoder}.json")
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    assert setup.encoder is not None and setup.head is not None
    return {
        "file": ENCODER_FILE,
        "sha256": setup.encoder["sha256"],
        "bytes": (out / ENCODER_FILE).stat().st_size,
        "source": {k: v for k, v in record.items() if k not in ("sha256", "bytes")},
        "layers": list(setup.encoder["layers"]),
        "head_keras": HEAD_KERAS_FILE,
        "head_tflite": HEAD_TFLITE_FILE,
        "head": {
            "architecture": f"average of {setup.head.ensemble} x (standardize -> dropout -> "
            f"dense({setup.head.hidden_units}, relu) -> dropout -> softmax) over the mean and "
            "std of the encoder layers named",
            "config": setup.head.to_dict(),
            "parameters": int(head.count_params()),
        },
        "adaptation": prior.to_dict() if prior is not None else None,
    }


def update_speech_section(out: Path, speech: dict[str, Any]) -> None:
    """Replace the "speech" section of an existing bundle's manifest (`ser-train --speech-only`)."""
    path = out / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["speech"] = speech
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    from ser_train.model_card import CARD, render

    (out / CARD).write_text(render(out))


def confusion_title(evaluation: dict[str, Any]) -> str:
    acc = evaluation["summary"]["accuracy"]
    return (
        f"{evaluation['title']}\naccuracy {acc['mean']:.1%} ± {acc['std']:.1%} "
        f"over {evaluation['folds_evaluated']} folds"
    )


def json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value)}")
