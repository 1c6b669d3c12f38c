"""Native stderr chatter is filtered; real messages still show, in order."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import os, sys
from ser.native_log import NativeStderrFilter
with NativeStderrFilter() as f:
    os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    os.write(2, b"E0000 00:00:1.2 3 cuda_platform.cc:52] failed call to cuInit: (303)\n")
    os.write(2, b"E0000 00:00:1.3 3 some_kernel.cc:9] a real native error\n")
    print("python says hello", file=sys.stderr)
    os.write(2, b"I0000 00:00:1.4 3 cpu_feature_guard.cc:1] This TensorFlow binary is optimized\n")
os.write(2, b"after: unfiltered\n")
print(f"dropped {f.dropped}")
with NativeStderrFilter(enabled=False):
    os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
"""


def test_noise_is_dropped_and_the_rest_kept_in_order():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stderr.splitlines() == [
        "E0000 00:00:1.3 3 some_kernel.cc:9] a real native error",
        "python says hello",
        "after: unfiltered",
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",  # -v: shown
    ]
    assert proc.stdout.strip() == "dropped 3"
