"""A private PulseAudio server with a virtual microphone, for the real capture path.

A null sink `virtmic` (16 kHz mono) whose monitor is the default source; `paplay` into the sink is
what the microphone hears. PortAudio reaches the server through ALSA's pulse plugin, steered by
PULSE_SERVER. Only processes started here are stopped, by PID.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

CONFIG = """\
load-module module-native-protocol-unix socket={socket} auth-anonymous=1
load-module module-null-sink sink_name=virtmic rate=16000 channels=1 \
sink_properties=device.description=VirtualMic
set-default-sink virtmic
set-default-source virtmic.monitor
"""


@dataclass
class PulseServer:
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    def play(self, path: Path, timeout: float = 60) -> None:
        """Play a file into the virtual microphone and wait until it has been played."""
        subprocess.run(
            ["paplay", "--device=virtmic", str(path)], env=self.env, check=True, timeout=timeout
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def start_pulse(directory: Path) -> tuple[PulseServer, subprocess.Popen[bytes]]:
    for tool in ("pulseaudio", "paplay", "parec", "pactl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (scripts/bootstrap installs pulseaudio-utils)")
    socket = directory / "native"
    (directory / "default.pa").write_text(CONFIG.format(socket=socket))
    runtime = directory / "runtime"
    runtime.mkdir()
    env = {
        **os.environ,
        "PULSE_SERVER": f"unix:{socket}",
        "PULSE_RUNTIME_PATH": str(runtime),
        "PULSE_STATE_PATH": str(runtime),
    }
    env.pop("DISPLAY", None)
    log = (directory / "pulse.log").open("wb")
    server = subprocess.Popen(
        [
            "pulseaudio",
            "-n",
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--use-pid-file=no",
            "--disallow-exit",
            "-F",
            str(directory / "default.pa"),
            "--log-target=stderr",
        ],
        env=env,
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 15
    while True:
        ok = subprocess.run(["pactl", "info"], env=env, capture_output=True, check=False)
        if ok.returncode == 0:
            break
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"pulseaudio did not start: {(directory / 'pulse.log').read_text()}")
        time.sleep(0.1)
    # A reader on the monitor keeps the sink running, so capture starts at once.
    reader = subprocess.Popen(
        ["parec", "--device=virtmic.monitor", "--rate=16000", "--channels=1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return PulseServer(env, server), reader


@pytest.fixture
def pulse(tmp_path_factory):
    server, reader = start_pulse(tmp_path_factory.mktemp("pulse"))
    try:
        yield server
    finally:
        for proc in (reader, server.process):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
