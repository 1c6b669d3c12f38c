"""How much the shipped `default` bundle's reading moves when it reads an utterance's
`encoder_view` (`pipeline.encoder_tail_ms`: the hangover's first T ms, the rest replaced with
the utterance's first samples; its statistics leave that rest out) instead of the whole
utterance, beside how much it moves when the same clip is only framed 15 ms later (a
reference: what live input does anyway).

Each clip is cut as `ser-live` cuts it (the live segmenter, `[vad]` defaults). nEMO's clips end
where their speech ends, so each is first put between 0.5 s of noise at its quietest 10 ms
frame's level (a room), so that a hangover of background ends it as it would live; RAVDESS's
clips have their own background. Then read alone (no speaker history): the statistics and the
encoder from the whole utterance; as live reads it at each T, the encoder from the view and the
statistics from the utterance without the view's replaced part (the head); and, at T = 150 ms,
the encoder from the view and the statistics from the whole (as live read it before the
statistics were computed during the hangover too).
The bundle was trained on these corpora: only the change between the readings means anything
(same top-1, and accuracy before and after).

Usage: .venv/bin/python benchmarks/encoder_view.py [--tails 90,120,150,210]
        [--data ../shared/data/ravdess:6 --data ../shared/data/nemo:18]  (FOLDER:every Nth clip)
Prints a Markdown table; BENCHMARKS.md records the output.
"""

from __future__ import annotations

import argparse
import os

from sampled_clips import add_data_option, sampled

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tails", default="90,120,150,210", help="ms of the hangover the encoder reads")
    add_data_option(p)
    args = p.parse_args()
    tails = [int(t) for t in args.tails.split(",")]

    from dataclasses import replace

    import numpy as np

    from ser.audio_io import read_audio
    from ser.bundle import resolve_bundle_path
    from ser.classifier import Classifier
    from ser.config import VadConfig
    from ser.encoder import encoder_view, replaced_samples
    from ser.features import analyse
    from ser_train.robustness import vad_cut

    classifier = Classifier.from_dir(resolve_bundle_path("default"))
    labels = list(classifier.bundle.labels)
    vad = VadConfig()
    hangover = vad.hangover_ms * 16

    def read(utterance: np.ndarray, for_encoder: np.ndarray) -> np.ndarray:
        analysis = replace(
            analyse(utterance, 16_000), embedding=classifier.embed(for_encoder, 16_000)
        )
        return classifier.predict(classifier.adapter(history=False).alone(analysis))

    print(
        "| corpus | clips | the bundle reads | same top-1 | accuracy, whole -> this reading "
        "| largest probability change, mean / p95 |\n|---|---|---|---|---|---|"
    )
    rng = np.random.default_rng(0)
    for folder, clips in sampled(args.data):
        readings: dict[str, list[np.ndarray]] = {}
        truth = []
        for clip in clips:
            audio = read_audio(clip.path, 16_000)
            if "nemo" in folder:
                frames = audio[: audio.size // 160 * 160].reshape(-1, 160).astype(np.float64)
                room = max(float(np.sqrt((frames**2).mean(1)).min()), 10 ** (-70 / 20))
                noise = [rng.normal(0, room, 8000) for _ in range(2)]
                audio = np.concatenate([noise[0], audio, noise[1]]).astype(np.float32)
            cut = vad_cut(audio)
            truth.append(clip.label)
            readings.setdefault("whole", []).append(read(cut, cut))
            for t in tails:
                replaced = replaced_samples(hangover, 16_000, vad.frame_ms, t)  # as live
                view = encoder_view(cut[: cut.size - replaced], replaced)
                head = cut[: cut.size - replaced]
                readings.setdefault(f"the view, T = {t} ms", []).append(read(head, view))
                if t == 150:
                    readings.setdefault(
                        f"the encoder the view, the statistics the whole, T = {t} ms", []
                    ).append(read(cut, view))
            later = vad_cut(audio[240:])  # framed 15 ms later
            readings.setdefault("the whole, framed 15 ms later (reference)", []).append(
                read(later, later)
            )
        whole = np.array(readings.pop("whole"))
        right = np.mean([labels[i] == y for i, y in zip(whole.argmax(1), truth, strict=True)])
        for name, got in readings.items():
            probs = np.array(got)
            same = np.mean(probs.argmax(1) == whole.argmax(1))
            acc = np.mean([labels[i] == y for i, y in zip(probs.argmax(1), truth, strict=True)])
            moved = np.abs(probs - whole).max(1)
            print(
                f"| {folder} | {len(clips)} | {name} | {same:.1%} | {right:.1%} -> {acc:.1%} "
                f"| {moved.mean():.3f} / {np.percentile(moved, 95):.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
