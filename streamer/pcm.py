"""Raw PCM bytes of any rate and channel count -> int16 mono at the pipeline rate (no I/O).

Network clients send audio in pieces that need not end on a sample boundary; `PcmDecoder` keeps
the partial sample frame for the next piece, mixes channels to mono (mean) and resamples
(soxr, streaming) exactly as files are converted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ser.audio_io import float_to_int16

FORMATS: dict[str, np.dtype[Any]] = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}


@dataclass(frozen=True)
class PcmFormat:
    """What a client sends: `format` s16le or f32le, interleaved `channels`, `sample_rate` Hz."""

    format: str
    sample_rate: int
    channels: int

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample frame (all channels)."""
        return int(FORMATS[self.format].itemsize) * self.channels


class PcmDecoder:
    """Stateful converter for one stream; `decode(piece)` -> int16 mono samples at `rate_out`."""

    def __init__(self, fmt: PcmFormat, rate_out: int) -> None:
        import soxr

        self.fmt = fmt
        self._dtype = FORMATS[fmt.format]
        self._leftover = b""
        self.nonfinite = 0  # NaN or infinite float samples seen (read as silence)
        self._resampler = (
            soxr.ResampleStream(fmt.sample_rate, rate_out, 1, dtype="float32", quality="HQ")
            if fmt.sample_rate != rate_out
            else None
        )

    def decode(self, piece: bytes, *, last: bool = False) -> npt.NDArray[np.int16]:
        """Convert `piece` (plus what was left of the previous one); `last` drains the
        resampler and drops an incomplete final frame."""
        data = self._leftover + piece if self._leftover else piece
        usable = len(data) - len(data) % self.fmt.frame_bytes
        self._leftover = b"" if last else data[usable:]
        raw = np.frombuffer(data[:usable], dtype=self._dtype).reshape(-1, self.fmt.channels)
        if self._resampler is None and self.fmt.format == "s16le" and self.fmt.channels == 1:
            return np.asarray(raw[:, 0], dtype=np.int16)
        if self.fmt.format == "s16le":
            mono = raw.astype(np.float32).mean(axis=1) / 32768.0
        else:
            mono = raw.astype(np.float32).mean(axis=1)
            bad = ~np.isfinite(mono)
            if bad.any():
                self.nonfinite += int(bad.sum())
                mono = np.where(bad, np.float32(0.0), mono)
        if self._resampler is not None:
            mono = np.asarray(self._resampler.resample_chunk(mono, last=last), dtype=np.float32)
        return float_to_int16(mono)


# ---- what arrives on stdin: a container (by its magic bytes) or raw PCM ----

MAGIC_BYTES = 12  # enough of the head of a stream to recognise every container below


def container_kind(head: bytes) -> str | None:
    """The container `head` (the first bytes of a stream) starts: "wav", "flac", "ogg",
    "aiff" or "mp3"; None: not one of these (raw PCM)."""
    if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


@dataclass(frozen=True)
class WavHeader:
    """A streamable WAV's format and where its samples start."""

    pcm: PcmFormat
    data_offset: int


def parse_wav_header(buffer: bytes) -> WavHeader | None:
    """The PCM format and data offset of a little-endian WAV whose samples are 16-bit integers
    or 32-bit floats (what `PcmDecoder` reads as it streams); None when `buffer` does not yet
    hold the whole header, ValueError for a WAV of another sample format (decode it whole)."""
    if len(buffer) < 12 or buffer[:4] != b"RIFF" or buffer[8:12] != b"WAVE":
        raise ValueError("not a little-endian RIFF/WAVE stream")
    pos, pcm = 12, None
    while pos + 8 <= len(buffer):
        chunk, size = buffer[pos : pos + 4], int.from_bytes(buffer[pos + 4 : pos + 8], "little")
        body = pos + 8
        if chunk == b"fmt ":
            if body + 16 > len(buffer):
                return None
            tag = int.from_bytes(buffer[body : body + 2], "little")
            channels = int.from_bytes(buffer[body + 2 : body + 4], "little")
            rate = int.from_bytes(buffer[body + 4 : body + 8], "little")
            bits = int.from_bytes(buffer[body + 14 : body + 16], "little")
            if tag == 0xFFFE and size >= 40:  # WAVE_FORMAT_EXTENSIBLE: the subformat's tag
                if body + 26 > len(buffer):
                    return None
                tag = int.from_bytes(buffer[body + 24 : body + 26], "little")
            if (tag, bits) == (1, 16):
                pcm = PcmFormat("s16le", rate, channels)
            elif (tag, bits) == (3, 32):
                pcm = PcmFormat("f32le", rate, channels)
            else:
                raise ValueError(f"WAV sample format {tag}/{bits}-bit is not streamed")
            if not (1 <= channels <= 32 and 1000 <= rate <= 384_000):
                raise ValueError(f"WAV header says {channels} channels at {rate} Hz")
        elif chunk == b"data":
            if pcm is None:
                raise ValueError("WAV data chunk before its fmt chunk")
            return WavHeader(pcm, body)
        pos = body + size + (size & 1)  # chunks are padded to even sizes
    return None


def looks_like_float32(data: bytes) -> bool:
    """True when little-endian bytes read as s16le are most likely 32-bit floats in [-1, 1]:
    the upper half of nearly every float then has a high byte of 0x30-0x3F or 0xB0-0xBF
    (exponents of 2^-31 .. 1), which real 16-bit audio almost never shows (needs >= 1024
    floats that are not zero)."""
    n = len(data) // 4
    if n < 1024:
        return False
    high = np.frombuffer(data[: n * 4], dtype=np.uint8).reshape(n, 4)[:, 3]
    nonzero = np.frombuffer(data[: n * 4], dtype="<u4") != 0
    if nonzero.sum() < 1024:
        return False
    float_like = ((high & 0x70) == 0x30) & nonzero
    return bool(float_like.sum() >= 0.9 * nonzero.sum())
