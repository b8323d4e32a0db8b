"""Synthetic call audio for simulated lines, so the demo records real files without a sound server.

:class:`SpeechSynth` is pure and seeded: turns of "speech" (a voiced tone with
harmonics at a speaker's pitch, shaped into syllables at about 5 Hz, plus a
little breath noise) alternate between the two sides of the call with short
pauses, over faint line hiss. With two channels each side has its own channel
(as a USB box with one channel per side records it); with one they are mixed.

:class:`SyntheticSource` plays it in real time as an :class:`agent.seat.audio.AudioSource`
from its own thread, paced by the clock like a sound card.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import zlib

import numpy as np

from agent.seat.audio import Block, BlockSink

logger = logging.getLogger(__name__)

#: Loudness of speech (peak, full scale = 1.0) and of the hiss under it.
SPEECH_LEVEL = 0.25
HISS_LEVEL = 0.002


class SpeechSynth:
    """Seeded speech-like audio, rendered block by block (``render`` continues where it stopped)."""

    def __init__(self, seed: int, samplerate: int, channels: int = 1) -> None:
        self.samplerate = samplerate
        self.channels = channels
        self._rng = np.random.default_rng(seed)
        self._pitches = (float(self._rng.uniform(95, 140)), float(self._rng.uniform(170, 240)))
        self._frame = 0  # frames rendered so far
        self._side = int(self._rng.integers(2))
        self._turn_left = 0  # frames left in the current turn or pause
        self._talking = False

    def _next_turn(self) -> None:
        if self._talking:
            self._talking = False
            self._turn_left = int(self._rng.uniform(0.2, 0.8) * self.samplerate)
        else:
            self._talking = True
            self._side = 1 - self._side if self._rng.random() < 0.8 else self._side
            self._turn_left = int(self._rng.uniform(1.0, 3.5) * self.samplerate)

    def render(self, frames: int) -> Block:
        """The next ``frames`` frames as int16, shape ``(frames, channels)``."""
        sides = np.zeros((frames, 2), dtype=np.float64)
        done = 0
        while done < frames:
            if self._turn_left <= 0:
                self._next_turn()
            n = min(frames - done, self._turn_left)
            if self._talking:
                t = (self._frame + done + np.arange(n)) / self.samplerate
                pitch = self._pitches[self._side]
                voiced = sum(np.sin(2 * math.pi * pitch * k * t) / k for k in (1, 2, 3, 4))
                syllables = np.clip(np.sin(2 * math.pi * 4.7 * t), 0.0, None) ** 0.7
                noise = self._rng.standard_normal(n) * 0.15
                sides[done : done + n, self._side] = SPEECH_LEVEL * syllables * (voiced / 2.1 + noise)
            done += n
            self._turn_left -= n
        self._frame += frames
        sides += self._rng.standard_normal((frames, 2)) * HISS_LEVEL
        out = sides if self.channels == 2 else sides.sum(axis=1, keepdims=True)
        if self.channels > 2:
            out = np.repeat(sides.sum(axis=1, keepdims=True), self.channels, axis=1)
        return np.asarray(np.clip(out, -1.0, 1.0) * 32767, dtype=np.int16)


def call_seed(seed: int | None, line: str, call_uuid: str) -> int:
    """A seed for one call's audio: the same device seed, line and call give the same audio."""
    return zlib.crc32(f"{seed}:{line}:{call_uuid}".encode())


class SyntheticSource:
    """An :class:`agent.seat.audio.AudioSource` playing :class:`SpeechSynth` in real time.

    Blocks of ``block_seconds`` are delivered from a thread that waits on an
    event until each block is due, so ``stop`` ends it at once.
    """

    def __init__(
        self, seed: int, samplerate: int = 8000, channels: int = 1, block_seconds: float = 0.02
    ) -> None:
        self.samplerate = samplerate
        self.channels = channels
        self._synth = SpeechSynth(seed, samplerate, channels)
        self._block = max(1, int(samplerate * block_seconds))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink: BlockSink) -> None:
        """Start the generator thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(sink,), name="synthetic-audio", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the generator; no block is delivered after this returns."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    def _run(self, sink: BlockSink) -> None:
        period = self._block / self.samplerate
        due = time.monotonic() + period
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            sink.block(self._synth.render(self._block))
            due += period


__all__ = ["SpeechSynth", "SyntheticSource", "call_seed"]
