"""docs/dashboard.svg: the terminal dashboard after the demo recording, as an image for the README.

    .venv/bin/python scripts/screenshot.py

Runs `ser-live --input <demo> --json` (real results of the shipped model), feeds them to the
dashboard's state and renders it with Rich's SVG export (100 x 34 characters).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402

from ser.bundle import load_bundle, resolve_bundle_path  # noqa: E402
from ser.cli import DEMO_FILE, DEMO_NOTE  # noqa: E402
from ser.messages import Result  # noqa: E402
from ser.sinks.dashboard import render  # noqa: E402
from ser.state import LiveState  # noqa: E402

WIDTH, HEIGHT = 100, 34


def main() -> int:
    proc = subprocess.run(
        [sys.executable, "-m", "ser.cli", "--input", str(DEMO_FILE), "--json", "--no-mqtt"],
        capture_output=True,
        check=True,
        cwd=REPO,
    )
    bundle = load_bundle(resolve_bundle_path("default"))
    state = LiveState(
        bundle.name,
        bundle.accuracy_note(short=True),
        bundle.labels,
        source="demo",
        started_wall_s=0.0,
    )
    state.note = DEMO_NOTE
    state.level_db = -31.0
    for line in proc.stdout.decode().splitlines():
        result = Result.from_dict(json.loads(line))
        state.record(Result(**{**result.__dict__, "source": "demo"}))
    console = Console(
        record=True, width=WIDTH, height=HEIGHT, force_terminal=True, file=io.StringIO()
    )
    console.print(render(state, now_s=18.0, width=WIDTH, height=HEIGHT))
    out = REPO / "docs" / "dashboard.svg"
    console.save_svg(str(out), title="ser-live --demo")
    print(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
