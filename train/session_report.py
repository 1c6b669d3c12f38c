"""Session-kind tables from `ser-train` evaluations, as Markdown (for EXPERIMENTS.md/README).

    python -m ser_train.session_report EVALUATION.json [...]   (or a bundle's manifest.json)

One row per protocol and session kind: accuracy, unweighted accuracy, the same utterances each
alone, and the change history makes (mean over folds), one column group per file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ser_train.sessions import SESSION_KINDS


def protocols_of(path: Path) -> dict[str, Any]:
    """{protocol: summary} from an evaluation.json or a bundle manifest."""
    data = json.loads(path.read_text())
    if data.get("evaluation"):  # a manifest
        return {k: v["summary"] for k, v in data["evaluation"]["protocols"].items()}
    return {k: v["summary"] for k, v in data["protocols"].items()}


def table(paths: Sequence[Path]) -> str:
    runs = [protocols_of(p) for p in paths]
    names = list(dict.fromkeys(name for run in runs for name in run))
    head = "| protocol | session kind | " + " | ".join(
        f"{p.parent.name}: acc / UA / alone / change" for p in paths
    )
    lines = [head + " |", "|---|---|" + "---|" * len(paths)]
    for name in names:
        for kind in SESSION_KINDS:
            cells = []
            for run in runs:
                s = run.get(name, {}).get("sessions", {}).get(kind)
                cells.append(
                    "-"
                    if s is None
                    else f"{s['accuracy']['mean']:.1%} / {s['unweighted_accuracy']['mean']:.1%} "
                    f"/ {s['alone']['mean']:.1%} / {s['change']['mean']:+.1%}"
                )
            lines.append(f"| {name} | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines).replace("%", " %")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ser_train.session_report", description=__doc__)
    p.add_argument("files", nargs="+", type=Path)
    args = p.parse_args(argv)
    print(table(args.files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
