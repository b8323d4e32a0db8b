"""Checksum-guided repair of FSK bursts (issue 18, item 3): only when unambiguous, never a guess."""

from __future__ import annotations

import numpy as np
import signalgen as sg
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.callerid import encode_mdmf, encode_sdmf
from agent.events import CallerId
from plugins.linetap.correct import correct
from plugins.linetap.protocol import LineTapDecoder

MESSAGE = encode_mdmf(datetime="11271015", number="13812345678", name="ZHANG SAN")


def soft_of(data: bytes, sure: float = 0.9) -> list[float]:
    """Soft decisions of clean bits: +sure for a 1, -sure for a 0."""
    return [sure if byte >> bit & 1 else -sure for byte in data for bit in range(8)]


def flipped(data: bytes, *bits: int) -> tuple[bytes, list[float]]:
    """``data`` with the given bits wrong, and those bits doubtful (soft decisions near 0)."""
    soft = soft_of(data)
    wrong = bytearray(data)
    for k in bits:
        wrong[k // 8] ^= 1 << (k % 8)
        soft[k] = -0.05 if soft[k] > 0 else 0.05  # on the wrong side, barely
    return bytes(wrong), soft


def test_a_doubtful_wrong_bit_is_repaired() -> None:
    k = 8 * 16 + 2  # a bit of a digit of the number
    data, soft = flipped(MESSAGE, k)
    repaired = correct(data, soft)
    assert repaired is not None
    assert repaired.number == "13812345678"


def test_two_doubtful_wrong_bits_are_repaired() -> None:
    data, soft = flipped(MESSAGE, 8 * 15 + 1, 8 * 20 + 5)
    repaired = correct(data, soft)
    assert repaired is not None
    assert repaired.number == "13812345678"


def test_a_wrong_bit_the_demodulator_was_sure_of_is_not_repaired() -> None:
    k = 8 * 16 + 2
    data, soft = flipped(MESSAGE, k)
    soft[k] = -0.9 if soft[k] < 0 else 0.9  # confidently wrong
    assert correct(data, soft) is None


#: '8' of the number turned '9' (bit 0): still a digit, so the message parses either way
DIGIT_TO_DIGIT = 8 * 16 + 0
#: '1' (the number's first digit) to '0' repairs the sum as well, and parses too: a true rival
RIVAL = 8 * 14 + 0


def test_two_equally_doubtful_candidates_are_ambiguous() -> None:
    data, soft = flipped(MESSAGE, DIGIT_TO_DIGIT)
    soft[RIVAL] = 0.06 if soft[RIVAL] > 0 else -0.06
    assert correct(data, soft) is None


def test_a_rival_repair_that_does_not_parse_is_no_rival() -> None:
    """'8' turned '<' (bit 2): fixing any other bit 2 leaves the '<', so only one repair parses."""
    k = 8 * 16 + 2
    data, soft = flipped(MESSAGE, k)
    rival = next(j for j in range(16, 8 * len(data)) if j != k and j % 8 == 2 and data[j // 8] >> 2 & 1)
    soft[rival] = 0.06 if soft[rival] > 0 else -0.06  # repairs the sum too, as doubtful, but leaves the '<'
    repaired = correct(data, soft)
    assert repaired is not None
    assert repaired.number == "13812345678"


def test_a_damaged_header_is_not_repaired() -> None:
    data, soft = flipped(MESSAGE, 9)  # the length byte
    assert correct(data, soft) is None


def test_a_good_message_or_mismatched_soft_decisions_are_left_alone() -> None:
    assert correct(MESSAGE, soft_of(MESSAGE)) is None  # nothing to repair: find_messages reads it
    data, soft = flipped(MESSAGE, 8 * 16 + 2)
    assert correct(data, soft[:-8]) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=3, max_size=40), st.lists(st.floats(-1, 1), min_size=320, max_size=320))
def test_a_repair_is_always_within_two_bits_of_what_was_heard(data: bytes, doubts: list[float]) -> None:
    """Random bursts and doubts: a repair, when made, is the burst's own message up to two bits."""
    repaired = correct(data, doubts[: 8 * len(data)])
    if repaired is None:
        return
    raw = repaired.raw
    windows = [data[i : i + len(raw)] for i in range(len(data) - len(raw) + 1)]
    assert any(
        w[:2] == raw[:2] and sum(bin(a ^ b).count("1") for a, b in zip(w, raw, strict=True)) <= 2
        for w in windows
    )


def test_the_decoder_repairs_a_noisy_burst_and_reports_it_once() -> None:
    rng = np.random.default_rng(6)
    hits = 0
    for _ in range(8):
        x = np.concatenate(
            [sg.silence(0.3, 8000), sg.fsk_callerid(MESSAGE, 8000, level_dbfs=-13), sg.silence(1.0, 8000)]
        )
        y = sg.add_noise(x, 6.0, rng)
        decoder = LineTapDecoder(8000, fsk=("bell202",))
        events = decoder.feed(y) + decoder.flush()
        numbers = [e.number for e in events if isinstance(e, CallerId)]
        assert set(numbers) <= {"13812345678"}
        assert len(numbers) <= 1
        hits += len(numbers)
    assert hits >= 5


def test_sdmf_is_repaired_too() -> None:
    message = encode_sdmf("13812345678", "11271015")
    data, soft = flipped(message, 8 * 12 + 0)
    repaired = correct(data, soft)
    assert repaired is not None
    assert repaired.number == "13812345678"


def test_a_ratio_without_a_log_likelihood_margin_is_no_repair() -> None:
    """0.02 against 0.07 is 3.5 times less sure, and still a coin toss: refused."""
    k = DIGIT_TO_DIGIT
    data, soft = flipped(MESSAGE, k)
    soft[k] = -0.02 if soft[k] < 0 else 0.02
    soft[RIVAL] = 0.07 if soft[RIVAL] > 0 else -0.07
    assert correct(data, soft) is None
    soft[RIVAL] = 0.9 if soft[RIVAL] > 0 else -0.9
    repaired = correct(data, soft)
    assert repaired is not None
    assert repaired.number == "13812345678"


def test_v23_soft_decisions_weigh_more_per_unit() -> None:
    """V.23's smaller soft decisions for the same certainty: a margin enough there is not for Bell 202."""
    k = DIGIT_TO_DIGIT
    data, soft = flipped(MESSAGE, k)
    soft[k] = -0.02 if soft[k] < 0 else 0.02
    soft[RIVAL] = 0.3 if soft[RIVAL] > 0 else -0.3
    assert correct(data, soft, standard="bell202") is None
    assert correct(data, soft, standard="v23") is not None


def test_a_burst_too_noisy_for_its_soft_decisions_is_not_repaired() -> None:
    k = 8 * 16 + 2
    data, soft = flipped(MESSAGE, k)

    def spread(factor: float) -> list[float]:
        """One bit in ten ``factor`` as sure as the rest (the wrong bit kept at its doubt)."""
        return [s * (factor if i % 10 == 0 and i != k else 1.0) for i, s in enumerate(soft)]

    # 0.44 against a median of 0.9: under MIN_SPREAD, though the margin alone would pass.
    assert correct(data, spread(0.44 / 0.9)) is None
    repaired = correct(data, spread(0.47 / 0.9))
    assert repaired is not None
    assert repaired.number == "13812345678"


def test_a_repair_to_a_number_the_plan_rules_out_is_refused() -> None:
    data, soft = flipped(MESSAGE, 8 * 16 + 2)
    assert correct(data, soft, plausible=lambda number: True) is not None
    assert correct(data, soft, plausible=lambda number: False) is None
