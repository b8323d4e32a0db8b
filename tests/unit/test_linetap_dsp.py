"""The line tap's detectors against signals synthesised from the specifications (tests/signalgen.py)."""

from __future__ import annotations

import numpy as np
import pytest
import signalgen as sg

from agent.callerid import decode_message, encode_mdmf, encode_sdmf
from plugins.linetap import dsp

MDMF = encode_mdmf(datetime="11271015", number="13812345678", name="ZHANG SAN")
SDMF = encode_sdmf("5551234567", "01020304")


def fsk_bytes(x: np.ndarray, rate: int, standard: str, block: int = 4000) -> list[bytes]:
    dec = dsp.Decimator(rate)
    rx = dsp.FskReceiver(dec.out_rate, dsp.FSK_STANDARDS[standard])
    bursts = []
    for i in range(0, len(x), block):
        bursts += rx.process(dec.process(x[i : i + block]))
    bursts += rx.flush()
    return [b.data for b in bursts]


def keys(x: np.ndarray, rate: int, limits: dsp.DtmfLimits | None = None) -> str:
    det = dsp.DtmfDetector(rate, limits)
    hits = det.process(x) + det.flush()
    return "".join(h.key for h in hits)


def burst(message: bytes, rate: int, standard: str, **kw: float) -> np.ndarray:
    return np.concatenate(
        [sg.silence(0.2, rate), sg.fsk_callerid(message, rate, standard, **kw), sg.silence(0.2, rate)]
    )


@pytest.mark.parametrize("standard", ["bell202", "v23"])
@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_fsk_round_trip_at_every_rate(standard: str, rate: int) -> None:
    rng = np.random.default_rng(rate)
    x = sg.add_noise(burst(MDMF, rate, standard), 20, rng, rate=rate, reference_dbfs=-10)
    assert fsk_bytes(x, rate, standard) == [MDMF]


@pytest.mark.parametrize(
    "impairment",
    [
        {"freq_offset": 15.0},
        {"freq_offset": -15.0},
        {"baud_error": 0.01},
        {"baud_error": -0.01},
        {"level_dbfs": -40.0},
        {"level_dbfs": -1.0},
    ],
)
def test_fsk_tolerates_line_impairments(impairment: dict[str, float]) -> None:
    x = burst(SDMF, 8000, "bell202", **impairment)
    assert fsk_bytes(x, 8000, "bell202") == [SDMF]


@pytest.mark.parametrize("standard", ["bell202", "v23"])
def test_fsk_survives_clipping(standard: str) -> None:
    # Overdriven 14 dB at 16 kHz: the harmonics fall above the band and are filtered.
    x = sg.clip(burst(MDMF, 16000, standard, level_dbfs=0.0), 0.2)
    assert fsk_bytes(x, 16000, standard) == [MDMF]
    # Clipped after sampling at 8 kHz the third harmonics alias into the band
    # (3 x 2100 Hz lands on 1700 Hz), so only milder clipping can survive.
    x = sg.clip(burst(MDMF, 8000, "bell202", level_dbfs=0.0), 0.5)
    assert fsk_bytes(x, 8000, "bell202") == [MDMF]


def test_fsk_survives_level_drift() -> None:
    x = sg.level_ramp(burst(MDMF, 8000, "bell202"), 0.0, -20.0)
    assert fsk_bytes(x, 8000, "bell202") == [MDMF]


@pytest.mark.parametrize("block", [1, 7, 160, 1023, 100000])
def test_fsk_streaming_is_block_size_independent(block: int) -> None:
    x = np.concatenate([burst(MDMF, 8000, "bell202"), burst(SDMF, 8000, "bell202")])
    if block == 1:
        x = x[:9000]  # one-sample blocks are slow; the first burst is enough
        assert fsk_bytes(x, 8000, "bell202", block) == [MDMF]
    else:
        assert fsk_bytes(x, 8000, "bell202", block) == [MDMF, SDMF]


def test_fsk_off_hook_variant_without_seizure() -> None:
    x = np.concatenate(
        [sg.silence(0.2, 8000), sg.offhook_callerid(MDMF, 8000, "bell202"), sg.silence(0.2, 8000)]
    )
    assert fsk_bytes(x, 8000, "bell202") == [MDMF]
    assert keys(x, 8000) == "CAS"


def test_fsk_needs_the_mark_signal() -> None:
    # Bytes straight after the seizure, no marks: GR-30 says that is not a message.
    x = sg.fsk_callerid(MDMF, 8000, "bell202", mark_bits=0)
    assert fsk_bytes(x, 8000, "bell202") == []


def test_fsk_keeps_memory_bounded() -> None:
    rng = np.random.default_rng(1)
    rx = dsp.FskReceiver(8000, dsp.BELL202)
    for _ in range(30):
        rx.process(sg.speech_like(1.0, 8000, rng))
    assert len(rx._d) < 8000 // 2


def test_fsk_demodulates_bell202_bytes_the_decoder_accepts() -> None:
    message = encode_mdmf(number="0123456789", name="A" * 40)
    (data,) = fsk_bytes(burst(message, 8000, "bell202"), 8000, "bell202")
    assert decode_message(data).name == "A" * 40


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_dtmf_every_key(rate: int) -> None:
    x = dsp.Decimator(rate).process(sg.dtmf("0123456789*#ABCD", rate, on=0.05, off=0.05))
    assert keys(x, 8000 if rate != 44100 else 8820) == "0123456789*#ABCD"


@pytest.mark.parametrize(("on", "found"), [(0.040, "5"), (0.045, "5"), (0.020, ""), (0.015, "")])
def test_dtmf_q24_duration(on: float, found: str) -> None:
    x = np.concatenate([sg.silence(0.1, 8000), sg.dtmf_key("5", on, 8000), sg.silence(0.1, 8000)])
    assert keys(x, 8000) == found


@pytest.mark.parametrize(("deviation", "found"), [(0.015, "9"), (-0.015, "9"), (0.035, ""), (-0.035, "")])
def test_dtmf_q24_frequency_tolerance(deviation: float, found: str) -> None:
    x = np.concatenate(
        [sg.silence(0.1, 8000), sg.dtmf_key("9", 0.06, 8000, deviation=deviation), sg.silence(0.1, 8000)]
    )
    assert keys(x, 8000) == found


@pytest.mark.parametrize(
    ("twist", "found"), [(0.0, "D"), (7.0, "D"), (8.0, "D"), (-3.5, "D"), (-4.0, "D"), (10.0, ""), (-6.0, "")]
)
def test_dtmf_twist_limits(twist: float, found: str) -> None:
    x = np.concatenate(
        [sg.silence(0.1, 8000), sg.dtmf_key("D", 0.06, 8000, twist_db=twist), sg.silence(0.1, 8000)]
    )
    assert keys(x, 8000) == found


@pytest.mark.parametrize("snr", [20.0, 10.0, 6.0])
@pytest.mark.parametrize(
    ("tone", "certain"),
    [
        ({"seconds": 0.040}, 12),  # Q.24: 40 ms accepted ...
        ({"seconds": 0.020}, 0),  # ... 20 ms never
        ({"seconds": 0.024}, 0),
        ({"deviation": 0.015}, 12),  # within 1.5 % accepted ...
        ({"deviation": -0.015}, 12),
        ({"deviation": 0.035}, 0),  # ... beyond 3.5 % never
        ({"deviation": -0.035}, 0),
        ({"twist_db": 10.0}, 0),  # beyond the twist limits never
        ({"twist_db": -6.0}, 0),
    ],
)
def test_dtmf_q24_limits_hold_in_white_noise(snr: float, tone: dict[str, float], certain: int) -> None:
    # The noise floor taken off the concentration test must not widen what a key is.
    tone = dict(tone)  # shared by the snr cases
    seconds = tone.pop("seconds", 0.05)
    found = 0
    for seed in range(12):
        x = np.concatenate(
            [
                sg.silence(0.5, 8000),
                sg.dtmf_key("5", seconds, 8000, level_dbfs=-12, **tone),
                sg.silence(0.3, 8000),
            ]
        )
        det = dsp.DtmfDetector(8000)
        found += sum(
            h.certain and h.key == "5" for h in det.process(sg.add_noise(x, snr, np.random.default_rng(seed)))
        )
    assert found == certain


def test_dtmf_repeated_key_needs_the_pause() -> None:
    assert keys(sg.dtmf("777", 8000, on=0.05, off=0.04), 8000) == "777"
    # A 5 ms drop-out inside one key is not a pause (Q.24: interruptions of 10 ms or less).
    x = np.concatenate([sg.dtmf_key("7", 0.05, 8000), sg.silence(0.005, 8000), sg.dtmf_key("7", 0.05, 8000)])
    assert keys(np.concatenate([x, sg.silence(0.1, 8000)]), 8000) == "7"


def test_dtmf_ignores_level_below_threshold() -> None:
    assert keys(sg.dtmf("1", 8000, level_dbfs=-50.0), 8000) == ""


@pytest.mark.parametrize("plan", ["cn", "nanp"])
@pytest.mark.parametrize("name", ["dial_tone", "ringback", "busy", "congestion"])
def test_call_progress_tones(plan: str, name: str) -> None:
    rng = np.random.default_rng(5)
    x = np.concatenate(
        [sg.silence(0.3, 8000), sg.call_progress(name, plan, 7.0, 8000), sg.silence(0.5, 8000)]
    )
    x = sg.add_noise(x, 25, rng, reference_dbfs=-15)
    det = dsp.ToneDetector(8000, plan)
    hits = []
    for i in range(0, len(x), 1600):
        hits += det.process(x[i : i + 1600])
    assert [h.name for h in hits] == [name]
    assert abs(hits[0].start / 8000 - 0.3) < 0.1 or name in ("busy", "congestion")


def test_nanp_ringback_is_not_busy() -> None:
    det = dsp.ToneDetector(8000, "nanp")
    hits = det.process(sg.call_progress("ringback", "nanp", 2.5, 8000))
    assert [h.name for h in hits] == ["ringback"]


def test_call_progress_ignores_speech_and_music() -> None:
    rng = np.random.default_rng(9)
    for plan in ("cn", "nanp"):
        det = dsp.ToneDetector(8000, plan)
        assert (
            det.process(np.concatenate([sg.speech_like(20, 8000, rng), sg.music_like(20, 8000, rng)])) == []
        )


def test_decimator_keeps_the_band_and_streams() -> None:
    rate = 48000
    t = np.arange(rate) / rate
    x = np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 7000 * t)
    whole = dsp.Decimator(rate).process(x)
    dec = dsp.Decimator(rate)
    pieces = np.concatenate([dec.process(x[i : i + 777]) for i in range(0, len(x), 777)])
    np.testing.assert_allclose(pieces, whole[: len(pieces)])
    spectrum = np.abs(np.fft.rfft(whole[1000:]))
    freqs = np.fft.rfftfreq(len(whole) - 1000, 1 / 8000)
    assert freqs[spectrum.argmax()] == pytest.approx(1000, abs=2)
    # 7 kHz would alias to 1 kHz: it must be gone.
    assert np.abs(whole[1000:]).max() < 1.05


def test_decimator_refuses_narrowband() -> None:
    with pytest.raises(ValueError, match="8000"):
        dsp.Decimator(6000)


def test_to_float_scales_pcm() -> None:
    assert dsp.to_float(np.array([-32768, 16384], np.int16)).tolist() == [-1.0, 0.5]
    assert dsp.to_float(np.array([0, 128], np.uint8)).tolist() == [-1.0, 0.0]


def test_calibrate_suggests_thresholds_between_quiet_and_busy() -> None:
    rng = np.random.default_rng(2)
    quiet = sg.add_noise(sg.silence(5, 8000), 0, rng, reference_dbfs=-70)
    busy = sg.speech_like(5, 8000, rng, level_dbfs=-15) + quiet
    suggestion = dsp.calibrate(np.concatenate([quiet, busy]), 8000)
    assert (
        suggestion["floor_dbfs"]
        < suggestion["on_hook_dbfs"]
        < suggestion["off_hook_dbfs"]
        < suggestion["busy_dbfs"]
    )
    assert suggestion["floor_dbfs"] == pytest.approx(-70, abs=3)
