"""The NCID protocol, pure: transcripts replayed, line splitting, the tracker reading the events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.calls import CallTracker, LineIdentity, TrackerConfig
from agent.events import Call, CallerId, CallEventKind, Dialed, Direction, Disposition, LineError, LineEvent
from agent.seat.devices import DeviceRegistry
from plugins import ncid
from plugins.ncid.config import NcidConfig
from plugins.ncid.device import NcidDevice
from plugins.ncid.protocol import NcidSession, Phase, caller_fields, parse_line, split_fields

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ncid"
T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


def replay(path: Path) -> tuple[NcidSession, list[tuple[str, list[LineEvent], list[dict[str, Any]]]]]:
    """Feed a transcript on its clock; return the session and, per server line, (line, events, expected)."""
    options: dict[str, Any] = {}
    steps: list[tuple[str, list[LineEvent], list[dict[str, Any]]]] = []
    session: NcidSession | None = None
    clock = 0.0
    for text in path.read_text(encoding="utf-8").splitlines():
        if text.startswith("@ "):
            clock = float(text[2:])
            continue
        if text.startswith("%session "):
            options = json.loads(text[len("%session ") :])
            continue
        if not text.strip() or text.startswith("#"):
            continue
        if text.startswith("=> "):
            steps[-1][2].append(json.loads(text[3:]))
            continue
        if session is None:
            session = NcidSession("ncid", **options)
        steps.append((text, session.feed(text, T0 + timedelta(seconds=clock)), []))
    assert session is not None
    return session, steps


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.txt")), ids=lambda p: p.stem)
def test_transcript(path: Path) -> None:
    session, steps = replay(path)
    assert steps
    for text, events, expected in steps:
        assert len(events) == len(expected), (text, [e.to_dict() for e in events])
        for event, want in zip(events, expected, strict=True):
            got = event.to_dict()
            assert {key: got.get(key) for key in want} == want, text
            assert got["device_id"] == "ncid"
    assert session.live


def test_startup_is_counted_not_replayed() -> None:
    session, steps = replay(FIXTURES / "startup_api15.txt")
    stats = session.stats
    assert stats.greeting == "Server: ncidd (NCID) 1.13"
    assert stats.api == "API 1.5 Feature Set 1 2 3 4"
    assert stats.log_lines == 7
    assert stats.options == ["hangup-1", "ignore1"]
    # Nothing before the 300 line produced an event.
    end = next(i for i, (text, _, _) in enumerate(steps) if text.startswith("300 "))
    assert all(not events for _, events, _ in steps[: end + 1])


def test_log_lines_sent_later_are_still_history() -> None:
    # A REQ: REREAD job makes the server resend its log while live.
    session = NcidSession("ncid")
    for text in ("200 Server: ncidd (NCID) 1.13", "300 End of connection startup"):
        session.feed(text, T0)
    assert session.phase is Phase.LIVE
    log = "CIDLOG: *DATE*01142026*TIME*0915*LINE*-*NMBR*4075550000*MESG*NONE*NAME*OLD*"
    assert session.feed(log, T0) == []
    assert session.stats.log_lines == 1


def test_a_server_without_greeting_still_gets_its_calls_read() -> None:
    session = NcidSession("ncid")
    (event,) = session.feed("CID: *DATE*01152026*TIME*1230*LINE*-*NMBR*5551234567*MESG*NONE*NAME*X*", T0)
    assert isinstance(event, CallerId)
    assert session.live


def test_split_fields_and_parse_line() -> None:
    assert split_fields("*DATE*0115*TIME*1230*") == {"DATE": "0115", "TIME": "1230"}
    assert split_fields("*NMBR*123*NAME*") == {"NMBR": "123"}  # an odd trailing label is dropped
    line = parse_line("+CID: *NMBR*5551234567*NAME*A B*\r\n")
    assert (line.type, line.forwarded, line.fields) == ("CID", True, {"NMBR": "5551234567", "NAME": "A B"})
    msg = parse_line("MSG: hello there ***DATE*01152026*TIME*1230*NAME*-*NMBR*-*LINE*-*MTYPE*-*")
    assert msg.text == "hello there"
    assert msg.fields["MTYPE"] == "-"
    status = parse_line("300 End of connection startup")
    assert (status.type, status.code, status.text) == ("STATUS", 300, "End of connection startup")
    assert parse_line("ENDLOG: *HTYPE*BYE*").is_log


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"NMBR": "5551234567", "NAME": "JOHN"}, ("5551234567", None, "JOHN", None)),
        ({"NMBR": "-", "NAME": "-"}, (None, None, None, None)),
        ({"NMBR": "NO-NUMBER", "NAME": "NO NAME"}, (None, None, None, None)),
        ({"NMBR": "P", "NAME": "O"}, (None, "P", None, "O")),
        ({"NMBR": "OUT-OF-AREA", "NAME": "PRIVATE"}, (None, "O", None, "P")),
        ({"NMBR": "+86 138 1234 5678"}, ("+86 138 1234 5678", None, None, None)),
    ],
)
def test_caller_fields(fields: dict[str, str], expected: tuple[object, ...]) -> None:
    number, absence, name, name_absence = caller_fields(fields)
    got = (number, absence and absence.value, name, name_absence and name_absence.value)
    assert got == expected


def test_line_labels() -> None:
    session = NcidSession("ncid", {"POTS": "2", "-": "9"})
    assert session.line_label("POTS") == "2"
    assert session.line_label("VOIP") == "VOIP"
    assert session.line_label("-") == "9"
    assert session.line_label(None) == "9"
    assert NcidSession("ncid").line_label("NO-LINE") == "1"
    # "*" is the runtime's every-line label and may not be claimed by a device line.
    assert NcidSession("ncid").line_label("*") == "1"


def calls_from(events: list[LineEvent], line: str) -> list[Call]:
    """Ended calls of ``line``, the tracker reading as it would for an NCID device (no hook reports)."""
    tracker = CallTracker(
        LineIdentity(seat="s", device_id="ncid", line=line),
        TrackerConfig(reports_hook=NcidDevice.reports_hook),
    )
    ended: list[Call] = []
    now = T0
    for event in events:
        if event.line != line:
            continue
        now = max(now, event.at)
        ended += [e.call for e in tracker.feed(event, now) if e.kind is CallEventKind.ENDED]
    ended += [e.call for e in tracker.tick(now + timedelta(hours=1)) if e.kind is CallEventKind.ENDED]
    return ended


def test_gateway_transcript_gives_the_right_calls() -> None:
    _, steps = replay(FIXTURES / "gateway.txt")
    events = [event for _, evs, _ in steps for event in evs]
    answered_in, missed_in, out, waiting, hup, blk = calls_from(events, "VOIP")
    assert (answered_in.direction, answered_in.disposition) == (Direction.IN, Disposition.ANSWERED)
    assert answered_in.number_raw == "13812345678"
    assert answered_in.number_e164 == "+8613812345678"
    assert answered_in.cid_name == "WANG WEI"
    # Answered at 5 s (ring count 0), hung up at 180 s (END BYE).
    assert (answered_in.ring_seconds, answered_in.talk_seconds) == (5.0, 175.0)
    assert (missed_in.direction, missed_in.disposition) == (Direction.IN, Disposition.MISSED)
    assert (out.direction, out.disposition, out.number_raw) == (
        Direction.OUT,
        Disposition.ANSWERED,
        "13912345678",
    )
    # A hung-up or blocked caller is recorded with the number and never counted as answered.
    for call, number in ((waiting, "13700000000"), (hup, "8005551111"), (blk, "8005553333")):
        assert call.direction is Direction.IN
        assert call.number_raw == number
        assert call.disposition is not Disposition.ANSWERED
    # The END for a call begun before we connected created no call on POTS.
    assert calls_from(events, "POTS") == []


def test_modem_fed_calls_end_by_ring_timeout_as_unknown() -> None:
    _, steps = replay(FIXTURES / "startup_api15.txt")
    events = [event for _, evs, _ in steps for event in evs]
    calls = calls_from(events, "1")
    assert [c.number_raw for c in calls] == ["5551234567", None, None, None]
    assert [c.absence and c.absence.value for c in calls] == [None, "P", "O", None]
    assert all(c.disposition is Disposition.UNKNOWN for c in calls)


def test_ring_zero_means_answered_once_a_line_reports_ends() -> None:
    session = NcidSession("ncid")
    session.feed("300 End of connection startup", T0)
    cid = "CID: *DATE*01152026*TIME*0900*LINE*VOIP*NMBR*13812345678*MESG*NONE*NAME*-*"
    ring_zero = "CIDINFO: *LINE*VOIP*RING*0*TIME*09:00:05*"
    end = "END: *HTYPE*CANCEL*DATE*01152026*TIME*0900*CTYPE*IN*LINE*VOIP*NMBR*13812345678*NAME*-*"
    session.feed(cid, T0)
    assert session.feed(ring_zero, T0) == []  # nothing known about this line yet
    session.feed(end, T0)
    session.feed(cid, T0)
    assert [e.kind for e in session.feed(ring_zero, T0)] == ["off_hook"]
    # Another line has not shown itself to be gateway-fed.
    assert session.feed(ring_zero.replace("VOIP", "POTS"), T0) == []
    forced = NcidSession("ncid", ring_zero_answers=False)
    forced.feed(end, T0)
    assert forced.feed(ring_zero, T0) == []


def test_registers_the_device_type() -> None:
    registry = DeviceRegistry()
    ncid.register_devices(register=lambda cls: registry.add(cls, "ncid"))
    assert registry.get("ncid") is NcidDevice
    device = NcidDevice("n", NcidConfig(lines={"POTS": "1", "VOIP": "2"}))
    assert device.lines() == ["1", "2"]
    assert NcidDevice("n", NcidConfig()).lines() == ["1"]
    assert device.where == "127.0.0.1:3333"
    with pytest.raises(ValueError, match="other than"):
        NcidConfig(lines={"POTS": "*"})


_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120)
_LABELS = st.sampled_from(
    ["CID", "OUT", "HUP", "BLK", "PID", "WID", "END", "CIDINFO", "MSG", "CIDLOG", "XX", "+CID"]
)
_FIELD = st.tuples(
    st.sampled_from(["DATE", "TIME", "LINE", "NMBR", "NAME", "MESG", "HTYPE", "RING", "CTYPE", "junk"]),
    st.text(alphabet="0123456789-* ABCPO+", max_size=14),
)


def _numbers(events: list[LineEvent]) -> list[str]:
    out: list[str] = []
    for event in events:
        if isinstance(event, CallerId) and event.number is not None:
            out.append(event.number)
        if isinstance(event, Dialed):
            out.append(event.digits)
    return out


@given(_TEXT)
def test_random_text_never_crashes_or_invents_a_number(text: str) -> None:
    session = NcidSession("ncid")
    session.feed("300 End of connection startup", T0)
    events = session.feed(text, T0)
    for number in _numbers(events):
        assert number in text
    assert all(isinstance(e, LineEvent) for e in events)


@given(_LABELS, st.lists(_FIELD, max_size=8), st.booleans())
def test_random_call_lines_never_crash_or_invent_a_number(
    label: str, fields: list[tuple[str, str]], truncate: bool
) -> None:
    text = f"{label}: *" + "".join(f"{name}*{value}*" for name, value in fields)
    if truncate:
        text = text[: len(text) // 2]
    session = NcidSession("ncid")
    session.feed("300 End of connection startup", T0)
    events = session.feed(text, T0)
    for number in _numbers(events):
        assert number in text
        assert number.strip() == number
    errors = [e for e in events if isinstance(e, LineError)]
    assert all(e.raw == text for e in errors)
