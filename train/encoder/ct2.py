"""Read a CTranslate2 `model.bin` (binary format version 6) into numpy arrays; no ctranslate2.

Layout (ctranslate2/specs/model_spec.py `_serialize`, little-endian): u32 version, string
spec name, u32 revision, u32 variable count, then per variable: string name, u8 rank, u32 dims,
u8 dtype id (float32, int8, int16, int32, float16, bfloat16), u32 byte count, raw bytes; then u32
alias count and (alias, target) string pairs. A string is u16 length (with its NUL) + bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


class Ct2FormatError(ValueError):
    """The file is not a CTranslate2 model this reader understands."""


@dataclass(frozen=True)
class Ct2Model:
    spec_name: str  # e.g. "WhisperSpec"
    version: int
    revision: int
    variables: dict[str, npt.NDArray[np.generic]]


def read_model(path: Path, prefix: str = "") -> Ct2Model:
    """Every variable whose name starts with `prefix`, with its stored dtype and shape.

    Quantised weights (int8 / int16 with a `weight_scale`) are returned as stored; bfloat16 is
    widened to float32.
    """
    buf = Path(path).read_bytes()
    pos = 0

    def take(fmt: str) -> int:
        nonlocal pos
        if pos + struct.calcsize(fmt) > len(buf):
            raise Ct2FormatError(f"{path}: truncated at byte {pos}")
        (value,) = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return int(value)

    def string() -> str:
        nonlocal pos
        n = take("H")
        text = buf[pos : pos + n - 1].decode("utf-8")
        pos += n
        return text

    version = take("I")
    if version not in (5, 6):
        raise Ct2FormatError(f"{path}: CTranslate2 binary version {version}, expected 5 or 6")
    spec_name = string()
    revision = take("I")
    variables: dict[str, npt.NDArray[np.generic]] = {}
    count, name = take("I"), ""
    for index in range(count):
        try:
            name = string()
            shape = tuple(take("I") for _ in range(take("B")))
            dtype_id = take("B")
            n_bytes = take("I")
        except Ct2FormatError:
            raise Ct2FormatError(
                f"{path}: truncated at byte {pos} of {len(buf)}, after {index} of {count} "
                f"variables (last whole one: {name or 'none'}); the file is incomplete, e.g. a "
                "part of a split model.bin is missing"
            ) from None
        if dtype_id >= len(_DTYPES):
            raise Ct2FormatError(f"{path}: variable {name} has unknown dtype id {dtype_id}")
        if pos + n_bytes > len(buf):
            raise Ct2FormatError(
                f"{path}: variable {index + 1} of {count} ({name}) needs {n_bytes} bytes from "
                f"byte {pos}, the file ends at {len(buf)}; the file is incomplete, e.g. a part "
                "of a split model.bin is missing"
            )
        raw = buf[pos : pos + n_bytes]
        pos += n_bytes
        if not name.startswith(prefix):
            continue
        dtype = _DTYPES[dtype_id]
        if dtype == "bfloat16":
            bits = np.frombuffer(raw, np.uint16).astype(np.uint32) << 16
            value: npt.NDArray[np.generic] = bits.view(np.float32).reshape(shape)
        else:
            value = np.frombuffer(raw, np.dtype(dtype)).reshape(shape)
        variables[name] = value
    return Ct2Model(spec_name, version, revision, variables)
