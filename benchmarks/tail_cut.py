"""How much the shipped `default` bundle's reading moves when an utterance's features are
computed on less of its hangover (the design that would let the features of an utterance be
computed while the hangover is still being waited for; see BENCHMARKS.md).

Each clip is cut as `ser-live` cuts it (the live segmenter, `[vad]` defaults: the 300 ms
hangover kept), then read alone (no speaker history) as it is and with only T ms of the
hangover kept, optionally padded back to its length with the utterance's first samples (its
pre-roll, background before speech). The bundle was trained on these corpora: only the change
between the cuts means anything (same top-1, and accuracy before and after).

Usage: .venv/bin/python benchmarks/tail_cut.py [--tails 90,150,210] [--pad]
        [--data ../shared/data/ravdess:6 --data ../shared/data/nemo:18]  (FOLDER:every Nth clip)
Prints a Markdown table; BENCHMARKS.md records the output.
"""

from __future__ import annotations

import argparse
import os

from sampled_clips import add_data_option, sampled

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

HANGOVER_MS = 300


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tails", default="90,150,210", help="ms of the hangover kept")
    p.add_argument("--pad", action="store_true", help="pad back with the pre-roll's samples")
    add_data_option(p)
    args = p.parse_args()
    tails = [int(t) for t in args.tails.split(",")]

    import numpy as np

    from ser.audio_io import read_audio
    from ser.bundle import resolve_bundle_path
    from ser.classifier import Classifier
    from ser_train.robustness import vad_cut

    classifier = Classifier.from_dir(resolve_bundle_path("default"))
    labels = list(classifier.bundle.labels)

    def read(audio: np.ndarray) -> np.ndarray:
        return np.array(list(classifier.probabilities(audio, 16_000).values()))

    print(
        f"| corpus | clips | hangover kept ms{' (padded back)' if args.pad else ''} | same top-1 "
        "| accuracy, whole hangover -> cut | mean largest probability change |\n"
        "|---|---|---|---|---|---|"
    )
    for folder, clips in sampled(args.data):
        whole_right = 0
        same = dict.fromkeys(tails, 0)
        right = dict.fromkeys(tails, 0)
        moved: dict[int, list[float]] = {t: [] for t in tails}
        for clip in clips:
            cut = vad_cut(read_audio(clip.path, 16_000))
            whole = read(cut)
            whole_right += labels[int(whole.argmax())] == clip.label
            for t in tails:
                dropped = (HANGOVER_MS - t) * 16
                short = cut[: cut.size - dropped]
                if args.pad:
                    short = np.concatenate([short, cut[:dropped]])
                probs = read(short)
                same[t] += int(probs.argmax() == whole.argmax())
                right[t] += labels[int(probs.argmax())] == clip.label
                moved[t].append(float(np.abs(probs - whole).max()))
        n = len(clips)
        for t in tails:
            print(
                f"| {folder} | {n} | {t} | {same[t] / n:.1%} | {whole_right / n:.1%} -> "
                f"{right[t] / n:.1%} | {np.mean(moved[t]):.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
