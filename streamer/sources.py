"""Audio sources at the edge of the pipeline: microphone, files, raw PCM on stdin.

Every source yields `AudioBlock`s (int16 mono at the pipeline rate, `block_ms` long) and an
`EndOfStream` after each stream (a file, stdin, or the microphone when stopped). Stream time
starts at 0 for every stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np
import numpy.typing as npt

from ser.audio_io import float_to_int16, to_mono
from ser.messages import AudioBlock
from ser.pcm import (
    MAGIC_BYTES,
    PcmDecoder,
    PcmFormat,
    WavHeader,
    container_kind,
    looks_like_float32,
    parse_wav_header,
)

logger = logging.getLogger(__name__)

HINT = "see `ser-live --list-devices`, or read a file with `--input FILE`"
_READ_CHUNK_S = 1.0  # files are read and resampled in chunks of this length
_STALL_S = 5.0  # a running microphone that delivers nothing for this long has failed


class SourceError(Exception):
    """An input cannot be used. `exit_code`: 2 for bad arguments, 1 for failures at run time."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class EndOfStream:
    """Marks the end of one stream (a file, stdin, the microphone)."""

    source: str


@dataclass(frozen=True)
class SpeakerReset:
    """A new speaker starts here (ser-serve's `reset` message): forget the speaker history."""

    source: str


SourceItem = AudioBlock | EndOfStream | SpeakerReset


class Source(Protocol):
    name: str
    live: bool
    """True when audio arrives in real time and must never wait (drop instead)."""
    overflows: int
    dropped_blocks: int

    def blocks(self) -> AsyncIterator[SourceItem]: ...

    def stop(self) -> None: ...


class _Blocker:
    """Cuts a stream of int16 samples into blocks of `block_len` with stream times."""

    def __init__(self, source: str, sample_rate: int, block_len: int) -> None:
        self.source = source
        self.sample_rate = sample_rate
        self.block_len = block_len
        self._pending = np.zeros(0, dtype=np.int16)
        self._emitted = 0  # samples

    @property
    def emitted(self) -> int:
        """Samples cut into blocks so far."""
        return self._emitted

    def split(self, samples: npt.NDArray[np.int16], final: bool = False) -> list[AudioBlock]:
        data = np.concatenate([self._pending, samples]) if self._pending.size else samples
        n = data.size // self.block_len
        if final and data.size % self.block_len:
            n += 1
        blocks = []
        for i in range(n):
            chunk = data[i * self.block_len : (i + 1) * self.block_len]
            blocks.append(
                AudioBlock(
                    self.source, chunk, self.sample_rate, self._emitted / self.sample_rate, 0.0
                )
            )
            self._emitted += chunk.size
        self._pending = data[n * self.block_len :].copy()
        return blocks


def _stamp(block: AudioBlock, wall_s: float) -> AudioBlock:
    return AudioBlock(block.source, block.samples, block.sample_rate, block.start_s, wall_s)


def check_files(paths: Sequence[Path]) -> list[Path]:
    """Validate input files up front; returns those readable as audio.

    A single unreadable file is an error; in a folder, unreadable files are skipped with a warning
    unless none is left. Raises SourceError (exit code 2) naming the file.
    """
    import soundfile as sf

    good = []
    for path in paths:
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            message = f"input {path} is not readable as audio ({exc})"
        else:
            if info.frames > 0:
                good.append(path)
                continue
            message = f"input {path} holds no audio samples"
        if len(paths) == 1:
            raise SourceError(message, exit_code=2)
        logger.warning("skipping %s", message)
    if not good:
        raise SourceError("no readable audio files in the input", exit_code=2)
    return good


class FileSource:
    """Audio files streamed in turn (any libsndfile format, rate and channel count)."""

    live = False

    def __init__(
        self,
        paths: Sequence[Path],
        sample_rate: int,
        block_ms: int,
        realtime: bool,
        *,
        stream_name: str | None = None,
    ) -> None:
        """`stream_name`: the source name of a single file's results (default: its path)."""
        self.paths = list(paths)
        self._stream_name = stream_name if len(self.paths) == 1 else None
        self.name = self._stream_name or (
            str(self.paths[0]) if len(self.paths) == 1 else f"{len(self.paths)} files"
        )
        self.sample_rate = sample_rate
        self.block_len = sample_rate * block_ms // 1000
        self.realtime = realtime
        self.overflows = 0
        self.dropped_blocks = 0
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True

    async def blocks(self) -> AsyncIterator[SourceItem]:
        for path in self.paths:
            if self._stopped:
                break
            async for item in self._file_blocks(path):
                yield item
            yield EndOfStream(self._stream_name or str(path))

    async def _file_blocks(self, path: Path) -> AsyncIterator[AudioBlock]:
        import soundfile as sf
        import soxr

        try:
            handle = await asyncio.to_thread(sf.SoundFile, str(path))
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise SourceError(f"input {path} is not readable as audio ({exc})") from exc
        with handle:
            rate_in = int(handle.samplerate)
            resampler = (
                soxr.ResampleStream(rate_in, self.sample_rate, 1, dtype="float32", quality="HQ")
                if rate_in != self.sample_rate
                else None
            )
            blocker = _Blocker(self._stream_name or str(path), self.sample_rate, self.block_len)
            chunk = max(1, int(rate_in * _READ_CHUNK_S))
            t0 = time.monotonic()
            while not self._stopped:
                data = await asyncio.to_thread(handle.read, chunk, "float32", True)
                final = len(data) < chunk
                mono = to_mono(data)
                if resampler is not None:
                    mono = resampler.resample_chunk(mono, last=final).astype(np.float32)
                for block in blocker.split(float_to_int16(mono), final=final):
                    if self.realtime:
                        due = t0 + block.end_s
                        delay = due - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    yield _stamp(block, time.monotonic())
                if final:
                    break


class StdinSource:
    """Audio on standard input. A container (WAV, FLAC, Ogg, AIFF, MP3: recognised by its magic
    bytes) is decoded: a 16-bit or float WAV as it streams in, the others once whole. Anything
    else is raw PCM of `pcm` (default: 16 kHz mono s16le, as arecord/ffmpeg/sox send it); raw
    input that was all near-silence or held NaNs is said on stderr at the end."""

    live = False
    name = "stdin"  # the results' source, as through `--connect` (ser-serve's stream name)

    def __init__(
        self,
        sample_rate: int,
        block_ms: int,
        stream: BinaryIO | None = None,
        pcm: PcmFormat | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self.block_len = sample_rate * block_ms // 1000
        self.overflows = 0
        self.dropped_blocks = 0
        self.pcm = pcm or PcmFormat("s16le", sample_rate, 1)
        self.container: str | None = None  # what was recognised (None: raw PCM)
        self._stream = stream if stream is not None else sys.stdin.buffer
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True

    async def _read(self, n: int) -> bytes:
        return bytes(await asyncio.to_thread(self._stream.read, n))

    async def _read_head(self, n: int) -> bytes:
        head = b""
        while len(head) < n:
            data = await self._read(n - len(head))
            if not data:
                break
            head += data
        return head

    async def blocks(self) -> AsyncIterator[SourceItem]:
        blocker = _Blocker(self.name, self.sample_rate, self.block_len)
        head = await self._read_head(MAGIC_BYTES)
        self.container = container_kind(head)
        if self.container == "wav":
            header, head = await self._wav_header(head)
            if header is None:  # a WAV this reader does not stream: decode it whole
                samples = await self._decode_whole(head)
                for block in blocker.split(samples, final=True):
                    yield _stamp(block, time.monotonic())
            else:
                async for block in self._stream_pcm(
                    blocker, header.pcm, head[header.data_offset :]
                ):
                    yield block
        elif self.container is not None:
            samples = await self._decode_whole(head)
            for block in blocker.split(samples, final=True):
                yield _stamp(block, time.monotonic())
        else:
            async for block in self._stream_pcm(blocker, self.pcm, head, raw=True):
                yield block
        yield EndOfStream(self.name)

    async def _wav_header(self, head: bytes) -> tuple[WavHeader | None, bytes]:
        """Read until the WAV header is whole: (header, bytes read so far); header None when
        its sample format is not streamed (24-bit, 8-bit, ...)."""
        while True:
            try:
                header = parse_wav_header(head)
            except ValueError:
                return None, head
            if header is not None:
                return header, head
            data = await self._read(4096)
            if not data or len(head) > _MAX_WAV_HEADER:
                raise SourceError("stdin: the WAV header ends before its audio (a cut file?)", 2)
            head += data

    async def _decode_whole(self, head: bytes) -> npt.NDArray[np.int16]:
        """Read the rest of stdin and decode it as one audio file."""
        import io

        import soundfile as sf
        import soxr

        chunks = [head]
        while data := await self._read(1 << 20):
            chunks.append(data)
        try:
            audio, rate = sf.read(io.BytesIO(b"".join(chunks)), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            raise SourceError(
                f"stdin: looks like {self.container}, but it is not readable as audio ({exc})", 2
            ) from exc
        mono = to_mono(audio)
        if rate != self.sample_rate:
            mono = soxr.resample(mono, rate, self.sample_rate, quality="HQ").astype(np.float32)
        return float_to_int16(mono)

    async def _stream_pcm(
        self, blocker: _Blocker, pcm: PcmFormat, first: bytes, raw: bool = False
    ) -> AsyncIterator[AudioBlock]:
        decoder = PcmDecoder(pcm, self.sample_rate)
        peak = 0
        data = first
        # the first seconds, kept aside to tell floats read as s16le: never waited for
        probe: bytearray | None = bytearray() if raw and pcm.format == "s16le" else None
        while True:
            if probe is not None:
                probe += data
                if len(probe) >= _FLOAT_CHECK_BYTES or not data:
                    _warn_if_float(bytes(probe), pcm)
                    probe = None
            samples = decoder.decode(data)
            if samples.size:
                peak = max(peak, int(np.abs(samples.astype(np.int32)).max()))
            for block in blocker.split(samples):
                yield _stamp(block, time.monotonic())
            if self._stopped:
                break
            data = await self._read(self.block_len * pcm.frame_bytes)
            if not data:
                break
        if probe is not None:  # the input ended before the probe was full
            _warn_if_float(bytes(probe), pcm)
        for block in blocker.split(decoder.decode(b"", last=True), final=True):
            yield _stamp(block, time.monotonic())
        if raw and decoder.nonfinite:
            logger.warning(
                "stdin: %d samples were NaN or infinite (read as silence): is it really %s? "
                "Say --format/--rate/--channels",
                decoder.nonfinite,
                _describe(pcm),
            )
        elif raw and blocker.emitted and peak < _NEAR_SILENCE:
            logger.warning(
                "stdin: the raw audio was all near-silence (peak %d of 32767): is it really %s? "
                "Say --format/--rate/--channels, or send a WAV/FLAC/Ogg file",
                peak,
                _describe(pcm),
            )


def _warn_if_float(head: bytes, pcm: PcmFormat) -> None:
    """Say so when raw stdin audio read as s16le looks like 32-bit floats."""
    if looks_like_float32(head):
        logger.warning(
            "stdin: this raw audio looks like 32-bit floats, read as %s: "
            "say --format f32le (and --rate/--channels)",
            _describe(pcm),
        )


_MAX_WAV_HEADER = 1 << 20
_FLOAT_CHECK_BYTES = 128_000  # the first 4 s of 16 kHz s16le mono
_NEAR_SILENCE = 33  # peak below -60 dBFS


def _describe(pcm: PcmFormat) -> str:
    return f"{pcm.sample_rate} Hz, {pcm.channels} channel(s), {pcm.format}"


def import_sounddevice() -> Any:
    """Import sounddevice, turning a missing PortAudio into a SourceError."""
    try:
        import sounddevice
    except OSError as exc:
        raise SourceError(
            f"PortAudio is not available ({exc}): install it (Debian: "
            "`sudo apt-get install libportaudio2`), or read a file with `--input FILE`"
        ) from exc
    return sounddevice


def list_input_devices() -> list[dict[str, Any]]:
    """Input devices as dicts with index, name, channels, default rate and default flag."""
    sd = import_sounddevice()
    try:
        default_in = sd.default.device[0]
        devices = sd.query_devices()
    except sd.PortAudioError as exc:
        raise SourceError(f"cannot list audio devices ({exc})") from exc
    return [
        {
            "index": d["index"],
            "name": d["name"],
            "channels": d["max_input_channels"],
            "default_samplerate": d["default_samplerate"],
            "default": d["index"] == default_in,
        }
        for d in devices
        if d["max_input_channels"] > 0
    ]


class MicrophoneSource:
    """A sounddevice input stream. The callback only copies the block and hands it to the loop."""

    live = True

    def __init__(
        self,
        device: str,
        sample_rate: int,
        block_ms: int,
        queue_blocks: int,
        *,
        capture_rate: int = 0,
    ) -> None:
        self.sd = import_sounddevice()
        self.sample_rate = sample_rate
        self.block_ms = block_ms
        self.overflows = 0
        self.dropped_blocks = 0
        self._queue_blocks = queue_blocks
        self._device: int | str | None = _parse_device(device)
        self._stopped = False
        self._wake: asyncio.Event | None = None
        info = self._query()
        self.device_index = int(info["index"])
        self.name = str(info["name"])
        self.capture_rate = capture_rate or self._pick_rate(float(info["default_samplerate"]))

    def _query(self) -> dict[str, Any]:
        sd = self.sd
        try:
            return dict(sd.query_devices(self._device, "input"))
        except ValueError as exc:
            wanted = "default input device" if self._device is None else f"{self._device!r}"
            raise SourceError(f"input device {wanted} not found ({exc}): {HINT}", 2) from exc
        except sd.PortAudioError as exc:
            raise SourceError(f"no audio input device available ({exc}): {HINT}", 2) from exc

    def _pick_rate(self, default_rate: float) -> int:
        try:
            self.sd.check_input_settings(
                self.device_index, channels=1, dtype="int16", samplerate=self.sample_rate
            )
            return self.sample_rate
        except (ValueError, self.sd.PortAudioError):
            logger.info(
                "%s cannot capture at %d Hz; capturing at %d Hz and resampling",
                self.name,
                self.sample_rate,
                int(default_rate),
            )
            return int(default_rate)

    def stop(self) -> None:
        self._stopped = True
        if self._wake is not None:
            self._wake.set()

    async def blocks(self) -> AsyncIterator[SourceItem]:
        loop = asyncio.get_running_loop()
        queue: deque[tuple[npt.NDArray[np.int16], float]] = deque()
        wake = self._wake = asyncio.Event()
        if self._stopped:
            wake.set()

        def put(samples: npt.NDArray[np.int16], wall_s: float) -> None:  # on the loop
            if len(queue) >= self._queue_blocks:
                queue.popleft()
                self.dropped_blocks += 1
            queue.append((samples, wall_s))
            wake.set()

        def callback(indata: Any, _frames: int, _time: Any, status: Any) -> None:  # audio thread
            if status.input_overflow:
                self.overflows += 1
            loop.call_soon_threadsafe(put, indata[:, 0].copy(), time.monotonic())

        sd = self.sd
        block_len = self.capture_rate * self.block_ms // 1000
        try:
            stream = sd.InputStream(
                device=self.device_index,
                channels=1,
                dtype="int16",
                samplerate=self.capture_rate,
                blocksize=block_len,
                callback=callback,
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise SourceError(f"cannot open input device {self.name!r} ({exc}): {HINT}") from exc
        logger.info("capturing from %s at %d Hz", self.name, self.capture_rate)
        resampler = None
        if self.capture_rate != self.sample_rate:
            import soxr

            resampler = soxr.ResampleStream(
                self.capture_rate, self.sample_rate, 1, dtype="int16", quality="HQ"
            )
        blocker = _Blocker(self.name, self.sample_rate, self.sample_rate * self.block_ms // 1000)
        last_audio = time.monotonic()
        try:
            while not self._stopped:
                if not queue:
                    wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), timeout=0.5)
                    if not queue:
                        if not stream.active or time.monotonic() - last_audio > _STALL_S:
                            raise SourceError(
                                f"input device {self.name!r} stopped delivering audio "
                                f"(unplugged or its sound server died): {HINT}"
                            )
                        continue
                samples, wall_s = queue.popleft()
                last_audio = time.monotonic()
                if resampler is not None:
                    samples = np.asarray(resampler.resample_chunk(samples), dtype=np.int16)
                for block in blocker.split(samples):
                    yield _stamp(block, wall_s)
        finally:
            try:
                stream.abort()
                stream.close()
            except sd.PortAudioError:
                logger.debug("closing the input stream failed", exc_info=True)
        yield EndOfStream(self.name)


def _parse_device(device: str) -> int | str | None:
    text = device.strip()
    if not text:
        return None
    return int(text) if text.isdigit() else text
