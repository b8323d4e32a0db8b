"""Whozz Calling records and datagrams, pure: transcripts, the header by position, repeats, the tracker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from whozz_emulator import TRAP_SERIAL, build_packet, call_record, detail_record

from agent.calls import CallTracker, LineIdentity, TrackerConfig
from agent.events import (
    Absence,
    Call,
    CallerId,
    CallEventKind,
    Dialed,
    Direction,
    Disposition,
    LineError,
    LineEvent,
)
from agent.seat.devices import DeviceRegistry
from plugins import whozz
from plugins.whozz.config import WhozzConfig, parse_listen
from plugins.whozz.device import WhozzDevice
from plugins.whozz.protocol import (
    Deduper,
    Detail,
    Kind,
    NotARecord,
    WhozzDecoder,
    WhozzParseError,
    parse_datagram,
    parse_record,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "whozz"
T0 = datetime(2026, 1, 15, 12, 30, tzinfo=UTC)
SOURCE = ("192.168.0.90", 3520)


def replay(path: Path) -> tuple[WhozzDevice, list[tuple[str, float, list[LineEvent], list[dict[str, Any]]]]]:
    """Feed a transcript to a device (no socket); per datagram: (line, clock, events, expected)."""
    device: WhozzDevice | None = None
    options: dict[str, Any] = {}
    clock = 0.0
    steps: list[tuple[str, float, list[LineEvent], list[dict[str, Any]]]] = []
    for text in path.read_text(encoding="latin-1").splitlines():
        if text.startswith("%config "):
            options = json.loads(text[len("%config ") :])
            continue
        if not text.strip() or text.startswith("#"):
            continue
        if text.startswith("@ "):
            clock = float(text[2:])
            continue
        if text.startswith("=> "):
            steps[-1][3].append(json.loads(text[3:]))
            continue
        if device is None:
            device = WhozzDevice("wc", WhozzConfig(**options))
        data = bytes.fromhex(text[4:]) if text.startswith("hex ") else (text + "\r\n").encode("latin-1")
        events = device.receive(data, SOURCE, clock, T0 + timedelta(seconds=clock))
        steps.append((text, clock, events, []))
    assert device is not None
    return device, steps


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.txt")), ids=lambda p: p.stem)
def test_transcript(path: Path) -> None:
    _, steps = replay(path)
    assert steps
    for text, _, events, expected in steps:
        assert len(events) == len(expected), (text, [e.to_dict() for e in events])
        for event, want in zip(events, expected, strict=True):
            got = event.to_dict()
            assert {key: got.get(key) for key in want} == want, text
            assert got["device_id"] == "wc"


def test_deluxe_transcript_counts_and_calls() -> None:
    device, steps = replay(FIXTURES / "deluxe.txt")
    assert device.stats.repeats == 3  # two repeats of the ring, one of the start record
    assert device.stats.not_records == 1  # the firmware version reply
    assert device.stats.errors == 0
    events = [(clock, e) for _, clock, evs, _ in steps for e in evs]
    (call,) = calls_of(events, "1", reports_hook=True)
    assert (call.direction, call.disposition) == (Direction.IN, Disposition.ANSWERED)
    assert (call.number_raw, call.cid_name, call.rings) == ("555-123-4567", "JOHN DOE", 1)
    # Off hook at 5 s, on hook at 130 s: the unit's end record says 0125 too.
    assert (call.ring_seconds, call.talk_seconds) == (5.0, 125.0)
    (out,) = calls_of(events, "2", reports_hook=True)
    assert (out.direction, out.number_raw, out.number_e164) == (
        Direction.OUT,
        "13812345678",
        "+8613812345678",
    )
    assert (out.disposition, out.talk_seconds) == (Disposition.ANSWERED, 60.0)


def test_basic_transcript_calls_end_by_ring_timeout() -> None:
    _, steps = replay(FIXTURES / "basic.txt")
    events = [(clock, e) for _, clock, evs, _ in steps for e in evs]
    calls = calls_of(events, "1", reports_hook=False)
    assert [c.absence and c.absence.value for c in calls] == ["P", "O", None]
    assert all(c.disposition is Disposition.UNKNOWN for c in calls)
    (bad,) = calls_of(events, "3", reports_hook=False)
    assert bad.number_raw is None  # a bad checksum never gives a number


def calls_of(events: list[tuple[float, LineEvent]], line: str, *, reports_hook: bool) -> list[Call]:
    tracker = CallTracker(
        LineIdentity(seat="s", device_id="wc", line=line), TrackerConfig(reports_hook=reports_hook)
    )
    ended: list[Call] = []
    now = T0
    for clock, event in events:
        if event.line != line:
            continue
        now = T0 + timedelta(seconds=clock)
        ended += [e.call for e in tracker.feed(event, now) if e.kind is CallEventKind.ENDED]
    ended += [e.call for e in tracker.tick(now + timedelta(hours=1)) if e.kind is CallEventKind.ENDED]
    return ended


def test_parse_record_fields_from_the_manual() -> None:
    record = parse_record("01 I S 0276 G B3 09/26 11:28 AM 800-240-4637   CallerID.com   \r\n")
    assert record.kind is Kind.CALL
    assert (record.line, record.inbound, record.start, record.duration) == (1, True, True, 276)
    assert (record.checksum_ok, record.ring_type, record.rings) == (True, "B", 3)
    assert (record.date, record.time, record.device_time) == ("09/26", "11:28 AM", "09/26 11:28 AM")
    assert (record.number, record.name) == ("800-240-4637", "CallerID.com")
    end = parse_record("12 O E 0042 G A0 09/26 11:30 PM 4075550000")
    assert (end.line, end.inbound, end.start, end.duration, end.number, end.name) == (
        12,
        False,
        False,
        42,
        "4075550000",
        None,
    )
    detail = parse_record("02 N     11/07 10:46:23")
    assert (detail.kind, detail.line, detail.detail, detail.time) == (
        Kind.DETAIL,
        2,
        Detail.ON_HOOK,
        "10:46:23",
    )
    # Right-justified number (TCI-style column) and an unpadded sender.
    assert (
        parse_record("01 I S 0000 G A0 09/26 01:28 AM   806-672-1767 WIRELESS CALLER").number
        == "806-672-1767"
    )
    unpadded = parse_record("01 I S 0000 G A0 09/26 01:28 AM 8066721767 WIRELESS CALLER")
    assert (unpadded.number, unpadded.name) == ("8066721767", "WIRELESS CALLER")
    blank = parse_record("01 I S 0000 G A0 09/26 01:28 AM                JOHN DOE")
    assert (blank.number, blank.name) == (None, "JOHN DOE")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "01",
        "01 I S",
        "1 I S 0000 G A0 09/26 01:28 AM 555",
        "01 X S 0000 G A0 09/26 01:28 AM 555",
        "01 R 11/07",
    ],
)
def test_not_records(text: str) -> None:
    with pytest.raises(WhozzParseError):
        parse_record(text)


@given(
    unit=st.integers(min_value=0, max_value=2**48 - 1),
    serial=st.binary(min_size=6, max_size=6),
    separator=st.sampled_from([b"", b"$", b"$$"]),
    line=st.integers(min_value=1, max_value=32),
    number=st.from_regex(r"\A[0-9][0-9-]{0,13}\Z"),
)
def test_header_is_parsed_by_position(
    unit: int, serial: bytes, separator: bytes, line: int, number: str
) -> None:
    record = call_record(line, when=T0, number=number, name="JOHN DOE")
    packet = parse_datagram(build_packet(record, unit=unit, serial=serial, separator=separator))
    assert packet.unit == unit
    assert packet.serial is not None
    assert packet.serial.replace("-", "") == serial.hex()
    assert (packet.record.line, packet.record.number, packet.record.name) == (line, number, "JOHN DOE")


def test_header_full_of_dollars() -> None:
    data = build_packet(detail_record(3, "F", T0), unit=0x242424242424, serial=b"$$$$$$")
    packet = parse_datagram(data)
    assert packet.unit == 0x242424242424
    assert packet.serial == "24-24-242424-24"
    assert (packet.record.line, packet.record.detail) == (3, Detail.OFF_HOOK)
    assert (
        parse_datagram(build_packet(detail_record(3, "F", T0), serial=TRAP_SERIAL)).serial
        == "01-24-032405-24"
    )


def test_command_replies_are_not_records() -> None:
    with pytest.raises(NotARecord):
        parse_datagram(b"^^IdX")
    with pytest.raises(NotARecord):
        parse_datagram(build_packet("V9.7 ECXUDASBTKT"))


def test_deduper_window() -> None:
    dedupe = Deduper(window=2.0)
    assert not dedupe.is_repeat(b"a", 10.0)
    assert dedupe.is_repeat(b"a", 10.5)
    assert dedupe.is_repeat(b"a", 11.9)
    assert not dedupe.is_repeat(b"b", 11.9)
    assert not dedupe.is_repeat(b"a", 12.1)  # 2.1 s after the first: a new packet
    assert dedupe.dropped == 2
    # The memory stays bounded however many distinct packets arrive.
    for n in range(2000):
        dedupe.is_repeat(str(n).encode(), 100.0 + n)
    assert len(dedupe._seen) < 300


def test_decoder_line_map_and_detail_switch() -> None:
    decoder = WhozzDecoder("wc", {"01": "front", "2": "back"}, detail_records=False)
    start = parse_record(call_record(1, when=T0, number="5551234567"))
    assert [e.kind for e in decoder.events(start, T0)] == ["ring", "caller_id"]
    assert decoder.events(start, T0)[1].line == "front"
    assert decoder.line_label(3) == "3"
    # A detail record shows the unit counts rings itself: start records stop adding one.
    decoder.events(parse_record(detail_record(2, "R", T0)), T0)
    assert [e.kind for e in decoder.events(start, T0)] == ["caller_id"]


def test_device_sources_filter_and_registration() -> None:
    device = WhozzDevice("wc", WhozzConfig(sources=["192.168.0.90"], line_count=4))
    assert device.lines() == ["1", "2", "3", "4"]
    assert device.reports_hook is True
    record = (call_record(1, when=T0, number="5551234567") + "\r\n").encode()
    assert device.receive(record, ("10.0.0.1", 3520), 0.0, T0) == []
    assert device.stats.rejected == 1
    assert len(device.receive(record, SOURCE, 0.0, T0)) == 1
    basic = WhozzDevice("wc", WhozzConfig(detail_records=False, lines={"1": "a", "2": "b"}))
    assert basic.reports_hook is False
    assert WhozzDevice.reports_hook is True  # the class default is untouched
    assert basic.lines() == ["a", "b"]
    registry = DeviceRegistry()
    whozz.register_devices(register=lambda cls: registry.add(cls, "whozz"))
    assert registry.get("whozz") is WhozzDevice
    assert parse_listen("0.0.0.0:3520") == ("0.0.0.0", 3520)
    assert parse_listen("[::]:0") == ("::", 0)
    assert WhozzConfig().listen == "0.0.0.0:3520"
    for bad in (
        {"listen": "localhost"},
        {"listen": "nohost:3520"},
        {"lines": {"33": "x"}},
        {"sources": ["x"]},
    ):
        with pytest.raises(ValueError, match="."):
            WhozzConfig(**bad)


def _numbers(events: list[LineEvent]) -> list[str]:
    out: list[str] = []
    for event in events:
        if isinstance(event, CallerId) and event.number is not None:
            out.append(event.number)
        if isinstance(event, Dialed):
            out.append(event.digits)
    return out


_HEADER = st.builds(
    lambda unit, serial, sep: b"^^<U>" + unit + b"<S>" + serial + sep,
    st.binary(min_size=6, max_size=6),
    st.binary(min_size=6, max_size=6),
    st.sampled_from([b"", b"$", b"$$"]),
)


@given(st.one_of(st.binary(max_size=120), st.builds(bytes.__add__, _HEADER, st.binary(max_size=90))))
def test_random_datagrams_never_crash_or_invent_a_number(data: bytes) -> None:
    device = WhozzDevice("wc", WhozzConfig())
    events = device.receive(data, SOURCE, 0.0, T0)
    text = data.decode("latin-1")
    for number in _numbers(events):
        assert number in text
    assert len(events) <= 2


_RECORDISH = st.builds(
    lambda line, io, se, dur, cs, ring, date, time, rest: (
        f"{line} {io} {se} {dur} {cs} {ring} {date} {time} {rest}"
    ),
    st.sampled_from(["01", "32", "00", "99", "1"]),
    st.sampled_from(["I", "O", "X"]),
    st.sampled_from(["S", "E"]),
    st.from_regex(r"\A\d{4}\Z"),
    st.sampled_from(["G", "B"]),
    st.sampled_from(["A1", "B3", "--"]),
    st.sampled_from(["01/15", " 1/15", "1/15"]),
    st.sampled_from(["12:30 PM", " 1:05 AM", "13:00"]),
    st.text(alphabet="0123456789- ABCPrivateOut-of-Area\x00$", max_size=40),
)


@given(_RECORDISH, st.booleans())
def test_record_like_text_never_crashes_or_invents_a_number(text: str, truncate: bool) -> None:
    if truncate:
        text = text[: len(text) * 2 // 3]
    decoder = WhozzDecoder("wc", detail_records=False)
    try:
        record = parse_record(text)
    except WhozzParseError:
        return
    events = decoder.events(record, T0)
    for number in _numbers(events):
        assert number in text
        assert number.strip() == number
        assert any(ch.isdigit() for ch in number)
    if not record.checksum_ok and record.inbound and record.start:
        assert not _numbers(events)
        assert any(isinstance(e, LineError) for e in events)


def test_parse_record_reads_what_serial_units_send() -> None:
    """The layouts serial units send [WC48L], [BASIC]: the one parser ``serialbox`` uses too."""
    limited = parse_record("$01 09/26 02:30 PM 8002404637 I CallerID.com\r\n")
    assert (limited.kind, limited.limited, limited.line, limited.inbound, limited.start) == (
        Kind.CALL,
        True,
        1,
        True,
        True,
    )
    assert (limited.number, limited.name, limited.device_time) == (
        "8002404637",
        "CallerID.com",
        "09/26 02:30 PM",
    )
    no_dollar = parse_record("02  9/26  2:31 PM     4075550000 O")
    assert (no_dollar.inbound, no_dollar.number, no_dollar.name, no_dollar.device_time) == (
        False,
        "4075550000",
        None,
        " 9/26  2:31 PM",
    )
    # Extra blanks before the date and time, and around the record, as TCI-layout units pad.
    padded = parse_record("  03 I S 0000 G A0   9/26 1:28 PM        Private\x00\r\n")
    assert (padded.line, padded.date, padded.time, padded.number, padded.absence) == (
        3,
        " 9/26",
        "1:28 PM",
        None,
        Absence.PRIVATE,
    )
    assert parse_record("01 R 9/26 11:28:02").date == "9/26"
    assert parse_record("01 I S 0000 G A² 09/26 01:28 AM 5551234").rings is None
    assert parse_record("01 I S 0000 G A1 09/26 01:28 AM +8613812345678 *67#").number == "+8613812345678"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("01 I S 0000 G A1 09/26 01:28 AM 555-12B4     JOHN", "characters no unit sends"),
        ("01 I S 0000 G A1 09/26 01:28 AM 555-1234     JO\x13HN", "control characters"),
        ("$01 09/26 02:30 PM 8002404637 X CallerID.com", "not a Whozz Calling record"),
        ("$33 09/26 02:30 PM 8002404637 I CallerID.com", "out of range"),
        ("$01 09/26 02:30 PM ABC I CallerID.com", "holds no digits"),
    ],
)
def test_damaged_records_are_errors(text: str, reason: str) -> None:
    with pytest.raises(WhozzParseError, match=reason):
        parse_record(text)


def test_packets_are_counted_per_sender_and_an_open_listener_warns(caplog: pytest.LogCaptureFixture) -> None:
    from datetime import UTC, datetime

    from plugins.whozz.device import WhozzDevice

    device = WhozzDevice("wc", WhozzDevice.Config.model_validate({}))
    at = datetime.now(UTC)
    with caplog.at_level("WARNING", logger="plugins.whozz.device"):
        device.receive(b"noise", ("192.0.2.10", 3520), 0.0, at)
        device.receive(b"noise", ("192.0.2.10", 3520), 1.0, at)
        device.receive(b"noise", ("192.0.2.66", 3520), 2.0, at)
    assert device.stats.senders == {"192.0.2.10": 2, "192.0.2.66": 1}
    assert any("192.0.2.66" in r.getMessage() for r in caplog.records)

    limited = WhozzDevice("wc", WhozzDevice.Config.model_validate({"sources": ["192.0.2.10"]}))
    limited.receive(b"noise", ("192.0.2.66", 3520), 0.0, at)
    assert limited.stats.rejected == 1
    assert limited.stats.senders == {"192.0.2.66": 1}
