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
- the burst is not so noisy that its soft decisions stop meaning much (the
  5th percentile of the body's confidence at least ``MIN_SPREAD`` of its
  median: about 4 dB SNR and up, where the calibration below was measured);
- among every flip set of the size tried that repairs the checksum and parses
  (what was sent parsed, so a repair that does not is no rival), the chosen
  one's bits are far less sure than those of the runner-up: ``MARGIN`` times
  less, *and* by ``MIN_GAIN`` in log-likelihood (the soft decisions scaled by
  ``LLR_PER_SOFT``, measured per standard), and themselves doubtful (``MAX_SOFT``);
- the repaired message then parses (:func:`agent.callerid.decode_message`:
  digits where digits belong, a printable name) and its number, if it has one,
  is one the caller's numbering plan allows (``plausible``).

A ratio alone is not a margin: 0.02 against 0.06 passes "3 times less sure" but
is a coin toss when the noise puts a bit in ten under 0.1. Measured on 9,000
noisy bursts (Bell 202 and V.23, SpanDSP's and our transmitter, 4-7 dB SNR), the
ratio rule alone made 5 wrong repairs (2 of them wrong numbers) beside 584 right ones; with
the rules here, none beside 275 right ones, and none beside 111 on 6,000 more bursts at
2-8 dB kept apart while the figures were chosen
(``tests/integration/test_linetap_fsk_noise.py`` keeps it so).

Anything else stays an error. The caller measures the false-number rate with
the benchmark (``tests/bench/bench_callerid_peers.py``), which must stay 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from agent.callerid import MDMF, SDMF, CallerIdError, CallerIdMessage, decode_message

#: a flipped bit's soft decision must be at most this sure (|d| of 1 is a clean bit)
MAX_SOFT = 0.3
#: the runner-up repair's doubt must be this many times the chosen one's
MARGIN = 3.0
#: double flips are sought among this many least-sure body bits
PAIR_POOL = 8
#: log-likelihood ratio of a bit being right per unit of |soft decision| (the slope of
#: log(P(right) / P(wrong)) against |soft|, measured at 4 dB SNR on 8 kHz input, where it
#: is lowest; V.23's tones 800 Hz apart give smaller soft decisions for the same certainty)
LLR_PER_SOFT = {"bell202": 12.0, "v23": 22.0}
#: the runner-up repair must be this much less likely than the chosen one (e^4.5: 90 to 1
#: on the soft decisions alone, before the parse check throws out most wrong repairs)
MIN_GAIN = 4.5
#: below this 5th-percentile-to-median spread of the body's confidence, no repair
MIN_SPREAD = 0.5


def correct(
    data: bytes,
    soft: Sequence[float],
    *,
    standard: str = "bell202",
    name_encoding: str = "auto",
    plausible: Callable[[str], bool] | None = None,
) -> CallerIdMessage | None:
    """The one message ``data`` (a burst's bytes) holds after an unambiguous repair, or None.

    :param standard: the FSK standard the burst came in (its soft decisions' scale).
    :param plausible: whether a repaired message's number could be a caller's (None: any).
    """
    if len(soft) != 8 * len(data) or standard not in LLR_PER_SOFT:
        return None
    for start in range(len(data) - 2):
        if data[start] not in (SDMF, MDMF):
            continue
        end = start + data[start + 1] + 3
        if end > len(data) or data[start + 1] < 3:
            continue
        message = _repair(data[start:end], soft[8 * start : 8 * end], LLR_PER_SOFT[standard], name_encoding)
        if message is not None:
            if message.number and plausible is not None and not plausible(message.number):
                return None
            return message
    return None


def _repair(raw: bytes, soft: Sequence[float], llr: float, name_encoding: str) -> CallerIdMessage | None:
    deficit = (-sum(raw)) % 256  # what the flips must add to the sum, mod 256
    if deficit == 0:
        return None  # the checksum holds: the burst failed for another reason
    # Body and checksum bits only (bytes 2..): a flipped header would move the frame.
    bits = [(abs(soft[k]), k) for k in range(16, 8 * len(raw))]
    sure = sorted(doubt for doubt, _ in bits)
    if sure[len(sure) // 20] < MIN_SPREAD * sure[len(sure) // 2]:
        return None  # too noisy for the soft decisions to single out the wrong bits

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
    # Only repairs that parse compete: what was sent parsed, so one that cannot
    # is no rival (a digit flipped into a letter, a name into control bytes).
    valid: list[tuple[float, int, CallerIdMessage]] = []
    for doubt, flips in sorted(singles + pairs):
        message = _parse(raw, flips, name_encoding)
        if message is not None:
            valid.append((doubt, len(flips), message))
            if len(valid) == 2:
                break
    if not valid:
        return None
    doubt, n_flips, message = valid[0]
    # The runner-up: the next repair, or any pair reaching outside the pool (at
    # least as doubtful as the pool's next bit), whichever is less doubtful.
    rivals = [r for r, _, _ in valid[1:2]]
    if len(ranked) > PAIR_POOL:
        rivals.append(ranked[PAIR_POOL][0])
    ambiguous = any(r < MARGIN * doubt or llr * (r - doubt) < MIN_GAIN for r in rivals)
    if doubt > MAX_SOFT * n_flips or ambiguous:
        return None  # doubtful or ambiguous: no guess
    return message


def _parse(raw: bytes, flips: tuple[int, ...], name_encoding: str) -> CallerIdMessage | None:
    fixed = bytearray(raw)
    for k in flips:
        fixed[k // 8] ^= 1 << (k % 8)
    try:
        return decode_message(bytes(fixed), name_encoding=name_encoding)
    except CallerIdError:
        return None


__all__ = ["LLR_PER_SOFT", "MARGIN", "MAX_SOFT", "MIN_GAIN", "MIN_SPREAD", "correct"]
