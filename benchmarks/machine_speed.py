"""This machine's speed right now, as the feature workers feel it: the shipped `default` bundle's
encoder, ms per second of audio, one clip per call, one thread, in a fresh process.

Usage: .venv/bin/python benchmarks/machine_speed.py [--data ../shared/data/ravdess] [--clips 24]

Machines of one class differ, and one machine's speed moves by 5-10 % within an hour: at the
edge of capacity that moves a latency p95 by hundreds of ms. `benchmarks/serve.py` runs this
before each load level and prints it beside the level, so that rows from different hours can be
compared (`benchmarks/encoder.py` is the full encoder benchmark; this is its 3-second probe).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, os, statistics, sys, time
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from pathlib import Path
from ser.audio_io import read_audio
from ser.bundle import load_bundle, resolve_bundle_path
from ser.encoder import Encoder, whisper_log_mel
data, clips, min_s = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
found = sorted(data.rglob("*.flac"))
files = found[:: max(1, len(found) // clips)][:clips]
audio = [read_audio(f, 16_000) for f in files]
seconds = sum(len(a) for a in audio) / 16_000
mels = [whisper_log_mel(a) for a in audio]
section = load_bundle(resolve_bundle_path("default")).encoder
encoder = Encoder(section.encoder_path, num_threads=1)
encoder.embed(mels[:2])
passes, start = [], time.perf_counter()
while not passes or time.perf_counter() - start < min_s:
    t = time.perf_counter()
    for mel in mels:
        encoder.embed([mel])
    passes.append(1000 * (time.perf_counter() - t) / seconds)
print(json.dumps({"ms_per_s": statistics.median(passes), "passes": len(passes)}))
"""


def encoder_ms_per_s(data: Path, clips: int = 24, min_s: float = 2.0) -> float:
    """Median over passes of at least `min_s` seconds in all: ms of the shipped encoder per
    second of audio over `clips` RAVDESS clips of `data` (a fresh process, one thread)."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(data), str(clips), str(min_s)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["ms_per_s"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/ravdess"))
    p.add_argument("--clips", type=int, default=24)
    args = p.parse_args()
    print(f"shipped encoder: {encoder_ms_per_s(args.data, args.clips):.2f} ms per s of audio")


if __name__ == "__main__":
    main()
