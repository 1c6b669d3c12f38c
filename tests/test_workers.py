"""The feature worker pool: fair across streams (real worker processes, real features)."""

from __future__ import annotations

import asyncio

import numpy as np

from ser import features
from ser.workers import FeatureWorkers

from .synth import harmonic, silence


def test_a_stream_with_a_backlog_does_not_hold_another_streams_utterances():
    audio = (np.concatenate([harmonic(1.5), silence(0.2)]) * 32767).astype(np.int16)
    order: list[str] = []

    async def run() -> list[features.Analysis]:
        workers = FeatureWorkers(1)
        await workers.start()
        try:

            async def one(key: str, i: int) -> features.Analysis:
                analysis = await workers.analyse(audio, 16_000, key=key)
                order.append(f"{key}{i}")
                return analysis

            busy = [one("busy", i) for i in range(12)]  # a client far ahead of real time
            quiet = [one("quiet", i) for i in range(2)]  # arrives just after
            return await asyncio.gather(*busy, *quiet)
        finally:
            await asyncio.to_thread(workers.close)

    results = asyncio.run(run())
    # round-robin over streams: the quiet stream's two utterances go out between the busy
    # stream's, not after all twelve (first come, first served: 13th and 14th)
    assert order.index("quiet1") < order.index("busy6"), order
    assert sorted(order) == sorted([f"busy{i}" for i in range(12)] + ["quiet0", "quiet1"])
    want = features.analyse(audio, 16_000).vector
    assert all(np.allclose(r.vector, want) for r in results)  # the same work, done right
