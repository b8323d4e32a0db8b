"""Talk-off on real speech (issue 18): espeak-ng's Mandarin and English through the line-tap decoder.

A DTMF detector that hears a key in a vowel, or an FSK receiver that frames a
caller ID out of a sentence, would put a number nobody sent on a call row. The
speech is what a telesales call sounds like (sentences full of spoken numbers,
a lower and a higher voice), at -30, -20 and -10 dBFS, at 8 and 16 kHz,
clean and with a little white noise (30 dB under the speech). Every condition
must give no dialed digits, no caller ID and no CAS tone. espeak-ng and sox
come from tests/system-deps.sh: missing, these tests fail (they never skip).
``tests/bench/bench_linetap.py`` reports the same as false detections per hour.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import signalgen as sg

from agent.events import CallerId, Dialed, LineEvent
from plugins.linetap.protocol import LineTapDecoder, ToneEvent

LEVELS = (-30.0, -20.0, -10.0)
RATES = (8000, 16000)
#: the two voices of each language: espeak-ng's default and its "f3" variant, higher pitched
VARIANTS = (("", 40), ("+f3", 70))


def _tool(name: str) -> None:
    assert shutil.which(name), f"{name} not installed: run tests/system-deps.sh (Debian package {name})"


_SPEECH: dict[tuple[str, int], np.ndarray] = {}


def speech(language: str, rate: int) -> np.ndarray:
    """Both voices of ``language`` saying its text, at ``rate`` (synthesised once per module)."""
    key = (language, rate)
    if key not in _SPEECH:
        _tool("espeak-ng")
        _tool("sox")
        parts = [
            sg.espeak(sg.SPEECH_TEXTS[language], language + variant, rate, pitch=pitch)
            for variant, pitch in VARIANTS
        ]
        _SPEECH[key] = np.concatenate([parts[0], sg.silence(0.5, rate), parts[1]])
    return _SPEECH[key]


def false_detections(events: list[LineEvent]) -> dict[str, list[str]]:
    """What speech must never give: dialed digits, caller IDs, CAS tones."""
    return {
        "digits": [e.digits for e in events if isinstance(e, Dialed)],
        "caller_id": [str(e.number or e.absence) for e in events if isinstance(e, CallerId)],
        "cas": [e.tone for e in events if isinstance(e, ToneEvent) and e.tone == "cas"],
    }


@pytest.mark.parametrize("noisy", [False, True], ids=["clean", "noise30dB"])
@pytest.mark.parametrize("level", LEVELS, ids=[f"{lv:g}dBFS" for lv in LEVELS])
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("language", ["cmn", "en"])
def test_speech_gives_no_digits_caller_id_or_cas(language: str, rate: int, level: float, noisy: bool) -> None:
    x = sg.at_level(speech(language, rate), level)
    if noisy:
        x = sg.add_noise(x, 30.0, np.random.default_rng(rate + int(-level)), rate=rate, reference_dbfs=level)
    x = np.concatenate([sg.silence(0.5, rate), np.clip(x, -1.0, 1.0), sg.silence(1.0, rate)])
    decoder = LineTapDecoder(rate)
    events = []
    for i in range(0, len(x), rate // 2):  # half a second at a time, as a sound card delivers
        events += decoder.feed(x[i : i + rate // 2])
    events += decoder.flush()
    assert false_detections(events) == {"digits": [], "caller_id": [], "cas": []}


def test_the_speech_is_long_enough_and_loud_where_asked() -> None:
    """The fixture itself: tens of seconds per language, its active level where it was put."""
    for language in ("cmn", "en"):
        x = speech(language, 8000)
        assert len(x) / 8000 > 15
        y = sg.at_level(x, -20.0)
        active = y[np.abs(y) > 1e-3 * np.abs(y).max()]
        assert 10 * np.log10(np.mean(active**2) / 0.5) == pytest.approx(-20.0, abs=1.5)
