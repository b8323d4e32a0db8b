"""The line-tap decoder end to end: generated line audio in, line events out.

Property tests draw messages, digits, standards, rates and impairments; the
signals come from tests/signalgen.py, built from the specifications.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pluggy
import pytest
import signalgen as sg
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.callerid import encode_mdmf, encode_sdmf
from agent.decode import collect_decoders, decode, pick_decoder
from agent.events import Absence, CallerId, Connected, DeviceUp, Dialed, LineError, OffHook, OnHook
from agent.plugins import make_plugin_manager
from agent.seat.devices import DeviceRegistry
from plugins import linetap
from plugins.linetap.config import LinetapConfig
from plugins.linetap.device import LineTapDevice
from plugins.linetap.protocol import LineTapDecoder, ToneEvent, decode_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "linetap"

numbers = st.text("0123456789", min_size=1, max_size=20)
names = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=24)
stamps = st.from_regex(r"\A(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])([01][0-9]|2[0-3])[0-5][0-9]\Z")
rates = st.sampled_from([8000, 16000, 44100, 48000])


def run(decoder: LineTapDecoder, x: np.ndarray, block: int = 4000) -> list:
    events = []
    for i in range(0, len(x), block):
        events += decoder.feed(x[i : i + block])
    return events + decoder.flush()


def caller_ids(events: list) -> list[CallerId]:
    return [e for e in events if isinstance(e, CallerId)]


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, str | None, str | None]:
    number = draw(numbers)
    if draw(st.booleans()):
        return encode_sdmf(number, draw(stamps)), number, None
    name = draw(st.none() | names)
    return encode_mdmf(datetime=draw(stamps), number=number, name=name), number, name


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(
    message=messages(),
    standard=st.sampled_from(["bell202", "v23"]),
    rate=rates,
    snr=st.floats(18, 40),
    offset=st.floats(-12, 12),
    level=st.floats(-35, -3),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_fsk_message_decodes_back_exactly(
    message: tuple[bytes, str | None, str | None],
    standard: str,
    rate: int,
    snr: float,
    offset: float,
    level: float,
    seed: int,
) -> None:
    data, number, name = message
    rng = np.random.default_rng(seed)
    x = np.concatenate(
        [
            sg.silence(0.3, rate),
            sg.fsk_callerid(data, rate, standard, level_dbfs=level, freq_offset=offset),
            sg.silence(0.3, rate),
        ]
    )
    x = sg.add_noise(x, snr, rng, rate=rate, reference_dbfs=level)
    events = run(LineTapDecoder(rate), x, block=int(rng.integers(100, 20000)))
    (cid,) = caller_ids(events)
    assert (cid.number, cid.name, cid.raw) == (number, name, data.hex())
    # Stamped at the first byte: after 300 seizure and 180 mark bits at 1200 baud.
    assert LineTapDecoder(rate).offset(cid) == pytest.approx(0.3 + 480 / 1200, abs=0.01)
    assert not [e for e in events if isinstance(e, (Dialed, LineError, OffHook))]


@settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow])
@given(
    digits=st.text("0123456789*#", min_size=1, max_size=16),
    rate=rates,
    on=st.floats(0.045, 0.12),
    off=st.floats(0.045, 0.15),
    twist=st.floats(-3.0, 6.0),  # 1-2 dB inside the limits (4 dB reverse, 8 dB forward)
    deviation=st.floats(-0.015, 0.015),
    snr=st.floats(20, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_dialed_digits_decode_back_exactly(
    digits: str, rate: int, on: float, off: float, twist: float, deviation: float, snr: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x = np.concatenate(
        [
            sg.silence(0.2, rate),
            sg.dtmf(digits, rate, on=on, off=off, twist_db=twist, deviation=deviation),
            sg.silence(2.5, rate),
        ]
    )
    x = sg.add_noise(x, snr, rng, rate=rate, reference_dbfs=-10)
    events = run(LineTapDecoder(rate), x)
    dialed = [e for e in events if isinstance(e, Dialed)]
    assert [d.digits for d in dialed] == [digits]
    assert isinstance(events[0], OffHook)  # a dialed key means the handset is up


@settings(max_examples=10, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["speech", "music", "silence", "noise"]),
    rate=st.sampled_from([8000, 16000]),
    seed=st.integers(0, 2**32 - 1),
)
@example(kind="speech", rate=16000, seed=2062468)  # a vowel on 2130 Hz, 19 dB over 2750 Hz: once a CAS
def test_no_false_caller_id_or_digits(kind: str, rate: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    seconds = 20.0
    if kind == "speech":
        x = sg.speech_like(seconds, rate, rng)
    elif kind == "music":
        x = sg.music_like(seconds, rate, rng)
    elif kind == "silence":
        x = sg.silence(seconds, rate)
    else:
        x = sg.add_noise(sg.silence(seconds, rate), 0, rng, rate=rate, reference_dbfs=-20)
    events = run(LineTapDecoder(rate), x)
    assert not [e for e in events if isinstance(e, (CallerId, Dialed, LineError))]
    assert not [e for e in events if isinstance(e, ToneEvent) and e.tone == "cas"]


def test_corrupted_message_is_an_error_never_a_number() -> None:
    data = bytearray(encode_mdmf(datetime="11271015", number="13812345678"))
    data[15] ^= 0x01  # one bit of the number: '3' -> '2'
    x = np.concatenate([sg.silence(0.2, 8000), sg.fsk_callerid(bytes(data), 8000), sg.silence(0.5, 8000)])
    events = run(LineTapDecoder(8000), x)
    assert caller_ids(events) == []
    (error,) = [e for e in events if isinstance(e, LineError)]
    assert error.error == "bad checksum"


def test_both_receivers_decoding_one_burst_report_it_once() -> None:
    data = encode_sdmf("13812345678", "11271015")
    x = np.concatenate([sg.silence(0.2, 8000), sg.fsk_callerid(data, 8000, "v23"), sg.silence(0.3, 8000)])
    assert len(caller_ids(run(LineTapDecoder(8000, fsk=("bell202", "v23")), x))) == 1
    only_v23 = caller_ids(run(LineTapDecoder(8000, fsk=("v23",)), x))
    assert [c.number for c in only_v23] == ["13812345678"]


def test_off_hook_caller_id_reports_cas_then_the_caller() -> None:
    data = encode_mdmf(number="075512345678", name="CALL WAITING")
    x = np.concatenate([sg.silence(0.2, 8000), sg.offhook_callerid(data, 8000, "v23"), sg.silence(0.3, 8000)])
    events = run(LineTapDecoder(8000), x)
    kinds = [(e.kind, getattr(e, "tone", None)) for e in events]
    assert kinds == [("tone", "cas"), ("caller_id", None)]
    assert caller_ids(events)[0].name == "CALL WAITING"


@pytest.mark.parametrize(("twist_db", "heard"), [(0.0, True), (5.0, True), (-5.0, True), (9.0, False)])
def test_a_cas_needs_its_two_tones_at_about_one_level(twist_db: float, heard: bool) -> None:
    cas = sg.tones((2130.0, 2750.0), 0.08, 8000, (-15.0, -15.0 - twist_db))
    x = np.concatenate([sg.silence(0.2, 8000), cas, sg.silence(0.3, 8000)])
    tones = [e.tone for e in run(LineTapDecoder(8000), x) if isinstance(e, ToneEvent)]
    assert tones == (["cas"] if heard else [])


@pytest.mark.parametrize(
    ("keys", "number", "absence"),
    [
        ("A13812345678C", "13812345678", None),
        ("D0755123456C", "0755123456", None),
        ("A13812345678#2C", "13812345678", None),
        ("B00C", None, Absence.UNAVAILABLE),
        ("B10C", None, Absence.PRIVATE),
    ],
)
def test_dtmf_caller_id(keys: str, number: str | None, absence: Absence | None) -> None:
    x = np.concatenate([sg.silence(0.2, 8000), sg.dtmf(keys, 8000), sg.silence(3.0, 8000)])
    events = run(LineTapDecoder(8000), x)
    (cid,) = caller_ids(events)
    assert (cid.number, cid.absence, cid.raw) == (number, absence, keys)
    assert not [e for e in events if isinstance(e, (Dialed, OffHook))]  # sent on hook, between rings


def test_long_fast_dtmf_caller_id_is_not_off_hook() -> None:
    # 2.2 s of keys with 50 ms gaps: longer than off_hook_after, still sent on hook.
    keys = "A" + "86" + "13812345678" + "12345" + "C"
    x = np.concatenate([sg.silence(0.2, 8000), sg.dtmf(keys, 8000, on=0.05, off=0.05), sg.silence(5.0, 8000)])
    events = run(LineTapDecoder(8000), x)
    assert [(type(e), getattr(e, "number", None)) for e in events] == [(CallerId, keys[1:-1])]


def test_dtmf_caller_id_without_end_key_is_an_error() -> None:
    x = np.concatenate([sg.silence(0.2, 8000), sg.dtmf("A138", 8000), sg.silence(3.0, 8000)])
    events = run(LineTapDecoder(8000), x)
    assert [(type(e), e.raw) for e in events] == [(LineError, "A138")]


@pytest.mark.parametrize("plan", ["cn", "nanp"])
def test_outbound_call_hook_digits_answer(plan: str) -> None:
    rng = np.random.default_rng(7)
    rate = 8000
    x = np.concatenate(
        [
            sg.silence(1.0, rate),
            sg.call_progress("dial_tone", plan, 2.0, rate),
            sg.dtmf("02112345678", rate, on=0.08, off=0.1),
            sg.silence(0.5, rate),
            sg.call_progress("ringback", plan, 7.0, rate),
            sg.speech_like(4.0, rate, rng),
            sg.silence(6.0, rate),
        ]
    )
    x = sg.add_noise(x, 45, rng, rate=rate, reference_dbfs=-15)
    events = [e for e in run(LineTapDecoder(rate, plan), x) if not isinstance(e, ToneEvent)]
    assert [type(e) for e in events] == [OffHook, Dialed, Connected, OnHook]
    decoder = LineTapDecoder(rate)
    off, dialed, connected, on = (decoder.offset(e) for e in events)
    assert off == pytest.approx(1.0, abs=0.1)
    assert dialed == pytest.approx(3.0, abs=0.1)
    assert connected == pytest.approx(1.0 + 2.0 + 11 * 0.18 + 0.5 + 7.0, abs=0.3)
    assert on == pytest.approx(connected + 4.0, abs=0.6)
    assert events[1].digits == "02112345678"


def test_busy_line_is_never_connected() -> None:
    rate = 8000
    x = np.concatenate(
        [
            sg.call_progress("dial_tone", "nanp", 1.5, rate),
            sg.dtmf("5551234", rate),
            sg.call_progress("busy", "nanp", 4.0, rate),
            sg.silence(6.0, rate),
        ]
    )
    events = run(LineTapDecoder(rate, "nanp"), x)
    tones = [e.tone for e in events if isinstance(e, ToneEvent)]
    assert tones == ["dial_tone", "busy"]
    assert not [e for e in events if isinstance(e, Connected)]


def test_caller_id_burst_alone_is_not_off_hook() -> None:
    data = encode_mdmf(number="13812345678")
    x = np.concatenate([sg.silence(1.0, 8000), sg.fsk_callerid(data, 8000), sg.silence(5.0, 8000)])
    events = run(LineTapDecoder(8000), x)
    assert [type(e) for e in events] == [CallerId]


def test_feed_rejects_stereo_and_accepts_pcm16() -> None:
    decoder = LineTapDecoder(8000)
    with pytest.raises(ValueError, match="mono"):
        decoder.feed(np.zeros((100, 2)))
    data = encode_sdmf("13812345678", "11271015")
    pcm = sg.to_int16(np.concatenate([sg.fsk_callerid(data, 8000), sg.silence(0.3, 8000)]))
    assert [c.number for c in caller_ids(run(decoder, pcm))] == ["13812345678"]


def test_fixture_replays_to_its_transcript() -> None:
    expected = [json.loads(line) for line in (FIXTURES / "line_session_cn.jsonl").read_text().splitlines()]
    got = [json.loads(json.dumps(r, sort_keys=True)) for r in decode_file(FIXTURES / "line_session_cn.flac")]
    assert got == expected
    assert [r["kind"] for r in got] == [
        "caller_id",
        "caller_id",
        "tone",
        "off_hook",
        "dialed",
        "tone",
        "connected",
        "on_hook",
    ]
    assert got[0]["number_e164"] == "+862112345678"
    assert got[4]["number"] == got[4]["digits"] == "13812345678"


def test_decode_file_reads_wav_channels(tmp_path: Path) -> None:
    import soundfile

    data = encode_sdmf("13812345678", "11271015")
    mono = np.concatenate(
        [sg.silence(0.2, 16000), sg.fsk_callerid(data, 16000, "v23"), sg.silence(0.3, 16000)]
    )
    stereo = np.stack([np.zeros_like(mono), mono], axis=1)
    path = tmp_path / "call.wav"
    soundfile.write(path, stereo, 16000, subtype="PCM_16")
    assert list(decode_file(path, channel=0)) == []
    (record,) = decode_file(path, channel=1)
    assert record["kind"] == "caller_id"
    assert record["number"] == "13812345678"
    assert record["number_e164"] == "+8613812345678"
    assert record["datetime"] == "11271015"
    assert set(record) >= {
        "kind",
        "number",
        "number_e164",
        "name",
        "absence",
        "datetime",
        "digits",
        "tone",
        "at",
    }
    with pytest.raises(ValueError, match="channel 2"):
        list(decode_file(path, channel=2))


def _pm() -> pluggy.PluginManager:
    pm = make_plugin_manager(load_entrypoints=False)
    if not pm.is_registered(linetap):  # until it is one of the built-ins
        pm.register(linetap, "linetap")
    return pm


def test_hook_registers_the_device_type_and_the_wav_decoder() -> None:
    pm = _pm()
    registry = DeviceRegistry.from_plugins(pm)
    assert registry.get("linetap") is LineTapDevice
    decoders = collect_decoders(pm)
    wav = (FIXTURES / "line_session_cn.flac").read_bytes()
    assert pick_decoder(decoders, wav[:4096]) is decoders["wav"]
    records = list(decode(decoders["wav"], wav))
    assert [r["kind"] for r in records][:2] == ["caller_id", "caller_id"]
    (bad,) = decode(decoders["wav"], b"RIFF\x00\x00\x00\x00WAVEjunk")
    assert bad["kind"] == "error"


def test_config_validation() -> None:
    config = LinetapConfig(channels=[1, 2], lines=["sales-1", "sales-2"], plan="NANP", fsk=["V23"])
    assert (config.plan, config.fsk, config.line_labels()) == ("nanp", ["v23"], ["sales-1", "sales-2"])
    for bad in (
        {"plan": "uk"},
        {"fsk": ["v21"]},
        {"channels": [0]},
        {"channels": [1, 1]},
        {"channels": [1], "lines": ["a", "b"]},
        {"on_hook_dbfs": -30, "off_hook_dbfs": -40},
        {"bogus": 1},
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - pydantic's ValidationError is a ValueError
            LinetapConfig(**bad)


async def test_device_replays_a_recording() -> None:
    config = LinetapConfig(file=str(FIXTURES / "line_session_cn.flac"), speed=0, lines=["7"])
    device = LineTapDevice("tap", config)
    assert device.lines() == ["7"]
    async with device:
        events = [e async for e in device.events()]
    assert isinstance(events[0], DeviceUp)
    kinds = [e.kind for e in events[1:]]
    assert kinds == ["caller_id", "caller_id", "off_hook", "dialed", "connected", "on_hook"]
    assert {e.line for e in events[1:]} == {"7"}
    assert LineTapDevice.reports_hook
    assert LineTapDevice.reports_connect


async def test_device_with_a_missing_recording_is_a_device_error(tmp_path: Path) -> None:
    from agent.errors import DeviceError

    device = LineTapDevice("tap", LinetapConfig(file=str(tmp_path / "nope.wav")))
    with pytest.raises(DeviceError, match="cannot open"):
        async with device:
            pass


async def test_device_calibrates_each_line(tmp_path: Path) -> None:
    import soundfile

    rng = np.random.default_rng(4)
    quiet = sg.add_noise(sg.silence(4, 8000), 0, rng, reference_dbfs=-70)
    line1 = np.concatenate([quiet, sg.speech_like(4, 8000, rng, level_dbfs=-15) + quiet])
    line2 = np.concatenate([quiet, quiet])
    path = tmp_path / "two-lines.wav"
    soundfile.write(path, np.stack([line1, line2], axis=1), 8000, subtype="PCM_16")
    device = LineTapDevice("tap", LinetapConfig(file=str(path), speed=0, channels=[1, 2]))
    async with device:
        suggestion = await device.calibrate(seconds=10)
    assert set(suggestion) == {"1", "2"}
    assert suggestion["1"]["busy_dbfs"] > suggestion["1"]["off_hook_dbfs"] > suggestion["1"]["floor_dbfs"]
    assert suggestion["2"]["off_hook_dbfs"] == pytest.approx(suggestion["2"]["floor_dbfs"] + 10, abs=0.2)


def test_sound_input_callback_keeps_the_newest_audio_and_reports_a_stop() -> None:
    from types import SimpleNamespace

    from agent.errors import DeviceError
    from plugins.linetap.transport import SoundDeviceInput

    source = SoundDeviceInput("box", channels=[2], samplerate=8000, block_seconds=2.5)  # room for 2 blocks
    ok = SimpleNamespace(input_overflow=False)
    for value in (1.0, 2.0, 3.0):
        source._callback(np.full((4, 2), value, np.float32) * [0, 1], 4, None, ok)
    assert source.overruns == 1
    assert [source.read()[0, 0] for _ in range(2)] == [2.0, 3.0]  # the oldest block was dropped
    assert source.read() is None  # nothing more within the time-out
    source._finished()
    with pytest.raises(DeviceError, match="stopped"):
        source.read()
