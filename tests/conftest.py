"""Shared fixtures: the RAVDESS and nEMO folders and synthetic audio helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RAVDESS = REPO.parent / "shared" / "data" / "ravdess"
NEMO = REPO.parent / "shared" / "data" / "nemo"
DEFAULT_MODEL = REPO / "models" / "default"
SMALL_MODEL = REPO / "models" / "small"


@pytest.fixture(scope="session")
def ravdess() -> Path:
    """The 16 kHz FLAC copy of RAVDESS beside the repo; tests needing it skip when absent."""
    if not (RAVDESS / "Actor_01").is_dir():
        pytest.skip(f"RAVDESS not found at {RAVDESS} (see README: 'Data')")
    return RAVDESS


@pytest.fixture(scope="session")
def nemo() -> Path:
    """The 16 kHz FLAC copy of nEMO beside the repo; tests needing it skip when absent."""
    if not (NEMO / "data.tsv").is_file():
        pytest.skip(f"nEMO not found at {NEMO} (see README: 'Data')")
    return NEMO


@pytest.fixture(autouse=True, scope="session")
def _nothing_left_behind():
    """The suite stops every process it starts (set up first, so checked after every other
    fixture's teardown). The test process is the child subreaper of what it starts, so only
    its own descendants count, never a process someone else runs on a shared CI machine."""
    import time

    from . import procs

    subreaper = procs.become_subreaper()
    before = set(procs.table())
    yield
    deadline = time.monotonic() + 15.0
    while (left := procs.left_behind(before, subreaper)) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not left, "processes left behind:\n" + "\n".join(
        f"{p.pid} (parent {p.ppid}): {p.cmdline}" for p in left
    )


@pytest.fixture(autouse=True, scope="session")
def _private_state_dir(tmp_path_factory):
    """Keep ser-live's state files (unsent MQTT results) out of the user's home."""
    import os

    saved = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    yield
    if saved is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = saved
