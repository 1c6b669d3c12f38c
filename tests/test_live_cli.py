"""`ser-live` end to end as a subprocess: files, folders, stdin, RAVDESS streams, bad input."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.bundle import load_bundle

from .conftest import DEFAULT_MODEL
from .live import error_line, parse_results, run_live
from .synth import harmonic, silence


def _burst_file(path: Path, rate: int, channels: int = 1, fmt: str | None = None) -> Path:
    mono = np.concatenate([silence(0.8), harmonic(0.9), silence(0.8)])
    from ser.audio_io import resample

    mono = resample(mono, 16_000, rate)
    data = np.stack([mono] * channels, axis=1) if channels > 1 else mono
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, format=fmt)
    return path


def test_folder_of_generated_files_gives_one_result_per_file(tmp_path):
    files = [
        _burst_file(tmp_path / "a_48k_stereo.wav", 48_000, channels=2),
        _burst_file(tmp_path / "b.flac", 16_000),
        _burst_file(tmp_path / "sub" / "c_22k.ogg", 22_050, fmt="OGG"),
    ]
    (tmp_path / "notes.txt").write_text("not audio, not listed")
    proc = run_live("--input", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    results = parse_results(proc.stdout)
    assert [r["source"] for r in results] == [str(f) for f in files]
    for r in results:  # each file has its own stream clock from 0
        assert abs(r["start_s"] - 0.8) <= 0.06 and abs(r["end_s"] - 1.7) <= 0.06
        assert r["model"] == "default"


def test_ravdess_files_one_result_per_clip(ravdess, tmp_path):
    names = ["03-01-01-01-01-01-03", "03-01-05-02-01-01-03", "03-01-04-01-02-02-03"]
    for name in names:
        (tmp_path / f"{name}.flac").symlink_to(ravdess / "Actor_03" / f"{name}.flac")
    proc = run_live("--input", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    results = parse_results(proc.stdout)
    assert [Path(r["source"]).stem for r in results] == sorted(names)


def test_stdin_raw_pcm(ravdess):
    audio, _ = sf.read(ravdess / "Actor_05" / "03-01-05-02-01-01-05.flac", dtype="int16")
    pcm = np.concatenate([audio, np.zeros(8000, np.int16)]).astype("<i2").tobytes()
    proc = run_live("--input", "-", "--json", stdin=pcm)
    assert proc.returncode == 0, proc.stderr.decode()
    results = parse_results(proc.stdout)
    assert len(results) == 1 and results[0]["source"] == "stdin"  # as through --connect


def _speech_span(clip: np.ndarray, below_peak_db: float = 30.0) -> tuple[float, float, float]:
    """(start s, end s, longest gap s) of 10 ms frames within `below_peak_db` of the peak."""
    frames = clip[: clip.size // 160 * 160].reshape(-1, 160)
    db = 10 * np.log10((frames.astype(np.float64) ** 2).mean(axis=1) + 1e-12)
    loud = np.flatnonzero(db >= db.max() - below_peak_db)
    gap = float(np.diff(loud).max() - 1) * 0.01 if loud.size > 1 else 0.0
    return loud[0] * 0.01, (loud[-1] + 1) * 0.01, gap


@pytest.mark.slow
def test_stream_of_ravdess_clips_boundaries_within_150_ms(ravdess, tmp_path):
    # Clips with unambiguous boundaries: the sentence alone (loud frames in one block, gaps
    # < 250 ms) with sharp edges (spans at 25 and 35 dB below the peak agree within 100 ms).
    # Chosen from the audio alone, before and independently of what ser-live reports.
    candidates = sorted(ravdess.glob("Actor_*/03-01-0[2-8]-02-01-01-*.flac"))[::3]
    clips = []
    for path in candidates:
        audio, _ = sf.read(path, dtype="float32")
        start, end, gap = _speech_span(audio, 30.0)
        tight, wide = _speech_span(audio, 25.0), _speech_span(audio, 35.0)
        sharp = abs(tight[0] - wide[0]) < 0.1 and abs(tight[1] - wide[1]) < 0.1
        if gap < 0.25 and sharp:
            clips.append((path, audio, start, end))
        if len(clips) == 6:
            break
    assert len(clips) == 6
    rng = np.random.default_rng(0)
    parts, expected, t = [silence(1.0)], [], 1.0
    for _path, audio, start, end in clips:
        expected.append((t + start, t + end))
        parts.append(audio)
        t += audio.size / 16_000
        gap = silence(rng.uniform(1.0, 2.0))
        parts.append(gap)
        t += gap.size / 16_000
    stream = np.concatenate(parts)
    stream += rng.normal(0, 10 ** (-70 / 20), stream.size).astype(np.float32)  # a mic's floor
    sf.write(tmp_path / "stream.wav", stream, 16_000)
    proc = run_live("--input", str(tmp_path / "stream.wav"), "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    results = parse_results(proc.stdout)
    assert len(results) == len(clips)
    for r, (start, end) in zip(results, expected, strict=True):
        assert abs(r["start_s"] - start) <= 0.15, (r, start, end)
        assert abs(r["end_s"] - end) <= 0.15, (r, start, end)


def test_realtime_paces_input(tmp_path):
    path = _burst_file(tmp_path / "x.wav", 16_000)  # 2.5 s
    t0 = time.monotonic()
    proc = run_live("--input", str(path), "--json", "--realtime")
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr.decode()
    assert len(parse_results(proc.stdout)) == 1
    assert elapsed >= 2.5


# ---- bad input: exit code and one line naming the problem ----


def test_missing_path(tmp_path):
    proc = run_live("--input", str(tmp_path / "nope.wav"), "--json")
    assert proc.returncode == 2
    assert "nope.wav not found" in error_line(proc)
    assert proc.stdout == b""


def test_text_file_named_wav(tmp_path):
    bad = tmp_path / "speech.wav"
    bad.write_text("hello, I am not audio\n")
    proc = run_live("--input", str(bad), "--json")
    assert proc.returncode == 2
    assert "speech.wav is not readable as audio" in error_line(proc)


def test_empty_file(tmp_path):
    bad = tmp_path / "empty.wav"
    bad.write_bytes(b"")
    proc = run_live("--input", str(bad), "--json")
    assert proc.returncode == 2
    assert "empty.wav" in error_line(proc)


def test_wav_with_no_samples(tmp_path):
    bad = tmp_path / "zero.wav"
    sf.write(bad, np.zeros(0, np.float32), 16_000)
    proc = run_live("--input", str(bad), "--json")
    assert proc.returncode == 2
    assert "zero.wav holds no audio samples" in error_line(proc)


def test_empty_folder(tmp_path):
    proc = run_live("--input", str(tmp_path), "--json")
    assert proc.returncode == 2
    assert "holds no audio files" in error_line(proc)


def test_folder_with_one_bad_file_skips_it(tmp_path):
    _burst_file(tmp_path / "good.wav", 16_000)
    (tmp_path / "bad.wav").write_text("nope")
    proc = run_live("--input", str(tmp_path), "--json")
    assert proc.returncode == 0
    assert len(parse_results(proc.stdout)) == 1
    assert "skipping input" in proc.stderr.decode() and "bad.wav" in proc.stderr.decode()


def test_nonexistent_device():
    proc = run_live("--device", "no-such-microphone-xyz", "--json")
    assert proc.returncode == 2
    line = error_line(proc)
    assert "no-such-microphone-xyz" in line and "--list-devices" in line


def test_bad_config_value_names_the_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[vad]\nhangover_ms = 'long'\n")
    proc = run_live("--config", str(cfg), "--input", str(tmp_path), "--json")
    assert proc.returncode == 2
    assert "vad.hangover_ms" in error_line(proc)


def test_missing_model_says_how_to_get_one(tmp_path):
    path = _burst_file(tmp_path / "x.wav", 16_000)
    proc = run_live("--model", str(tmp_path / "nomodel"), "--input", str(path), "--json")
    assert proc.returncode == 2
    assert "ser-train" in error_line(proc)


def test_usage_error_exit_2():
    proc = run_live("--no-such-flag")
    assert proc.returncode == 2


# ---- speaker adaptation scope and confidence marking ----


def test_adaptation_history_is_per_source_unless_configured_per_run(ravdess, tmp_path):
    clip = ravdess / "Actor_07" / "03-01-03-02-01-01-07.flac"
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.flac", "b.flac"):
        (inputs / name).symlink_to(clip)
    per_source = parse_results(run_live("--input", str(inputs), "--json").stdout)
    assert len(per_source) == 2
    # each file starts with no speaker history: identical audio, identical result
    assert per_source[0]["probabilities"] == per_source[1]["probabilities"]

    cfg = tmp_path / "run.toml"
    # the history itself (ungated: the gate would still read a second utterance alone; and
    # ungated, a first utterance is the speaker-adapted networks' reading, not the alone one)
    cfg.write_text('[pipeline]\nadaptation = "always"\n')
    ungated = parse_results(run_live("--input", str(inputs), "--json", "--config", str(cfg)).stdout)
    assert ungated[0]["probabilities"] == ungated[1]["probabilities"]
    cfg.write_text('[pipeline]\nadaptation_scope = "run"\nadaptation = "always"\n')
    per_run = parse_results(run_live("--input", str(inputs), "--json", "--config", str(cfg)).stdout)
    assert per_run[0]["probabilities"] == ungated[0]["probabilities"]
    assert per_run[1]["probabilities"] != per_run[0]["probabilities"]  # history of one utterance


def test_no_adaptation_reads_every_utterance_on_its_own(ravdess, tmp_path):
    clip = ravdess / "Actor_07" / "03-01-03-02-01-01-07.flac"
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.flac", "b.flac", "c.flac"):
        (inputs / name).symlink_to(clip)
    cfg = tmp_path / "run.toml"
    cfg.write_text('[pipeline]\nadaptation_scope = "run"\n')
    args = ("--input", str(inputs), "--json", "--config", str(cfg))
    off = parse_results(run_live(*args, "--no-adaptation").stdout)
    assert len(off) == 3
    # one speaker's history for the whole run, but none is used: identical audio, results
    assert off[0]["probabilities"] == off[1]["probabilities"] == off[2]["probabilities"]
    cfg.write_text('[pipeline]\nadaptation_scope = "run"\nadaptation = "off"\n')
    by_config = parse_results(run_live(*args).stdout)
    assert [r["probabilities"] for r in by_config] == [r["probabilities"] for r in off]
    cfg.write_text('[pipeline]\nadaptation = "none"\n')
    proc = run_live(*args)
    assert proc.returncode == 2
    assert "pipeline.adaptation" in error_line(proc)
    assert '"speaker", "always" or "off"' in error_line(proc)


def test_min_confidence_marks_uncertain_results(ravdess, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in sorted((ravdess / "Actor_09").glob("03-01-0[1-8]-01-01-01-09.flac")):
        (inputs / path.name).symlink_to(path)
    off = tmp_path / "off.toml"
    off.write_text("[pipeline]\nmin_confidence = 0\n")
    first = parse_results(run_live("--input", str(inputs), "--json", "--config", str(off)).stdout)
    assert not any(r["uncertain"] for r in first)
    threshold = float(np.median([r["confidence"] for r in first]))
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[pipeline]\nmin_confidence = {threshold}\n")
    marked = parse_results(run_live("--input", str(inputs), "--json", "--config", str(cfg)).stdout)
    assert [r["uncertain"] for r in marked] == [r["confidence"] < threshold for r in first]
    assert 0 < sum(r["uncertain"] for r in marked) < len(marked)
    # the default ("auto") is the shipped bundle's own threshold from its calibration data
    auto = load_bundle(DEFAULT_MODEL).min_confidence
    assert 0.3 < auto < 0.9
    default = parse_results(run_live("--input", str(inputs), "--json").stdout)
    assert [r["uncertain"] for r in default] == [r["confidence"] < auto for r in first]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_stops_capture_finishes_in_flight_and_exits_0(tmp_path, signum):
    from .live import LiveProcess

    path = _burst_file(tmp_path / "x.wav", 16_000)  # one burst at 0.8-1.7 s of 2.5 s
    live = LiveProcess("--input", str(path), "--json", "--realtime", "--no-mqtt", env=None)
    live.wait_listening()
    time.sleep(2.1)  # the burst and its hangover are done; the file is not
    live.proc.send_signal(signum)
    code, out = live.finish()
    assert code == 0, "\n".join(live.stderr)
    assert len(parse_results(out)) == 1


def test_a_closed_stdout_ends_the_run_quietly(ravdess, tmp_path):
    """`ser-live --input FOLDER --json | head -1`: one line, exit 0, no traceback, and the
    rest of the input is not read."""
    import subprocess
    import sys

    names = sorted(p.name for p in (ravdess / "Actor_07").glob("*.flac"))  # 60 clips
    for name in names:
        (tmp_path / name).symlink_to(ravdess / "Actor_07" / name)
    live = subprocess.Popen(
        [sys.executable, "-m", "ser.cli", "--input", str(tmp_path), "--json", "--no-mqtt"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert live.stdout is not None
    head = subprocess.run(["head", "-1"], stdin=live.stdout, capture_output=True, check=True)
    live.stdout.close()  # only head holds the pipe's reading end
    _, stderr = live.communicate(timeout=120)
    assert live.returncode == 0, stderr.decode()
    assert len(head.stdout.decode().splitlines()) == 1
    text = stderr.decode()
    assert "Traceback" not in text and "BrokenPipe" not in text, text
    done = int(text.rsplit(" utterances,", 1)[0].rsplit(None, 1)[-1])
    assert done < len(names) / 2  # stopped reading (what was in flight is finished)


def _clip_pair(ravdess) -> np.ndarray:
    a, _ = sf.read(ravdess / "Actor_05" / "03-01-05-02-01-01-05.flac", dtype="float32")
    b, _ = sf.read(ravdess / "Actor_05" / "03-01-03-02-02-01-05.flac", dtype="float32")
    gap = np.zeros(16000, np.float32)
    return np.concatenate([gap, a, gap, b, gap])


COMPARED = ("start_s", "end_s", "emotion")


def test_stdin_takes_containers_and_described_raw_pcm(ravdess, tmp_path):
    """FLAC, 48 kHz stereo WAV and raw f32le with --rate/--channels/--format on stdin give what
    the same audio gives as a file."""
    import soxr

    audio = _clip_pair(ravdess)
    flac = tmp_path / "x.flac"
    sf.write(flac, audio, 16000)
    reference = parse_results(run_live("--input", str(flac), "--json").stdout)
    assert len(reference) == 2
    want = [{k: round(r[k], 1) if k != "emotion" else r[k] for k in COMPARED} for r in reference]

    stereo48 = np.repeat(soxr.resample(audio, 16000, 48000)[:, None], 2, axis=1)
    wav = tmp_path / "x48.wav"
    sf.write(wav, stereo48, 48000, subtype="PCM_16")
    runs = {
        "flac": run_live("--input", "-", "--json", stdin=flac.read_bytes()),
        "wav 48k stereo": run_live("--input", "-", "--json", stdin=wav.read_bytes()),
        "raw f32le": run_live(
            "--input",
            "-",
            "--json",
            "--rate",
            "48000",
            "--channels",
            "2",
            "--format",
            "f32le",
            stdin=stereo48.astype("<f4").tobytes(),
        ),
    }
    for name, proc in runs.items():
        assert proc.returncode == 0, (name, proc.stderr.decode())
        got = parse_results(proc.stdout)
        assert [
            {k: round(r[k], 1) if k != "emotion" else r[k] for k in COMPARED} for r in got
        ] == want, name
        assert "stdin:" not in proc.stderr.decode(), name  # nothing to warn about


def test_stdin_says_when_raw_audio_is_probably_misread(ravdess):
    audio = _clip_pair(ravdess)
    as_float = run_live("--input", "-", "--json", stdin=audio.astype("<f4").tobytes())
    assert as_float.returncode == 0
    assert "looks like 32-bit floats" in as_float.stderr.decode()
    assert "--format f32le" in as_float.stderr.decode()
    silent = run_live("--input", "-", "--json", stdin=np.ones(32000, "<i2").tobytes())
    assert "all near-silence" in silent.stderr.decode()
    nan = np.full(32000, np.nan, "<f4")
    bad = run_live("--input", "-", "--json", "--format", "f32le", stdin=nan.tobytes())
    assert bad.returncode == 0 and "NaN or infinite" in bad.stderr.decode()


def test_raw_format_flags_need_stdin_and_set_overrides_any_key(tmp_path):
    wrong = run_live("--input", str(tmp_path), "--rate", "48000")
    assert wrong.returncode == 2 and "--input -" in error_line(wrong)
    typo = run_live("--input", "-", "--set", "vad.min_confidence=0.5", stdin=b"")
    assert typo.returncode == 2 and "did you mean pipeline.min_confidence?" in error_line(typo)
    bad = run_live("--input", "-", "--set", "vad.hangover_ms=long", stdin=b"")
    assert bad.returncode == 2 and "vad.hangover_ms" in error_line(bad)
    audio = tmp_path / "b.wav"
    parts = [silence(0.5)] + [np.concatenate([harmonic(0.8), silence(0.7)]) for _ in range(4)]
    sf.write(audio, np.concatenate(parts), 16000)
    # a hangover longer than the gaps between bursts joins them into fewer utterances
    joined = run_live("--input", str(audio), "--json", "--set", "vad.hangover_ms=2000")
    split = run_live("--input", str(audio), "--json", "--hangover-ms", "300")
    assert len(parse_results(joined.stdout)) < len(parse_results(split.stdout))
