"""Batched inference: utterances ready at once share one hop to the inference thread and get
exactly what the classifier gives each alone."""

from __future__ import annotations

import asyncio

import numpy as np
import soundfile as sf

from ser.classifier import Classifier
from ser.features import Analysis
from ser.inference import BatchedInference

from .conftest import DEFAULT_MODEL


def _analysis(classifier: Classifier, audio: np.ndarray, rate: int) -> Analysis:
    """What the feature workers give the shipped bundle (its encoder's embedding included)."""
    return classifier.analyse(audio, rate)


def test_concurrent_utterances_are_batched_and_equal_single_predictions(ravdess):
    classifier = Classifier.from_dir(DEFAULT_MODEL)
    analyses = []
    for path in sorted((ravdess / "Actor_04").glob("03-01-0[2-8]-02-01-01-04.flac")):
        audio, rate = sf.read(path, dtype="float32")
        analyses.append(_analysis(classifier, audio, rate))
    inputs = [classifier.adapter().push("s", a) for a in analyses]  # each its stream's first
    alone = [classifier.predict(x) for x in inputs]

    async def run() -> tuple[list[np.ndarray], int, int]:
        inference = BatchedInference(classifier)
        try:
            first = await inference.predict(inputs[0])  # nothing else waiting: a batch of 1
            rest = await asyncio.gather(*(inference.predict(x) for x in inputs[1:]))
            return [first, *rest], inference.batches, inference.utterances
        finally:
            await inference.aclose()

    got, batches, utterances = asyncio.run(run())
    assert utterances == len(inputs) == 7
    assert batches == 2  # 1, then the 6 submitted together
    for g, a in zip(got, alone, strict=True):
        np.testing.assert_array_equal(g, a)


def test_a_failing_input_fails_alone(ravdess):
    from ser.classifier import ModelInput

    classifier = Classifier.from_dir(DEFAULT_MODEL)
    audio, rate = sf.read(ravdess / "Actor_04" / "03-01-05-02-01-01-04.flac", dtype="float32")
    good = classifier.adapter().push("s", _analysis(classifier, audio, rate))
    bad = ModelInput(good.features, None)  # no embedding: this bundle's encoder head needs one

    async def run() -> list[object]:
        inference = BatchedInference(classifier)
        try:
            return await asyncio.gather(
                inference.predict(good), inference.predict(bad), return_exceptions=True
            )
        finally:
            await inference.aclose()

    ok, failed = asyncio.run(run())
    assert isinstance(ok, np.ndarray) and ok.shape == (8,)
    assert isinstance(failed, ValueError) and "embedding" in str(failed)


def test_a_batch_runs_each_network_once_and_equals_one_by_one(ravdess, nemo):
    """`predict_many` stacks a batch for each network (the utterances with history, the alone
    ones, and the alone ones' adapted first readings): the same probabilities, bit for bit, as
    each utterance alone, in any split of the batch; one network call per batch, not per
    utterance."""
    classifier = Classifier.from_dir(DEFAULT_MODEL)
    paths = (
        sorted((ravdess / "Actor_07").glob("*.flac"))[::6]
        + sorted((nemo / "samples").glob("*"), key=lambda p: p.name)[::400]
    )
    from .synth import harmonic

    adapter = classifier.adapter()
    inputs = []
    clips = [sf.read(path, dtype="float32") for path in paths]
    clips[3::9] = [(harmonic(1.5, f0_hz=f0), 16000) for f0 in (110.0, 220.0)]  # unfamiliar
    for k, (audio, rate) in enumerate(clips):
        analysis = _analysis(classifier, audio, rate)
        # as the pipeline asks for each utterance: with its speaker's history, and alone
        inputs += [adapter.push(f"s{k % 3}", analysis), adapter.alone(analysis)]
    assert len(inputs) >= 40
    weights = {classifier.alone_weight(x.embedding) for x in inputs if x.alone}
    assert weights == {0.0, classifier.bundle.alone.weight}  # familiar and unfamiliar: both mixes
    one_by_one = np.stack([classifier.predict(x) for x in inputs])
    for n in (2, 3, 7, len(inputs)):
        split = [classifier.predict_many(inputs[i : i + n]) for i in range(0, len(inputs), n)]
        np.testing.assert_array_equal(np.stack([r for rows in split for r in rows]), one_by_one)
    calls = {name: 0 for name in ("_stats", "_head", "_alone")}
    for name in calls:
        model = getattr(classifier, name)
        run_many = model.run_many

        def counted(x, run_many=run_many, name=name):
            calls[name] += 1
            return run_many(x)

        model.run_many = counted
    classifier.predict_many(inputs)
    # once each: the adapted inputs and the alone ones' adapted firsts in one batch
    assert calls == {"_stats": 1, "_head": 1, "_alone": 1}
    # alone inputs of unfamiliar voices take none of the alone network: it does not run
    unfamiliar = [x for x in inputs if x.alone and classifier.alone_weight(x.embedding) == 0.0]
    assert unfamiliar
    calls.update(dict.fromkeys(calls, 0))
    assert np.array_equal(
        np.stack(classifier.predict_many(unfamiliar)),
        np.stack([classifier.predict(x) for x in unfamiliar]),
    )
    assert calls == {"_stats": 1 + len(unfamiliar), "_head": 1 + len(unfamiliar), "_alone": 0}
    # a bad input is given back as its exception, alone or beside good ones
    from ser.classifier import ModelInput

    bad = ModelInput(inputs[0].features, None)  # no embedding: the encoder head needs one
    (alone_failed,) = classifier.predict_many([bad])
    assert isinstance(alone_failed, ValueError) and "embedding" in str(alone_failed)
    beside = classifier.predict_many([inputs[0], bad, inputs[1]])
    assert isinstance(beside[1], ValueError)
    np.testing.assert_array_equal(np.stack([beside[0], beside[2]]), one_by_one[:2])


def test_padded_batches_give_each_row_what_it_gets_alone(ravdess):
    """`run_many` pads a batch to a few shapes (4 rows at least, then powers of 2): every real
    row gets exactly what a batch of that row alone (no padding) gives, at any batch size."""
    from ser.classifier import _padded_rows

    shapes = {1: 4, 2: 4, 4: 4, 5: 8, 8: 8, 9: 16, 33: 64, 64: 64, 65: 128}
    assert {n: _padded_rows(n) for n in shapes} == shapes
    classifier = Classifier.from_dir(DEFAULT_MODEL)
    adapter = classifier.adapter()
    rows = []
    for path in sorted((ravdess / "Actor_09").glob("*.flac"))[::7]:
        audio, rate = sf.read(path, dtype="float32")
        rows.append(adapter.push("s", _analysis(classifier, audio, rate)).embedding)
    x = np.stack(rows)
    assert len(x) >= 9
    head = classifier._head
    single = np.concatenate([head.run_many(x[i : i + 1], pad=False) for i in range(len(x))])
    for n in (1, 3, 4, 5, 9, len(x)):
        np.testing.assert_array_equal(head.run_many(x[:n]), single[:n])
        assert head._batch == _padded_rows(n)
