"""DTMF caller ID in every framing, and digits that are never a wrong number (issue 18, items 1-2).

The framings are those of ETSI EN 300 659-1 annex B and the national variants
SpanDSP's adsi.c implements; the noisy cases use white noise over 0-4 kHz with
the signal power measured over the tones themselves (``sg.add_noise`` without a
reference). A digit string is a number only when every key was certain; the
property test throws random, truncated, corrupted and noisy bursts at the
decoder and checks that nothing it reports as a number was not sent.
"""

from __future__ import annotations

import numpy as np
import pytest
import signalgen as sg
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.events import Absence, CallerId, Dialed, LineError, OffHook
from plugins.linetap import dsp
from plugins.linetap.protocol import LineTapDecoder, parse_dtmf_callerid, plausible_dial_string

RATE = 8000


def run(decoder: LineTapDecoder, x: np.ndarray, block: int = 4000) -> list:
    events = []
    for i in range(0, len(x), block):
        events += decoder.feed(x[i : i + block])
    return events + decoder.flush()


@pytest.mark.parametrize(
    ("keys", "number", "absence"),
    [
        ("A13812345678C", "13812345678", None),  # variant 1
        ("A13812345678D02112345678C", "13812345678", None),  # ... with the redirecting number
        ("A13812345678D0211B00C", "13812345678", None),
        ("B00C", None, Absence.UNAVAILABLE),
        ("B10C", None, Absence.PRIVATE),
        ("A13812345678#", "13812345678", None),  # variant 2
        ("D1#", None, Absence.PRIVATE),
        ("D2#", None, Absence.UNAVAILABLE),
        ("D3#", None, Absence.UNAVAILABLE),
        ("D0755123456C", "0755123456", None),  # variant 3 (Taiwan, Kuwait)
        ("13812345678#", "13812345678", None),  # variant 4 (Denmark, Holland)
        ("13812345678C", "13812345678", None),
    ],
)
def test_parse_every_framing(keys: str, number: str | None, absence: Absence | None) -> None:
    parsed = parse_dtmf_callerid(keys)
    assert (parsed.number, parsed.absence, parsed.error) == (number, absence, None)


@pytest.mark.parametrize(
    "keys", ["A1381234*C", "D4#", "D12#", "B01C", "AC", "A123B00D45C", "A1A2C", "*12#", "C", "B#"]
)
def test_doubtful_framing_is_an_error_never_a_number(keys: str) -> None:
    parsed = parse_dtmf_callerid(keys)
    assert parsed.number is None
    assert parsed.error is not None


def burst(keys: str, *, on: float = 0.07, off: float = 0.07, **kw: float) -> np.ndarray:
    return np.concatenate(
        [sg.silence(0.2, RATE), sg.dtmf(keys, RATE, on=on, off=off, **kw), sg.silence(3.0, RATE)]
    )


@pytest.mark.parametrize(
    ("keys", "number", "absence"),
    [
        ("A13812345678#", "13812345678", None),
        ("D1#", None, Absence.PRIVATE),
        ("D3#", None, Absence.UNAVAILABLE),
        ("A13812345678D02112345678C", "13812345678", None),
    ],
)
def test_start_key_framings_decode_on_hook(keys: str, number: str | None, absence: Absence | None) -> None:
    events = run(LineTapDecoder(RATE), burst(keys))
    assert [(type(e), getattr(e, "number", None), getattr(e, "absence", None)) for e in events] == [
        (CallerId, number, absence)
    ]


def test_bare_digits_are_caller_id_between_rings_and_where_configured() -> None:
    x = burst("13812345678#")
    # Without a ring or the setting, a bare burst is a rep dialing.
    assert [type(e) for e in run(LineTapDecoder(RATE), x)] == [OffHook, Dialed]
    assert [e.number for e in run(LineTapDecoder(RATE, bare_dtmf_callerid=True), x)] == ["13812345678"]
    decoder = LineTapDecoder(RATE)
    decoder.ring()
    events = run(decoder, burst("13812345678"))
    assert [(type(e), e.number) for e in events] == [(CallerId, "13812345678")]


def test_caller_id_with_a_missing_key_in_its_cadence_is_an_error() -> None:
    x = np.concatenate(
        [sg.silence(0.2, RATE), sg.dtmf("A13812", RATE), sg.silence(0.14, RATE), sg.dtmf("45678C", RATE)]
    )
    events = run(LineTapDecoder(RATE), np.concatenate([x, sg.silence(2, RATE)]))
    assert [(type(e), e.raw) for e in events] == [(LineError, "A1381245678C")]


def test_plausible_dial_strings() -> None:
    for digits in ("13812345678", "02112345678", "110", "10086", "95555", "12345678", "913812345678", "*86#"):
        assert plausible_dial_string(digits, "CN"), digits
    for digits in ("1381234567", "0211", "5", "7", "138123456789", "1A"):
        assert not plausible_dial_string(digits, "CN"), digits


def test_noisy_burst_missing_a_key_is_an_error_not_a_shorter_number() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate(
        [
            sg.silence(0.3, RATE),
            sg.dtmf("1381234567", RATE, on=0.06, off=0.06, level_dbfs=-16),
            sg.silence(2.5, RATE),
        ]
    )
    x = sg.add_noise(x, 9, rng)
    events = run(LineTapDecoder(RATE), x)
    assert not [e for e in events if isinstance(e, Dialed)]  # ten digits: no CN number
    assert [e.raw for e in events if isinstance(e, LineError)] == ["1381234567"]


def test_detector_reports_refused_candidates_as_doubtful() -> None:
    x = np.concatenate([sg.silence(0.1, RATE), sg.dtmf_key("5", 0.022, RATE), sg.silence(0.1, RATE)])
    assert dsp.DtmfDetector(RATE).process(x) == []
    det = dsp.DtmfDetector(RATE, report_doubtful=True)
    hits = det.process(x) + det.flush()
    assert [(h.key, h.certain) for h in hits] == [("5", False)]


def _burst(keys: str, *, silent: int | None = None, odd: int | None = None, **odd_kw: float) -> np.ndarray:
    """Keys at a 60/60 ms cadence; key ``silent`` left out (its slot empty), ``odd`` keyed with ``odd_kw``."""
    parts = [sg.silence(0.3, RATE)]
    for i, key in enumerate(keys):
        tone = sg.dtmf_key(key, 0.06, RATE, level_dbfs=-16, **(odd_kw if i == odd else {}))
        parts += [sg.silence(0.06, RATE) if i == silent else tone, sg.silence(0.06, RATE)]
    return np.concatenate([*parts, sg.silence(2.5, RATE)])


@pytest.mark.parametrize("seed", range(3))
def test_noisy_burst_with_an_empty_key_slot_is_an_error_not_a_shorter_number(seed: int) -> None:
    # 6235678 is a plausible local number, so the numbering plan cannot tell; the cadence can.
    assert plausible_dial_string("6235678", "CN")
    x = sg.add_noise(_burst("62345678", silent=3), 10, np.random.default_rng(seed))
    events = run(LineTapDecoder(RATE), x)
    assert not [e for e in events if isinstance(e, Dialed)]
    assert [e.raw for e in events if isinstance(e, LineError)] == ["6235678"]


@pytest.mark.parametrize(
    "odd",
    [
        {"twist_db": -6.0},  # low group louder than Q.24's 4 dB
        {"twist_db": -10.0},
        {"twist_db": 12.0},  # high group louder than 8 dB
        {"deviation": 0.03},  # between Q.24's accept (1.5 %) and reject (3.5 %) limits
        {"deviation": 0.034},
    ],
)
@pytest.mark.parametrize("where", [0, 5, 10])  # the first key, one inside, the last
def test_key_the_limits_refuse_makes_the_burst_an_error_not_a_shorter_number(
    odd: dict[str, float], where: int
) -> None:
    # Clean line: no noise rule applies, so only the refused key's trace keeps 1381245678 out.
    events = run(LineTapDecoder(RATE), _burst("13812345678", odd=where, **odd))
    assert not [e for e in events if isinstance(e, Dialed)]
    sent, key = "13812345678", "13812345678"[where]
    heard = [e.raw for e in events if isinstance(e, LineError)]
    # One error with the refused key in it, marked doubtful ("3?"); a key off by 3.4 %
    # may leave two runs of near misses ("3?3?").
    assert len(heard) == 1
    assert f"{key}?" in heard[0]
    assert heard[0].replace("?", "") in (sent, sent[:where] + key + sent[where:])


def test_noisy_burst_losing_keys_to_twist_is_never_a_number() -> None:
    # Found by a random search: at 6 dB a key keyed 3.5 dB under the reverse-twist limit is
    # measured beyond it now and then, and vanished; no key may go missing from the number.
    x = np.concatenate(
        [
            sg.silence(0.3, RATE),
            sg.dtmf("00426206", RATE, on=0.039, off=0.04, level_dbfs=-20, twist_db=-3.5, deviation=-0.005),
            sg.silence(2.5, RATE),
        ]
    )
    for seed in range(12):
        events = run(LineTapDecoder(RATE), sg.add_noise(x, 6, np.random.default_rng(seed)))
        assert [e.digits for e in events if isinstance(e, Dialed)] in ([], ["00426206"])


@pytest.mark.parametrize("snr", [20, 15, 10, 8, 7, 6])
def test_noisy_dialing_is_decoded_down_to_6_db(snr: float) -> None:
    rng = np.random.default_rng(int(snr))
    got = 0
    for number in ("13812345678", "02187654321", "075512345678", "15011112222"):
        x = np.concatenate(
            [
                sg.silence(0.3, RATE),
                sg.dtmf(number, RATE, on=0.06, off=0.06, level_dbfs=-16),
                sg.silence(2.5, RATE),
            ]
        )
        events = run(LineTapDecoder(RATE), sg.add_noise(x, snr, rng))
        dialed = [e.digits for e in events if isinstance(e, Dialed)]
        assert dialed in ([], [number])
        got += dialed == [number]
    assert got == 4


KEYS = "0123456789*#ABCD"


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    body=st.text("0123456789", min_size=3, max_size=14),
    framing=st.sampled_from(["dialed", "A..C", "A..#", "D..C"]),
    snr=st.floats(3.0, 30.0),
    keep=st.floats(0.3, 1.0),
    corrupt=st.lists(st.tuples(st.integers(0, 20), st.sampled_from(KEYS)), max_size=2),
    on=st.floats(0.03, 0.09),
    seed=st.integers(0, 2**32 - 1),
)
@example(body="000", framing="A..#", snr=6.0, keep=1.0, corrupt=[(1, "C")], on=0.0625, seed=0)  # "AC00#"
def test_no_input_ever_yields_a_number_that_was_not_sent(
    body: str, framing: str, snr: float, keep: float, corrupt: list[tuple[int, str]], on: float, seed: int
) -> None:
    keys = list({"dialed": body, "A..C": f"A{body}C", "A..#": f"A{body}#", "D..C": f"D{body}C"}[framing])
    for where, key in corrupt:  # keys swapped for others: framings broken, digits changed
        keys[where % len(keys)] = key
    sent = "".join(keys[: max(1, round(len(keys) * keep))])  # and bursts cut short
    rng = np.random.default_rng(seed)
    x = np.concatenate([sg.silence(0.3, RATE), sg.dtmf(sent, RATE, on=on, off=on), sg.silence(2.5, RATE)])
    events = run(LineTapDecoder(RATE), sg.add_noise(x, snr, rng))
    for event in events:
        if isinstance(event, CallerId) and event.number is not None:
            assert event.raw == sent
            assert event.number == parse_dtmf_callerid(sent).number
        if isinstance(event, Dialed):
            assert event.digits == sent


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(seed=st.integers(0, 2**32 - 1), seconds=st.floats(0.5, 3.0), level=st.floats(-40, -3))
def test_random_audio_never_yields_a_number(seed: int, seconds: float, level: float) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * RATE)) * 10 ** (level / 20)
    events = run(LineTapDecoder(RATE), np.concatenate([x, sg.silence(2.5, RATE)]))
    assert not [e for e in events if isinstance(e, (CallerId, Dialed))]
