"""Benchmark the base install: wheel size, installed size by package, cold start.

Usage: .venv/bin/python benchmarks/install.py

Builds the wheel (`pip wheel --no-deps`), installs it into a fresh venv (dependencies from the
package index, pip's cache allowed), then prints Markdown: the wheel's size, the venv's
site-packages in total and its largest packages, and `ser-live` start-up (process launch to the
"listening on" line on a short file, median of 5) as a user of that venv would see it.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from proctree import seconds_to_listening

REPO = Path(__file__).resolve().parents[1]


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", root, REPO], check=True
        )
        (wheel,) = root.glob("ser-*.whl")
        subprocess.run([sys.executable, "-m", "venv", root / "venv"], check=True)
        py = root / "venv" / "bin" / "python"
        subprocess.run([py, "-m", "pip", "install", "-q", wheel], check=True)
        (site,) = (root / "venv" / "lib").glob("python3*/site-packages")
        sizes: dict[str, int] = {}
        for entry in site.iterdir():
            if entry.name.endswith((".dist-info", ".pth")) or entry.name.startswith("_"):
                continue
            sizes[entry.name] = _size(entry) if entry.is_dir() else entry.stat().st_size
        audio = root / "speech.flac"
        demo = REPO / "streamer" / "demo" / "ravdess-demo.flac"
        audio.write_bytes(demo.read_bytes())
        starts = []
        for _ in range(5):
            start_s, proc = seconds_to_listening(
                [
                    str(root / "venv" / "bin" / "ser-live"),
                    "--input",
                    str(audio),
                    "--json",
                    "--no-mqtt",
                ],
                cwd=root,
            )
            proc.wait()
            starts.append(start_s)
        print("| item | value |\n|---|---|")
        print(f"| wheel `{wheel.name}` | {wheel.stat().st_size / 1e6:.2f} MB |")
        print(f"| installed site-packages (ser and dependencies) | {_size(site) / 1e6:.0f} MB |")
        top = sorted(sizes.items(), key=lambda kv: -kv[1])[:6]
        print("| largest | " + ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in top) + " |")
        print(f"| scipy installed | {'yes' if 'scipy' in sizes else 'no'} |")
        print(f"| cold start to 'listening on' (median of 5) | {statistics.median(starts):.2f} s |")


if __name__ == "__main__":
    main()
