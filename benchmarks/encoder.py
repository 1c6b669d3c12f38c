"""Benchmark the Whisper-base encoder as `ser-live` would run it (LiteRT, one thread).

For each encoder file: load time and RSS of a fresh process that imports only
`ser.encoder` and loads the file, then ms of encoder per second of audio on real RAVDESS
clips (trimmed to their own length, one clip per call and batches of 8), and Whisper's log-mel
cost. Every file after the first is also compared with the first on the layers both have (one
clip per call, plus one input of over 30 s, which runs as chunks): a trimmed encoder
(`convert --blocks N`) must give the whole one's layers 0..N bit for bit.

Usage: .venv/bin/python benchmarks/encoder.py ENCODER.tflite [...] [--data ../shared/data/ravdess]
        [--data DIR ...] [--clips 60]   (--clips per --data folder)
Prints a Markdown table; BENCHMARKS.md records the output. Make the encoder files with
`python -m ser_train.encoder.convert --quantize float16|int8|none --out FILE`. RSS is the fresh
process's peak (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

LOAD = """
import json, sys, time
t = time.perf_counter()
from ser.encoder import Encoder, whisper_log_mel
import numpy as np
e = Encoder(sys.argv[1], num_threads=1)
e.embed([whisper_log_mel(np.zeros(48000, np.float32))])
# VmHWM, not ru_maxrss: after fork + exec ru_maxrss can still hold the parent's peak
peak_kb = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM"))
print(json.dumps({"start_s": time.perf_counter() - t, "rss_mb": peak_kb / 1024}))
"""


def fresh_process(path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", LOAD, str(path)], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("encoders", type=Path, nargs="+")
    p.add_argument("--data", type=Path, action="append", help="repeatable (default: RAVDESS)")
    p.add_argument("--clips", type=int, default=60)
    args = p.parse_args()

    import numpy as np

    from ser.audio_io import read_audio
    from ser.encoder import Encoder, whisper_log_mel

    files = []
    for folder in args.data or [Path("../shared/data/ravdess")]:
        found = sorted(folder.rglob("*.flac"))
        files += found[:: max(1, len(found) // args.clips)][: args.clips]
    audio = [read_audio(f, 16_000) for f in files]
    seconds = sum(len(a) for a in audio) / 16_000
    t = time.perf_counter()
    mels = [whisper_log_mel(a) for a in audio]
    mel_ms = 1000 * (time.perf_counter() - t) / seconds
    long = whisper_log_mel(np.concatenate(audio[:12]))  # over 30 s: chunked
    print(
        f"{len(files)} clips, {seconds:.0f} s of audio; Whisper log-mel "
        f"{mel_ms:.2f} ms per s of audio\n"
    )
    outputs = []
    print(
        "| encoder file | MB | process start + first call (s) | RSS (MB) | "
        "ms per s of audio, 1 clip/call | batches of 8 |"
    )
    print("|---|---|---|---|---|---|")
    for path in args.encoders:
        fresh = fresh_process(path)
        encoder = Encoder(path, num_threads=1)
        encoder.embed(mels[:2])
        t = time.perf_counter()
        pooled = [encoder.embed([mel])[0] for mel in mels]
        single = 1000 * (time.perf_counter() - t) / seconds
        outputs.append((path, [*pooled, encoder.embed([long])[0]]))
        t = time.perf_counter()
        for i in range(0, len(mels), 8):
            encoder.embed(mels[i : i + 8])
        batched = 1000 * (time.perf_counter() - t) / seconds
        print(
            f"| {path.name} | {path.stat().st_size / 1e6:.1f} | {fresh['start_s']:.2f} | "
            f"{fresh['rss_mb']:.0f} | {single:.1f} | {batched:.1f} |"
        )
    (first, reference), *others = outputs
    for path, got in others:
        n = min(len(got[0]), len(reference[0]))  # the layers both files have
        same = sum(np.array_equal(a[:n], b[:n]) for a, b in zip(got, reference, strict=True))
        worst = max(float(np.abs(a[:n] - b[:n]).max()) for a, b in zip(got, reference, strict=True))
        print(
            f"\n{path.name} against {first.name}, layers 0-{n - 1}: identical on {same} of "
            f"{len(got)} inputs ({long.shape[0] / 100:.0f} s one of them), largest difference "
            f"{worst:.3g}"
        )


if __name__ == "__main__":
    main()
