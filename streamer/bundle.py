"""Model bundles: a folder with `manifest.json` and, when its "model" section is set (the network
over the utterance statistics), `model.keras` and `model.tflite`; when the
manifest has a "cnn" section also `cnn.keras` and `cnn.tflite` (the log-mel CNN whose
probabilities are averaged with the statistics model's); with a "speech" section also
`speech.keras` and `speech.tflite` (the speech detector: P(speech) of an utterance); with an
"encoder" section also `encoder.tflite` (a pretrained speech encoder, streamer/encoder.py, with
its source, licence and sha256) and `encoder_head.keras` / `encoder_head.tflite` (the network over
its pooled layers, whose probabilities are averaged with the others'); with an "alone" section
also `alone.tflite`: the network that reads an utterance alone, without the speaker's history,
from an unadapted input (the encoder's embedding, or the statistics; streamer/classifier.py).
A bundle whose networks and speech detector all read the encoder's embedding (no "model", no
"cnn") needs no utterance statistics: its feature workers compute none (`needs_statistics`).

The manifest records labels, sample rate, the feature spec, the evaluation protocol and scores.
Loading checks it against this code's `FEATURE_SPEC`; a mismatch is an error, never a silent skew.
Nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ser.adaptation import AdaptationPrior, HistoryGate
from ser.features import FEATURE_SPEC
from ser.scoring import COMBINE_RULES

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KERAS_FILE = "model.keras"
TFLITE_FILE = "model.tflite"
CNN_KERAS_FILE = "cnn.keras"
CNN_TFLITE_FILE = "cnn.tflite"
SPEECH_KERAS_FILE = "speech.keras"
SPEECH_TFLITE_FILE = "speech.tflite"
ENCODER_FILE = "encoder.tflite"
HEAD_KERAS_FILE = "encoder_head.keras"
HEAD_TFLITE_FILE = "encoder_head.tflite"
ALONE_TFLITE_FILE = "alone.tflite"
TRAIN_HINT = "train one with `ser-train --data DIR --out DIR`, or use the shipped 'default'"
DEFAULT_BUNDLE = "default"


class BundleError(Exception):
    """A model bundle is missing, malformed or incompatible; the message says what to do."""


@dataclass(frozen=True)
class CnnSpec:
    """The bundle's log-mel CNN: reads windows of `frames` log-mel rows, centred per stream
    with `centring` (population band means; None: uncentred)."""

    tflite_path: Path
    frames: int
    centring: AdaptationPrior | None


@dataclass(frozen=True)
class SpeechSpec:
    """The bundle's speech detector: reads the unadapted statistics vector, or the encoder's
    unadapted embedding (`reads_embedding`), outputs P(speech); below `threshold` an utterance
    is reported as not speech."""

    tflite_path: Path
    threshold: float
    reads_embedding: bool = False


@dataclass(frozen=True)
class EncoderSection:
    """The bundle's pretrained encoder and the head over its pooled `layers`, whose input is
    adapted per stream with `adaptation` (None: unadapted)."""

    encoder_path: Path
    sha256: str
    layers: tuple[int, ...]
    head_path: Path
    adaptation: AdaptationPrior | None


@dataclass(frozen=True)
class AloneSpec:
    """The bundle's network that reads an utterance alone (no speaker history) from an
    unadapted input: the encoder's embedding when the bundle has an encoder (`reads_embedding`),
    else the statistics vector; with its own calibration temperature."""

    tflite_path: Path
    reads_embedding: bool
    temperature: float
    # its share of an utterance's alone reading (geometric mix with the speaker-adapted
    # networks' reading as a stream's first); 1: its reading alone
    weight: float = 1.0
    # with a familiarity (ser/familiar.py): `weight` only where the recording is familiar
    familiar_path: Path | None = None
    familiar_threshold: float = 0.0


@dataclass(frozen=True)
class Bundle:
    """A loaded, validated manifest; model files are resolved, not yet opened."""

    path: Path
    name: str
    labels: tuple[str, ...]
    sample_rate: int
    manifest: dict[str, Any]

    @property
    def tflite_path(self) -> Path:
        """The statistics network (see `has_statistics_network`)."""
        return self.path / TFLITE_FILE

    @property
    def has_statistics_network(self) -> bool:
        """Whether the bundle has a network over the utterance statistics (manifest "model";
        bundles without one read the encoder's embedding)."""
        return bool(self.manifest.get("model", True))

    @property
    def needs_statistics(self) -> bool:
        """Whether anything in the bundle reads the utterance statistics or the log-mel
        sequence (`streamer.features.analyse`): its statistics network, its CNN, or a speech
        detector or alone network over the statistics. False: the encoder's embedding is all
        an utterance needs."""
        speech, alone = self.speech, self.alone
        return (
            self.has_statistics_network
            or self.cnn is not None
            or (speech is not None and not speech.reads_embedding)
            or (alone is not None and not alone.reads_embedding)
        )

    @property
    def adaptation(self) -> AdaptationPrior | None:
        """The statistics network's per-speaker adaptation prior, when it was trained with
        adaptation (a section with only the history gate: None)."""
        data = self.manifest.get("adaptation")
        return AdaptationPrior.from_dict(data) if data and "mean" in data else None

    @property
    def history_gate(self) -> HistoryGate | None:
        """How far to trust the speaker's history (manifest adaptation.gate); None: always
        (bundles made before the gate)."""
        data = (self.manifest.get("adaptation") or {}).get("gate")
        return HistoryGate.from_dict(data) if data else None

    @property
    def alone(self) -> AloneSpec | None:
        """The optional alone network, when the manifest has an "alone" section."""
        data = self.manifest.get("alone")
        if not data:
            return None
        reads = str(data["reads"])
        if reads not in ("embedding", "statistics"):
            raise ValueError(f"alone.reads {reads!r}: expected 'embedding' or 'statistics'")
        weight = float(data.get("weight", 1.0))
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"alone.weight {weight}: expected a share in (0, 1]")
        familiar = data.get("familiar")
        return AloneSpec(
            tflite_path=self.path / str(data.get("tflite", ALONE_TFLITE_FILE)),
            reads_embedding=reads == "embedding",
            temperature=float(data.get("temperature", 1.0)),
            weight=weight,
            familiar_path=self.path / str(familiar["file"]) if familiar else None,
            familiar_threshold=float(familiar["threshold"]) if familiar else 0.0,
        )

    @property
    def cnn(self) -> CnnSpec | None:
        """The optional log-mel CNN, when the manifest has a "cnn" section."""
        data = self.manifest.get("cnn")
        if not data:
            return None
        adaptation = data.get("adaptation")
        return CnnSpec(
            tflite_path=self.path / str(data.get("tflite", CNN_TFLITE_FILE)),
            frames=int(data["frames"]),
            centring=AdaptationPrior.from_dict(adaptation) if adaptation else None,
        )

    @property
    def speech(self) -> SpeechSpec | None:
        """The optional speech detector, when the manifest has a "speech" section."""
        data = self.manifest.get("speech")
        if not data:
            return None
        reads = str(data.get("reads", "statistics"))
        if reads not in ("embedding", "statistics"):
            raise ValueError(f"speech.reads {reads!r}: expected 'embedding' or 'statistics'")
        return SpeechSpec(
            tflite_path=self.path / str(data.get("tflite", SPEECH_TFLITE_FILE)),
            threshold=float(data["threshold"]),
            reads_embedding=reads == "embedding",
        )

    @property
    def encoder(self) -> EncoderSection | None:
        """The optional encoder and its head, when the manifest has an "encoder" section."""
        data = self.manifest.get("encoder")
        if not data:
            return None
        adaptation = data.get("adaptation")
        return EncoderSection(
            encoder_path=self.path / str(data.get("file", ENCODER_FILE)),
            sha256=str(data["sha256"]),
            layers=tuple(int(n) for n in data["layers"]),
            head_path=self.path / str(data.get("head_tflite", HEAD_TFLITE_FILE)),
            adaptation=AdaptationPrior.from_dict(adaptation) if adaptation else None,
        )

    def resolve_min_speech(self, configured: float | str) -> float:
        """`pipeline.min_speech` as a number: "auto" is the detector's threshold (0.0: the bundle
        has no detector, nothing is rejected)."""
        if configured != "auto":
            return float(configured)
        speech = self.speech
        return speech.threshold if speech is not None else 0.0

    @property
    def combine(self) -> str:
        """How the networks' probabilities become one before calibration
        (streamer.scoring.COMBINE_RULES; bundles from before the choice: "mean")."""
        return str(self.manifest.get("combine", "mean"))

    @property
    def temperature(self) -> float:
        """Calibration temperature for the model's probabilities (1.0: none)."""
        calibration = self.manifest.get("calibration") or {}
        return float(calibration.get("temperature", 1.0))

    @property
    def min_confidence(self) -> float:
        """The confidence below which the bundle's held-out results were right less than half
        of the time (0.0 when not recorded)."""
        calibration = self.manifest.get("calibration") or {}
        uncertainty = calibration.get("uncertainty") or {}
        return float(uncertainty.get("min_confidence", 0.0))

    def resolve_min_confidence(self, configured: float | str) -> float:
        """`pipeline.min_confidence` as a number: "auto" is the bundle's own threshold."""
        return self.min_confidence if configured == "auto" else float(configured)

    @property
    def accuracy(self) -> float | None:
        """6-fold mean accuracy recorded at training time, if any."""
        try:
            return float(self.manifest["evaluation"]["summary"]["accuracy"]["mean"])
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def cross_corpus_accuracy(self) -> float | None:
        """Accuracy on a corpus the networks never heard (the lowest of the `A-to-B`
        protocols recorded), if any."""
        protocols = (self.manifest.get("evaluation") or {}).get("protocols") or {}
        found = []
        for name, protocol in protocols.items():
            if "-to-" in name:
                try:
                    found.append(float(protocol["summary"]["accuracy"]["mean"]))
                except (KeyError, TypeError, ValueError):
                    continue
        return min(found) if found else None

    def accuracy_note(self, short: bool = False) -> str:
        """The accuracy with its condition, e.g. "79.9% on acted speech of speakers it never
        heard; 46.5% on another corpus" (`short`: "80% acted, same corpora; 47% other")."""
        same, other = self.accuracy, self.cross_corpus_accuracy
        if same is None:
            return "accuracy not recorded"
        if short:
            text = f"{same:.0%} acted, same corpora"
            return text + (f"; {other:.0%} other corpora" if other is not None else "")
        text = f"{same:.1%} on acted speech of speakers it never heard"
        return text + (f"; {other:.1%} on another corpus" if other is not None else "")


def shipped_bundles() -> Path:
    """The folder of the bundles shipped with ser: the installed package `ser_models` (the
    repository's models/ in a checkout or an editable install)."""
    try:
        import ser_models
    except ImportError:  # run from a checkout that was never installed
        return Path(__file__).resolve().parents[1] / "models"
    return Path(ser_models.__file__).resolve().parent


def resolve_bundle_path(text: str) -> Path:
    """`pipeline.model` / `--model` -> a bundle folder: an existing folder as given, else a
    shipped bundle of that name ("default"; "models/default" as older configs say it)."""
    path = Path(text).expanduser()
    if path.is_dir() or path.is_absolute():
        return path
    parts = path.parts
    if len(parts) == 1 or (len(parts) == 2 and parts[0] == "models"):
        shipped = shipped_bundles() / parts[-1]
        if shipped.is_dir():
            return shipped
    return path


def load_bundle(path: Path) -> Bundle:
    """Read and validate `path/manifest.json`. Raises BundleError naming the problem and fix."""
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise BundleError(f"model bundle {path} not found: {TRAIN_HINT}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{manifest_path} is missing: {TRAIN_HINT}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path} is not valid JSON ({exc}): {TRAIN_HINT}") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{manifest_path} is not a JSON object: {TRAIN_HINT}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{manifest_path}: format_version {version!r}, this ser reads "
            f"{FORMAT_VERSION}: {TRAIN_HINT}"
        )
    spec = manifest.get("feature_spec")
    if spec != FEATURE_SPEC.to_dict():
        raise BundleError(
            f"{manifest_path}: model was trained on features {_spec_label(spec)}, "
            f"this ser computes {_spec_label(FEATURE_SPEC.to_dict())}; retrain: {TRAIN_HINT}"
        )
    adaptation = manifest.get("adaptation")
    if adaptation is not None and "mean" in adaptation:
        try:
            prior = AdaptationPrior.from_dict(adaptation)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{manifest_path}: 'adaptation' is malformed ({exc})") from exc
        if prior.mean.shape != (FEATURE_SPEC.dim,) or prior.std.shape != (FEATURE_SPEC.dim,):
            raise BundleError(f"{manifest_path}: 'adaptation' statistics do not match dim")
    labels = manifest.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise BundleError(f"{manifest_path}: 'labels' must be a non-empty list of names")
    if manifest.get("model", True) and not (path / TFLITE_FILE).is_file():
        raise BundleError(f"{path / TFLITE_FILE} is missing: {TRAIN_HINT}")
    bundle = Bundle(
        path=path,
        name=str(manifest.get("name", path.name)),
        labels=tuple(labels),
        sample_rate=int(manifest.get("sample_rate", FEATURE_SPEC.sample_rate)),
        manifest=manifest,
    )
    if bundle.combine not in COMBINE_RULES:
        raise BundleError(
            f"{manifest_path}: 'combine' is {bundle.combine!r}, this ser combines networks by "
            f"{' or '.join(repr(r) for r in COMBINE_RULES)}: {TRAIN_HINT}"
        )
    try:
        cnn = bundle.cnn
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{manifest_path}: 'cnn' is malformed ({exc}): {TRAIN_HINT}") from exc
    try:
        speech = bundle.speech
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{manifest_path}: 'speech' is malformed ({exc}): {TRAIN_HINT}") from exc
    if speech is not None and not speech.tflite_path.is_file():
        raise BundleError(f"{speech.tflite_path} is missing: {TRAIN_HINT}")
    try:
        encoder = bundle.encoder
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{manifest_path}: 'encoder' is malformed ({exc}): {TRAIN_HINT}") from exc
    if encoder is None and not bundle.has_statistics_network:
        raise BundleError(
            f"{manifest_path}: no network: 'model' is null and there is no 'encoder': {TRAIN_HINT}"
        )
    if speech is not None and speech.reads_embedding and encoder is None:
        raise BundleError(
            f"{manifest_path}: 'speech' reads the encoder's embedding but the bundle has no "
            f"encoder: {TRAIN_HINT}"
        )
    if encoder is not None:
        for needed in (encoder.encoder_path, encoder.head_path):
            if not needed.is_file():
                raise BundleError(f"{needed} is missing: {TRAIN_HINT}")
    try:
        alone = bundle.alone
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{manifest_path}: 'alone' is malformed ({exc}): {TRAIN_HINT}") from exc
    if alone is not None:
        if alone.reads_embedding and encoder is None:
            raise BundleError(
                f"{manifest_path}: 'alone' reads the encoder's embedding but the bundle has no "
                f"encoder: {TRAIN_HINT}"
            )
        if not alone.tflite_path.is_file():
            raise BundleError(f"{alone.tflite_path} is missing: {TRAIN_HINT}")
        if alone.familiar_path is not None:
            if not alone.reads_embedding:
                raise BundleError(
                    f"{manifest_path}: 'alone.familiar' judges the encoder's embedding but the "
                    f"alone network reads statistics: {TRAIN_HINT}"
                )
            if not alone.familiar_path.is_file():
                raise BundleError(f"{alone.familiar_path} is missing: {TRAIN_HINT}")
    if cnn is not None:
        if not cnn.tflite_path.is_file():
            raise BundleError(f"{cnn.tflite_path} is missing: {TRAIN_HINT}")
        if cnn.centring is not None and cnn.centring.mean.shape != (FEATURE_SPEC.n_mels,):
            raise BundleError(f"{manifest_path}: 'cnn.adaptation' does not match n_mels")
    return bundle


def _spec_label(spec: object) -> str:
    if isinstance(spec, dict):
        return f"{spec.get('name')} v{spec.get('version')} (dim {spec.get('dim')})"
    return repr(spec)
