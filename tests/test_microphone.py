"""The true microphone path: sounddevice -> PortAudio -> ALSA pulse plugin -> a private PulseAudio
server whose default source is a virtual microphone fed by `paplay`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from .live import LiveProcess, parse_results, run_live
from .pulse import pulse  # noqa: F401  (fixture)


def _speech_file(ravdess, tmp_path):
    clips = [
        ravdess / "Actor_06" / "03-01-05-02-01-01-06.flac",
        ravdess / "Actor_06" / "03-01-04-01-02-01-06.flac",
    ]
    parts = [np.zeros(16_000, np.float32)]  # the first ~25 ms played are lost: lead with silence
    for clip in clips:
        audio, _ = sf.read(clip, dtype="float32")
        parts += [audio, np.zeros(24_000, np.float32)]
    path = tmp_path / "speech.wav"
    sf.write(path, np.concatenate(parts), 16_000, subtype="PCM_16")
    return path


@pytest.mark.slow
def test_default_microphone_hears_two_utterances(pulse, ravdess, tmp_path):  # noqa: F811
    path = _speech_file(ravdess, tmp_path)
    live = LiveProcess("--json", "--no-mqtt", env=pulse.env)
    live.wait_listening()
    pulse.play(path)
    time.sleep(1.0)  # hangover and classification of the last utterance
    live.proc.send_signal(signal.SIGINT)
    code, out = live.finish()
    assert code == 0, "\n".join(live.stderr)
    results = parse_results(out)
    assert len(results) == 2, (results, live.stderr)
    assert all(r["source"] == "default" for r in results)
    # The microphone gives the same segmentation as reading the file directly (capture is
    # bit-exact; only the stream clock's origin differs).
    direct = parse_results(run_live("--input", str(path), "--json").stdout)
    assert len(direct) == 2
    for mic, ref in zip(results, direct, strict=True):
        assert abs((mic["end_s"] - mic["start_s"]) - (ref["end_s"] - ref["start_s"])) <= 0.07
    mic_gap = results[1]["start_s"] - results[0]["start_s"]
    ref_gap = direct[1]["start_s"] - direct[0]["start_s"]
    assert abs(mic_gap - ref_gap) <= 0.07


@pytest.mark.slow
def test_capture_at_another_rate_is_resampled(pulse, ravdess, tmp_path):  # noqa: F811
    path = _speech_file(ravdess, tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[audio]\ncapture_rate = 48000\n")
    live = LiveProcess("--json", "--no-mqtt", "--config", str(cfg), "-v", env=pulse.env)
    live.wait_listening()
    pulse.play(path)
    time.sleep(1.0)
    live.proc.send_signal(signal.SIGINT)
    code, out = live.finish()
    assert code == 0, "\n".join(live.stderr)
    assert any("at 48000 Hz" in line for line in live.stderr)
    results = parse_results(out)
    direct = parse_results(run_live("--input", str(path), "--json").stdout)
    assert len(results) == len(direct) == 2
    # the same utterances, resampled once more on the way: the same reading within resampling
    # noise (an utterance near a decision boundary may swap its top two labels)
    for mic, ref in zip(results, direct, strict=True):
        top2 = sorted(ref["probabilities"], key=ref["probabilities"].get)[-2:]
        assert mic["emotion"] in top2, (mic["probabilities"], ref["probabilities"])
        gap = sum(abs(mic["probabilities"][k] - ref["probabilities"][k]) for k in top2)
        assert gap < 0.6, (mic["probabilities"], ref["probabilities"])
    assert results[0]["emotion"] == direct[0]["emotion"]
    for mic, ref in zip(results, direct, strict=True):
        assert abs((mic["end_s"] - mic["start_s"]) - (ref["end_s"] - ref["start_s"])) <= 0.1


def test_list_devices_shows_the_virtual_default(pulse):  # noqa: F811
    proc = subprocess.run(
        [sys.executable, "-m", "ser.cli", "--list-devices"],
        env=pulse.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    assert any(line.startswith("*") and "default" in line for line in proc.stdout.splitlines())


@pytest.mark.slow
def test_microphone_vanishing_mid_stream_is_one_clear_error(pulse, tmp_path):  # noqa: F811
    live = LiveProcess("--json", "--no-mqtt", env=pulse.env)
    live.wait_listening()
    time.sleep(0.5)
    pulse.kill()
    code, out = live.finish(timeout=60)
    assert code == 1, "\n".join(live.stderr)
    errors = [line for line in live.stderr if line.startswith("ser-live:")]
    assert len(errors) == 1 and "stopped delivering audio" in errors[0], live.stderr
    assert not any("Traceback" in line for line in live.stderr)
    assert out == b""
