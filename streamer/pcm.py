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

from streamer.audio_io import float_to_int16

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
        if self._resampler is not None:
            mono = np.asarray(self._resampler.resample_chunk(mono, last=last), dtype=np.float32)
        return float_to_int16(mono)
