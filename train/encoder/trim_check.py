"""Does the encoder need Whisper's 30 s padding? Pooled statistics of trimmed against padded input.

    python -m ser_train.encoder.trim_check [--weights DIR] [--per-folder N] PATH [PATH ...]

Whisper was trained on 30 s windows; ser runs each utterance's own frames (a tenth of the
compute for a 3 s utterance), which changes what attention sees. For each clip (PATH: an audio
file, or a folder whose sorted audio files are sampled evenly, N per folder) and each layer of
the encoder (0: the convolutional stem, 1-6: the transformer blocks, 6 after the final norm),
this pools the mean and standard deviation over the clip's own output frames of (a) the trimmed
input and (b) the input zero-padded to 30 s (attention over all 1500 frames), and prints the
cosine of the two per layer: mean and lowest over the clips. Float32 Keras weights, loaded as
`train.encoder.convert` loads them.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ser.encoder import ENCODER_SPEC, EncoderSpec, whisper_log_mel

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".mp3")


def build_hidden(config: Any = None) -> Any:
    """(log_mel (B, T, 80), frames (B,)) -> [layer 0 .. blocks] hidden states, each (B, T', W)."""
    import keras

    from ser_train.encoder.whisper import BASE, _layers

    inputs, _, hidden = _layers(config or BASE)
    return keras.Model(inputs, hidden, name="whisper_encoder_hidden")


def _pool(h: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    h64 = h.astype(np.float64)
    return np.concatenate([h64.mean(axis=0), h64.std(axis=0)])


def trimmed_vs_padded(
    model: Any, clips: Sequence[npt.NDArray[np.float32]], spec: EncoderSpec = ENCODER_SPEC
) -> npt.NDArray[np.float64]:
    """(n_clips, n_layers) cosine between each layer's pooled statistics (mean | std over the
    clip's output frames) of the trimmed and of the 30 s zero-padded input. `clips`: 16 kHz mono
    float32, at most 30 s each."""
    window = spec.max_frames * spec.hop_length
    out = []
    for clip in clips:
        audio = np.asarray(clip, np.float32)[:window]
        trimmed = whisper_log_mel(audio, spec.sample_rate, spec)
        padded_audio = np.zeros(window, np.float32)
        padded_audio[: audio.size] = audio
        padded = whisper_log_mel(padded_audio, spec.sample_rate, spec)[: spec.max_frames]
        keep = (len(trimmed) + 1) // 2  # output frames of the clip (the stem halves time)
        a = model.predict([trimmed[None], np.array([len(trimmed)], np.int32)], verbose=0)
        b = model.predict([padded[None], np.array([len(padded)], np.int32)], verbose=0)
        row = []
        for ha, hb in zip(a, b, strict=True):
            pa, pb = _pool(ha[0, :keep]), _pool(hb[0, :keep])
            row.append(float(pa @ pb / (np.linalg.norm(pa) * np.linalg.norm(pb))))
        out.append(row)
    return np.array(out, dtype=np.float64)


def select_files(paths: Sequence[Path], per_folder: int) -> list[Path]:
    """Files as given; for a folder, `per_folder` of its sorted audio files, evenly spaced."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise ValueError(f"{path}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
            step = max(1, len(found) // per_folder)
            files += found[::step][:per_folder]
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"{path}: no such file or folder")
    return files


def main(argv: list[str] | None = None) -> int:
    from ser.audio_io import AudioReadError, read_audio
    from ser_train.encoder.convert import WeightsError, joined_wheel_model
    from ser_train.encoder.ct2 import Ct2FormatError, read_model
    from ser_train.encoder.whisper import load_ct2_weights

    p = argparse.ArgumentParser(prog="python -m ser_train.encoder.trim_check", description=__doc__)
    p.add_argument("paths", type=Path, nargs="+", help="audio files or folders")
    p.add_argument("--per-folder", type=int, default=24, help="clips taken from each folder")
    p.add_argument("--weights", type=Path, default=None, help="a CTranslate2 Whisper directory")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        files = select_files(args.paths, args.per_folder)
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = args.weights or joined_wheel_model(Path(tmp))
            variables = read_model(model_dir / "model.bin", prefix="encoder/").variables
        model = build_hidden()
        load_ct2_weights(model, variables)
        clips = [read_audio(f) for f in files]
    except (ValueError, OSError, AudioReadError, WeightsError, Ct2FormatError) as exc:
        print(f"trim_check: error: {exc}", file=sys.stderr)
        return 2
    cos = trimmed_vs_padded(model, clips)
    seconds = [c.size / ENCODER_SPEC.sample_rate for c in clips]
    print(f"{len(clips)} clips, {np.mean(seconds):.1f} s on average; cosine trimmed vs padded")
    print("| layer | " + " | ".join(str(i) for i in range(cos.shape[1])) + " |")
    print("|---|" + "---|" * cos.shape[1])
    print("| mean | " + " | ".join(f"{v:.3f}" for v in cos.mean(axis=0)) + " |")
    print("| lowest | " + " | ".join(f"{v:.3f}" for v in cos.min(axis=0)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
