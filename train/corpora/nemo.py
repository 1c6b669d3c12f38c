"""nEMO (Christop 2024): acted Polish speech, 9 speakers, 6 emotions (no calm, no disgust).

Layouts: `samples/{speaker}_{emotion}_{sentence}.wav` (the original, 24 kHz, with MP0) or
`.flac` (the 16 kHz copy), and `data.tsv` (file_id, emotion, raw_text, normalized_text,
speaker_id, gender, age; the original pads fields with spaces). Without `data.tsv` the file
names alone give speaker and emotion. Folds: the 4 of ../shared/data/nemo/README.md (one female
and one male speaker held out each); MP0, in the original only, is in no fold and always trains.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

from ser.audio_io import list_audio_files
from ser_train.corpora.base import Clip, Corpus, DataError, Scan

logger = logging.getLogger(__name__)

LABEL_MAP: dict[str, str] = {
    "anger": "angry",
    "fear": "fearful",
    "happiness": "happy",
    "sadness": "sad",
    "surprised": "surprised",
    "neutral": "neutral",
}

_NAME = re.compile(r"^(?P<speaker>[A-Z]{2}\d)_(?P<emotion>[a-z]+)_(?P<sentence>\d+)$")
TSV = "data.tsv"


def _looks_like(root: Path) -> bool:
    if (root / TSV).is_file() and (root / "samples").is_dir():
        return True
    return any(_NAME.match(p.stem) for p in list_audio_files(root))


def _from_tsv(root: Path) -> dict[str, tuple[str, str]]:
    """file stem -> (speaker, nEMO emotion) from data.tsv, fields stripped of padding."""
    rows: dict[str, tuple[str, str]] = {}
    with (root / TSV).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
        missing = {"file_id", "emotion", "speaker_id"} - set(reader.fieldnames)
        if missing:
            raise DataError(
                f"{root / TSV} lacks the columns {sorted(missing)}: is it nEMO's data.tsv?"
            )
        for row in reader:
            file_id = (row["file_id"] or "").strip()
            if file_id:
                speaker, emotion = (row["speaker_id"] or "").strip(), (row["emotion"] or "").strip()
                rows[Path(file_id).stem] = (speaker, emotion)
    return rows


def _scan(corpus: Corpus, root: Path) -> Scan:
    table = _from_tsv(root) if (root / TSV).is_file() else {}
    clips: dict[str, Clip] = {}
    ignored: list[Path] = []
    duplicates = 0
    suffixes: set[str] = set()
    for path in sorted(list_audio_files(root), key=lambda p: (len(p.parts), str(p))):
        match = _NAME.match(path.stem)
        speaker, emotion = table.get(path.stem) or (
            (match["speaker"], match["emotion"]) if match else ("", "")
        )
        label = LABEL_MAP.get(emotion.lower())
        if not speaker or label is None:
            ignored.append(path)
            continue
        if match and match["speaker"] != speaker:
            raise DataError(
                f"{root / TSV} says {path.name} is speaker {speaker}, its name says "
                f"{match['speaker']}: the folder mixes two copies of nEMO"
            )
        if path.stem in clips:
            duplicates += 1
            continue
        suffixes.add(path.suffix.lower())
        clips[path.stem] = Clip(path, corpus.name, speaker, label)
    if not clips:
        raise DataError(
            f"no nEMO clips under {root}: expected samples/EB0_anger_1.wav (and data.tsv; "
            "download from https://github.com/amu-cai/nEMO)"
        )
    if table and len(table) != len(clips):
        logger.info("%s lists %d files, %d found", root / TSV, len(table), len(clips))
    layout = "/".join(sorted(suffixes)) + (" files with data.tsv" if table else " files")
    ordered = tuple(sorted(clips.values(), key=lambda c: c.path.stem))
    return Scan(corpus, root, layout, ordered, duplicates, tuple(ignored))


NEMO = Corpus(
    name="nemo",
    title="nEMO (Polish, acted)",
    labels=("neutral", "happy", "sad", "angry", "fearful", "surprised"),
    folds=(("EB0", "WR0"), ("KD0", "KS0"), ("MK0", "TP0"), ("IC0", "SM0")),
    layout_hint="samples/EB0_anger_1.wav or .flac with data.tsv",
    looks_like=_looks_like,
    scanner=_scan,
    licence="CC BY-NC-SA 4.0",
    citation="Christop (2024), nEMO, LREC-COLING 2024, pages 12111-12116",
)
