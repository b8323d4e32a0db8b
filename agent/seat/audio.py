"""Audio input for call recording: sources of sample blocks and the pure helpers the recorder uses.

A source (:class:`AudioSource`) pushes blocks of int16 samples, shape
``(frames, channels)``, to a :class:`BlockSink` from its own thread (PortAudio's
callback thread, or the simulator's generator). The sink must only copy and
enqueue: nothing on that thread may block, or the device overruns.

The helpers are pure and thread-agnostic: :class:`PreRoll` (a ring buffer that
keeps the last seconds before a recording starts, so the first words are not
lost) and :class:`LevelStats` (per-channel levels, to flag silent and one-sided
recordings).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from agent.errors import DeviceError

logger = logging.getLogger(__name__)

Block = npt.NDArray[np.int16]
"""Samples as ``(frames, channels)`` int16."""

#: A block quieter than this (dBFS, RMS) counts as silence; line noise on a quiet analogue line is ~-60.
SILENCE_DBFS = -50.0


class BlockSink(Protocol):
    """Where a source delivers audio. Called on the source's thread: every method must return at once."""

    def block(self, data: Block) -> None:
        """A new block of samples; the sink owns ``data`` (sources pass a copy)."""

    def overrun(self) -> None:
        """The device dropped input because the callback came too late."""

    def error(self, reason: str) -> None:
        """The source stopped on its own (device unplugged, stream failed); no more blocks follow."""


class AudioSource(Protocol):
    """One line's audio input. ``start`` may block briefly (opening a device); call it off the loop.

    ``samplerate`` is the rate recordings are made at. A source whose blocks
    come at another rate says so in a ``device_rate`` attribute; the recorder's
    writer thread then resamples (never the callback).
    """

    samplerate: int
    channels: int

    def start(self, sink: BlockSink) -> None:
        """Start delivering blocks to ``sink``. Raises :class:`DeviceError` when the input cannot open."""

    def stop(self) -> None:
        """Stop delivering; idempotent. After it returns no more blocks arrive."""


class SoundDeviceSource:
    """An input of a sound device through PortAudio (``sounddevice``).

    ``device`` is a sounddevice name (or a unique part of one) or an index;
    ``channels`` are the 1-based device channels this line records: the stream
    opens with as many channels as the highest one, and each block keeps only
    those (a stereo USB box with one line per channel records ``[1]`` and ``[2]``
    on two lines). ``samplerate`` None takes the device's default rate.
    """

    def __init__(
        self,
        device: str | int | None,
        channels: Sequence[int] = (1,),
        samplerate: int | None = None,
        blocksize: int = 0,
    ) -> None:
        self.device = device
        self._columns = [c - 1 for c in channels]
        self._open_channels = max(channels)
        self.channels = len(self._columns)
        self._wanted_rate = samplerate
        self.samplerate = samplerate or 0
        #: The rate the device captures at; blocks come at this rate (see :class:`Resampler`).
        self.device_rate = self.samplerate
        self._blocksize = blocksize
        self._stream: Any = None
        self._sink: BlockSink | None = None
        self._stopping = False

    def start(self, sink: BlockSink) -> None:
        """Open the device and start the stream (blocks while PortAudio opens it)."""
        import sounddevice as sd

        self._sink = sink
        self._stopping = False
        try:
            info = sd.query_devices(self.device, "input")
            if self._wanted_rate is None:
                self.samplerate = int(info["default_samplerate"])
            self.device_rate = self.samplerate
            try:
                sd.check_input_settings(
                    self.device, channels=self._open_channels, dtype="int16", samplerate=self.samplerate
                )
            except sd.PortAudioError:
                # The device cannot capture at the wanted rate: capture at its own, the writer resamples.
                self.device_rate = int(info["default_samplerate"])
            stream = sd.InputStream(
                device=self.device,
                channels=self._open_channels,
                samplerate=self.device_rate,
                dtype="int16",
                blocksize=self._blocksize,
                callback=self._callback,
                finished_callback=self._finished,
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise DeviceError(f"audio input {self.device!r}: {exc}") from exc
        self._stream = stream

    def stop(self) -> None:
        """Stop and close the stream; errors on the way out are logged, not raised."""
        self._stopping = True
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.close(ignore_errors=True)
        except Exception:  # a vanished device may fail even here: the stream is gone either way
            logger.warning("audio input %r: close failed", self.device, exc_info=True)

    def _callback(self, indata: Any, frames: int, time: Any, status: Any) -> None:
        sink = self._sink
        if sink is None:
            return
        if status.input_overflow:
            sink.overrun()
        # Fancy indexing copies: PortAudio reuses ``indata`` after we return.
        sink.block(indata[:, self._columns])

    def _finished(self) -> None:
        sink = self._sink
        if sink is not None and not self._stopping:
            sink.error("audio stream stopped")


class PreRoll:
    """A ring buffer of the last ``frames`` frames (the audio before a recording starts)."""

    def __init__(self, frames: int, channels: int) -> None:
        self._buf: Block = np.zeros((max(frames, 0), channels), dtype=np.int16)
        self._size = max(frames, 0)
        self._end = 0  # next write position
        self._filled = 0

    def push(self, data: Block) -> None:
        """Append ``data``, dropping the oldest frames beyond capacity."""
        if self._size == 0:
            return
        data = data[-self._size :]
        n = len(data)
        first = min(n, self._size - self._end)
        self._buf[self._end : self._end + first] = data[:first]
        self._buf[: n - first] = data[first:]
        self._end = (self._end + n) % self._size
        self._filled = min(self._size, self._filled + n)

    def take(self) -> Block:
        """Everything buffered, oldest first, and empty the buffer."""
        if self._filled == 0:
            return self._buf[:0].copy()
        start = (self._end - self._filled) % self._size
        if start < self._end:
            out = self._buf[start : self._end].copy()
        else:
            out = np.concatenate([self._buf[start:], self._buf[: self._end]])
        self._filled = 0
        return out

    def __len__(self) -> int:
        return self._filled


class Resampler:
    """Streaming sample-rate conversion for speech (a device at 44.1/48 kHz recorded at 8/16 kHz).

    A windowed-sinc low-pass at 0.45 of the lower rate (against aliasing), then
    linear interpolation at the output rate. Stateful: blocks of any size give
    the same output as one long block. Good for telephone speech, not for music.
    """

    def __init__(self, rate_in: int, rate_out: int, channels: int, taps: int = 63) -> None:
        self.rate_in = rate_in
        self.rate_out = rate_out
        self._step = rate_in / rate_out
        cutoff = 0.45 * min(rate_in, rate_out) / rate_in  # cycles per input sample
        n = np.arange(taps) - (taps - 1) / 2
        kernel = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(taps)
        self._kernel = kernel / kernel.sum()
        self._history = np.zeros((taps - 1, channels))  # input the filter still needs
        self._filtered = np.zeros((0, channels))  # filtered input not yet interpolated past
        self._pos = 0.0  # next output position, in filtered-input samples from _filtered[0]

    def process(self, data: Block) -> Block:
        """Resample the next block; returns as many output frames as the input so far allows."""
        if self.rate_in == self.rate_out:
            return data
        x = np.concatenate([self._history, data.astype(np.float64)])
        self._history = x[len(x) - (len(self._kernel) - 1) :]
        filtered = np.stack(
            [np.convolve(x[:, c], self._kernel, mode="valid") for c in range(x.shape[1])], axis=1
        )
        buf = np.concatenate([self._filtered, filtered])
        last = len(buf) - 1  # interpolation needs the sample after each position
        count = max(0, int(np.floor((last - self._pos) / self._step)) + 1) if last >= 1 else 0
        if count and self._pos + (count - 1) * self._step >= last:
            count -= 1
        positions = self._pos + np.arange(count) * self._step
        base = np.floor(positions).astype(np.int64)
        frac = (positions - base)[:, None]
        out = buf[base] * (1 - frac) + buf[np.minimum(base + 1, last)] * frac if count else buf[:0]
        self._pos += count * self._step
        # The next position may lie past this buffer (a large step): keep the offset, drop all.
        drop = min(int(np.floor(self._pos)), len(buf))
        self._filtered = buf[drop:]
        self._pos -= drop
        return np.asarray(np.clip(np.round(out), -32768, 32767), dtype=np.int16)


def dbfs(data: Block) -> npt.NDArray[np.float64]:
    """RMS level of each channel of ``data`` in dBFS (-inf for digital silence)."""
    if len(data) == 0:
        return np.full(data.shape[1], -math.inf)
    rms = np.sqrt(np.mean(np.square(data.astype(np.float64)), axis=0)) / 32768.0
    with np.errstate(divide="ignore"):
        return np.asarray(20.0 * np.log10(rms), dtype=np.float64)


class LevelStats:
    """Per-channel speech activity over a recording, in blocks of ``window`` frames.

    ``active_seconds[c]`` is how long channel ``c`` was above ``threshold``
    dBFS. A recording is *silent* when no channel was active for
    ``min_active`` seconds, *one-sided* when it has several channels (the two
    sides of the call) and one of them is silent while another talks.
    """

    def __init__(
        self, channels: int, samplerate: int, *, window: float = 0.1, threshold: float = SILENCE_DBFS
    ) -> None:
        self.samplerate = samplerate
        self._window = max(1, int(samplerate * window))
        self._threshold = threshold
        self._pending: Block = np.zeros((0, channels), dtype=np.int16)
        self.active_frames = np.zeros(channels, dtype=np.int64)
        self.frames = 0

    def add(self, data: Block) -> None:
        """Account for ``data`` (any length; analysed in whole windows)."""
        self.frames += len(data)
        pending = np.concatenate([self._pending, data]) if len(self._pending) else data
        whole = len(pending) - len(pending) % self._window
        if whole:
            windows = pending[:whole].reshape(-1, self._window, pending.shape[1]).astype(np.float64)
            rms = np.sqrt(np.mean(np.square(windows), axis=1)) / 32768.0
            with np.errstate(divide="ignore"):
                levels = 20.0 * np.log10(rms)
            self.active_frames += (levels > self._threshold).sum(axis=0) * self._window
        self._pending = pending[whole:].copy()

    @property
    def active_seconds(self) -> list[float]:
        """Seconds of activity per channel."""
        return [float(f) / self.samplerate for f in self.active_frames]

    def verdicts(self, *, min_active: float = 1.0) -> list[str]:
        """``["silent"]``, ``["one_sided"]`` or ``[]`` for this recording."""
        active = [s >= min_active for s in self.active_seconds]
        if not any(active):
            return ["silent"]
        if len(active) > 1 and not all(active):
            return ["one_sided"]
        return []


__all__ = [
    "SILENCE_DBFS",
    "AudioSource",
    "Block",
    "BlockSink",
    "LevelStats",
    "PreRoll",
    "Resampler",
    "SoundDeviceSource",
    "dbfs",
]
