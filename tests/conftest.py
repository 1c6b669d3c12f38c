"""Shared fixtures: the RAVDESS folder and synthetic audio helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RAVDESS = REPO.parent / "shared" / "data" / "ravdess"
DEFAULT_MODEL = REPO / "models" / "default"


@pytest.fixture(scope="session")
def ravdess() -> Path:
    """The 16 kHz FLAC copy of RAVDESS beside the repo; tests needing it skip when absent."""
    if not (RAVDESS / "Actor_01").is_dir():
        pytest.skip(f"RAVDESS not found at {RAVDESS} (see README: 'Data')")
    return RAVDESS
