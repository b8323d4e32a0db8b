"""CallerID.com "Whozz Calling?" records and Ethernet Link datagrams, pure: bytes in, events out.

Sources (cited where used below):

- [WC48] CallerID.com, *Whozz Calling? 4 & 8 Line* manual, "Comprehensive Format"
  (http://www.callerid.com/Manuals/wc48-man/comprehensive.html) and *Whozz Calling? 2
  Line*, "Data Format" (http://www.callerid.com/Manuals/wc2-man/data_format.html)::

      01 I S 0276 G B3 09/26 11:28 AM 800-240-4637 CallerID.com
      line, I/O (inbound/outbound), S/E (start/end), duration in seconds (sent at the
      end of a call), G/B (caller-ID checksum good/bad), ring type A-D and ring count
      (sent at the end), date, 12-hour time, AM/PM, number (14 chars), name (15 chars);
      one space between fields.

- [WC2D] *Whozz Calling? 2 Line*, "Operating Commands Discussion"
  (http://www.callerid.com/Manuals/wc2-man/indepth_detail.html): detail records of
  Deluxe units, "the line number, followed by the abbreviation of the event, and
  finally, the date and time", the date offset to column 13, 24-hour time::

      01 R     11/07 07:43:52      ring        01 F     11/07 17:45:04   off hook
      02 N     11/07 10:46:23      on hook     01 H     11/07 22:11:08   hook flash

- [WC48L] *Whozz Calling? 4 & 8 Line*, "Limited Format"
  (http://www.callerid.com/Manuals/wc48-man/limited.html), sent when the ``x`` toggle
  is set: a leading ``$`` ("c" toggle set), line, date, 12-hour time, AM/PM, the
  number with dashes removed (14 chars), ``I``/``O``, the name (15 chars)::

      $01 09/26 02:30 PM 8002404637 I CallerID.com

  The manual says fields are separated by spaces; its example pads none of them.

- [BASIC] *Whozz Calling? Basic POS 2* manual, Fig. 3a: Basic units always send
  ``I`` and ``S``, duration ``0000`` and ring ``A0``; leading zeroes of the date are
  sent as spaces; "Private" or "Out-of-Area" can appear in the number field.

- [EL] *Ethernet Link Supplement* (http://callerid.com/downloads/manuals/el/) and its
  reading in NCID's ``wc2ncid`` gateway: every UDP packet (port 3520) starts with a
  binary header ``^^<U>`` + 6-byte unit number + ``<S>`` + 6-byte serial number, then
  a ``$`` that "may or may not be there", then the record. The unit and serial
  numbers are binary and may contain any byte, ``$`` included, so the header is
  parsed by position, never by searching for ``$``.

Units send each packet more than once; :class:`Deduper` drops the repeats.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, TypedDict

from agent.events import Absence, CallerId, CallReport, Dialed, LineError, LineEvent, OffHook, OnHook, Ring
from agent.names import decode_name

logger = logging.getLogger(__name__)

#: The UDP port units send to [EL].
DEFAULT_PORT = 3520
MAX_LINES = 32

UNIT_TAG = b"^^<U>"
SERIAL_TAG = b"<S>"
#: Byte offsets of the header fields [EL]: tag 0-4, unit 5-10, tag 11-13, serial 14-19.
UNIT_SLICE = slice(5, 11)
SERIAL_OFFSET = 11
SERIAL_SLICE = slice(14, 20)
HEADER_LENGTH = 20
SEPARATOR = 0x24  # "$"

# Between the ring field and the date, and the date and the time, serial units in
# the TCI layout [BASIC] and other senders pad with more than one space: " +?" takes
# the extra ones and leaves the date/time its single leading pad, as sent.
_CALL = re.compile(
    r"^(?P<line>\d{2}) (?P<direction>[IO]) (?P<phase>[SE]) (?P<duration>\d{4}) (?P<checksum>[GB])"
    r" (?P<ring>\S{2}) +?(?P<date>[ \d]?\d/[ \d]?\d) +?(?P<time>[ \d]?\d:\d\d) (?P<ampm>[AP]M)"
    r"(?: (?P<rest>.*))?$"
)
_DETAIL = re.compile(
    r"^(?P<line>\d{2}) (?P<event>[A-Z]) +?(?P<date>[ \d]?\d/[ \d]?\d) +(?P<time>\d\d:\d\d:\d\d)\s*$"
)
# [WC48L]; the "$" is there only with the "c" toggle.
_LIMITED = re.compile(
    r"^\$?(?P<line>\d{2}) +?(?P<date>[ \d]?\d/[ \d]?\d) +?(?P<time>[ \d]?\d:\d\d) (?P<ampm>[AP]M)"
    r" +(?P<number>\S+) +(?P<direction>[IO])(?: +(?P<name>.*))?$"
)
#: What a number field holds when it holds a number: digits, dashes, and the
#: "+", "*", "#" a line can carry. Anything else is line noise, never a number.
_NUMBER = re.compile(r"[0-9+*#][0-9+*#\-]*")
_NUMBER_WIDTH = 14

_PRIVATE = frozenset({"PRIVATE", "P"})
_UNAVAILABLE = frozenset({"OUT-OF-AREA", "OUT OF AREA", "O"})


class Kind(enum.StrEnum):
    """What a record reports."""

    CALL = "call"  # a start or end record
    DETAIL = "detail"  # ring, off hook, on hook, hook flash (Deluxe units)


class Detail(enum.StrEnum):
    """Detail record events [WC2D]."""

    RING = "R"
    OFF_HOOK = "F"
    ON_HOOK = "N"
    HOOK_FLASH = "H"


@dataclass(frozen=True, slots=True)
class WhozzRecord:
    """One record of a Whozz Calling unit, as it sent it (stripped of its line ending).

    ``number`` is the number field exactly as sent, or None when it holds no number
    (blank, or "Private"/"Out-of-Area", which ``absence`` then says). ``duration``
    is in seconds and is only meaningful on end records.
    """

    kind: Kind
    line: int
    text: str
    inbound: bool = True
    start: bool = True
    duration: int = 0
    checksum_ok: bool = True
    ring_type: str | None = None
    rings: int | None = None
    date: str = ""
    time: str = ""
    number: str | None = None
    absence: Absence | None = None
    name: str | None = None
    name_absence: Absence | None = None
    detail: Detail | None = None
    limited: bool = False  # the limited format [WC48L]: no start/end, checksum, ring or duration

    @property
    def device_time(self) -> str:
        """Date and time as the unit sent them (``09/26 11:28 AM``)."""
        return f"{self.date} {self.time}"


@dataclass(frozen=True, slots=True)
class WhozzPacket:
    """An Ethernet Link datagram: its header (when it has one) and its record."""

    unit: int | None
    serial: str | None
    record: WhozzRecord


class WhozzParseError(ValueError):
    """Text or bytes that are not a Whozz Calling record; the message says why."""


class NotARecord(WhozzParseError):
    """A well-formed packet that carries no call record (a reply to a unit command)."""


def _absence(value: str) -> Absence | None:
    upper = value.strip().upper()
    if upper in _PRIVATE:
        return Absence.PRIVATE
    if upper in _UNAVAILABLE:
        return Absence.UNAVAILABLE
    return None


def _number_and_name(rest: str) -> tuple[str, str]:
    """Split what follows AM/PM into the number and name fields.

    The number field is 14 characters [WC48], left-justified by CallerID.com units and
    right-justified in TCI mode [BASIC]; some senders do not pad it. Use the columns
    when they hold one token followed by a blank, else the first word.
    """
    column = rest[:_NUMBER_WIDTH]
    if " " not in column.strip() and (len(rest) <= _NUMBER_WIDTH or rest[_NUMBER_WIDTH] == " "):
        return column.strip(), rest[_NUMBER_WIDTH + 1 :].strip()
    number, _, name = rest.strip().partition(" ")
    return number, name.strip()


def parse_record(text: str, *, name_encoding: str = "auto") -> WhozzRecord:
    """Parse one record line as a unit sends it over UDP or a serial port.

    Reads the comprehensive format [WC48] in both number layouts [BASIC], detail
    records [WC2D] and the limited format [WC48L]. Raises :class:`WhozzParseError`
    when the text is not a record. ``text`` holds the record's bytes one Latin-1
    character each, so the fixed columns are byte columns; the name is then read
    with ``name_encoding`` (:func:`agent.callerid.decode_name`).
    """
    # Blanks and NULs around a record are serial-line padding, not part of it.
    line_text = text.strip("\r\n\x00 ")
    match = _CALL.match(line_text)
    if match:
        return _call_record(line_text, match, name_encoding)
    match = _DETAIL.match(line_text)
    if match:
        return _detail_record(line_text, match)
    match = _LIMITED.match(line_text)
    if match:
        return _limited_record(line_text, match, name_encoding)
    raise WhozzParseError("not a Whozz Calling record")


def _line_number(text: str) -> int:
    number = int(text)
    if not 1 <= number <= MAX_LINES:
        raise WhozzParseError(f"line number {number} out of range 1-{MAX_LINES}")
    return number


class _Fields(NamedTuple):
    number: str | None
    absence: Absence | None
    name: str | None
    name_absence: Absence | None


def _number_fields(number_text: str, name_text: str, name_encoding: str = "auto") -> _Fields:
    """The number, name and their absences of a call record, checked.

    "Private"/"Out-of-Area" (or ``P``/``O``) stand in either field [BASIC]. A number
    field with other letters, or a name with control characters, is a record damaged
    on the line: an error, so that garbage never becomes a number.
    """
    absence = _absence(number_text) if number_text else None
    number: str | None = number_text or None
    if absence is not None:
        number = None
    elif number is not None:
        if not any(ch in "0123456789" for ch in number):
            raise WhozzParseError(f"number field {number_text!r} holds no digits")
        if not _NUMBER.fullmatch(number):
            raise WhozzParseError(f"number field {number_text!r} holds characters no unit sends")
    # The text is the record's bytes one Latin-1 character each (columns are bytes);
    # only the name is read in its real encoding, sliced from its column first.
    try:
        name_text = decode_name(name_text.encode("latin-1"), name_encoding, cut=True)
    except ValueError as exc:
        # A forced name_encoding the bytes are not in: the record's error, not the device's crash.
        raise WhozzParseError(f"name field {name_text!r} ({exc})") from None
    if not name_text.isprintable():
        raise WhozzParseError(f"name field {name_text!r} holds control characters")
    name_absence = _absence(name_text) if name_text else None
    name = None if name_absence is not None else (name_text or None)
    return _Fields(number, absence, name, name_absence)


def _call_record(text: str, match: re.Match[str], name_encoding: str = "auto") -> WhozzRecord:
    line = _line_number(match.group("line"))
    fields = _number_fields(*_number_and_name(match.group("rest") or ""), name_encoding)
    ring = match.group("ring")
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    rings = int(ring[1]) if ring[1] in "0123456789" else None
    return WhozzRecord(
        kind=Kind.CALL,
        line=line,
        text=text,
        inbound=match.group("direction") == "I",
        start=match.group("phase") == "S",
        duration=int(match.group("duration")),
        checksum_ok=match.group("checksum") == "G",
        ring_type=ring[0] if ring[0].isalpha() else None,
        rings=rings,
        date=match.group("date"),
        time=f"{match.group('time')} {match.group('ampm')}",
        number=fields.number,
        absence=fields.absence,
        name=fields.name,
        name_absence=fields.name_absence,
    )


def _limited_record(text: str, match: re.Match[str], name_encoding: str = "auto") -> WhozzRecord:
    """A limited-format record [WC48L], taken as the start of a call with a good checksum.

    The format carries neither (units send it when caller ID arrives).
    """
    line = _line_number(match.group("line"))
    fields = _number_fields(match.group("number"), (match.group("name") or "").strip(), name_encoding)
    return WhozzRecord(
        kind=Kind.CALL,
        line=line,
        text=text,
        inbound=match.group("direction") == "I",
        date=match.group("date"),
        time=f"{match.group('time')} {match.group('ampm')}",
        number=fields.number,
        absence=fields.absence,
        name=fields.name,
        name_absence=fields.name_absence,
        limited=True,
    )


def _detail_record(text: str, match: re.Match[str]) -> WhozzRecord:
    try:
        detail = Detail(match.group("event"))
    except ValueError:
        raise WhozzParseError(f"unknown detail event {match.group('event')!r}") from None
    return WhozzRecord(
        kind=Kind.DETAIL,
        line=_line_number(match.group("line")),
        text=text,
        detail=detail,
        date=match.group("date"),
        time=match.group("time"),
    )


def format_serial(raw: bytes) -> str:
    """The serial number as units print it: ``01-02-030405-06`` (the layout ``wc2ncid`` shows)."""
    digits = raw.hex()
    return f"{digits[0:2]}-{digits[2:4]}-{digits[4:10]}-{digits[10:12]}"


def parse_datagram(data: bytes, *, name_encoding: str = "auto") -> WhozzPacket:
    """Parse one UDP datagram from an Ethernet Link unit.

    A datagram without the ``^^<U>`` header is taken as a bare record (units in
    their unconfigured mode, test senders). Raises :class:`NotARecord` for a
    unit's command replies and :class:`WhozzParseError` for anything else.
    """
    unit: int | None = None
    serial: str | None = None
    body = data
    if data.startswith(UNIT_TAG):
        if len(data) < HEADER_LENGTH or data[SERIAL_OFFSET : SERIAL_OFFSET + len(SERIAL_TAG)] != SERIAL_TAG:
            raise WhozzParseError("truncated Ethernet Link header")
        unit = int.from_bytes(data[UNIT_SLICE], "big")
        serial = format_serial(data[SERIAL_SLICE])
        offset = HEADER_LENGTH
        # "$ at position 20 may or may not be there" [EL]; wc2ncid also skips one at
        # 21. Only these two positions: the binary fields before them are not searched.
        for _ in range(2):
            if len(data) > offset and data[offset] == SEPARATOR:
                offset += 1
        body = data[offset:]
    elif data.startswith(b"^^"):
        raise NotARecord("a unit command or reply, not a call record")
    text = body.decode("latin-1")
    stripped = text.strip("\r\n\x00 ")
    if unit is not None and stripped[:1] == "V":
        raise NotARecord("unit firmware version reply")
    return WhozzPacket(unit=unit, serial=serial, record=parse_record(text, name_encoding=name_encoding))


class Deduper:
    """Drops repeats of a datagram seen within ``window`` seconds. Pure: time comes in.

    Units send each packet several times in a row [EL]. A repeat is byte-for-byte
    identical; two genuinely different events always differ in their record (start
    and end, a detail record's seconds), so identical content inside a short window
    is a repeat.
    """

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._seen: dict[bytes, float] = {}
        self.dropped = 0

    def is_repeat(self, data: bytes, now: float) -> bool:
        """True when ``data`` was seen less than ``window`` seconds before ``now``."""
        if len(self._seen) > 256:
            self._seen = {key: t for key, t in self._seen.items() if now - t < self.window}
        last = self._seen.get(data)
        if last is not None and 0 <= now - last < self.window:
            self.dropped += 1
            return True
        self._seen[data] = now
        return False


def end_report(record: WhozzRecord, *, device_id: str, line: str, at: datetime) -> CallReport | None:
    """The unit's own account of a call from its end record; None for any other record.

    The end record's duration is "the time between when the phone went Off-Hook
    to when it went On-Hook" (CallerID.com's feature table), so it is the call's
    connected time (the tracker never lets it exceed the call's length by our
    clock). Its date and time are the call's start, unchanged at its end [WC48]. A
    zero duration says nothing (unanswered, or a unit that always sends ``0000``
    [BASIC]), so it gives no report.
    """
    if record.kind is not Kind.CALL or record.start or record.limited or record.duration <= 0:
        return None
    duration = float(record.duration)
    return CallReport(
        device_id=device_id,
        line=line,
        at=at,
        talk_seconds=duration if record.inbound else None,
        duration=duration,
        answered=True,
        device_start=record.device_time,
    )


class _Where(TypedDict):
    device_id: str
    line: str
    at: datetime


class WhozzDecoder:
    """Records -> line events for one unit (or several sharing a port). Pure.

    :param device_id: written on every event.
    :param lines: unit line number (``"1"``..``"32"``, or zero-padded ``"01"``) -> our
        line label; unmapped lines are labelled with their number (``"1"``).
    :param detail_records: the unit sends detail records (Deluxe units). Without
        them a start record also counts as the ring that preceded it. The first
        detail record seen switches this on.
    """

    def __init__(
        self, device_id: str, lines: Mapping[str, str] | None = None, *, detail_records: bool = True
    ) -> None:
        self.device_id = device_id
        self.line_map = {str(int(key)): value for key, value in (lines or {}).items()}
        self.detail_records = detail_records

    def line_label(self, line: int) -> str:
        """Our label for the unit's line number."""
        return self.line_map.get(str(line), str(line))

    def events(self, record: WhozzRecord, at: datetime) -> list[LineEvent]:
        """What ``record`` means for the call tracker."""
        label = self.line_label(record.line)
        base = _Where(device_id=self.device_id, line=label, at=at)
        if record.kind is Kind.DETAIL:
            self.detail_records = True
            match record.detail:
                case Detail.RING:
                    return [Ring(**base)]
                case Detail.OFF_HOOK:
                    return [OffHook(**base)]
                case Detail.ON_HOOK:
                    return [OnHook(**base)]
                case _:
                    # A hook flash (call waiting, transfer) changes no call we can see.
                    logger.debug("%s: hook flash on line %s", self.device_id, label)
                    return []
        if not record.start:
            # The end record; with detail records the on-hook came first and the
            # tracker ignores this repeat. The duration is the unit's own count.
            logger.debug(
                "%s: line %s: end of %s call, %d s",
                self.device_id,
                label,
                "inbound" if record.inbound else "outbound",
                record.duration,
            )
            return [OnHook(**base)]
        if not record.inbound:
            if record.number is None:
                return [LineError(**base, error="outbound start record without a number", raw=record.text)]
            return [Dialed(**base, digits=record.number, complete=True)]
        out: list[LineEvent] = []
        if not self.detail_records:
            cadence = record.ring_type if record.ring_type in ("B", "C", "D") else None
            out.append(Ring(**base, cadence=cadence))
        if not record.checksum_ok:
            # The caller-ID message failed its checksum: whatever number it holds may
            # be wrong, so the call goes on unidentified and the text is kept.
            out.append(LineError(**base, error="caller ID with a bad checksum", raw=record.text))
            return out
        out.append(
            CallerId(
                **base,
                number=record.number,
                name=record.name,
                absence=record.absence,
                name_absence=record.name_absence,
                device_time=record.device_time,
                raw=record.text,
            )
        )
        return out


__all__ = [
    "DEFAULT_PORT",
    "Deduper",
    "Detail",
    "Kind",
    "NotARecord",
    "WhozzDecoder",
    "WhozzPacket",
    "WhozzParseError",
    "WhozzRecord",
    "end_report",
    "format_serial",
    "parse_datagram",
    "parse_record",
]
