"""The live tap (listen-in): one listener's bounded view of a call's audio as it is recorded."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable

import numpy as np

from agent.seat.audio import Block, Resampler

#: The live tap's sample rate (telephone band, what listen-in streams).
LIVE_RATE = 8000
#: Blocks a live listener may fall behind before its oldest are dropped (about 2 s of 20 ms blocks).
LIVE_QUEUE_BLOCKS = 100


class LiveTap:
    """One listener's view of a call's live audio: ``async for chunk in tap`` gives PCM bytes.

    Each chunk is 16-bit little-endian mono PCM at :data:`LIVE_RATE` Hz (one
    recorder block, typically 20 ms). The writer thread hands chunks over with
    ``loop.call_soon_threadsafe`` (it never waits); the queue keeps at most
    ``max_blocks`` chunks and drops the oldest beyond that (counted in
    :attr:`dropped`). Iteration ends when the call's recording ends or
    :meth:`close` is called.

    ``on_close(tap)`` is called once, on the event loop, when the listener
    closes the tap (the recorder uses it to stop feeding it).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        max_blocks: int = LIVE_QUEUE_BLOCKS,
        *,
        on_close: Callable[[LiveTap], None] | None = None,
    ) -> None:
        self._loop = loop
        self._blocks: collections.deque[bytes] = collections.deque(maxlen=max(max_blocks, 1))
        self._ready = asyncio.Event()
        self._ended = False
        self._on_close = on_close
        self.dropped = 0

    # -- any thread (the writer's) -----------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        """Queue a chunk from any thread (never blocks)."""
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening any more
            self._loop.call_soon_threadsafe(self._push, chunk)

    def finish(self) -> None:
        """End the stream from any thread, after the chunks fed before."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._end)

    # -- the event loop ------------------------------------------------------------------

    def _push(self, chunk: bytes) -> None:
        if self._ended:
            return
        if len(self._blocks) == self._blocks.maxlen:
            self.dropped += 1
        self._blocks.append(chunk)
        self._ready.set()

    def _end(self) -> None:
        self._ended = True
        self._ready.set()

    def close(self) -> None:
        """Stop listening: tell ``on_close`` (once) and end the iteration."""
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(self)
        self._end()
        self._blocks.clear()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        while not self._blocks:
            if self._ended:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._blocks.popleft()


def live_pcm(data: Block, resampler: Resampler | None) -> bytes:
    """A block as 16-bit little-endian mono PCM: channels averaged, then resampled if given."""
    mono = data.astype(np.int32).mean(axis=1) if data.ndim == 2 else data.astype(np.float64)
    mono = np.asarray(mono, dtype=np.float64).reshape(-1, 1)
    if resampler is not None:
        mono = resampler.process(np.clip(np.rint(mono), -32768, 32767).astype(np.int16))
    return np.clip(np.rint(mono[:, 0]), -32768, 32767).astype("<i2").tobytes()


__all__ = ["LIVE_QUEUE_BLOCKS", "LIVE_RATE", "LiveTap", "live_pcm"]
