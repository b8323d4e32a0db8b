"""Batching a recording's blocks into writes of about half a second (pure; the writer thread uses it).

Per-block (20 ms) soundfile writes and level analysis cost the writer most of
its CPU; one write per half second costs a third of it. Where the batches end
matters for what a kill loses: libsndfile's FLAC encoder writes a 4096-frame
FLAC block once the 4097th frame after it arrives (measured: the file grows
at 4097, 8193, ... frames), so batches end when the file reaches
``batch * k + 1`` frames, ``batch`` a multiple of 4096. At 8 kHz a batch is
one FLAC block: what the writer holds is what the encoder would hold anyway,
and a kill loses no more than unbatched (about 1 s). At higher rates a batch
spans several blocks and adds up to half a second less one block; for WAV (no
encoder buffer) a batch adds up to about half a second.
"""

from __future__ import annotations

import math

import numpy as np

from agent.seat.audio import Block

#: Seconds of audio gathered before one write, rounded up to whole :data:`BATCH_ALIGN` frames.
BATCH_SECONDS = 0.5
#: libsndfile's FLAC block size (see the module docstring).
BATCH_ALIGN = 4096


def batch_frames(samplerate: int) -> int:
    """Frames per write at ``samplerate``: :data:`BATCH_SECONDS`, rounded up to :data:`BATCH_ALIGN`.

    8 kHz: 4096 (0.51 s), 16 kHz: 8192 (0.51 s), 44.1 and 48 kHz: 24576 (0.56 and 0.51 s).
    """
    return BATCH_ALIGN * max(1, math.ceil(BATCH_SECONDS * samplerate / BATCH_ALIGN))


class Batcher:
    """Gathers blocks; gives a batch whenever the file would reach its next cut (``size * k + 1``)."""

    def __init__(self, samplerate: int) -> None:
        self.size = batch_frames(samplerate)
        self._cut = self.size + 1  # the file length the next batch ends at
        self._blocks: list[Block] = []
        self._gathered = 0
        self.given = 0  # frames handed out so far (the file's length if every write succeeded)

    def add(self, data: Block) -> Block | None:
        """Gather ``data``; the batch to write now, up to the last cut reached (the rest waits)."""
        self._blocks.append(data)
        self._gathered += len(data)
        end = self.given + self._gathered
        if end < self._cut:
            return None
        while self._cut + self.size <= end:
            self._cut += self.size
        batch = self._give(self._cut - self.given)
        self._cut += self.size
        return batch

    def drain(self) -> Block | None:
        """Everything gathered (at the end of the recording), or None when nothing is."""
        return self._give(self._gathered) if self._gathered else None

    def _give(self, frames: int) -> Block:
        gathered = self._blocks[0] if len(self._blocks) == 1 else np.concatenate(self._blocks)
        batch, rest = gathered[:frames], gathered[frames:]
        self._blocks, self._gathered = ([rest], len(rest)) if len(rest) else ([], 0)
        self.given += len(batch)
        return batch


__all__ = ["BATCH_ALIGN", "BATCH_SECONDS", "Batcher", "batch_frames"]
