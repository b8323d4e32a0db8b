"""Where the line audio comes from: a sound-device input (PortAudio) or a recording replayed.

The PortAudio callback runs on PortAudio's own thread: it only copies the
block into a bounded queue (dropping the oldest block and counting an
overrun when the reader falls behind), never decodes or logs. Reads block on
that queue through :func:`asyncio.to_thread` with a short time-out, so
closing never waits long. A stream that fails or stops on its own (the USB
box unplugged) raises :class:`~agent.errors.DeviceError`; the runtime then
reports ``device_down`` and opens the device again later.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from collections.abc import Sequence
from typing import Any

import numpy as np

from agent.errors import DeviceError

logger = logging.getLogger(__name__)

_MAX_QUEUED_SECONDS = 5.0
_READ_TIMEOUT = 0.25


class SoundDeviceInput:
    """A PortAudio input stream; blocks come out as float32 ``(frames, len(channels))``."""

    def __init__(
        self, device: str | int | None, channels: Sequence[int], samplerate: int, block_seconds: float = 0.1
    ) -> None:
        self.device = device
        self.samplerate = samplerate
        self._columns = [c - 1 for c in channels]
        self._blocksize = max(1, round(samplerate * block_seconds))
        self._queue: queue.Queue[np.ndarray | BaseException] = queue.Queue(
            maxsize=max(2, round(_MAX_QUEUED_SECONDS / block_seconds))
        )
        self._stream: Any = None
        self.overruns = 0

    def _put(self, item: np.ndarray | BaseException) -> None:
        # Never blocks (PortAudio's thread): when the reader fell behind, the
        # oldest block makes room and the loss is counted.
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.overruns += 1
            try:
                self._queue.get_nowait()
                self._queue.put_nowait(item)
            except (queue.Empty, queue.Full):
                pass

    def _callback(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if status.input_overflow:
            self.overruns += 1
        self._put(indata[:, self._columns].copy())

    def _finished(self) -> None:
        self._put(DeviceError(f"audio input {self.device!r} stopped"))

    def open(self) -> None:
        """Open and start the stream (blocking; run it off the event loop)."""
        try:
            import sounddevice
        except OSError as exc:  # PortAudio library missing
            raise DeviceError(f"sound input unavailable: {exc}") from exc
        try:
            stream = sounddevice.InputStream(
                device=self.device,
                channels=max(self._columns) + 1,
                samplerate=self.samplerate,
                blocksize=self._blocksize,
                dtype="float32",
                callback=self._callback,
                finished_callback=self._finished,
            )
            stream.start()
        except (sounddevice.PortAudioError, ValueError) as exc:
            raise DeviceError(f"cannot open audio input {self.device!r}: {exc}") from exc
        self._stream = stream

    def read(self) -> np.ndarray | None:
        """The next block, or None when none came within the time-out (blocking)."""
        try:
            item = self._queue.get(timeout=_READ_TIMEOUT)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stop and close the stream; idempotent."""
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort(ignore_errors=True)
                stream.close(ignore_errors=True)
            except Exception:
                logger.debug("closing audio input %r failed", self.device, exc_info=True)


class FileInput:
    """A recording replayed as if it were live: blocks paced at ``speed`` times real time (0: no pacing)."""

    def __init__(
        self, path: str, channels: Sequence[int], block_seconds: float = 0.1, speed: float = 1.0
    ) -> None:
        self.path = path
        self.speed = speed
        self._columns = [c - 1 for c in channels]
        self._block_seconds = block_seconds
        self._file: Any = None
        self.samplerate = 0
        self._done = False

    def open(self) -> None:
        """Open the file (blocking)."""
        import soundfile

        try:
            f = soundfile.SoundFile(self.path)
        except (OSError, RuntimeError) as exc:
            raise DeviceError(f"cannot open recording {self.path}: {exc}") from exc
        if max(self._columns) >= f.channels:
            f.close()
            raise DeviceError(
                f"{self.path} has {f.channels} channel(s); channel {max(self._columns) + 1} asked for"
            )
        self._file = f
        self.samplerate = f.samplerate
        self._done = False

    def read(self) -> np.ndarray | None:
        """The next block; raises :class:`EOFError` at the end of the recording."""
        if self._file is None:
            raise DeviceError(f"recording {self.path} is not open")
        frames = max(1, round(self.samplerate * self._block_seconds))
        data = self._file.read(frames, dtype="float32", always_2d=True)
        if len(data) == 0:
            raise EOFError(self.path)
        return np.ascontiguousarray(data[:, self._columns])

    def close(self) -> None:
        """Close the file; idempotent."""
        f, self._file = self._file, None
        if f is not None:
            f.close()


Input = SoundDeviceInput | FileInput


async def open_input(source: Input) -> None:
    """Open ``source`` off the event loop."""
    await asyncio.to_thread(source.open)


async def read_block(source: Input) -> np.ndarray | None:
    """One block from ``source`` off the event loop, paced for a replayed file."""
    block = await asyncio.to_thread(source.read)
    if isinstance(source, FileInput) and source.speed > 0 and block is not None:
        await asyncio.sleep(len(block) / source.samplerate / source.speed)
    return block
