"""Reconnection back-off with jitter: clients of one dead server (thin clients of a replica,
replicas of a broker) must not all come back at the same instants. Pure: no I/O."""

from __future__ import annotations

import random


def retry_wait_s(backoff_s: float, rng: random.Random | None = None) -> float:
    """How long to wait before the next attempt at back-off level `backoff_s` (seconds): drawn
    uniformly from [backoff_s / 2, backoff_s] ("equal jitter"), so that clients whose attempts
    failed together spread out, while each still waits at least half its back-off."""
    draw = (rng or random).random()
    return backoff_s / 2.0 + draw * backoff_s / 2.0
