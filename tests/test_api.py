"""The Python API (`import ser`) on real RAVDESS audio: the same results as `ser-live --json`."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile as sf

from .live import parse_results, run_live
from .serve import speech

CLIPS = ["03-01-05-02-01-01-05", "03-01-03-02-02-01-05", "03-01-04-01-01-02-05"]
COMPARED = ("start_s", "end_s", "emotion", "confidence", "probabilities")


def _view(results) -> list[dict]:
    rows = [r.to_dict() if hasattr(r, "to_dict") else r for r in results]
    return [{k: r[k] for k in COMPARED} for r in rows]


@pytest.fixture(scope="module")
def wav(ravdess, tmp_path_factory):
    path = tmp_path_factory.mktemp("api") / "three.wav"
    sf.write(path, speech(ravdess, CLIPS), 16000, subtype="PCM_16")
    return path


def test_predict_file_and_arrays_equal_ser_live(wav):
    import ser

    expected = parse_results(run_live("--input", str(wav), "--json").stdout)
    assert len(expected) == len(CLIPS)
    recognizer = ser.Recognizer()
    from_file = recognizer.predict_file(wav)
    assert _view(from_file) == _view(expected)
    assert all(isinstance(r, ser.Result) for r in from_file)
    assert from_file[0].to_json() == from_file[0].to_json()  # the --json line's schema
    samples, rate = sf.read(wav, dtype="int16")
    assert _view(recognizer.predict(samples, rate)) == _view(expected)
    as_float = samples.astype(np.float32) / 32768.0
    assert [r.emotion for r in recognizer.predict(as_float, rate)] == [
        r["emotion"] for r in expected
    ]


def test_stream_yields_results_as_chunks_arrive(wav):
    import ser

    samples, rate = sf.read(wav, dtype="float32")
    recognizer = ser.Recognizer()

    async def chunks():
        for i in range(0, len(samples), rate // 10):  # 100 ms at a time
            yield samples[i : i + rate // 10]
            await asyncio.sleep(0)

    async def collect():
        return [r async for r in recognizer.stream(chunks(), rate)]

    streamed = asyncio.run(collect())
    assert [r.emotion for r in streamed] == [r.emotion for r in recognizer.predict(samples, rate)]
    assert [r.seq for r in streamed] == list(range(len(CLIPS)))


def test_no_adaptation_equals_ser_live_no_adaptation(wav):
    import ser

    expected = parse_results(run_live("--input", str(wav), "--json", "--no-adaptation").stdout)
    assert _view(ser.Recognizer(adaptation="off").predict_file(wav)) == _view(expected)
