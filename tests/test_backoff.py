"""Reconnection back-off with jitter (`streamer/backoff.py`): clients that failed together
spread out, each still waiting at least half its back-off."""

from __future__ import annotations

import random

from ser.backoff import retry_wait_s


def test_waits_lie_in_the_upper_half_and_spread_out():
    rng = random.Random(7)
    for backoff_s in (0.5, 1.0, 8.0):
        waits = [retry_wait_s(backoff_s, rng) for _ in range(200)]
        assert all(backoff_s / 2 <= w <= backoff_s for w in waits)
        # 200 clients that lost one server: their next attempts cover the half's range
        assert max(waits) - min(waits) > 0.4 * backoff_s
        assert len(set(waits)) == 200


def test_an_explicit_generator_gives_the_same_schedule():
    a = [retry_wait_s(2.0, random.Random(1)) for _ in range(3)]
    b = [retry_wait_s(2.0, random.Random(1)) for _ in range(3)]
    assert a == b and 1.0 <= a[0] <= 2.0
