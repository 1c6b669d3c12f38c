"""ser-serve's protocol parsing and PCM conversion (pure)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ser.pcm import PcmDecoder, PcmFormat
from ser.protocol import ProtocolError, parse_control, parse_start


def test_start_with_defaults_and_a_server_made_name():
    start = parse_start('{"type": "start"}')
    assert start.stream.startswith("stream-") and len(start.stream) == 19
    assert start.pcm == PcmFormat("s16le", 16000, 1)
    named = parse_start(
        json.dumps(
            {
                "type": "start",
                "stream": "call-17",
                "sample_rate": 8000,
                "format": "f32le",
                "channels": 2,
            }
        )
    )
    assert (named.stream, named.pcm) == ("call-17", PcmFormat("f32le", 8000, 2))


@pytest.mark.parametrize(
    ("message", "needle"),
    [
        (b"\x00\x01", "text start message"),
        ("hello", "not JSON"),
        ('{"type": "stop"}', '"type": "start"'),
        ('{"type": "start", "format": "mp3"}', "unknown format 'mp3'"),
        ('{"type": "start", "sample_rate": 100}', "'sample_rate' must be an integer 8000-"),
        ('{"type": "start", "sample_rate": true}', "'sample_rate'"),
        ('{"type": "start", "channels": 0}', "'channels' must be an integer 1-32"),
        ('{"type": "start", "stream": "a/b"}', "'stream' must be"),
        ('{"type": "start", "stream": ""}', "'stream' must be"),
    ],
)
def test_bad_start_messages_are_1008_with_the_reason(message, needle):
    with pytest.raises(ProtocolError) as info:
        parse_start(message)
    assert info.value.code == 1008 and needle in str(info.value)


def test_control_messages():
    assert parse_control('{"type": "stop"}') == "stop"
    assert parse_control('{"type": "reset"}') == "reset"
    for bad in ('{"type": "pause"}', "[1]", "not json", '"reset"'):
        with pytest.raises(ProtocolError):
            parse_control(bad)


def test_decoder_keeps_partial_frames_between_pieces():
    samples = np.arange(-500, 500, dtype=np.int16)
    stereo = np.stack([samples, samples], axis=1).astype("<i2").tobytes()  # 4 bytes a frame
    decoder = PcmDecoder(PcmFormat("s16le", 16000, 2), 16000)
    pieces = [stereo[:7], stereo[7:1001], stereo[1001:]]
    out = np.concatenate([decoder.decode(p) for p in pieces])
    np.testing.assert_array_equal(out, samples)  # int16 -> float -> int16 is lossless


def test_mono_s16le_at_the_pipeline_rate_passes_through_exactly():
    samples = np.array([-32768, -1, 0, 1, 32767], dtype=np.int16)
    decoder = PcmDecoder(PcmFormat("s16le", 16000, 1), 16000)
    np.testing.assert_array_equal(decoder.decode(samples.astype("<i2").tobytes()), samples)


def test_f32le_and_resampling_48_khz_to_16_khz():
    t = np.arange(48000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype("<f4")
    decoder = PcmDecoder(PcmFormat("f32le", 48000, 1), 16000)
    out = np.concatenate(
        [decoder.decode(tone[i : i + 4801].tobytes()) for i in range(0, 48000, 4801)]
        + [decoder.decode(b"", last=True)]
    )
    assert abs(out.size - 16000) <= 2
    spectrum = np.abs(np.fft.rfft(out[1000:15000].astype(np.float64)))
    assert abs(np.argmax(spectrum) * 16000 / 14000 - 440) < 2  # still 440 Hz
    assert abs(np.abs(out[1000:15000]).max() / 32767 - 0.5) < 0.02
