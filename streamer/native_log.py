"""Quiet the chatter native libraries (LiteRT, TensorFlow, absl) write straight to stderr.

Their C++ loggers write to file descriptor 2, below Python's `sys.stderr`, so logging settings
cannot reach them. `NativeStderrFilter` points descriptor 2 at a pipe for a while and copies every
line that is not known noise back to the real stderr: errors and anything unrecognised still show.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from types import TracebackType

# Lines that are information, not problems, for a user of ser on a machine without a GPU.
NOISE = re.compile(
    "|".join(
        (
            r"Created TensorFlow Lite XNNPACK delegate for CPU",
            r"All log messages before absl::InitializeLog\(\) is called",
            r"^I\d{4} ",  # absl/glog INFO lines
            r"^\d{4}-\d\d-\d\d [\d:.]+: I ",  # TensorFlow's older INFO format
            r"cudart_stub\.cc.*Could not find cuda drivers",
            r"failed call to cuInit",
            r"Unable to register cu(DNN|FFT|BLAS) factory",
            r"computation_placer\.cc",
            r"cpu_feature_guard\.cc",
            r"oneDNN custom operations are on",
            r"TF-TRT Warning",
            r"Ignored (output_format|drop_control_dependency)",
        )
    )
)


class NativeStderrFilter:
    """Context manager: while active, lines written to descriptor 2 by native code pass through
    `noise`; matching lines are dropped, the rest reach the real stderr in the order written
    (Python's `sys.stderr` writes to descriptor 2 too). Child processes started meanwhile inherit
    the filtered descriptor."""

    def __init__(self, noise: re.Pattern[str] = NOISE, *, enabled: bool = True) -> None:
        self.noise = noise
        self.enabled = enabled
        self.dropped = 0
        self._saved_fd = -1
        self._write_fd = -1
        self._thread: threading.Thread | None = None

    def __enter__(self) -> NativeStderrFilter:
        if not self.enabled:
            return self
        sys.stderr.flush()
        self._saved_fd = os.dup(2)
        read_fd, self._write_fd = os.pipe()
        os.dup2(self._write_fd, 2)
        self._thread = threading.Thread(
            target=self._copy, args=(read_fd, os.dup(self._saved_fd)), daemon=True
        )
        self._thread.start()
        return self

    def _copy(self, read_fd: int, out_fd: int) -> None:
        with open(read_fd, "rb") as pipe:
            for raw in pipe:
                if self.noise.search(raw.decode(errors="replace")):
                    self.dropped += 1
                else:
                    os.write(out_fd, raw)
        os.close(out_fd)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.enabled or self._thread is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved_fd, 2)
        os.close(self._saved_fd)
        # The copier ends when no process holds the pipe any more; a child started meanwhile
        # (multiprocessing's resource tracker) may hold it until this process exits.
        os.close(self._write_fd)
        self._thread.join(timeout=0.2)
        self._thread = None
