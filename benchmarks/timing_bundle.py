"""A copy of a bundle whose encoder keeps fewer of Whisper-base's blocks: for timing only.

Usage: .venv/bin/python benchmarks/timing_bundle.py ENCODER.tflite --out DIR [--model default]

ENCODER.tflite: an encoder with fewer blocks, made with `python -m ser_train.encoder.convert
--quantize int8 --blocks N --out ENCODER.tflite` (the `encoder` extra). The copy's head reads the
encoder's last two layers (N - 1, N) instead of the bundle's own: the same number of inputs, so
every network runs exactly the work a bundle trained for those layers would run, but its
networks were not trained for them: **its labels are meaningless**. It measures what fewer
blocks would buy in time (`benchmarks/serve.py --model DIR`), never accuracy; its manifest is
named "timing-only" so that it cannot pass for a model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

from ser.bundle import resolve_bundle_path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("encoder", type=Path, help="an encoder .tflite with fewer blocks")
    p.add_argument("--out", type=Path, required=True, help="the folder to write (must not exist)")
    p.add_argument("--model", default="default", help="bundle folder or shipped name")
    args = p.parse_args()
    record_path = Path(f"{args.encoder}.json")
    if not record_path.is_file():
        print(f"error: {record_path} not found: make the encoder with convert", file=sys.stderr)
        return 2
    blocks = int(json.loads(record_path.read_text())["blocks"])
    source = resolve_bundle_path(args.model)
    manifest = json.loads((source / "manifest.json").read_text())
    layers = manifest["encoder"]["layers"]
    if len(layers) != 2 or blocks < 2:
        print("error: needs a bundle reading 2 layers and an encoder of 2+ blocks", file=sys.stderr)
        return 2
    if args.out.exists():
        print(f"error: {args.out} exists: choose a new --out folder", file=sys.stderr)
        return 2
    shutil.copytree(source, args.out)
    data = args.encoder.read_bytes()
    (args.out / manifest["encoder"]["file"]).write_bytes(data)
    manifest["name"] = "timing-only"
    manifest["encoder"].update(
        sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), layers=[blocks - 1, blocks]
    )
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(
        f"{args.out}: {source.name} with a {blocks}-block encoder, head on layers "
        f"{blocks - 1},{blocks} (timing only: its labels are meaningless)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
