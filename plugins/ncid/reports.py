"""What NCID's end-of-call and blocked-caller lines say about a call's times, pure.

:mod:`plugins.ncid.protocol` turns ``END:`` into hook events and ``HUP:``/``BLK:``
into caller ID; this module adds the device's own account of the call
(:class:`~agent.events.CallReport`), which the tracker uses within bounds:

- ``END:`` (a gateway's end of call, NCID API "Feature Set 2") carries ``SCALL``
  and ``ECALL``, the call's start and end as ``mm/dd/yyyy hh:mm:ss`` on the
  server's clock. Their difference is the call's length from its first ring
  (whatever the server's time zone); ``HTYPE`` BYE means it was answered,
  CANCEL that the caller gave up first. The hook events that follow end it.
- ``HUP:`` (the server hung up on a blacklisted caller) and ``BLK:`` (a device
  blocked one) come instead of ``CID:``, and nothing ends that call but the
  ring time-out; the report ends it at once, unanswered and blocked.

Never raises: a line that is not one of these, or whose times do not parse,
gives no report (or one without counts).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from agent.events import CallReport, LineError, LineEvent
from plugins.ncid.protocol import NcidLine, NcidSession, NcidSyntaxError, parse_line

#: How ``SCALL`` and ``ECALL`` are written.
CALL_TIME_FORMAT = "%m/%d/%Y %H:%M:%S"
#: A start-to-end length beyond this (a day) is a clock or parsing fault, not a call.
MAX_DURATION = 86_400.0


def _call_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value.strip(), CALL_TIME_FORMAT)
    except ValueError:
        return None


def duration_of(scall: str | None, ecall: str | None) -> float | None:
    """Seconds from ``SCALL`` to ``ECALL``, or None when either is missing, unreadable or the span absurd."""
    start, end = _call_time(scall), _call_time(ecall)
    if start is None or end is None:
        return None
    seconds = (end - start).total_seconds()
    if seconds < 0 or seconds > MAX_DURATION:
        return None
    return seconds


def report_for(
    raw: str, *, device_id: str, label_of: Callable[[str | None], str], at: datetime
) -> CallReport | None:
    """The call report a live server line means, or None (most lines mean none).

    :param raw: one server line, as read.
    :param label_of: NCID's ``LINE`` value -> our line label (the session's mapping).
    :param at: when the line arrived.
    """
    try:
        line: NcidLine = parse_line(raw)
    except NcidSyntaxError:
        return None
    if line.forwarded or line.is_log:
        return None
    fields = line.fields
    if line.type in ("HUP", "BLK"):
        if "NMBR" not in fields and "NAME" not in fields:
            return None  # the protocol reports this line as an error
        return CallReport(
            device_id=device_id,
            line=label_of(fields.get("LINE")),
            at=at,
            answered=False,
            ends_call=True,
            blocked=True,
        )
    if line.type != "END":
        return None
    htype = fields.get("HTYPE", "").upper()
    if htype not in ("BYE", "CANCEL"):
        return None
    return CallReport(
        device_id=device_id,
        line=label_of(fields.get("LINE")),
        at=at,
        duration=duration_of(fields.get("SCALL"), fields.get("ECALL")),
        answered=htype == "BYE",
        device_start=fields.get("SCALL"),
        device_end=fields.get("ECALL"),
    )


def feed_with_report(session: NcidSession, raw: bytes, at: datetime) -> list[LineEvent]:
    """One server line -> its events, with the server's own account of the call where it gives one.

    What the live device and ``cti-agent decode`` both do with a line. An
    end-of-call report goes before the hook events that end the call (the
    tracker keeps it for the end); a blocked caller's report after the caller
    ID it ends. A line the session reports as an error gives no report.
    """
    events = session.feed(raw, at)
    # The report reads only ASCII fields (times, line, type): Latin-1 keeps every byte.
    report = report_for(
        raw.decode("latin-1"), device_id=session.device_id, label_of=session.line_label, at=at
    )
    if report is None or any(isinstance(event, LineError) for event in events):
        return events
    return [*events, report] if report.ends_call else [report, *events]


__all__ = ["CALL_TIME_FORMAT", "duration_of", "feed_with_report", "report_for"]
