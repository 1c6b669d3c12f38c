"""`ser-live` (placeholder until the streaming recognizer lands)."""

from __future__ import annotations

import sys


def main() -> int:
    print("ser-live: the streaming recognizer is not built yet", file=sys.stderr)
    return 1
