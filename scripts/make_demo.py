"""Build streamer/demo/ravdess-demo.flac, the recording `ser-live --demo` plays.

Five RAVDESS speech clips of one actor (strong intensity, statement 1: "Kids are talking by the
door"), each trimmed to its speech +- 0.25 s, joined by 1.2 s of silence, 16 kHz mono FLAC.

    .venv/bin/python scripts/make_demo.py [--data ../shared/data/ravdess]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

ACTOR = 12
# emotion codes (RAVDESS): 01 neutral, 03 happy, 04 sad, 05 angry, 08 surprised
CLIPS = ("01-01", "03-02", "04-02", "05-02", "08-02")
PAD_S = 0.25
GAP_S = 1.2
RATE = 16_000
OUT = Path(__file__).resolve().parents[1] / "streamer" / "demo" / "ravdess-demo.flac"


def trimmed(audio: np.ndarray, below_peak_db: float = 35.0) -> np.ndarray:
    """The span of 10 ms frames within `below_peak_db` of the loudest, padded by PAD_S."""
    hop = RATE // 100
    frames = audio[: audio.size // hop * hop].reshape(-1, hop).astype(np.float64)
    db = 10 * np.log10((frames**2).mean(axis=1) + 1e-12)
    loud = np.flatnonzero(db >= db.max() - below_peak_db)
    pad = int(PAD_S * RATE)
    return audio[max(0, loud[0] * hop - pad) : min(audio.size, (loud[-1] + 1) * hop + pad)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/ravdess"))
    args = p.parse_args()
    gap = np.zeros(int(GAP_S * RATE), dtype=np.int16)
    parts = [gap[: RATE // 2]]
    for clip in CLIPS:
        emotion, intensity = clip.split("-")
        name = f"03-01-{emotion}-{intensity}-01-01-{ACTOR:02d}.flac"
        audio, rate = sf.read(args.data / f"Actor_{ACTOR:02d}" / name, dtype="int16")
        assert rate == RATE and audio.ndim == 1, (name, rate, audio.shape)
        parts += [trimmed(audio), gap]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    sf.write(OUT, np.concatenate(parts), RATE, format="FLAC", subtype="PCM_16")
    print(f"{OUT}: {sum(len(x) for x in parts) / RATE:.1f} s, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
