"""A throwaway PulseAudio server with a null sink named ``line``: a real audio device without hardware.

Import the ``pulse`` fixture into a test module (``from tests.integration.pulse_fixture import pulse``).
What is played into the sink (``paplay --device=line``) is what sounddevice's
``pulse`` ALSA device records (``PULSE_SOURCE=line.monitor``), sample-exact at
8 kHz. The server runs in its own ``XDG_RUNTIME_DIR`` and is stopped with
``pulseaudio -k`` for that directory afterwards. The binaries come from
``tests/system-deps.sh``; without them the tests fail, they do not skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

RATE = 8000
SINK = "line"
DEVICE = "pulse"
MISSING = "pulseaudio/paplay not found: run `make test` (tests/system-deps.sh installs pulseaudio)"


@dataclass(frozen=True)
class PulseServer:
    """The running server: its runtime directory and the environment that reaches it."""

    runtime_dir: Path
    env: dict[str, str]
    sink: str = SINK
    device: str = DEVICE
    rate: int = RATE

    def wait_playing(self, timeout: float = 15.0) -> None:
        """Wait until a player's stream is connected to the sink (paplay may take seconds under load)."""
        deadline = time.monotonic() + timeout
        while not subprocess.run(
            ["pactl", "list", "short", "sink-inputs"], env=self.env, capture_output=True, text=True
        ).stdout.strip():
            if time.monotonic() > deadline:
                raise TimeoutError("no stream reached the sink")
            time.sleep(0.02)

    def play(self, path: Path) -> subprocess.Popen[bytes]:
        """Start playing a sound file into the sink; returns the paplay process."""
        return subprocess.Popen(["paplay", f"--device={self.sink}", str(path)], env=self.env)

    def start(self) -> None:
        """Start the daemon (``pulseaudio -D``) and wait until it answers."""
        subprocess.run(
            [
                "pulseaudio",
                "-D",
                "--exit-idle-time=-1",
                "--system=false",
                "--disallow-exit",
                "-n",
                "--load=module-native-protocol-unix",
                f"--load=module-null-sink sink_name={self.sink} rate={self.rate} channels=1",
            ],
            env=self.env,
            check=True,
            timeout=30,
            capture_output=True,
        )
        deadline = time.monotonic() + 10
        while subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                pytest.fail("PulseAudio did not answer within 10 s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the daemon of this runtime directory (``pulseaudio -k``): the "box" is unplugged."""
        subprocess.run(["pulseaudio", "-k"], env=self.env, timeout=30, capture_output=True)
        deadline = time.monotonic() + 10
        while subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode == 0:
            if time.monotonic() > deadline:
                pytest.fail("PulseAudio did not stop within 10 s")
            time.sleep(0.1)


def _reinit_portaudio() -> None:
    # PortAudio lists devices when it starts; restart it so it sees the new environment.
    import sounddevice as sd

    sd._terminate()
    sd._initialize()


@pytest.fixture(scope="module")
def pulse() -> Iterator[PulseServer]:
    """A PulseAudio server with an 8 kHz mono null sink ``line``, for the module's tests."""
    if shutil.which("pulseaudio") is None or shutil.which("paplay") is None:
        pytest.fail(MISSING)
    runtime = Path(tempfile.mkdtemp(prefix="cti-pulse-"))
    runtime.chmod(0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "PULSE_SOURCE": f"{SINK}.monitor"}
    env.pop("PULSE_SERVER", None)
    server = PulseServer(runtime, env)
    server.start()
    saved = {name: os.environ.get(name) for name in ("XDG_RUNTIME_DIR", "PULSE_SOURCE", "PULSE_SERVER")}
    os.environ.update(XDG_RUNTIME_DIR=str(runtime), PULSE_SOURCE=f"{SINK}.monitor")
    os.environ.pop("PULSE_SERVER", None)
    _reinit_portaudio()
    try:
        yield server
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _reinit_portaudio()
        shutil.rmtree(runtime, ignore_errors=True)


__all__ = ["RATE", "PulseServer", "pulse"]
