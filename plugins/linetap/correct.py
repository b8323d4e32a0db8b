"""Checksum-guided correction of an FSK caller-ID burst from its soft decisions (pure).

On a noisy line most failed bursts are one or two bits wrong, and those bits
are the ones the demodulator was least sure of. The message's checksum (the
two's complement of the byte sum, :func:`agent.callerid.checksum`) tells how
far off the sum is; flipping bits changes it by known amounts. But the
checksum cannot say *where* the error is: any bit of the same weight and value
elsewhere repairs the sum as well, and may turn a digit into another digit.
So a correction is taken only when it is unambiguous:

- the message's header (type and length) was received, and only body bits
  are flipped;
- among every flip set of the size tried that repairs the checksum, the chosen
  one's bits are far less sure than those of the runner-up (``margin``), and
  themselves doubtful (``max_soft``);
- the repaired message then parses (:func:`agent.callerid.decode_message`:
  digits where digits belong, a printable name).

Anything else stays an error. The caller measures the false-number rate with
the benchmark (``tests/bench/bench_callerid_peers.py``), which must stay 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from agent.callerid import MDMF, SDMF, CallerIdError, CallerIdMessage, decode_message

#: a flipped bit's soft decision must be at most this sure (|d| of 1 is a clean bit)
MAX_SOFT = 0.3
#: the runner-up repair's doubt must be this many times the chosen one's
MARGIN = 3.0
#: double flips are sought among this many least-sure body bits
PAIR_POOL = 8


def correct(data: bytes, soft: Sequence[float], *, name_encoding: str = "auto") -> CallerIdMessage | None:
    """The one message ``data`` (a burst's bytes) holds after an unambiguous repair, or None."""
    if len(soft) != 8 * len(data):
        return None
    for start in range(len(data) - 2):
        if data[start] not in (SDMF, MDMF):
            continue
        end = start + data[start + 1] + 3
        if end > len(data) or data[start + 1] < 3:
            continue
        message = _repair(data[start:end], soft[8 * start : 8 * end], name_encoding)
        if message is not None:
            return message
    return None


def _repair(raw: bytes, soft: Sequence[float], name_encoding: str) -> CallerIdMessage | None:
    deficit = (-sum(raw)) % 256  # what the flips must add to the sum, mod 256
    if deficit == 0:
        return None  # the checksum holds: the burst failed for another reason
    # Body and checksum bits only (bytes 2..): a flipped header would move the frame.
    bits = [(abs(soft[k]), k) for k in range(16, 8 * len(raw))]

    def change(k: int) -> int:
        byte, bit = divmod(k, 8)
        return -(1 << bit) if raw[byte] >> bit & 1 else 1 << bit

    singles = [(doubt, (k,)) for doubt, k in bits if change(k) % 256 == deficit]
    ranked = sorted(bits)
    pool = ranked[:PAIR_POOL]
    pairs = [
        (a[0] + b[0], (a[1], b[1]))
        for a, b in itertools.combinations(pool, 2)
        if (change(a[1]) + change(b[1])) % 256 == deficit
    ]
    candidates = sorted(singles + pairs)
    if not candidates:
        return None
    doubt, flips = candidates[0]
    # The runner-up: the next repair, or any pair reaching outside the pool (at
    # least as doubtful as the pool's next bit), whichever is less doubtful.
    rivals = [c[0] for c in candidates[1:2]]
    if len(ranked) > PAIR_POOL:
        rivals.append(ranked[PAIR_POOL][0])
    if doubt > MAX_SOFT * len(flips) or any(r < MARGIN * doubt for r in rivals):
        return None  # doubtful or ambiguous: no guess
    fixed = bytearray(raw)
    for k in flips:
        fixed[k // 8] ^= 1 << (k % 8)
    try:
        return decode_message(bytes(fixed), name_encoding=name_encoding)
    except CallerIdError:
        return None


__all__ = ["MARGIN", "MAX_SOFT", "correct"]
