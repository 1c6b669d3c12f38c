"""As users install it: the built wheel in a fresh venv (no TensorFlow, no scipy), `ser-live`
run from another folder finds its shipped model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from .conftest import REPO
from .live import parse_results
from .synth import harmonic, silence


def _run(*cmd: str | Path, cwd: Path | None = None, timeout: float = 900) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{cmd}: {proc.stderr[-3000:]}"
    return proc.stdout


_NOT_SOURCES = (".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".whl")


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_from_any_folder(tmp_path):
    wheels = tmp_path / "wheels"
    # built from the sources alone, as a clean clone has them: setuptools packs whatever an
    # earlier build left in build/lib (renamed packages included)
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*_NOT_SOURCES))
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, src)
    (wheel,) = wheels.glob("ser-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "ser_models/default/manifest.json",
        "ser_models/default/model.tflite",
        "ser_models/default/encoder.tflite",
        "ser_models/default/encoder_head.tflite",
        "ser_models/default/speech.tflite",
        "ser_models/default/alone.tflite",  # utterances alone, on familiar recordings
        "ser_models/default/familiar.npz",
        "ser_models/small/manifest.json",
        "ser_models/small/model.tflite",
        "ser_models/small/cnn.tflite",
        "ser_models/small/speech.tflite",
        "ser_models/README.md",
        "ser_models/default/README.md",  # the model cards
        "ser_models/small/README.md",
        "ser/__init__.py",  # import ser: the Python API
        "ser/cli.py",  # the repository's streamer/
        "ser/demo/ravdess-demo.flac",
        "ser/demo/README.md",
        "ser_train/cli.py",  # the repository's train/
    ):
        assert needed in names
    # only names of our own at the top level: nothing shadows a user's `streamer` or `train`
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"ser", "ser_train", "ser_models"}
    assert not [n for n in names if n.endswith((".keras", ".png"))]  # live use needs neither
    assert wheel.stat().st_size < 35_000_000  # both bundles; the Whisper encoder is 13.8 MB

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    _run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel)
    python = venv / "bin" / "python"
    missing = _run(
        python,
        "-c",
        "import importlib.util as u; print([m for m in ('tensorflow', 'scipy', 'keras') "
        "if u.find_spec(m)])",
    )
    assert missing.strip() == "[]"
    # a user's own modules named like the repository's folders stay theirs
    theirs = tmp_path / "theirs"
    (theirs / "train").mkdir(parents=True)
    (theirs / "train" / "__init__.py").write_text("MINE = True\n")
    (theirs / "streamer.py").write_text("MINE = True\n")
    mine = _run(
        python,
        "-c",
        "import train, streamer, ser, ser_train; print(train.MINE, streamer.MINE)",
        cwd=theirs,
    )
    assert mine.strip() == "True True"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    audio = elsewhere / "speech.wav"
    sf.write(audio, np.concatenate([silence(0.6), harmonic(0.9), silence(0.8)]), 16_000)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def ser_live(*args: str) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(
            [venv / "bin" / "ser-live", "--input", "speech.wav", "--json", *args],
            cwd=elsewhere,
            check=False,
            env={**env, "XDG_STATE_HOME": str(tmp_path / "state")},
            capture_output=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr.decode()
        return proc

    proc = ser_live()
    (result,) = parse_results(proc.stdout)
    assert result["model"] == "default" and result["source"] == "speech.wav"
    assert b"XNNPACK" not in proc.stderr  # LiteRT's INFO line is filtered
    small = ser_live("--model", "small")
    assert [r["model"] for r in parse_results(small.stdout)] == ["small"]
    version = _run(venv / "bin" / "ser-live", "--version", cwd=elsewhere)
    assert version.startswith("ser-live 0.")
    api = subprocess.run(
        [
            python,
            "-c",
            "import ser; print([r.emotion for r in ser.Recognizer().predict_file('speech.wav')])",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert api.returncode == 0, api.stderr
    assert api.stdout.strip() == str([result["emotion"]])  # the same as ser-live said
