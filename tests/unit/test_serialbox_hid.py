"""USB HID caller-ID boxes and handsets (issue 18, item 7), through an emulator at the hidapi boundary.

The frames are the serial boxes' (port letter A-D/S, type 0x04/0x80, length,
payload, 256 - sum checksum; HT9032 modules' 0x55 seizure header), cut into
input reports of ``count | data | padding`` and replayed by tests/hid_emulator.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hid_emulator import FakeHidApi, info, reports

from agent.callerid import CallerIdError, encode_mdmf, encode_sdmf
from agent.errors import DeviceError
from agent.events import CallerId, Dialed, LineError, LineEvent, OffHook, OnHook
from plugins.serialbox.hid import (
    HandsetParser,
    HidCallerIdBox,
    HidFrameParser,
    UsbHandset,
    list_hid_devices,
    report_payload,
)

NOW = datetime(2026, 1, 15, 12, 30, tzinfo=UTC)
MDMF = encode_mdmf(datetime="01151230", number="13812345678", name="张三")
SDMF = encode_sdmf("02112345678", "01151231")


def test_report_payload_reads_the_count_byte() -> None:
    assert report_payload([3, 0x41, 0x80, 0x10, 0, 0, 0, 0]) == b"\x41\x80\x10"
    assert report_payload([9, 1, 2]) == b"\x01\x02"  # a count past the report: what is there
    assert report_payload([]) == b""


def test_frames_by_port_letter_across_reports() -> None:
    stream = b"A" + MDMF + b"C" + SDMF + b"S" + SDMF
    parser = HidFrameParser()
    found = []
    for report in reports(stream, 8):
        found += parser.feed(report_payload(report))
    assert [(f.line, f.message.number, f.message.name) for f in found] == [  # type: ignore[union-attr]
        ("1", "13812345678", "张三"),
        ("3", "02112345678", None),
        ("1", "02112345678", None),
    ]
    assert parser.pending == 0


def test_ht9032_seizure_header_and_damaged_frames() -> None:
    damaged = bytearray(SDMF)
    damaged[5] ^= 0x02
    parser = HidFrameParser()
    found = parser.feed(b"\x55" * 10 + MDMF[:1] + MDMF[1:] + b"B" + bytes(damaged) + b"D" + SDMF)
    kinds = [type(f).__name__ for f in found]
    assert kinds == ["Frame", "CallerIdError", "Frame"]
    assert isinstance(found[1], CallerIdError)
    assert "checksum" in found[1].reason
    assert [f.line for f in found if not isinstance(f, CallerIdError)] == ["1", "4"]


def test_partial_frame_waits_then_is_an_error_on_flush() -> None:
    parser = HidFrameParser()
    assert parser.feed(b"A" + MDMF[:6]) == []
    assert parser.pending == 7
    (error,) = parser.flush()
    assert isinstance(error, CallerIdError)


def test_handset_hook_and_keys() -> None:
    parser = HandsetParser("set", digit_gap=3.0)
    events = []
    t = NOW
    for report in (
        [1, 0],
        [1, ord("1")],
        [1, ord("1")],
        [1, 0],
        [1, ord("3")],
        [1, 0],
        [1, ord("8")],
        [1, 0],
    ):
        events += parser.feed(report, t)
        t += timedelta(seconds=0.2)
    assert parser.tick(t) == []
    events += parser.tick(t + timedelta(seconds=3))
    events += parser.feed([0, 0], t + timedelta(seconds=10))
    assert [type(e) for e in events] == [OffHook, Dialed, OnHook]
    assert events[1].digits == "138"
    assert [type(e) for e in HandsetParser("set").feed([1, 0x7F], NOW)] == [OffHook, LineError]


def test_handset_put_down_ends_the_number() -> None:
    parser = HandsetParser("set")
    events = parser.feed([1, ord("5")], NOW) + parser.feed([0, 0], NOW + timedelta(seconds=1))
    assert [(type(e), getattr(e, "digits", None)) for e in events] == [
        (OffHook, None),
        (Dialed, "5"),
        (OnHook, None),
    ]


async def collect(device: HidCallerIdBox | UsbHandset) -> tuple[list[LineEvent], DeviceError]:
    """Every event until the emulated device is unplugged, and the error that ended them."""
    found: list[LineEvent] = []
    async with device:
        try:
            async for event in device.events():
                found.append(event)
        except DeviceError as exc:
            return found, exc
    raise AssertionError("events() ended without the unplug error")


def _api() -> FakeHidApi:
    box_stream = [None, *reports(b"\x55" * 4 + MDMF, 8), None, *reports(b"B" + SDMF, 8)]
    handset_stream = [[1, 0], [1, ord("1")], [1, 0], [1, ord("0")], [1, 0], [1, ord("8")], [0, 0]]
    return FakeHidApi(
        [
            (info(b"/dev/hidraw0", 0x04D9, 0x1400, "Caller ID box"), box_stream),
            (info(b"/dev/hidraw1", 0x04D9, 0x0602, "USB phone", "S1"), handset_stream),
        ]
    )


def test_devices_lists_hid_with_usb_ids() -> None:
    listed = list_hid_devices(_api())
    assert [(d["path"], d["usb"]) for d in listed] == [
        ("/dev/hidraw0", "04d9:1400"),
        ("/dev/hidraw1", "04d9:0602"),
    ]
    assert listed[1]["serial_number"] == "S1"


async def test_box_through_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HidCallerIdBox, "hidapi", _api())
    device = HidCallerIdBox(
        "box", HidCallerIdBox.Config.model_validate({"usb": "04d9:1400", "read_timeout": 0.01})
    )
    found, error = await collect(device)
    assert "gone" in str(error)
    assert [(type(e), e.line, e.number, e.name) for e in found] == [  # type: ignore[attr-defined]
        (CallerId, "1", "13812345678", "张三"),
        (CallerId, "2", "02112345678", None),
    ]


async def test_handset_through_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(UsbHandset, "hidapi", _api())
    device = UsbHandset("set", UsbHandset.Config.model_validate({"usb": "04d9:0602"}))
    found, error = await collect(device)
    assert "gone" in str(error)
    assert [type(e) for e in found] == [OffHook, Dialed, OnHook]
    assert found[1].digits == "108"  # type: ignore[attr-defined]


async def test_missing_device_and_bad_config() -> None:
    HidCallerIdBox.hidapi = FakeHidApi([])
    try:
        with pytest.raises(DeviceError, match="no HID device"):
            async with HidCallerIdBox("box", HidCallerIdBox.Config.model_validate({"usb": "1234:5678"})):
                pass
    finally:
        HidCallerIdBox.hidapi = None
    with pytest.raises(ValueError, match="VID:PID"):
        HidCallerIdBox.Config.model_validate({"usb": "zz"})
