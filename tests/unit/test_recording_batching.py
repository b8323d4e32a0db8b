"""Batching blocks into writes: sizes per rate, cut points, nothing lost or reordered."""

from __future__ import annotations

import numpy as np
import pytest

from agent.seat.recording.batching import Batcher, batch_frames


@pytest.mark.parametrize(
    ("rate", "frames"), [(8000, 4096), (12000, 8192), (16000, 8192), (44100, 24576), (48000, 24576)]
)
def test_a_batch_is_half_a_second_in_whole_flac_blocks(rate: int, frames: int) -> None:
    assert batch_frames(rate) == frames
    assert 0.5 <= frames / rate < 0.9


@pytest.mark.parametrize(
    ("rate", "block", "total", "writes"),
    [
        # 8 kHz, 20 ms blocks: the file grows to 4097, 8193, 12289 ... frames, then the rest at the end.
        (8000, 160, 24000, [4097, 4096, 4096, 4096, 4096, 3519]),
        # a block larger than a batch: one write up to the last cut it reaches.
        (8000, 10000, 20000, [8193, 8192, 3615]),
        # 16 kHz: cuts every 8192 frames.
        (16000, 320, 20000, [8193, 8192, 3615]),
        # shorter than a batch: one write at the end.
        (8000, 160, 1600, [1600]),
    ],
)
def test_writes_end_on_the_cuts_and_keep_every_frame_in_order(
    rate: int, block: int, total: int, writes: list[int]
) -> None:
    signal = (np.arange(total) % 30000).astype(np.int16)[:, None]
    batcher = Batcher(rate)
    out = [
        b for start in range(0, total, block) if (b := batcher.add(signal[start : start + block])) is not None
    ]
    rest = batcher.drain()
    if rest is not None:
        out.append(rest)
    assert [len(b) for b in out] == writes
    np.testing.assert_array_equal(np.concatenate(out), signal)
    assert batcher.given == total
    assert batcher.drain() is None
