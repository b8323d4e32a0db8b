"""What caller-ID boxes that are not modems send over a serial port, parsed (pure: no I/O, no clock).

Three families, one :class:`Parser` each (``Parser("auto")`` picks one from the
first records):

``binary``
    Raw decoder boxes built on the Holtek HT9032D and the CTI Comet USB pass on
    the demodulated FSK bytes as they come off the line: channel seizure
    (0x55), marks (0xFF), the SDMF/MDMF message of Bellcore GR-30-CORE or
    ETSI EN 300 659-3, and whatever noise the line adds. Messages are found
    and checksum-verified by :func:`agent.callerid.find_messages`.

``netcallerid``
    NetCallerID (Ugotcall) boxes, 4800 8N1. One record per call, as documented
    in NCID's "Supported Devices" page (doc/Devices.md, "NetCallerID")::

        ###DATE08082225...NMBR14075551212...NAMEJOHN+++\\r
        ###DATE...NMBR...NAME   -MSG OFF-+++\\r

    ``DATE`` is MMDDHHMM; the second form, with no date and no number, is a
    message-waiting notice, not a call. NCID's page does not show withheld
    numbers; we read ``O`` / ``P`` (or ``OUT-OF-AREA`` / ``PRIVATE``) in NMBR
    or NAME as unavailable / private, as modems' formatted caller ID does.

``tci``
    CallerID.com units (Whozz Calling? serial, "TCI" and "CallerID.com"
    formats), 9600 8N1, one CR LF terminated line per record::

        01 I S 0276 G B3 09/26 11:28 AM 800-240-4637 CallerID.com
        $01 09/26 02:30 PM 8002404637 I CallerID.com
        01 R 11/07 07:43:52      (ring; F off hook, N on hook, H hook flash)

    The record format belongs to the ``whozz`` plugin, whose
    :func:`plugins.whozz.protocol.parse_record` reads every line (its docstring
    cites the manuals); this module only frames the serial stream into lines and
    turns each record into a :class:`ParsedRecord`.

Every record becomes a :class:`ParsedRecord` or, when it cannot be trusted, a
:class:`ParseError` holding the offending text: garbage never becomes a number.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime

from agent.callerid import CallerIdError, CallerIdMessage, find_messages
from agent.events import (
    ALL_LINES,
    Absence,
    CallerId,
    Dialed,
    LineError,
    LineEvent,
    OffHook,
    OnHook,
    Ring,
)
from agent.names import check_encoding, decode_name
from plugins.whozz.protocol import Detail, WhozzParseError, WhozzRecord, parse_record


class Format(enum.StrEnum):
    """The record formats a serial caller-ID box may speak."""

    AUTO = "auto"
    BINARY = "binary"
    NETCALLERID = "netcallerid"
    TCI = "tci"


class Kind(enum.StrEnum):
    """What a record says happened."""

    CALLER_ID = "caller_id"
    RING = "ring"
    OFF_HOOK = "off_hook"
    ON_HOOK = "on_hook"
    HOOK_FLASH = "hook_flash"
    DIALED = "dialed"
    CALL_END = "call_end"
    NOTICE = "notice"  # not about a call (message waiting): no line event


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedRecord:
    """One trusted record. ``line`` is the box's own line label, None for one-line boxes."""

    kind: Kind
    format: Format
    raw: str
    line: str | None = None
    number: str | None = None
    name: str | None = None
    absence: Absence | None = None
    name_absence: Absence | None = None
    datetime: str | None = None  # as the box sent it
    digits: str | None = None
    direction: str | None = None  # "in" / "out" where the box tells
    duration: int | None = None  # seconds, on end-of-call records
    message: CallerIdMessage | None = None


@dataclass(frozen=True, slots=True)
class ParseError:
    """Bytes that are not a trusted record, with why and the offending text (hex for binary)."""

    reason: str
    raw: str


Item = ParsedRecord | ParseError

_ABSENCE_WORDS = {
    "O": Absence.UNAVAILABLE,
    "OUT-OF-AREA": Absence.UNAVAILABLE,
    "OUT OF AREA": Absence.UNAVAILABLE,
    "P": Absence.PRIVATE,
    "PRIVATE": Absence.PRIVATE,
}
_NUMBER_RE = re.compile(r"[0-9+*#][0-9+*#\-]*")


def _text(data: bytes) -> str:
    return data.decode("latin-1")


# -- binary -------------------------------------------------------------------------


class _BinaryParser:
    """Finds messages with :func:`find_messages`; adjacent junk is reported as one error.

    Junk is held until a message follows it or :meth:`flush` is called, so a run
    of noise is one error however the serial reads slice it.
    """

    _GENERIC = "no caller-ID message in data"

    def __init__(self, name_encoding: str = "auto") -> None:
        self.name_encoding = name_encoding
        self._buffer = b""
        self._junk = b""
        self._junk_reason: str | None = None

    @property
    def pending(self) -> int:
        return len(self._buffer) + len(self._junk)

    def feed(self, data: bytes) -> list[Item]:
        self._buffer += data
        found, consumed = find_messages(self._buffer, name_encoding=self.name_encoding)
        self._buffer = self._buffer[consumed:]
        out: list[Item] = []
        for item in found:
            if isinstance(item, CallerIdError):
                self._junk += item.raw
                if self._junk_reason in (None, self._GENERIC):
                    self._junk_reason = item.reason
                continue
            out.extend(self._take_junk())
            out.append(
                ParsedRecord(
                    kind=Kind.CALLER_ID,
                    format=Format.BINARY,
                    raw=item.raw.hex(" "),
                    number=item.number,
                    name=item.name,
                    absence=item.absence,
                    name_absence=item.name_absence,
                    datetime=item.datetime,
                    direction="in",
                    message=item,
                )
            )
        return out

    def _take_junk(self) -> list[Item]:
        junk, self._junk = self._junk, b""
        reason, self._junk_reason = self._junk_reason, None
        return [ParseError(reason or self._GENERIC, junk.hex(" "))] if junk else []

    def flush(self) -> list[Item]:
        out = self._take_junk()
        leftover, self._buffer = self._buffer, b""
        if leftover.strip(b"\x55\xaa\xff\x00"):
            out.append(ParseError("incomplete caller-ID message", leftover.hex(" ")))
        return out


# -- NetCallerID --------------------------------------------------------------------

_NCID_RECORD = re.compile(
    rb"###DATE(?P<date>[^.]*)\.\.\.NMBR(?P<number>.*?)\.\.\.NAME(?P<name>.*?)\+\+\+", re.DOTALL
)
_NCID_MAX = 128  # a record is about 50 bytes; more without "+++" means garbage


class _NetCallerIdParser:
    """Records between ``###`` and ``+++``; text outside them is junk, reported as one error per run."""

    def __init__(self, name_encoding: str = "auto") -> None:
        self.name_encoding = name_encoding
        self._buffer = b""
        self._junk = b""

    @property
    def pending(self) -> int:
        return len(self._buffer) + len(self._junk.strip())

    def feed(self, data: bytes) -> list[Item]:
        self._buffer += data
        out: list[Item] = []
        while True:
            start = self._buffer.find(b"###")
            if start < 0:
                # Keep a trailing "#" or "##": it may be the start of the next record.
                keep = len(self._buffer) - len(self._buffer.rstrip(b"#"))
                self._junk += self._buffer[: len(self._buffer) - keep]
                self._buffer = self._buffer[len(self._buffer) - keep :]
                return out
            self._junk += self._buffer[:start]
            self._buffer = self._buffer[start:]
            end = self._buffer.find(b"+++")
            if end < 0:
                if len(self._buffer) > _NCID_MAX:
                    # No end marker where one must be: drop up to the next record start.
                    nxt = self._buffer.find(b"###", 3)
                    cut = nxt if nxt > 0 else len(self._buffer)
                    out.extend(self._take_junk())
                    out.append(ParseError("NetCallerID record without end marker", _text(self._buffer[:cut])))
                    self._buffer = self._buffer[cut:]
                    continue
                return out
            out.extend(self._take_junk())
            nxt = self._buffer.find(b"###", 3)
            if 0 < nxt < end:
                # A record started again before this one ended: this one is cut short.
                out.append(ParseError("NetCallerID record cut short", _text(self._buffer[:nxt])))
                self._buffer = self._buffer[nxt:]
                continue
            record, self._buffer = self._buffer[: end + 3], self._buffer[end + 3 :]
            out.append(self._record(record))

    def _take_junk(self) -> list[Item]:
        junk, self._junk = self._junk, b""
        return [ParseError("not a NetCallerID record", _text(junk))] if junk.strip() else []

    def _record(self, record: bytes) -> Item:
        raw = _text(record)
        match = _NCID_RECORD.fullmatch(record)
        if match is None:
            return ParseError("malformed NetCallerID record", raw)
        date, number = (_text(match[k]).strip() for k in ("date", "number"))
        try:
            name = decode_name(match["name"].strip(), self.name_encoding)
        except ValueError as exc:
            return ParseError(f"bad NetCallerID name ({exc})", raw)
        if date and not (len(date) == 8 and date.isdigit()):
            return ParseError(f"bad NetCallerID date {date!r}", raw)
        if not name.isprintable():
            return ParseError("bad NetCallerID name", raw)
        if not date and not number:
            return ParsedRecord(kind=Kind.NOTICE, format=Format.NETCALLERID, raw=raw, name=name or None)
        absence = _ABSENCE_WORDS.get(number.upper())
        if absence is not None:
            number = ""
        elif number and not _NUMBER_RE.fullmatch(number):
            return ParseError(f"bad NetCallerID number {number!r}", raw)
        name_absence = _ABSENCE_WORDS.get(name.upper()) if len(name) == 1 else None
        return ParsedRecord(
            kind=Kind.CALLER_ID,
            format=Format.NETCALLERID,
            raw=raw,
            number=number or None,
            name=None if name_absence else (name or None),
            absence=absence,
            name_absence=name_absence,
            datetime=date or None,
            direction="in",
        )

    def flush(self) -> list[Item]:
        out = self._take_junk()
        leftover, self._buffer = self._buffer, b""
        if leftover.strip():
            out.append(ParseError("incomplete NetCallerID record", _text(leftover)))
        return out


# -- CallerID.com / TCI -------------------------------------------------------------

_TCI_DETAIL_KINDS = {
    Detail.RING: Kind.RING,
    Detail.OFF_HOOK: Kind.OFF_HOOK,
    Detail.ON_HOOK: Kind.ON_HOOK,
    Detail.HOOK_FLASH: Kind.HOOK_FLASH,
}
_TCI_MAX_LINE = 160  # records are 70-odd characters


class _TciParser:
    """One record per line; each line is judged on its own (a bad one is one error)."""

    def __init__(self, name_encoding: str = "auto") -> None:
        self.name_encoding = name_encoding
        self._buffer = b""

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Item]:
        self._buffer += data
        out: list[Item] = []
        while True:
            cut = self._buffer.find(b"\n")
            if cut < 0:
                break
            line, self._buffer = self._buffer[:cut], self._buffer[cut + 1 :]
            item = parse_tci_line(_text(line), name_encoding=self.name_encoding)
            if item is not None:
                out.append(item)
        if len(self._buffer) > _TCI_MAX_LINE:
            out.append(ParseError("line too long for a CallerID.com record", _text(self._buffer)))
            self._buffer = b""
        return out

    def flush(self) -> list[Item]:
        leftover, self._buffer = self._buffer, b""
        if leftover.strip():
            return [ParseError("incomplete CallerID.com record", _text(leftover))]
        return []


def parse_tci_line(text: str, *, name_encoding: str = "auto") -> Item | None:
    """One CallerID.com / TCI record line (without its line end); None for a blank line.

    The line is read by :func:`plugins.whozz.protocol.parse_record`; a line it
    refuses is a :class:`ParseError` with its reason. ``text`` holds the line's
    bytes one Latin-1 character each (the columns are bytes); the name is read
    with ``name_encoding``.
    """
    raw = text.rstrip("\r\n")
    if not raw.strip("\r\n\x00 "):
        return None
    try:
        record = parse_record(raw, name_encoding=name_encoding)
    except WhozzParseError as exc:
        return ParseError(str(exc), raw)
    return _tci_item(record, raw)


def _tci_item(record: WhozzRecord, raw: str) -> Item:
    label = str(record.line)  # "01" -> "1": the label lines are configured with
    # As the box sent them, without the blank that pads a leading zero.
    stamp = f"{record.date.strip()} {record.time.strip()}"
    if record.detail is not None:
        return ParsedRecord(
            kind=_TCI_DETAIL_KINDS[record.detail], format=Format.TCI, raw=raw, line=label, datetime=stamp
        )
    direction = "in" if record.inbound else "out"
    number, name = record.number, record.name
    absence, name_absence = record.absence, record.name_absence
    if not record.checksum_ok:
        if record.start:
            return ParseError("the box reports a bad caller-ID checksum", raw)
        # The call did end; only its caller ID is not to be trusted.
        number = name = None
        absence = name_absence = None
    if not record.start:
        return ParsedRecord(
            kind=Kind.CALL_END,
            format=Format.TCI,
            raw=raw,
            line=label,
            number=number,
            name=name,
            absence=absence,
            name_absence=name_absence,
            datetime=stamp,
            direction=direction,
            duration=record.duration,
        )
    if not record.inbound:
        if number is None:
            return ParseError("outbound record without a number", raw)
        return ParsedRecord(
            kind=Kind.DIALED,
            format=Format.TCI,
            raw=raw,
            line=label,
            digits=number,
            datetime=stamp,
            direction=direction,
        )
    return ParsedRecord(
        kind=Kind.CALLER_ID,
        format=Format.TCI,
        raw=raw,
        line=label,
        number=number,
        name=name,
        absence=absence,
        name_absence=name_absence,
        datetime=stamp,
        direction=direction,
    )


# -- the parser ---------------------------------------------------------------------

_AUTO_MAX = 1024  # bytes looked at before giving up on recognising the format


class Parser:
    """Bytes from a box in, records out; keeps partial records between calls.

    With ``format="auto"`` nothing comes out until the format is recognised
    (a NetCallerID ``###DATE``, a whole CallerID.com line, or a checksum-valid
    SDMF/MDMF message); then everything seen so far is parsed in that format.
    Data that matches no format within 1 KiB comes back as one error and is
    dropped, and recognition starts over.
    """

    def __init__(self, format: Format | str = Format.AUTO, *, name_encoding: str = "auto") -> None:
        name_encoding = check_encoding(name_encoding)
        self.name_encoding = name_encoding
        self._format = Format(format)
        self._impl: _BinaryParser | _NetCallerIdParser | _TciParser | None = None
        self._probe = b""
        if self._format is not Format.AUTO:
            self._impl = _make(self._format, name_encoding)

    @property
    def format(self) -> Format:
        """The format in use (``auto`` until recognised)."""
        return self._format

    @property
    def pending(self) -> int:
        """Bytes held back as the start of a record not complete yet."""
        return self._impl.pending if self._impl is not None else len(self._probe)

    def feed(self, data: bytes) -> list[Item]:
        """Parse ``data`` (any chunk of the byte stream); return the records it completes."""
        if self._impl is not None:
            return self._impl.feed(bytes(data))
        self._probe += data
        detected = detect(self._probe)
        if detected is None:
            if len(self._probe) > _AUTO_MAX:
                junk, self._probe = self._probe, b""
                return [ParseError("data in no known caller-ID box format", junk.hex(" "))]
            return []
        self._format = detected
        self._impl = _make(detected, self.name_encoding)
        probe, self._probe = self._probe, b""
        return self._impl.feed(probe)

    def flush(self) -> list[Item]:
        """Give up on a partial record (the box went quiet): it comes back as an error."""
        if self._impl is not None:
            return self._impl.flush()
        probe, self._probe = self._probe, b""
        return [ParseError("data in no known caller-ID box format", probe.hex(" "))] if probe.strip() else []


def _make(fmt: Format, name_encoding: str = "auto") -> _BinaryParser | _NetCallerIdParser | _TciParser:
    if fmt is Format.BINARY:
        return _BinaryParser(name_encoding)
    if fmt is Format.NETCALLERID:
        return _NetCallerIdParser(name_encoding)
    return _TciParser(name_encoding)


def detect(data: bytes) -> Format | None:
    """The format of the first records in ``data``, or None while it cannot be told."""
    if b"###DATE" in data:
        return Format.NETCALLERID
    for line in data.split(b"\n")[:-1]:
        item = parse_tci_line(_text(line))
        if isinstance(item, ParsedRecord):
            return Format.TCI
    found, _ = find_messages(data)
    if any(isinstance(item, CallerIdMessage) for item in found):
        return Format.BINARY
    return None


def to_events(item: Item, *, device_id: str, at: datetime, line: str = "1") -> list[LineEvent]:
    """The line events of one parsed item; ``line`` labels records of one-line boxes.

    Errors become :class:`LineError` on every line (``"*"``): which line they
    concern is unknown. Hook flashes and notices carry no line event.
    """
    if isinstance(item, ParseError):
        return [LineError(device_id=device_id, line=ALL_LINES, at=at, error=item.reason, raw=item.raw)]
    label = item.line or line
    match item.kind:
        case Kind.CALLER_ID:
            return [
                CallerId(
                    device_id=device_id,
                    line=label,
                    at=at,
                    number=item.number,
                    name=item.name,
                    absence=item.absence if item.number is None else None,
                    name_absence=item.name_absence if item.name is None else None,
                    device_time=item.datetime,
                    raw=item.raw,
                )
            ]
        case Kind.RING:
            return [Ring(device_id=device_id, line=label, at=at)]
        case Kind.OFF_HOOK:
            return [OffHook(device_id=device_id, line=label, at=at)]
        case Kind.ON_HOOK | Kind.CALL_END:
            # An end-of-call record ends the call also when detail mode (hook
            # events) is off; after an on-hook the tracker ignores it.
            return [OnHook(device_id=device_id, line=label, at=at)]
        case Kind.DIALED:
            return [Dialed(device_id=device_id, line=label, at=at, digits=item.digits or "", complete=True)]
        case _:
            return []


__all__ = [
    "Format",
    "Item",
    "Kind",
    "ParseError",
    "ParsedRecord",
    "Parser",
    "detect",
    "parse_tci_line",
    "to_events",
]
