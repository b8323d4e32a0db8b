"""The one decoder of on-hook caller-ID data messages (pure: no I/O, no clock).

Every device that hands us the demodulated bytes of a caller-ID burst uses it:
the ``hayes`` plugin for the hex dumps of ``AT+VCID=2``, ``serialbox`` for the
binary frames of raw decoder boxes, ``linetap`` after its own FSK demodulation.

Message layout, common to Bellcore GR-30-CORE ("Voiceband Data Transmission
Interface Generic Requirements") and ETSI EN 300 659-3 ("Subscriber line
protocol over the local loop for display (and related) services; Data link
message and parameter codings")::

    message type (1) | message length (1) | message body (length) | checksum (1)

The checksum is the two's complement of the modulo-256 sum of every byte
before it, so all the bytes of a good message, checksum included, sum to 0
modulo 256. A single corrupted byte always breaks that sum, which is why a
corrupted message is an error here and never a wrong number.

- SDMF (GR-30 single data message format, type 0x04): the body is the date and
  time as eight ASCII digits ``MMDDHHMM`` followed by the number, or by a single
  ``O`` (unavailable) or ``P`` (private) when there is no number.
- MDMF (GR-30 multiple data message format; ETSI "call set-up" message, type
  0x80): the body is a sequence of parameters ``type (1) | length (1) | value``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime as _datetime

from agent.events import Absence, CallerId
from agent.names import NAME_ENCODINGS, decode_name

SDMF = 0x04
MDMF = 0x80


class Param(enum.IntEnum):
    """MDMF parameter types (GR-30-CORE and ETSI EN 300 659-3 agree on the ones both define)."""

    DATETIME = 0x01  # GR-30 and ETSI: month, day, hour, minute as 8 ASCII digits
    NUMBER = 0x02  # GR-30 calling number; ETSI calling line identity
    CALLED = 0x03  # GR-30 dialable directory number; ETSI called line identity
    ABSENCE = 0x04  # reason for absence of number: "O" unavailable, "P" private
    CALL_QUALIFIER = 0x06  # GR-30: "L" long distance
    NAME = 0x07  # calling party name
    NAME_ABSENCE = 0x08  # reason for absence of name: "O" / "P"
    CALL_TYPE = 0x11  # ETSI: 0x01 voice call, 0x02 ring-back-when-free, 0x81 message waiting
    REDIRECTING = 0x1A  # ETSI: redirecting number


# SDMF bodies are 8 date digits plus up to 10 digits in GR-30; international
# variants are longer. Bounds keep noise from passing for a message header.
_SDMF_MAX_BODY = 8 + 24
_NUMBER_CHARS = frozenset(b"0123456789+*#")
_ABSENCES = {ord("O"): Absence.UNAVAILABLE, ord("P"): Absence.PRIVATE}
# Bytes a decoder box puts before a message: GR-30 channel seizure (alternating
# 0 and 1 bits, 0x55) and mark signal (all ones, 0xFF), plus idle zeros.
_PREAMBLE = frozenset(b"\x55\xaa\xff\x00")


class CallerIdError(ValueError):
    """A caller-ID message that cannot be trusted; ``str(exc)`` says what is wrong.

    :ivar reason: what is wrong, without the bytes ("bad checksum", "truncated", ...).
    :ivar raw: the offending bytes.
    """

    def __init__(self, reason: str, raw: bytes) -> None:
        super().__init__(f"{reason}: {raw.hex(' ')}" if raw else reason)
        self.reason = reason
        self.raw = bytes(raw)


@dataclass(frozen=True, slots=True)
class CallerIdMessage:
    """One decoded message. ``params`` keeps every parameter, unknown types included."""

    format: str  # "sdmf" | "sdmf-blocked" (SDMF carrying O/P instead of a number) | "mdmf"
    number: str | None
    name: str | None
    absence: Absence | None
    name_absence: Absence | None
    datetime: str | None  # "MMDDHHMM" as sent
    redirecting: str | None
    call_type: int | None
    params: tuple[tuple[int, bytes], ...]
    raw: bytes


def checksum(data: bytes) -> int:
    """The checksum byte that makes ``data`` plus it sum to 0 modulo 256."""
    return (-sum(data)) & 0xFF


def decode_message(data: bytes, *, name_encoding: str = "auto") -> CallerIdMessage:
    """Decode exactly one message: type, length, body and checksum.

    Raises :class:`CallerIdError` when it is truncated, has bytes after the
    checksum, has a bad checksum, an unknown message type or a malformed parameter.
    Names are read by :func:`decode_name` with ``name_encoding``.
    """
    data = bytes(data)
    if len(data) < 3:
        raise CallerIdError("truncated message", data)
    kind, length = data[0], data[1]
    if kind not in (SDMF, MDMF):
        raise CallerIdError(f"unknown message type 0x{kind:02x}", data)
    if len(data) < length + 3:
        raise CallerIdError(f"truncated message ({len(data)} of {length + 3} bytes)", data)
    if len(data) > length + 3:
        raise CallerIdError(f"length mismatch ({len(data)} bytes, header says {length + 3})", data)
    if sum(data) & 0xFF:
        raise CallerIdError("bad checksum", data)
    body = data[2:-1]
    if kind == SDMF:
        return _decode_sdmf(body, data)
    return _decode_mdmf(body, data, name_encoding)


def _decode_sdmf(body: bytes, raw: bytes) -> CallerIdMessage:
    if len(body) < 9 or len(body) > _SDMF_MAX_BODY:
        raise CallerIdError(f"bad SDMF length {len(body)}", raw)
    stamp = _datetime_field(body[:8], raw)
    rest = body[8:]
    if len(rest) == 1 and rest[0] in _ABSENCES:
        absence = _ABSENCES[rest[0]]
        params = ((int(Param.DATETIME), body[:8]), (int(Param.ABSENCE), rest))
        return CallerIdMessage("sdmf-blocked", None, None, absence, None, stamp, None, None, params, raw)
    number = _number_field(rest, raw, "number")
    # SDMF has fixed fields, not parameters: they are listed under the MDMF
    # parameter types of the same meaning so every caller reads one shape.
    params = ((int(Param.DATETIME), body[:8]), (int(Param.NUMBER), rest))
    return CallerIdMessage("sdmf", number, None, None, None, stamp, None, None, params, raw)


def _decode_mdmf(body: bytes, raw: bytes, name_encoding: str = "auto") -> CallerIdMessage:
    if not body:
        raise CallerIdError("MDMF message without parameters", raw)
    params: list[tuple[int, bytes]] = []
    seen: set[int] = set()
    number: str | None = None
    name: str | None = None
    absence: Absence | None = None
    name_absence: Absence | None = None
    stamp: str | None = None
    redirecting: str | None = None
    call_type: int | None = None
    pos = 0
    while pos < len(body):
        if pos + 2 > len(body):
            raise CallerIdError(f"bad parameter: header cut at byte {pos + 2}", raw)
        ptype, plen = body[pos], body[pos + 1]
        value = body[pos + 2 : pos + 2 + plen]
        if len(value) != plen:
            raise CallerIdError(f"bad parameter 0x{ptype:02x}: length {plen} overruns the message", raw)
        pos += 2 + plen
        if ptype in seen and ptype in _KNOWN:
            # Two numbers in one message: which one is right cannot be told.
            raise CallerIdError(f"bad parameter 0x{ptype:02x}: repeated", raw)
        seen.add(ptype)
        params.append((ptype, value))
        if ptype == Param.DATETIME:
            stamp = _datetime_field(value, raw)
        elif ptype == Param.NUMBER:
            number = _number_field(value, raw, "number") if value else None
        elif ptype == Param.REDIRECTING:
            redirecting = _number_field(value, raw, "redirecting number") if value else None
        elif ptype == Param.NAME:
            name = _name_field(value, raw, name_encoding)
        elif ptype in (Param.ABSENCE, Param.NAME_ABSENCE):
            if plen != 1:
                raise CallerIdError(f"bad parameter 0x{ptype:02x}: reason for absence of {plen} bytes", raw)
            # An unknown reason code stays in params but maps to nothing we know.
            if ptype == Param.ABSENCE:
                absence = _ABSENCES.get(value[0])
            else:
                name_absence = _ABSENCES.get(value[0])
        elif ptype == Param.CALL_TYPE:
            if plen != 1:
                raise CallerIdError(f"bad parameter 0x{ptype:02x}: call type of {plen} bytes", raw)
            call_type = value[0]
    return CallerIdMessage(
        "mdmf", number, name, absence, name_absence, stamp, redirecting, call_type, tuple(params), raw
    )


_KNOWN = frozenset(int(p) for p in Param)


def _datetime_field(value: bytes, raw: bytes) -> str:
    if len(value) != 8 or not value.isdigit():
        raise CallerIdError(f"bad date/time {value!r}", raw)
    # No range check: exchange clocks are often wrong (00000000 is seen), and a
    # wrong clock must not cost the call its number.
    return value.decode("ascii")


def _number_field(value: bytes, raw: bytes, what: str) -> str:
    if not value or not set(value) <= _NUMBER_CHARS:
        raise CallerIdError(f"bad {what} {value!r}", raw)
    return value.decode("ascii")


def _name_field(value: bytes, raw: bytes, encoding: str = "auto") -> str | None:
    if not value:
        return None
    # GR-30 and ETSI say 8-bit characters; exchanges and modems in China send
    # UTF-8 or GB18030 (see decode_name). Control characters mean the bytes are not a name.
    try:
        text = decode_name(value, encoding)
    except ValueError as exc:
        raise CallerIdError(f"bad name {value!r} ({exc})", raw) from None
    if not text.isprintable():
        raise CallerIdError(f"bad name {value!r}", raw)
    return text


def _header_plausible(buffer: bytes, i: int) -> bool:
    """Could a message start at ``i`` (type byte, and a length that fits the type)?"""
    kind = buffer[i]
    if kind not in (SDMF, MDMF):
        return False
    if i + 1 >= len(buffer):
        return True
    length = buffer[i + 1]
    if kind == SDMF:
        return 9 <= length <= _SDMF_MAX_BODY
    return length >= 3  # one parameter at least: type, length, one byte


def find_messages(
    buffer: bytes, *, name_encoding: str = "auto"
) -> tuple[list[CallerIdMessage | CallerIdError], int]:
    """Find the messages in a byte stream (channel seizure, marks, noise, partial frames).

    Returns what was found, in order, and how many leading bytes of ``buffer``
    were consumed; the caller keeps ``buffer[consumed:]`` (an incomplete
    message) and calls again with more bytes appended. Bytes that are neither a
    good message nor preamble (0x55 channel seizure, 0xFF marks, zeros) come
    back as one :class:`CallerIdError` per run, holding the bytes and the
    reason the first candidate message among them was rejected.
    """
    buffer = bytes(buffer)
    out: list[CallerIdMessage | CallerIdError] = []
    junk_start: int | None = None
    junk_reason: str | None = None

    def flush_junk(end: int) -> None:
        nonlocal junk_start, junk_reason
        if junk_start is not None:
            chunk = buffer[junk_start:end]
            if any(b not in _PREAMBLE for b in chunk):
                out.append(CallerIdError(junk_reason or "no caller-ID message in data", chunk))
            junk_start = None
            junk_reason = None

    i = 0
    n = len(buffer)
    while i < n:
        if not _header_plausible(buffer, i):
            if junk_start is None and buffer[i] not in _PREAMBLE:
                junk_start = i
            i += 1
            continue
        if i + 1 >= n or i + buffer[i + 1] + 3 > n:
            # Incomplete: wait for more bytes, unless a whole good message starts
            # later, which proves this header was noise.
            later = _next_good(buffer, i + 1)
            if later is None:
                flush_junk(i)
                return out, i
            if junk_start is None:
                junk_start = i
            junk_reason = junk_reason or "truncated message"
            i = later
            continue
        end = i + buffer[i + 1] + 3
        try:
            message = decode_message(buffer[i:end], name_encoding=name_encoding)
        except CallerIdError as exc:
            if junk_start is None:
                junk_start = i
            junk_reason = junk_reason or exc.reason
            i += 1
            continue
        flush_junk(i)
        out.append(message)
        i = end
    flush_junk(n)
    return out, n


def _next_good(buffer: bytes, start: int) -> int | None:
    """Where the first complete, valid message at or after ``start`` begins, if any."""
    for j in range(start, len(buffer) - 2):
        if not _header_plausible(buffer, j):
            continue
        end = j + buffer[j + 1] + 3
        if end > len(buffer):
            continue
        try:
            decode_message(buffer[j:end])
        except CallerIdError:
            continue
        return j
    return None


def _frame(kind: int, body: bytes) -> bytes:
    if len(body) > 255:
        raise ValueError(f"message body of {len(body)} bytes does not fit a one-byte length")
    head = bytes([kind, len(body)]) + body
    return head + bytes([checksum(head)])


def _check_datetime(value: str) -> bytes:
    if len(value) != 8 or not value.isdigit():
        raise ValueError(f"date/time must be 8 digits MMDDHHMM, not {value!r}")
    return value.encode("ascii")


def _check_number(value: str) -> bytes:
    if not value or not set(value.encode("ascii", "replace")) <= _NUMBER_CHARS:
        raise ValueError(f"a number is digits (and + * #), not {value!r}")
    return value.encode("ascii")


def encode_sdmf(number: str | None, datetime: str, absence: Absence | None = None) -> bytes:
    """An SDMF message (GR-30, type 0x04): ``number``, or ``absence`` when it is None."""
    stamp = _check_datetime(datetime)
    if number is not None:
        tail = _check_number(number)
    elif absence is not None:
        tail = Absence(absence).value.encode("ascii")
    else:
        raise ValueError("an SDMF message needs a number or a reason for its absence")
    return _frame(SDMF, stamp + tail)


def encode_mdmf(
    *,
    datetime: str | None = None,
    number: str | None = None,
    name: str | None = None,
    absence: Absence | None = None,
    name_absence: Absence | None = None,
    redirecting: str | None = None,
    call_type: int | None = None,
    extra: Sequence[tuple[int, bytes]] = (),
) -> bytes:
    """An MDMF message (type 0x80) with the given parameters, in GR-30 order, then ``extra``."""
    params: list[tuple[int, bytes]] = []
    if datetime is not None:
        params.append((Param.DATETIME, _check_datetime(datetime)))
    if number is not None:
        params.append((Param.NUMBER, _check_number(number)))
    if absence is not None:
        params.append((Param.ABSENCE, Absence(absence).value.encode("ascii")))
    if name is not None:
        # Latin-1 where it fits (what GR-30 boxes send), else UTF-8 (what CJK names come as).
        try:
            encoded = name.encode("latin-1")
        except UnicodeEncodeError:
            encoded = name.encode("utf-8")
        params.append((Param.NAME, encoded))
    if name_absence is not None:
        params.append((Param.NAME_ABSENCE, Absence(name_absence).value.encode("ascii")))
    if call_type is not None:
        params.append((Param.CALL_TYPE, bytes([call_type])))
    if redirecting is not None:
        params.append((Param.REDIRECTING, _check_number(redirecting)))
    params.extend((int(t), bytes(v)) for t, v in extra)
    if not params:
        raise ValueError("an MDMF message needs at least one parameter")
    body = b""
    for ptype, value in params:
        if not 0 <= ptype <= 255 or len(value) > 255:
            raise ValueError(f"parameter 0x{ptype:x} of {len(value)} bytes cannot be encoded")
        body += bytes([ptype, len(value)]) + value
    return _frame(MDMF, body)


def to_event(message: CallerIdMessage, *, device_id: str, line: str, at: _datetime) -> CallerId:
    """The :class:`~agent.events.CallerId` line event of a decoded message (``raw`` in hex)."""
    return CallerId(
        device_id=device_id,
        line=line,
        at=at,
        number=message.number,
        name=message.name,
        absence=message.absence if message.number is None else None,
        name_absence=message.name_absence if message.name is None else None,
        device_time=message.datetime,
        raw=message.raw.hex(),
    )


__all__ = [
    "MDMF",
    "SDMF",
    "CallerIdError",
    "CallerIdMessage",
    "Param",
    "NAME_ENCODINGS",
    "checksum",
    "decode_message",
    "decode_name",
    "encode_mdmf",
    "encode_sdmf",
    "find_messages",
    "to_event",
]
