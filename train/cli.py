"""`ser-train`: read corpora, evaluate speaker-independently under each protocol, train the final
networks and the speech detector, write a bundle. Parsing and reporting only: corpora live in
train/corpora/, the data set in train/dataset.py, protocols in train/protocols.py, evaluation in
train/evaluate.py, the speech detector in train/speech.py, bundle writing in train/export.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ser.adaptation import INPUTS, HistoryGate
from ser.features import FEATURE_SPEC
from ser.labels import LABELS
from ser.native_log import NativeStderrFilter
from ser.scoring import COMBINE_RULES
from ser_train.cnn import CnnConfig
from ser_train.corpora import CORPORA, Clip, DataError, Scan
from ser_train.dataset import Dataset, EncoderChoice, load_dataset, parse_speakers
from ser_train.evaluate import (
    AloneMix,
    Setup,
    as_live_reads,
    calibrate_protocols,
    compare_combinations,
    default_fold_cache_dir,
    evaluate_protocol,
    folds_to_train,
    public,
)
from ser_train.featurize import Extracted, default_cache_dir
from ser_train.protocols import PROTOCOLS, Protocol, select
from ser_train.report import (
    combination_table,
    gate_sweep_table,
    plot_confusion,
    print_calibration,
    print_evaluation,
)
from ser_train.robustness import NATURAL_VARIANTS, TEST_VARIANTS, check_variant

logger = logging.getLogger("ser.train")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="ser-train",
        description="Train and honestly evaluate a speech emotion model on one or more corpora.",
    )
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="[NAME=]PATH",
        help=f"a corpus folder, any layout (repeat for more corpora; NAME one of "
        f"{', '.join(CORPORA)} when the layout does not tell)",
    )
    p.add_argument("--out", type=Path, default=Path("models/trained"), help="bundle folder")
    p.add_argument(
        "--protocol",
        action="append",
        choices=[*PROTOCOLS, "all"],
        default=None,
        help="evaluation protocol (repeatable; default: every one the corpora allow)",
    )
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 12)")
    p.add_argument("--seed", type=int, default=0, help="random seed (recorded in the bundle)")
    p.add_argument(
        "--speakers",
        default=None,
        help="use only these speakers of the corpora named, e.g. 'ravdess:1,nemo:EB0' (quick "
        "runs; a corpus not named keeps all its speakers; folds without them are skipped)",
    )
    p.add_argument("--actors", default=None, help="RAVDESS actors only, e.g. '1,4,10,11'")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="feature processes")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="feature cache folder (fold predictions go to its 'folds' subfolder)",
    )
    p.add_argument(
        "--no-cache", action="store_true", help="read and write no cached features or folds"
    )
    p.add_argument("--skip-eval", action="store_true", help="train the final model only")
    p.add_argument(
        "--eval-only",
        action="store_true",
        help="evaluate and write evaluation.json, but train no final model (for experiments)",
    )
    p.add_argument(
        "--no-adaptation",
        action="store_true",
        help="no per-speaker feature adaptation (see streamer/adaptation.py)",
    )
    p.add_argument(
        "--adaptation-inputs",
        choices=INPUTS,
        default="z",
        help="what the networks read (streamer/adaptation.py): the speaker-normalised features "
        "alone ('z', default: the shipped bundles), or the raw features beside them with the "
        "amount of history ('raw+z+history': better on held-emotion sessions, worse across "
        "corpora; EXPERIMENTS.md, 'Sessions as people talk')",
    )
    p.add_argument(
        "--history-gate",
        default="4,8,2",
        metavar="LOW,HIGH,WARMUP",
        help="how far to trust the speaker's history (streamer/adaptation.py): not below LOW "
        "effective emotions shown so far, fully from HIGH, growing over WARMUP utterances; "
        "written into the bundle, applied live and in every evaluation (default 4,8,2); "
        "'off': always trust it (bundles before the gate)",
    )
    p.add_argument(
        "--alone-network",
        action="store_true",
        help="also train a network on the unadapted encoder embedding (or statistics) to read "
        "an utterance alone: a stream's first, --no-adaptation, the history gate's other "
        "reading; mixed with the speaker-adapted networks' reading where the recording is "
        "familiar (like the training recordings), not elsewhere (EXPERIMENTS.md, 'Familiar "
        "recordings')",
    )
    p.add_argument(
        "--alone-weight",
        type=_share,
        default=0.5,
        metavar="W",
        help="the alone network's share of an utterance's alone reading where it counts "
        "(geometric mix; default 0.5; 1: its reading alone)",
    )
    p.add_argument(
        "--alone-everywhere",
        action="store_true",
        help="mix the alone network in on every recording, familiar or not (worse on corpora "
        "never heard; EXPERIMENTS.md, 'A network for the utterance alone')",
    )
    p.add_argument(
        "--first-copies",
        type=int,
        default=0,
        metavar="N",
        help="N more clean training copies with every clip adapted as a stream's first "
        "utterance, so the speaker-adapted networks also learn to read an utterance alone "
        "(default 0; EXPERIMENTS.md, 'A network for the utterance alone')",
    )
    p.add_argument(
        "--session-mix",
        type=float,
        default=0.0,
        metavar="ALPHA",
        help="training sessions' emotion mix: copies not a multiple of 3 in order are cut into "
        "sessions whose label weights come from a Dirichlet(ALPHA) (e.g. 0.3: held and skewed "
        "sessions are common); 0 (default): every copy is one balanced session per speaker",
    )
    p.add_argument(
        "--augment",
        type=lambda text: [check_variant(v) for v in text.split(",") if v],
        default=["snr15", "snr30", "speed90", "speed110"],
        help="copies of the training audio added to training (default "
        "snr15,snr30,speed90,speed110): snrNN white noise at NN dB SNR, speedNNN played at NNN "
        "%% speed, reverbNNN a simulated room with RT60 NNN ms, telephone, cheapmic, clipped, "
        "quiet; '' for none",
    )
    p.add_argument(
        "--no-label-mask",
        action="store_true",
        help="plain cross-entropy even for corpora that lack labels (for comparison: they then "
        "teach 'never calm / never disgust')",
    )
    p.add_argument(
        "--balance-corpora",
        action="store_true",
        help="the statistics network weighs each corpus equally rather than each clip",
    )
    p.add_argument(
        "--hidden-units", type=int, default=None, help="hidden layer width; 0: linear softmax"
    )
    p.add_argument("--label-smoothing", type=float, default=None, help="e.g. 0.1")
    p.add_argument(
        "--mixup", type=float, default=None, help="mixup alpha, e.g. 0.2 (default 0: off)"
    )
    p.add_argument("--ensemble", type=int, default=None, help="models averaged (default 3)")
    p.add_argument(
        "--ensemble-split",
        choices=("seeds", "speakers"),
        default=None,
        help="members differ by seed only (default), or each leaves out a group of speakers",
    )
    p.add_argument(
        "--cnn",
        action="store_true",
        help="also train the log-mel CNN and average it with the statistics model (the shipped "
        "models/small; about 1.5 h more per RAVDESS evaluation on 2 CPU cores)",
    )
    p.add_argument("--cnn-epochs", type=int, default=None, help="CNN epochs (default 80)")
    p.add_argument(
        "--no-robustness",
        action="store_true",
        help="skip evaluating on VAD-cut, noisy, reverberant and channel-degraded test audio",
    )
    p.add_argument(
        "--test-variants",
        type=_test_variants,
        default=list(TEST_VARIANTS),
        help=f"the test audio evaluated beside the clean clips (default {','.join(TEST_VARIANTS)})",
    )
    p.add_argument(
        "--no-speech-detector",
        action="store_true",
        help="train no speech detector (the bundle then never says 'not speech')",
    )
    p.add_argument(
        "--nonspeech-per-kind",
        type=int,
        default=None,
        help="generated non-speech clips per kind for the speech detector (default 120; a third "
        "as many unseen ones score it)",
    )
    p.add_argument(
        "--encoder",
        type=Path,
        default=None,
        help="also train a network over this pretrained encoder's embeddings (an encoder "
        ".tflite made by `python -m ser_train.encoder.convert`); the bundle carries both",
    )
    p.add_argument(
        "--encoder-layers",
        default="6",
        help="the encoder's pooled layers the network reads, e.g. '6' or '3,6' (0: the "
        "convolutional stem, 1-6: the transformer blocks; default 6)",
    )
    p.add_argument(
        "--no-statistics-network",
        action="store_true",
        help="train no network over the utterance statistics: the encoder's head alone (needs "
        "--encoder; with the speech detector on the embedding too, live feature workers "
        "compute no statistics: about a third less CPU per utterance, worse across corpora, "
        "EXPERIMENTS.md)",
    )
    p.add_argument(
        "--combine",
        choices=COMBINE_RULES,
        default="mean",
        help="how the networks' probabilities become one: their mean (default), or their "
        "normalised geometric mean (better calibrated when one network is much surer than "
        "another; the shipped default bundle)",
    )
    p.add_argument(
        "--calibrated-as",
        type=Path,
        metavar="BUNDLE",
        help="with --eval-only: calibrate each reading with BUNDLE's temperatures (its own and "
        "its alone network's) before the alone mix and the history gate, instead of the ones "
        "this run fits (for study: how a bundle's recorded sessions read with its temperatures)",
    )
    p.add_argument(
        "--sweep-gate",
        nargs="?",
        const="default",
        default=None,
        type=_gate_grid,
        metavar="LOWS/HIGHS/WARMUPS",
        help="with --eval-only: score every history gate of a grid (default: "
        "train/gate_sweep.py's; or e.g. 3.5,4/8,9/2) on the same folds as live reads them, "
        "write gate_sweep.json and name the setting its rule chooses (about 2 s a setting "
        "once the folds are cached; for choosing a bundle's gate)",
    )
    p.add_argument(
        "--sweep-alone-weights",
        type=_weights,
        default=None,
        metavar="W,W,...",
        help="with --sweep-gate: the alone network's shares to try beside each gate (default: "
        "--alone-weight's)",
    )
    p.add_argument(
        "--combine-report",
        action="store_true",
        help="also print how each network alone, the mean, weighted means and the geometric "
        "mean would score and calibrate on the in-corpus protocols' out-of-fold predictions "
        "(cached folds make it quick; chosen on test folds, so for study only)",
    )
    p.add_argument(
        "--speech-only",
        action="store_true",
        help="(re)train only the speech detector into the existing bundle at --out",
    )
    p.add_argument(
        "--speech-input",
        choices=("auto", "statistics", "embedding"),
        default="auto",
        help="what the speech detector reads: the utterance statistics, or the encoder's "
        "embedding (auto, the default: the embedding where the bundle has an encoder; it "
        "refuses less speech in natural conditions, and live workers then need no statistics "
        "for it)",
    )
    p.add_argument(
        "--alone-only",
        action="store_true",
        help="give the existing bundle at --out a network for the utterance alone, without "
        "retraining its own: evaluates every protocol (its folds from the fold cache), checks "
        "the bundle's networks scored every fold as these did, trains the alone network on "
        "every clip and records it, the gated scores and the session kinds in its manifest",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logging, and TensorFlow's own start-up and export messages",
    )
    return p.parse_args(argv)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _configs(args: argparse.Namespace) -> Setup:
    from ser_train.model import TrainConfig

    flags = {  # TrainConfig field -> command-line value (None: keep the default)
        "seed": args.seed,
        "epochs": args.epochs or None,
        "hidden_units": args.hidden_units,
        "label_smoothing": args.label_smoothing,
        "ensemble": args.ensemble,
        "mixup_alpha": args.mixup,
        "ensemble_split": args.ensemble_split,
    }
    config = TrainConfig(**{k: v for k, v in flags.items() if v is not None})
    cnn_flags = {"seed": args.seed, "epochs": args.cnn_epochs or None}
    cnn = CnnConfig(**{k: v for k, v in cnn_flags.items() if v is not None}) if args.cnn else None
    head = encoder = None
    if args.encoder is not None:
        from ser_train.embed import file_digest

        head = config  # the statistics network's recipe, over the embeddings
        encoder = {"sha256": file_digest(args.encoder), "layers": list(_layers(args))}
    elif args.speech_input == "embedding" and not args.no_speech_detector:
        _speech_encoder(args, None)  # raises: fail before any features
    if args.encoder is None and args.no_statistics_network:
        raise DataError(
            "--no-statistics-network leaves the encoder's head as the only network: pass "
            "--encoder FILE (made by `python -m ser_train.encoder.convert`)"
        )
    if args.no_statistics_network and args.cnn:
        raise DataError("--no-statistics-network is for an encoder without a CNN: drop --cnn")
    return Setup(
        config,
        cnn,
        adapt=not args.no_adaptation,
        augment=tuple(args.augment),
        mask_labels=not args.no_label_mask,
        balance_corpora=args.balance_corpora,
        head=head,
        encoder=encoder,
        combine=args.combine,
        statistics=not args.no_statistics_network,
        inputs=args.adaptation_inputs,
        concentration=max(0.0, args.session_mix),
        alone=args.alone_network or args.alone_only,
        first_copies=max(0, args.first_copies),
    )


def _history_gate(text: str) -> HistoryGate | None:
    """--history-gate LOW,HIGH,WARMUP (or off) -> the gate; DataError when malformed."""
    if text.strip().lower() == "off":
        return None
    try:
        low, high, warmup = (float(v) for v in text.split(","))
        return HistoryGate(low, high, warmup)
    except ValueError:
        raise DataError(
            f"--history-gate {text!r}: expected LOW,HIGH,WARMUP with 1 <= LOW < HIGH, e.g. "
            "4,8,2, or 'off'"
        ) from None


def _gate_grid(text: str) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """--sweep-gate [LOWS/HIGHS/WARMUPS] -> (lows, highs, warmups)."""
    from ser_train import gate_sweep

    if text == "default":
        return gate_sweep.LOWS, gate_sweep.HIGHS, gate_sweep.WARMUPS
    parts = text.split("/")
    try:
        lows, highs, warmups = (tuple(float(v) for v in part.split(",")) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected LOWS/HIGHS/WARMUPS, comma-separated numbers, e.g. 3.5,4/8,9/2"
        ) from None
    if min(lows) < 1 or min(lows) >= max(highs) or min(warmups) < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: need every LOW >= 1, some HIGH above the lowest LOW, WARMUP >= 0"
        )
    return lows, highs, warmups


def _share(text: str) -> float:
    """--alone-weight W: the alone network's share, in (0, 1]."""
    try:
        share = float(text)
    except ValueError:
        share = math.nan
    if not 0.0 < share <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a share in (0, 1], e.g. 0.5")
    return share


def _weights(text: str) -> tuple[float, ...]:
    """--sweep-alone-weights W,W,... -> shares in (0, 1]."""
    try:
        return tuple(_share(w) for w in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected shares in (0, 1], e.g. 0.4,0.5,0.6"
        ) from None


def _alone_mix(args: argparse.Namespace, setup: Setup) -> AloneMix | None:
    """How the alone network's reading is mixed in (None: no alone network)."""
    if not setup.has_alone:
        return None
    if not args.alone_everywhere and setup.encoder is None:
        raise DataError(
            "--alone-network judges familiar recordings on the encoder's embedding: pass "
            "--encoder FILE, or --alone-everywhere"
        )
    return AloneMix(weight=args.alone_weight, familiar=not args.alone_everywhere)


def _layers(args: argparse.Namespace) -> tuple[int, ...]:
    """--encoder-layers as indices into the encoder's pooled layers; DataError if malformed or
    beyond the encoder file's layers."""
    from ser.encoder import Encoder

    try:
        n_layers = Encoder(args.encoder).n_layers
    except ValueError as exc:
        raise DataError(
            f"--encoder: {exc}; make one with `python -m ser_train.encoder.convert`"
        ) from exc
    try:
        layers = tuple(int(x) for x in str(args.encoder_layers).split(",") if x.strip())
    except ValueError:
        layers = ()
    if not layers or any(not 0 <= n < n_layers for n in layers):
        raise DataError(
            f"--encoder-layers {args.encoder_layers!r}: {args.encoder} has pooled layers 0-"
            f"{n_layers - 1}; give their numbers separated by commas, e.g. '3' or '3,4'"
        )
    return layers


def _check_before_featurizing(
    clips: Sequence[Clip], setup: Setup, protocol_names: list[str] | None, evaluate: bool
) -> None:
    """Fail fast, before minutes of feature extraction: the protocols asked for must suit the
    corpora present, and a speaker-split ensemble needs enough training speakers in every fold
    of them. Raises DataError."""
    corpus = np.array([c.corpus for c in clips])
    protocols = select(protocol_names, sorted(set(corpus.tolist()))) if evaluate else []
    speakers = np.array([c.speaker_key for c in clips])
    y = np.array([LABELS.index(c.label) for c in clips])
    short: list[tuple[str, int, int]] = []  # (protocol, folds that run, folds it defines)
    for protocol in protocols:
        folds = protocol.folds(corpus, speakers, y)
        present = sorted({s.split(":", 1)[-1] for s in speakers[corpus == protocol.test_corpus]})
        if not folds:
            groups = "; ".join(
                f"fold {i}: {', '.join(g)}" for i, g in enumerate(protocol.fold_groups(), 1)
            )
            raise DataError(
                f"protocol {protocol.name}: no fold has both training and test speakers with "
                f"speakers {', '.join(present)} (a fold holds out all of its speakers at once: "
                f"{groups or 'the other corpus is held out'}); take speakers from at least two "
                "folds, or --skip-eval to train without evaluating"
            )
        if len(folds) < protocol.fold_count():
            short.append((protocol.name, len(folds), protocol.fold_count()))
    n_speakers = len(set(speakers.tolist()))
    if setup.config.ensemble_split == "speakers":
        _check_speaker_ensemble(setup, protocols, corpus, speakers, y)
    for name, ran, total in short:  # warnings only once nothing is wrong
        logger.warning(
            "protocol %s: %d of its %d folds can run with these speakers; its scores are "
            "labelled so, and do not compare with the full protocol's",
            name,
            ran,
            total,
        )
    if evaluate and (n_speakers < 8 or len(clips) < 400):
        logger.warning(
            "only %d speakers and %d clips: fold scores this small vary by many points; "
            "do not trust them as the model's accuracy",
            n_speakers,
            len(clips),
        )


def _check_speaker_ensemble(
    setup: Setup,
    protocols: Sequence[Protocol],
    corpus: np.ndarray,
    speakers: np.ndarray,
    y: np.ndarray,
) -> None:
    n_speakers = len(set(speakers.tolist()))
    sizes = [n_speakers]
    for protocol in protocols:
        sizes += [len(set(speakers[f.train].tolist())) for f in protocol.folds(corpus, speakers, y)]
    if min(sizes) < setup.config.ensemble:
        raise DataError(
            f"--ensemble-split speakers needs at least {setup.config.ensemble} training speakers "
            f"in every fold, but a fold here has {min(sizes)} training speaker(s); use more "
            "speakers, a smaller --ensemble or --ensemble-split seeds"
        )


def _load(
    args: argparse.Namespace,
    console: Console,
    variants: list[str],
    check: Callable[[Sequence[Clip]], None] | None = None,
) -> Dataset:
    cache_dir = None if args.no_cache else (args.cache_dir or default_cache_dir())

    def report(found: Scan, kept: int) -> None:
        console.print(
            f"found {kept} {found.corpus.title} clips under {found.root} ({found.layout}"
            + (
                f", {found.duplicates_dropped} duplicates dropped"
                if found.duplicates_dropped
                else ""
            )
            + (f", {len(found.ignored)} other audio files ignored" if found.ignored else "")
            + (
                f"; {len(found.clips) - kept} of other speakers left out"
                if kept < len(found.clips)
                else ""
            )
            + ")"
        )

    t0 = time.perf_counter()
    with _progress(console) as progress:

        def bar(description: str, total: int) -> Callable[[Extracted], None]:
            task = progress.add_task(description, total=total)
            return lambda _item: progress.advance(task)

        data = load_dataset(
            args.data,
            speakers=parse_speakers(args.speakers, args.actors),
            cache_dir=cache_dir,
            workers=args.workers,
            variants=variants,
            log_mel=args.cnn,
            progress=bar,
            on_scan=report,
            check=check,
            encoder=None if args.encoder is None else EncoderChoice(args.encoder, _layers(args)),
        )
    if data.unreadable:
        console.print(
            f"[yellow]skipped {len(data.unreadable)} unreadable or empty files[/], e.g. "
            + "; ".join(data.unreadable[:3])
        )
    console.print(
        f"features: {len(data.clips)} clips x {len(data.features)} audio variants, "
        f"{time.perf_counter() - t0:.1f} s (spec {FEATURE_SPEC.name} v{FEATURE_SPEC.version}, "
        f"dim {FEATURE_SPEC.dim})"
    )
    return data


def _speech_encoder(args: argparse.Namespace, bundle_encoder: EncoderChoice | None) -> bool:
    """Whether the speech detector reads the encoder's embedding (`--speech-input`), given the
    bundle's encoder (None: it has none). DataError when it is asked to and there is none."""
    if args.speech_input == "embedding" and bundle_encoder is None:
        raise DataError(
            "--speech-input embedding: the bundle has no encoder; pass --encoder FILE (or "
            "--speech-input statistics)"
        )
    return bundle_encoder is not None and args.speech_input != "statistics"


def _temperatures_of(path: Path, console: Console) -> tuple[float, float]:
    """(the bundle's, its alone network's) calibration temperatures (`--calibrated-as`)."""
    from ser.bundle import BundleError, load_bundle

    try:
        bundle = load_bundle(path)
    except BundleError as exc:
        raise DataError(str(exc)) from exc
    alone = bundle.alone.temperature if bundle.alone is not None else 1.0
    console.print(
        f"readings calibrated as {path} calibrates them live (temperature {bundle.temperature:.3f}"
        f", alone network {alone:.3f}) before the alone mix and the history gate"
    )
    return bundle.temperature, alone


def _bundle_encoder(out: Path) -> EncoderChoice | None:
    """The encoder of the bundle at `out` and the layers its head reads (None: none)."""
    from ser.bundle import BundleError, load_bundle

    try:
        section = load_bundle(out).encoder
    except BundleError as exc:
        raise DataError(str(exc)) from exc
    return None if section is None else EncoderChoice(section.encoder_path, section.layers)


def _speech_detector(
    args: argparse.Namespace,
    console: Console,
    data: Dataset,
    evaluate: bool,
    encoder: EncoderChoice | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train (and evaluate) the speech detector; returns the model and its manifest record.
    `encoder`: the detector reads its embedding (`data.embeddings`, by that encoder) instead
    of the statistics."""
    from ser_train import nonspeech, speech

    config = speech.DetectorConfig(seed=args.seed)
    if args.nonspeech_per_kind:
        n = max(1, args.nonspeech_per_kind)
        config = replace(config, train_per_kind=n, test_per_kind=max(1, n // 3))
    with _progress(console) as progress:
        total = (config.train_per_kind + (config.test_per_kind if evaluate else 0)) * len(
            nonspeech.KINDS
        )
        view = "embeddings" if encoder is not None else "features"
        task = progress.add_task(f"{view} of generated non-speech", total=total)
        cache_dir = None if args.no_cache else (args.cache_dir or default_cache_dir())
        train_noise = speech.nonspeech_features(
            config.train_per_kind,
            0,
            max(1, args.workers),
            lambda: progress.advance(task),
            cache_dir=cache_dir,
            encoder=encoder,
        )
        test_noise = (
            speech.nonspeech_features(
                config.test_per_kind,
                speech.TEST_SEED,
                max(1, args.workers),
                lambda: progress.advance(task),
                cache_dir=cache_dir,
                encoder=encoder,
            )
            if evaluate
            else None
        )
    record: dict[str, Any] = {
        "threshold": config.threshold,
        "config": config.to_dict(),
        "nonspeech_kinds": list(nonspeech.KINDS),
        "reads": "statistics",
        "input": "unadapted statistics (streamer.features.analyse(...).vector)",
    }
    if encoder is not None:
        if data.embeddings is None:
            raise ValueError("a speech detector over the embedding needs the clips' embeddings")
        data = replace(data, features=data.embeddings)
        record["reads"] = "embedding"
        record["input"] = (
            f"the encoder's unadapted embedding (layers {','.join(map(str, encoder.layers))}: "
            "what the emotion networks read; streamer.encoder.UtteranceEncoder)"
        )
    if test_noise is not None:
        with console.status("evaluating the speech detector"):
            record["evaluation"] = speech.evaluate_detector(data, train_noise, test_noise, config)
        for line in speech.describe(record["evaluation"]):
            console.print(line)
    model = speech.fit_detector(
        speech.speech_rows(data, np.ones(len(data.y), bool)), train_noise[0], config
    )
    return model, record


def _test_variants(text: str) -> list[str]:
    """`--test-variants`: a comma-separated subset of TEST_VARIANTS (argparse shows the error)."""
    names = [v for v in text.split(",") if v]
    unknown = [v for v in names if v not in TEST_VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"not a test variant: {', '.join(unknown)} (choose from {', '.join(TEST_VARIANTS)})"
        )
    return names


def run(args: argparse.Namespace, console: Console) -> int:
    started = time.perf_counter()
    evaluate = not args.skip_eval
    variants = list(args.augment)
    if evaluate and not args.no_robustness:
        variants = [*args.test_variants, *variants]
    if args.speech_only:
        from ser_train.export import update_speech_section, write_speech_detector

        if not (args.out / "manifest.json").is_file():
            raise DataError(f"--speech-only: no bundle at {args.out}; pass --out BUNDLE_FOLDER")
        # natural conditions (music, babble, laughter, ...) teach the detector that speech
        # under them is still speech, and are scored on held-out speakers
        bundle_encoder = _bundle_encoder(args.out)
        encoder = bundle_encoder if _speech_encoder(args, bundle_encoder) else None
        # `_load` embeds the clips with the bundle's encoder (none: no embeddings wanted)
        args.encoder = encoder.path if encoder is not None else None
        if encoder is not None:
            args.encoder_layers = ",".join(map(str, encoder.layers))
        data = _load(args, console, [*TEST_VARIANTS, *args.augment, *NATURAL_VARIANTS])
        model, record = _speech_detector(args, console, data, evaluate, encoder)
        update_speech_section(args.out, write_speech_detector(args.out, model, record))
        console.print(f"wrote the speech detector into {args.out}")
        return 0
    setup = _configs(args)
    gate = _history_gate(args.history_gate) if setup.adapt else None
    alone_mix = _alone_mix(args, setup)
    temperatures = _temperatures_of(args.calibrated_as, console) if args.calibrated_as else None
    if args.sweep_gate and not setup.adapt:
        raise DataError("--sweep-gate gates speaker adaptation: drop --no-adaptation")
    if args.sweep_alone_weights and not setup.has_alone:
        raise DataError("--sweep-alone-weights weighs an alone network: add --alone-network")
    if args.alone_only:
        if not (args.out / "manifest.json").is_file():
            raise DataError(f"--alone-only: no bundle at {args.out}; pass --out BUNDLE_FOLDER")
        if not setup.has_alone or gate is None or not evaluate:
            raise DataError(
                "--alone-only needs speaker adaptation, a history gate, the evaluation and no "
                "--cnn: drop --no-adaptation, --history-gate off, --skip-eval, --cnn"
            )
        _check_alone_only_setup(args.out / "manifest.json", setup)
    data = _load(
        args,
        console,
        variants,
        check=lambda clips: _check_before_featurizing(clips, setup, args.protocol, evaluate),
    )
    protocols = select(args.protocol, data.corpora) if evaluate else []
    args.out.mkdir(parents=True, exist_ok=True)
    fold_cache = None
    if not args.no_cache:
        fold_cache = (args.cache_dir / "folds") if args.cache_dir else default_fold_cache_dir()
    # an evaluation whose folds are all cached trains nothing: no TensorFlow to import (~4 s)
    device = None
    if not args.eval_only or folds_to_train(data, protocols, setup, fold_cache):
        from ser_train.model import training_device

        device = training_device()
        console.print(f"training on {device}")

    t1 = time.perf_counter()
    evaluations: list[dict[str, Any]] = []
    memo: dict[str, dict[str, Any]] = {}  # every fold's predictions, for the second pass
    for protocol in protocols:
        with _progress(console) as progress:
            n_folds = len(protocol.folds(data.corpus, data.speakers, data.y))
            task = progress.add_task(
                f"{protocol.name}: folds (epochs)", total=n_folds * setup.epochs_per_fold()
            )

            def fold_done(fold: Any, cached: bool, task: Any = task) -> None:
                if cached:
                    progress.advance(task, setup.epochs_per_fold())

            evaluation = evaluate_protocol(
                data,
                protocol,
                setup,
                cache_dir=fold_cache,
                on_epoch=lambda _e, task=task: progress.advance(task),  # type: ignore[misc]
                on_fold=fold_done,
                gate=gate,
                alone_mix=alone_mix,
                memo=memo,
            )
        evaluations.append(evaluation)
    # calibration is fitted on the networks' own readings (pass 1); live applies it to each
    # reading before it mixes an alone reading and gates the history, so the sessions are
    # then scored that way (pass 2: the same folds, from `memo`)
    calibration = calibrate_protocols(evaluations)
    alone_calibration = calibrate_protocols(evaluations, "_oof_alone")
    if temperatures is None:
        temperatures = (
            float(calibration["temperature"]) if calibration is not None else 1.0,
            float(alone_calibration["temperature"]) if alone_calibration is not None else 1.0,
        )
    applied: tuple[float, float] = temperatures

    def as_live(gate: HistoryGate | None, mix: AloneMix | None) -> list[dict[str, Any]]:
        """Every protocol's folds (from `memo`) scored as live reads them."""
        return [
            evaluate_protocol(
                data,
                protocol,
                setup,
                cache_dir=fold_cache,
                gate=gate,
                alone_mix=mix,
                temperatures=applied,
                memo=memo,
            )
            for protocol in protocols
        ]

    if args.sweep_gate:
        return _sweep_gates(
            args, console, as_live, current=(gate, alone_mix), temperatures=temperatures
        )
    if evaluations and (gate is not None or setup.has_alone):
        evaluations = [
            as_live_reads(first, second, temperatures)
            for first, second in zip(evaluations, as_live(gate, alone_mix), strict=True)
        ]
        console.print(
            f"sessions scored as live reads them: each reading calibrated (temperature "
            f"{temperatures[0]:.2f}, the alone network's {temperatures[1]:.2f}) before the "
            "alone mix and the history gate"
        )
    for evaluation in evaluations:
        print_evaluation(console, evaluation)
        if args.combine_report and (rows := compare_combinations(evaluation)):
            console.print(combination_table(evaluation["protocol"], rows))
    if calibration is not None:
        print_calibration(console, calibration)
    if alone_calibration is not None:
        console.print("the network for an utterance alone:")
        print_calibration(console, alone_calibration)
    evaluation_s = time.perf_counter() - t1
    if args.alone_only:
        return _add_alone_network(
            args,
            console,
            data,
            setup=setup,
            gate=gate,
            evaluations=evaluations,
            alone_calibration=alone_calibration,
            started=started,
        )

    t2 = time.perf_counter()
    speech_model = speech_record = None
    if not args.no_speech_detector:
        encoder = None  # the encoder and layers `_configs` checked
        if args.encoder is not None and setup.encoder is not None:
            encoder = EncoderChoice(args.encoder, tuple(setup.encoder["layers"]))
        reads_embedding = _speech_encoder(args, encoder)
        speech_model, speech_record = _speech_detector(
            args, console, data, evaluate, encoder if reads_embedding else None
        )
    speech_s = time.perf_counter() - t2

    if evaluations:
        from ser_train.export import confusion_title, json_default

        summary = _summary(
            evaluations,
            calibration=calibration,
            alone_calibration=alone_calibration,
            speech=speech_record,
            setup=setup,
            gate=gate,
            alone_mix=alone_mix,
        )
        (args.out / "evaluation.json").write_text(
            json.dumps(summary, indent=2, default=json_default) + "\n"
        )
        for i, e in enumerate(evaluations):
            name = "confusion.png" if i == 0 else f"confusion-{e['protocol']}.png"
            plot_confusion(
                e["pooled"]["confusion"], e["labels"], confusion_title(e), args.out / name
            )
    if args.eval_only:
        console.print(f"evaluation written to {args.out} in {time.perf_counter() - started:.0f} s")
        return 0

    from ser_train.export import train_final, write_bundle, write_speech_detector

    t3 = time.perf_counter()
    with _progress(console) as progress:
        task = progress.add_task(
            "final model on all speakers (epochs)", total=setup.epochs_per_fold()
        )
        final = train_final(data, setup, lambda _e: progress.advance(task))
    speech_section = (
        write_speech_detector(args.out, speech_model, speech_record)
        if speech_model is not None and speech_record is not None
        else None
    )
    final_s = time.perf_counter() - t3
    assert device is not None  # this run trains (not --eval-only)
    write_bundle(
        args.out,
        data,
        setup,
        final,
        device=device,
        evaluations=evaluations,
        calibration=calibration,
        speech=speech_section,
        encoder=args.encoder,
        gate=gate,
        alone_calibration=alone_calibration,
        alone_mix=alone_mix,
        seconds={
            "evaluation": round(evaluation_s, 1),
            **{f"protocol_{e['protocol']}": e["seconds"] for e in evaluations},
            "speech_detector": round(speech_s, 1),
            "final_model": round(final_s, 1),
            "total": round(time.perf_counter() - started, 1),
        },
    )
    console.print(
        f"wrote bundle {args.out} in {time.perf_counter() - started:.0f} s "
        f"(evaluation {evaluation_s:.0f} s, speech detector {speech_s:.0f} s, "
        f"final {final_s:.0f} s)"
    )
    return 0


def _sweep_gates(
    args: argparse.Namespace,
    console: Console,
    evaluate: Callable[[HistoryGate, AloneMix | None], list[dict[str, Any]]],
    *,
    current: tuple[HistoryGate | None, AloneMix | None],
    temperatures: tuple[float, float],
) -> int:
    """--sweep-gate: every setting of the grid scored on the same folds (`evaluate`), written
    to gate_sweep.json with the one train/gate_sweep.py's rule chooses; exit 0."""
    from ser_train import gate_sweep
    from ser_train.export import json_default

    gate, mix = current
    weights = args.sweep_alone_weights or ((mix.weight,) if mix is not None else (1.0,))
    lows, highs, warmups = args.sweep_gate
    settings = gate_sweep.grid(lows, highs, warmups, weights)
    if gate is not None:
        shipped = gate_sweep.Setting(gate, mix.weight if mix is not None else 1.0)
        settings = [shipped, *(s for s in settings if s != shipped)]
    started = time.perf_counter()
    scored = []
    with _progress(console) as progress:
        task = progress.add_task("history gates scored", total=len(settings))
        for setting in settings:
            setting_mix = replace(mix, weight=setting.alone_weight) if mix is not None else None
            scored.append(
                gate_sweep.Scored(setting, gate_sweep.cells(evaluate(setting.gate, setting_mix)))
            )
            progress.advance(task)
    chosen = gate_sweep.choose(scored)
    record = {
        "rule": gate_sweep.__doc__,
        "bound": gate_sweep.BOUND,
        "temperatures": {"temperature": temperatures[0], "alone_temperature": temperatures[1]},
        "current": scored[0].to_dict() if gate is not None else None,
        "chosen": chosen.to_dict() if chosen is not None else None,
        "settings": [s.to_dict() for s in scored],
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gate_sweep.json").write_text(
        json.dumps(record, indent=2, default=json_default) + "\n"
    )
    shown = [scored[0]] if gate is not None else []
    if chosen is not None and chosen is not scored[0]:
        shown.append(chosen)
    for row in shown:
        console.print(
            f"{'chosen' if row is chosen else 'current'} {row.setting.label()}: mean "
            f"{row.mean_accuracy():.1%} over protocols and session kinds, worst change "
            f"{row.worst_change():+.2%}"
        )
    if shown:
        console.print(gate_sweep_table(shown, chosen))
    if chosen is None:
        console.print(f"no setting keeps every session within {gate_sweep.BOUND:+.0%} of alone")
    console.print(f"{len(scored)} settings written to {args.out / 'gate_sweep.json'}")
    return 0


def _summary(
    evaluations: list[dict[str, Any]],
    *,
    calibration: dict[str, Any] | None,
    alone_calibration: dict[str, Any] | None,
    speech: dict[str, Any] | None,
    setup: Setup,
    gate: HistoryGate | None,
    alone_mix: AloneMix | None = None,
) -> dict[str, Any]:
    """evaluation.json's content."""
    return {
        "protocols": {e["protocol"]: public(e) for e in evaluations},
        "calibration": calibration,
        "alone_calibration": alone_calibration,
        "speech": speech,
        "training": setup.to_dict(),
        "history_gate": gate.to_dict() if gate is not None else None,
        "alone_mix": alone_mix.to_dict() if alone_mix is not None else None,
    }


def _check_alone_only_setup(manifest_path: Path, setup: Setup) -> None:
    """--alone-only, before any work: the bundle's networks must come from this run's setup
    (the per-fold scores are compared again once the folds are scored)."""
    from ser_train.record_variants import RecordError, check_same_setup

    try:
        manifest = json.loads(manifest_path.read_text())
        check_same_setup(manifest, setup.to_dict())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = f"no {exc} key" if isinstance(exc, KeyError) else str(exc)
        raise DataError(
            f"--alone-only: {manifest_path} is not a readable bundle manifest ({reason}); "
            "pass --out BUNDLE_FOLDER of a bundle ser-train wrote"
        ) from exc
    except RecordError as exc:
        raise DataError(f"--alone-only: {exc}") from exc


def _add_alone_network(
    args: argparse.Namespace,
    console: Console,
    data: Dataset,
    *,
    setup: Setup,
    gate: HistoryGate | None,
    evaluations: list[dict[str, Any]],
    alone_calibration: dict[str, Any] | None,
    started: float,
) -> int:
    """--alone-only: the bundle at --out gets the alone network, the gated scores and session
    kinds, when its networks are provably the evaluation's (train.record_variants.adopt_gate)."""
    from ser_train.export import json_default, train_final_alone, write_alone
    from ser_train.model_card import CARD, render
    from ser_train.record_variants import RecordError, adopt_gate

    path = args.out / "manifest.json"
    manifest = json.loads(path.read_text())
    summary = _summary(
        evaluations,
        calibration=None,
        alone_calibration=alone_calibration,
        speech=None,
        setup=setup,
        gate=gate,
    )
    try:
        updated = adopt_gate(manifest, summary)
    except RecordError as exc:
        raise DataError(f"--alone-only: {exc}") from exc
    with console.status("the alone network on all speakers"):
        model, reads_embedding = train_final_alone(data, setup, lambda _e: None)
    manifest["alone"] = write_alone(
        args.out, model, reads_embedding, alone_calibration, mix=_alone_mix(args, setup), data=data
    )
    path.write_text(json.dumps(manifest, indent=2, default=json_default) + "\n")
    (args.out / CARD).write_text(render(args.out))
    record = args.out / "evaluation.json"  # the bundle's own run, when it kept it
    recorded = json.loads(record.read_text()) if record.is_file() else {}
    recorded["alone_evaluation"] = summary
    record.write_text(json.dumps(recorded, indent=2, default=json_default) + "\n")
    console.print(
        f"gave {args.out} a network for the utterance alone and the gated scores of "
        f"{', '.join(updated)} in {time.perf_counter() - started:.0f} s"
    )
    return 0


def _refused(args: argparse.Namespace) -> str | None:
    """The one-line error for options that do not go together, or None."""
    if args.eval_only and args.skip_eval:
        return "--eval-only and --skip-eval exclude each other"
    if (args.sweep_gate or args.sweep_alone_weights) and not args.eval_only:
        return "--sweep-gate chooses a gate from the folds' readings: add --eval-only"
    if args.sweep_alone_weights and not args.sweep_gate:
        return "--sweep-alone-weights goes with --sweep-gate"
    if args.calibrated_as is not None and not args.eval_only:
        return (
            "--calibrated-as scores for study only: add --eval-only (a bundle records its "
            "scores as trained)"
        )
    if args.encoder is not None and not args.encoder.is_file():
        return (
            f"--encoder {args.encoder}: no such file; make one with "
            "`python -m ser_train.encoder.convert --out FILE`"
        )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if (refusal := _refused(args)) is not None:
        print(f"ser-train: error: {refusal}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:  # tf.function retracing notes from Keras's predict, not actionable
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    console = Console(stderr=False)
    # TensorFlow's C++ start-up chatter (absl, CUDA probing on a machine without a GPU) is
    # filtered from stderr unless -v; its real warnings and errors still show.
    try:
        with NativeStderrFilter(enabled=not args.verbose):
            return run(args, console)
    except DataError as exc:
        print(f"ser-train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "ser-train: interrupted (finished folds are cached; run again to resume)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
