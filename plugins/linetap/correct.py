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
- among every flip set tried (every single flip, every pair with a bit among the
  ``POOL`` least sure, every triple within them; any other set is bounded by
  the doubts it must include) that repairs the checksum and parses
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
ratio rule alone made 5 wrong repairs (2 of them wrong numbers) beside 584 right ones.
With the rules here, on those and 12,000 more at 2-8 dB (6,900 failed bursts in all):
924 repairs, none wrong (``tests/integration/test_linetap_fsk_noise.py`` keeps it so on
fresh bursts; the figures were chosen on these sets, so that test is the held-out check).

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
#: pairs are sought with one bit, triples with all three, among this many least-sure body bits
POOL = 12
#: log-likelihood ratio of a bit being right per unit of |soft decision| (the slope of
#: log(P(right) / P(wrong)) against |soft|, measured at 4 dB SNR on 8 kHz input, where it
#: is lowest; V.23's tones 800 Hz apart give smaller soft decisions for the same certainty)
LLR_PER_SOFT = {"bell202": 12.0, "v23": 22.0}
#: the runner-up repair must be this much less likely than the chosen one (e^5: 150 to 1
#: on the soft decisions alone, before the parse check throws out most wrong repairs;
#: 4.5 let one V.23 burst at 4 dB through to a wrong number in 12,000)
MIN_GAIN = 5.0
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
    ranked = sorted(bits)
    doubts = [doubt for doubt, _ in ranked]
    if len(ranked) < POOL + 2 or doubts[len(doubts) // 20] < MIN_SPREAD * doubts[len(doubts) // 2]:
        return None  # too noisy for the soft decisions to single out the wrong bits

    def change(k: int) -> int:
        byte, bit = divmod(k, 8)
        return -(1 << bit) if raw[byte] >> bit & 1 else 1 << bit

    # Every single flip; every pair with a bit among the POOL least sure; every triple
    # within the pool. Each repair not tried costs at least one of the bounds below.
    pool = ranked[:POOL]
    candidates = [(doubt, (k,)) for doubt, k in bits if change(k) % 256 == deficit]
    for i, (da, a) in enumerate(pool):
        for db, b in ranked[i + 1 :]:
            if (change(a) + change(b)) % 256 == deficit:
                candidates.append((da + db, (a, b)))
    for (da, a), (db, b), (dc, c) in itertools.combinations(pool, 3):
        if (change(a) + change(b) + change(c)) % 256 == deficit:
            candidates.append((da + db + dc, (a, b, c)))
    untried = min(
        doubts[POOL] + doubts[POOL + 1],  # a pair with both bits outside the pool
        doubts[0] + doubts[1] + doubts[POOL],  # a triple reaching outside the pool
        sum(doubts[:4]),  # four flips or more
    )
    # Only repairs that parse compete: what was sent parsed, so one that cannot
    # is no rival (a digit flipped into a letter, a name into control bytes).
    valid: list[tuple[float, int, CallerIdMessage]] = []
    for doubt, flips in sorted(candidates):
        if doubt > untried:
            break
        message = _parse(raw, flips, name_encoding)
        if message is not None:
            valid.append((doubt, len(flips), message))
            if len(valid) == 2:
                break
    if not valid:
        return None
    doubt, n_flips, message = valid[0]
    # The runner-up: the next repair that parses, or the least doubtful one not tried.
    rival = min([r for r, _, _ in valid[1:2]] + [untried])
    if doubt > MAX_SOFT * n_flips or rival < MARGIN * doubt or llr * (rival - doubt) < MIN_GAIN:
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


__all__ = ["LLR_PER_SOFT", "MARGIN", "MAX_SOFT", "MIN_GAIN", "MIN_SPREAD", "POOL", "correct"]
