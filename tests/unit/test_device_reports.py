"""Device-reported call times: NCID END:/HUP:/BLK: and Whozz Calling end records -> CallReport."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from whozz_emulator import build_packet, call_record

from agent.calls import CallTracker, LineIdentity, TrackerConfig
from agent.events import CallerId, CallReport, Disposition, EndReason
from plugins.ncid.reports import duration_of, report_for
from plugins.whozz.config import WhozzConfig
from plugins.whozz.device import WhozzDevice

AT = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


def label(value: str | None) -> str:
    return value or "1"


def ncid(raw: str) -> CallReport | None:
    return report_for(raw, device_id="ncid", label_of=label, at=AT)


@pytest.mark.parametrize(
    ("scall", "ecall", "expected"),
    [
        ("05/06/2024 09:00:00", "05/06/2024 09:01:05", 65.0),
        ("05/06/2024 23:59:50", "05/07/2024 00:00:10", 20.0),
        ("05/06/2024 09:00:00", "05/06/2024 08:59:00", None),  # ends before it starts
        ("05/06/2024 09:00:00", "05/09/2024 09:00:00", None),  # three days: a clock fault
        ("-", "05/06/2024 09:00:00", None),
        (None, None, None),
    ],
)
def test_duration_of_scall_and_ecall(scall: str | None, ecall: str | None, expected: float | None) -> None:
    assert duration_of(scall, ecall) == expected


def test_end_bye_is_answered_with_its_length_and_cancel_is_not() -> None:
    bye = ncid(
        "END: *HTYPE*BYE*DATE*05062024*TIME*0901*SCALL*05/06/2024 09:00:00*ECALL*05/06/2024 09:01:05*"
        "CTYPE*IN*LINE*SIP*NMBR*13812345678*NAME*-*"
    )
    assert bye is not None
    assert (bye.line, bye.duration, bye.answered, bye.ends_call, bye.blocked) == (
        "SIP",
        65.0,
        True,
        False,
        False,
    )
    assert (bye.device_start, bye.device_end) == ("05/06/2024 09:00:00", "05/06/2024 09:01:05")
    cancel = ncid("END: *HTYPE*CANCEL*SCALL*05/06/2024 09:00:00*ECALL*05/06/2024 09:00:12*LINE*SIP*")
    assert cancel is not None
    assert (cancel.answered, cancel.duration) == (False, 12.0)


@pytest.mark.parametrize("kind", ["HUP", "BLK"])
def test_blocked_callers_end_their_call(kind: str) -> None:
    report = ncid(f"{kind}: *DATE*05062024*TIME*0900*LINE*POTS*NMBR*4005551111*MESG*NONE*NAME*JUNK*")
    assert report is not None
    assert (report.line, report.answered, report.ends_call, report.blocked) == ("POTS", False, True, True)


@pytest.mark.parametrize(
    "raw",
    [
        "CID: *DATE*05062024*TIME*0900*LINE*POTS*NMBR*4005551111*MESG*NONE*NAME*X*",
        "HUPLOG: *DATE*05062024*TIME*0900*LINE*POTS*NMBR*4005551111*MESG*NONE*NAME*X*",
        "+HUP: *DATE*05062024*TIME*0900*LINE*POTS*NMBR*4005551111*MESG*NONE*NAME*X*",
        "END: *HTYPE*WHAT*",
        "HUP: *DATE*05062024*",
        "complete garbage \x00\x01",
        "",
    ],
)
def test_other_lines_give_no_report(raw: str) -> None:
    assert ncid(raw) is None


def test_the_tracker_ends_a_blocked_call_at_once() -> None:
    tracker = CallTracker(
        LineIdentity(seat="s", device_id="ncid", line="POTS"), TrackerConfig(reports_hook=False)
    )
    report = ncid("HUP: *DATE*05062024*TIME*0900*LINE*POTS*NMBR*4005551111*MESG*NONE*NAME*JUNK*")
    assert report is not None
    tracker.feed(CallerId(device_id="ncid", line="POTS", at=AT, number="4005551111"), AT)
    (ended,) = tracker.feed(report, AT)
    assert (ended.call.disposition, ended.call.end_reason) == (Disposition.MISSED, EndReason.BLOCKED)


# -- Whozz Calling ---------------------------------------------------------------------


def whozz(detail_records: bool, *records: str) -> list[object]:
    device = WhozzDevice("wc", WhozzConfig(listen="127.0.0.1:0", detail_records=detail_records))
    out: list[object] = []
    for n, record in enumerate(records):
        out += device.receive(build_packet(record), ("127.0.0.1", 3520), float(n * 10), AT)
    return out


def test_a_basic_unit_end_record_reports_its_duration_before_the_on_hook() -> None:
    events = whozz(
        False,
        call_record(2, when=AT, number="13812345678"),
        call_record(2, start=False, duration=95, when=AT, number="13812345678"),
    )
    assert [e.kind for e in events] == ["ring", "caller_id", "call_report", "on_hook"]  # type: ignore[attr-defined]
    report = events[2]
    assert isinstance(report, CallReport)
    assert (report.line, report.talk_seconds, report.duration, report.answered) == ("2", 95.0, 95.0, True)


def test_no_report_from_a_zero_count_or_a_unit_with_detail_records() -> None:
    zero = whozz(False, call_record(1, when=AT), call_record(1, start=False, duration=0, when=AT))
    assert not any(isinstance(e, CallReport) for e in zero)
    deluxe = whozz(True, call_record(1, when=AT), call_record(1, start=False, duration=40, when=AT))
    assert not any(isinstance(e, CallReport) for e in deluxe)


@pytest.mark.parametrize(
    ("detail_records", "end_records", "reports_end"),
    [(False, True, True), (False, False, False), (True, True, False), (True, False, False)],
)
def test_only_a_hook_blind_unit_said_to_send_end_records_waits_for_them(
    detail_records: bool, end_records: bool, reports_end: bool
) -> None:
    # A Basic unit sends start records only: waiting for an end record would hold its calls for hours.
    config = WhozzConfig(listen="127.0.0.1:0", detail_records=detail_records, end_records=end_records)
    device = WhozzDevice("wc", config)
    assert (device.reports_hook, device.reports_end) == (detail_records, reports_end)
