"""Our line-tap decoders on SpanDSP's signals, scored beside SpanDSP's own receivers (issue 18).

SpanDSP (Debian's libspandsp-dev, driven through tests/spandsp_helper.c) is an
independent implementation of the same specifications: its adsi_tx sends
Bell 202 ("class"), V.23 ("clip") and DTMF caller ID, its dtmf_tx dialed
digits. Each condition is scored for both receivers in the same run; ours must
decode at least as many as SpanDSP's and never report a number that was not
sent. Noise is white over 0-4 kHz with the signal power measured over the
tones themselves.
"""

from __future__ import annotations

import numpy as np
import pytest
import signalgen as sg
import spandsp_peer as sp

from agent.callerid import encode_mdmf
from agent.events import CallerId, Dialed, LineEvent
from plugins.linetap.protocol import LineTapDecoder, parse_dtmf_callerid

RATE = sp.RATE
NUMBERS = ("13812345678", "02112345678", "075588886666", "15900001111", "18611112222", "01062345678")


def ours(x: np.ndarray, **kw: object) -> list[LineEvent]:
    decoder = LineTapDecoder(RATE, **kw)  # type: ignore[arg-type]
    events: list[LineEvent] = []
    for i in range(0, len(x), 4000):
        events += decoder.feed(x[i : i + 4000])
    return events + decoder.flush()


def padded(x: np.ndarray) -> np.ndarray:
    return np.concatenate([sg.silence(0.3, RATE), x, sg.silence(2.5, RATE)])


@pytest.mark.parametrize(
    "keys",
    ["A13812345678C", "A13812345678#", "D1#", "D3#", "D0755123456C", "B10C", "A13812345678D02112345678C"],
)
def test_dtmf_caller_id_from_spandsp_adsi_tx(keys: str) -> None:
    x = padded(sp.adsi_tx("dtmf", keys.encode()))
    assert sp.adsi_rx("dtmf", x) == [keys.encode()]  # SpanDSP reads its own
    expected = parse_dtmf_callerid(keys)
    found = [e for e in ours(x) if isinstance(e, CallerId)]
    assert [(c.number, c.absence, c.raw) for c in found] == [(expected.number, expected.absence, keys)]


def test_spandsp_reads_our_dtmf_caller_id() -> None:
    for keys in ("A13812345678C", "D1#", "A13812345678#"):
        assert sp.adsi_rx("dtmf", padded(sg.dtmf(keys, RATE, on=0.07, off=0.07, level_dbfs=-12))) == [
            keys.encode()
        ]


def _dial_scores(snr: float | None, rng: np.random.Generator, **tx: int) -> tuple[int, int, int]:
    ok = theirs = wrong = 0
    for number in NUMBERS:
        x = padded(sp.dtmf_tx(number, **tx))
        if snr is not None:
            x = sg.add_noise(x, snr, rng)
        dialed = [e.digits for e in ours(x) if isinstance(e, Dialed)]
        ok += dialed == [number]
        wrong += any(d != number for d in dialed)
        theirs += sp.dtmf_rx(x) == number
    return ok, theirs, wrong


@pytest.mark.parametrize("snr", [20, 15, 10, 8, 6])
def test_dialed_digits_in_noise_at_least_as_good_as_spandsp(snr: float) -> None:
    ok, theirs, wrong = _dial_scores(snr, np.random.default_rng(snr))
    assert wrong == 0
    assert ok >= theirs, f"ours {ok}, SpanDSP {theirs} of {len(NUMBERS)} at {snr} dB"


@pytest.mark.parametrize(("level", "twist"), [(-5, 0), (-25, 0), (-10, 4), (-10, -3)])
def test_dialed_digits_across_levels_and_twist(level: int, twist: int) -> None:
    ok, theirs, wrong = _dial_scores(None, np.random.default_rng(0), level_dbm0=level, twist_db=twist)
    assert (ok, wrong) == (len(NUMBERS), 0)
    assert ok >= theirs  # SpanDSP's receiver refuses its own +4 dB twist (its default limits)


@pytest.mark.parametrize("deviation", [-0.015, 0.015, -0.04, 0.04])
def test_frequency_offset_limits_beside_spandsp(deviation: float) -> None:
    x = padded(sg.dtmf("13812345678", RATE, on=0.06, off=0.06, level_dbfs=-12, deviation=deviation))
    dialed = [e.digits for e in ours(x) if isinstance(e, Dialed)]
    if abs(deviation) <= 0.015:  # ITU-T Q.24: within 1.5 % accepted
        assert dialed == ["13812345678"]
        assert sp.dtmf_rx(x) == "13812345678"
    else:  # beyond 3.5 % rejected
        assert dialed == []


def _fsk_scores(standard: str, condition: str, rng: np.random.Generator) -> tuple[int, int, int]:
    ok = theirs = wrong = 0
    for number in NUMBERS:
        message = encode_mdmf(datetime="11271015", number=number, name="ZHANG SAN")
        x = padded(sp.adsi_tx(standard, message))
        if condition == "clipped":
            # +12 dB over a burst already near full scale, hard-clipped at 0 dBFS.
            x = np.clip(x / np.abs(x).max() * 10 ** (12 / 20), -1, 1)
        elif condition != "clean":
            x = sg.add_noise(x, float(condition), rng)
        found = [e.number for e in ours(x, fsk=(standard,)) if isinstance(e, CallerId)]
        ok += found == [number]
        wrong += any(n != number for n in found)
        theirs += any(m == message for m in sp.adsi_rx(standard, x))
    return ok, theirs, wrong


@pytest.mark.parametrize("standard", ["bell202", "v23"])
@pytest.mark.parametrize("condition", ["clean", "clipped", "10", "8"])
def test_fsk_from_spandsp_at_least_as_good_as_spandsp(standard: str, condition: str) -> None:
    ok, theirs, wrong = _fsk_scores(standard, condition, np.random.default_rng(len(condition)))
    assert wrong == 0
    if condition in ("clean", "clipped"):
        assert ok == len(NUMBERS)
    assert ok >= theirs - 1, f"ours {ok}, SpanDSP {theirs} of {len(NUMBERS)}"
