"""Ring detection on a line tap (issue 18): ring voltage as the sound card hears it.

The tap sees the exchange's 16⅔-50 Hz ring as a loud, low, periodic wave in
cadenced bursts, often clipped and with the fundamental weakened by the
card's input filter (see :mod:`plugins.linetap.ring`). Each case here is a
shape that path produces, or a sound that must never be taken for a ring.
"""

from __future__ import annotations

import numpy as np
import pytest
import signalgen as sg

from agent.callerid import encode_mdmf
from agent.events import CallerId, OffHook, Ring
from plugins.linetap.config import LinetapConfig
from plugins.linetap.protocol import LineTapDecoder
from plugins.linetap.ring import RingDetector

RATE = 8000


def high_pass(x: np.ndarray, hz: float) -> np.ndarray:
    """A first-order high-pass, like a tap's coupling capacitor or a card's DC block."""
    a = float(np.exp(-2 * np.pi * hz / RATE))
    y = np.zeros_like(x)
    prev_x = prev_y = 0.0
    for i, v in enumerate(x.tolist()):
        prev_y = a * (prev_y + v - prev_x)
        prev_x = v
        y[i] = prev_y
    return y


def ring_burst(seconds: float, hz: float = 25.0, *, level: float = 0.5, drive: float = 1.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return np.clip(drive * level * np.sin(2 * np.pi * hz * t), -0.99, 0.99)


def cadence(bursts: int, on: float, off: float, **kw: float) -> np.ndarray:
    parts = [sg.silence(0.5, RATE)]
    for _ in range(bursts):
        parts += [ring_burst(on, **kw), sg.silence(off, RATE)]
    return np.concatenate(parts)


def run(decoder: LineTapDecoder, x: np.ndarray, block: int = 800) -> list:
    events = []
    for i in range(0, len(x), block):
        events += decoder.feed(x[i : i + block])
    return events + decoder.flush()


@pytest.mark.parametrize(
    ("name", "signal"),
    [
        ("cn 25 Hz 1 s / 4 s", cadence(2, 1.0, 4.0)),
        ("nanp 20 Hz 2 s / 4 s", cadence(2, 2.0, 4.0, hz=20.0)),
        ("old europe 16 2/3 Hz", cadence(2, 1.0, 4.0, hz=50 / 3)),
        ("50 Hz pbx ring", cadence(2, 1.0, 4.0, hz=50.0)),
        ("clipped by the tap's diodes", cadence(2, 1.0, 4.0, drive=8.0)),
        ("clipped, fundamental cut by a 100 Hz high-pass", high_pass(cadence(2, 1.0, 4.0, drive=8.0), 100.0)),
        (
            "quiet tap (-29 dBFS) with line noise",
            sg.add_noise(cadence(2, 1.0, 4.0, level=0.05), 20.0, np.random.default_rng(1)),
        ),
    ],
)
def test_each_ring_burst_is_one_ring_and_never_an_off_hook(name: str, signal: np.ndarray) -> None:
    events = run(LineTapDecoder(RATE), signal)
    rings = [e for e in events if isinstance(e, Ring)]
    assert len(rings) == 2, name
    first = rings[0].at.timestamp()
    assert first == pytest.approx(0.5, abs=0.1), name
    assert not [e for e in events if isinstance(e, OffHook)], name


def test_uk_double_ring_counts_each_burst() -> None:
    x = np.concatenate([sg.silence(0.5, RATE), ring_burst(0.4), sg.silence(0.25, RATE), ring_burst(0.4)])
    assert len([e for e in run(LineTapDecoder(RATE), x) if isinstance(e, Ring)]) == 2


def test_caller_id_between_rings_and_the_answer_after_them() -> None:
    message = encode_mdmf(datetime="01151230", number="13812345678", name="王小明")
    rng = np.random.default_rng(3)
    x = np.concatenate(
        [
            sg.silence(0.5, RATE),
            ring_burst(1.0),
            sg.silence(0.6, RATE),
            sg.fsk_callerid(message, RATE),
            sg.silence(2.5, RATE),
            ring_burst(1.0),
            sg.silence(1.0, RATE),
            sg.add_noise(sg.speech_like(3.0, RATE, rng, level_dbfs=-20), 10.0, rng),  # picked up: a live line
        ]
    )
    events = run(LineTapDecoder(RATE), x)
    kinds = [type(e).__name__ for e in events if isinstance(e, (Ring, CallerId, OffHook))]
    assert kinds == ["Ring", "CallerId", "Ring", "OffHook"]


def test_a_ring_makes_bare_digits_caller_id() -> None:
    x = np.concatenate(
        [sg.silence(0.5, RATE), ring_burst(1.0), sg.silence(0.5, RATE), sg.dtmf("13812345678#", RATE)]
    )
    events = run(LineTapDecoder(RATE), np.concatenate([x, sg.silence(1.0, RATE)]))
    assert [e.number for e in events if isinstance(e, CallerId)] == ["13812345678"]


@pytest.mark.parametrize("level", [-20.0, -10.0, -3.0])
def test_speech_music_and_tones_are_never_rings(level: float) -> None:
    rng = np.random.default_rng(int(-level))
    detector = RingDetector(RATE)
    for x in (
        sg.speech_like(20.0, RATE, rng, level_dbfs=level),
        sg.music_like(20.0, RATE, rng, level_dbfs=level),
        sg.clip(4 * sg.speech_like(10.0, RATE, rng, level_dbfs=level), 0.99),
        sg.tones((450.0,), 5.0, RATE, (level,)),
        sg.dtmf("0123456789" * 3, RATE, on=0.05, off=0.05),  # fast keys: a 10 Hz on/off pattern
        sg.add_noise(sg.tones((1000.0,), 5.0, RATE, (level,)), 0.0, rng),  # loud noise
    ):
        assert detector.process(x) == []


def test_mains_hum_is_not_ringing() -> None:
    t = np.arange(10 * RATE) / RATE
    hum = 0.3 * np.sin(2 * np.pi * 50 * t)
    assert RingDetector(RATE).process(hum) == []  # present from the start: never armed
    # Hum that starts mid-stream gives at most the one ring its start looks like.
    assert len(RingDetector(RATE).process(np.concatenate([sg.silence(1.0, RATE), hum]))) <= 1


def test_a_full_line_session_has_no_rings() -> None:
    x = sg.line_session(RATE, "cn", np.random.default_rng(7))
    assert not [e for e in run(LineTapDecoder(RATE), x, block=4000) if isinstance(e, Ring)]


def test_ring_detection_can_be_turned_off() -> None:
    assert not [e for e in run(LineTapDecoder(RATE, ring=None), cadence(1, 1.0, 1.0)) if isinstance(e, Ring)]
    config = LinetapConfig(detect_ring=False)
    assert config.ring_settings() is None
    assert LinetapConfig(ring_dbfs=-40).ring_settings() is not None
