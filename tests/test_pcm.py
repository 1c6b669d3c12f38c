"""What arrives on stdin, recognised from its first bytes (pure functions of streamer/pcm.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from ser.pcm import PcmFormat, container_kind, looks_like_float32, parse_wav_header


def _file(fmt: str, subtype: str | None = None, channels: int = 1, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    data = np.zeros((1600, channels), np.float32)
    sf.write(buffer, data, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "kind"), [("WAV", "wav"), ("FLAC", "flac"), ("OGG", "ogg"), ("AIFF", "aiff")]
)
def test_containers_are_recognised_by_their_magic_bytes(fmt, kind):
    assert container_kind(_file(fmt)[:12]) == kind


def test_raw_pcm_is_no_container():
    ramp = np.arange(-3000, 3000, 500, dtype="<i2").tobytes()  # 16-bit samples, any level
    assert container_kind(ramp[:12]) is None
    assert container_kind(b"\0" * 12) is None  # silence


def test_wav_headers_give_the_streamed_format():
    header = parse_wav_header(_file("WAV", "PCM_16", channels=2, rate=48000))
    assert header is not None and header.pcm == PcmFormat("s16le", 48000, 2)
    assert parse_wav_header(_file("WAV", "FLOAT"))
    assert parse_wav_header(_file("WAV", "FLOAT")).pcm.format == "f32le"  # type: ignore[union-attr]
    assert parse_wav_header(_file("WAV", "PCM_16")[:30]) is None  # not all there yet
    with pytest.raises(ValueError, match="not streamed"):
        parse_wav_header(_file("WAV", "PCM_24"))


def test_floats_read_as_16_bit_are_noticed_and_16_bit_speech_is_not():
    rng = np.random.default_rng(1)
    speech = rng.standard_normal(16000).astype(np.float32) * 0.2
    assert looks_like_float32(speech.astype("<f4").tobytes())
    assert not looks_like_float32((speech * 32767).astype("<i2").tobytes())
    assert not looks_like_float32(np.zeros(16000, "<f4").tobytes())  # nothing to tell by
