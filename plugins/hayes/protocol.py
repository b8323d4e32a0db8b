"""What a Hayes-compatible modem sends, as line events: pure, no I/O, no asyncio, no clock.

Bytes go through :class:`LineSplitter` (CR, LF, CRLF and LFCR each end a line;
DLE-shielded voice-mode codes come out on their own) and then through
:class:`HayesParser`, a state machine fed one line at a time and told the time
(``flush(now)``) so that a caller-ID block with no terminating line still ends.

Formatted caller ID as modems really send it (sources are cited in the
transcripts under ``tests/fixtures/hayes/``)::

    RING
    DATE = 0115            USRobotics, Zoom, Rockwell/Conexant: spaces around '='
    TIME=1230              ELSA, Zoom 2949L, Digi: no spaces
    NMBR = 5072884388      or DDN_NMBR / DDN / NBR (Bell Canada, some Rockwell chips)
    NAME = JOHN DOE        'O' unavailable, 'P' private, in number or name
    MESG = 110101          a parameter the modem did not decode, in hex (kept in ``raw``)
    DATE TIME=01151230     one combined field
    RING RING DATE=0224 NAME=ONMBR=5072884388   everything run together on one line

With ``AT+VCID=2`` (unformatted) the modem prints the whole SDMF/MDMF message
as hex digits, sometimes wrapped over several lines; that is decoded by the
shared decoder :mod:`agent.callerid`.

A block is complete once its number (or the reason for its absence) has come
and then a ``RING``, a blank line, a field the block already has, or the
time-out. Some exchanges send ``NMBR = <number>`` and then ``NMBR = O``; like
NCID's ``ncidd`` we keep the first real number (the later absence does not
mask it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from agent import callerid
from agent.errors import DeviceError
from agent.events import Absence, CallerId, LineError, LineEvent, OffHook, OnHook, Ring
from agent.names import check_encoding, name_from_text

logger = logging.getLogger(__name__)

DLE = 0x10
_DROPPED = frozenset(b"\x00\x11\x13")  # NUL padding, XON, XOFF: never part of a line

#: V.253 / IS-101 DLE-shielded event codes that tell us something about the line.
DLE_EVENTS: dict[str, type[LineEvent]] = {
    "R": Ring,  # ring incoming
    "h": OnHook,  # line current break: local phone goes on-hook
    "H": OffHook,  # line current detected: local phone goes off-hook
}

#: Final result codes that end a command unsuccessfully (verbose form, ATV1).
FAILURE_CODES = (
    "ERROR",
    "NO CARRIER",
    "BUSY",
    "NO DIALTONE",
    "NO DIAL TONE",
    "NO ANSWER",
    "LINE IN USE",
    "DELAYED",
    "BLACKLISTED",
)

#: Prefixes some chipsets put before caller-ID lines; stripped before parsing.
CHIPSET_PREFIXES = ("+VCID:", "+VCID ", "#CID:", "%CCID:", "+CID:", "CID:")

_TAGS = r"DATE\s*TIME|DDN_NMBR|DATE|TIME|NMBR|NAME|MESG|DDN|NBR"
_FIELD = re.compile(rf"({_TAGS})\s*=\s*", re.IGNORECASE)
# Tag-like keys that are not caller ID but come with it (distinctive-ring reports, +VDR).
_IGNORED_KEYS = re.compile(r"^\s*(DRON|DROF)\s*=\s*\d*\s*$", re.IGNORECASE)
# Something shaped like a caller-ID field we do not know (a tag with dropped characters).
_KEY_LIKE = re.compile(r"^\s*[A-Z_][A-Z_ ]{0,11}\s*=", re.IGNORECASE)
_RING = re.compile(r"^RING(?:\s*([A-Z0-9]))?$", re.IGNORECASE)
_RINGS_ONLY = re.compile(r"^(?:RING\s*)+$", re.IGNORECASE)
_NUMBER = re.compile(r"^\+?[0-9*#][0-9*#\- ]*$")
_HEX = re.compile(r"^[0-9A-Fa-f]+$")
_ABSENCE = {"O": Absence.UNAVAILABLE, "P": Absence.PRIVATE, "A": Absence.PRIVATE}
#: First byte of an SDMF (0x04) or MDMF (0x80) call message, and of message-waiting (0x06, 0x82).
_MESSAGE_TYPES = ("04", "80", "06", "82")
_FIELD_NAMES = {"DDN_NMBR": "NMBR", "DDN": "NMBR", "NBR": "NMBR"}


def decode_unformatted(
    message: bytes, device_id: str, line: str, at: datetime, *, name_encoding: str = "auto"
) -> CallerId:
    """An unformatted (AT+VCID=2) message through the shared decoder :mod:`agent.callerid`.

    MDMF name parameters are read with ``name_encoding`` (:func:`agent.names.decode_name`).
    Raises :class:`agent.callerid.CallerIdError` (a ``ValueError``) for a bad checksum,
    a truncated message and the like.
    """
    decoded = callerid.decode_message(message, name_encoding=name_encoding)
    return callerid.to_event(decoded, device_id=device_id, line=line, at=at)


class LineSplitter:
    """Bytes in, text lines out.

    Any of CR, LF, CRLF or LFCR ends one line, so ``\\r\\n\\r\\n`` gives one blank
    line, also when the pair is split across two reads. A DLE-shielded code
    (``\\x10`` and one character) comes out as its own two-character line. Bytes
    outside ASCII are decoded as Latin-1 so that nothing is lost from ``raw``.
    """

    def __init__(self, max_line: int = 512) -> None:
        self._buffer = bytearray()
        self._last_break: int | None = None  # the CR or LF that ended the previous line
        self._dle = False
        self._max_line = max_line

    @property
    def pending(self) -> str:
        """The text received since the last line break."""
        return self._buffer.decode("latin-1")

    def feed(self, data: bytes) -> list[str]:
        """Split ``data`` (any chunk of the stream) into the lines it completes."""
        lines: list[str] = []
        for byte in data:
            if self._dle:
                self._dle = False
                if byte != DLE:  # DLE DLE is a shielded DLE: data, not an event
                    lines.append(chr(DLE) + chr(byte))
                continue
            if byte == DLE:
                self._dle = True
                continue
            if byte in (0x0D, 0x0A):
                if self._last_break is not None and byte != self._last_break and not self._buffer:
                    self._last_break = None  # the second half of CRLF or LFCR
                    continue
                lines.append(self._take())
                self._last_break = byte
                continue
            self._last_break = None
            if byte in _DROPPED:
                continue
            self._buffer.append(byte)
            if len(self._buffer) >= self._max_line:
                lines.append(self._take())  # a port spewing garbage with no line breaks
        return lines

    def flush(self) -> list[str]:
        """The unterminated text, as a last line (when the stream stops mid-line)."""
        if not self._buffer:
            return []
        return [self._take()]

    def _take(self) -> str:
        text = self._buffer.decode("latin-1")
        self._buffer.clear()
        return text


@dataclass(frozen=True, slots=True)
class Reply:
    """A line that answers a command: a result code (``final``) or information text."""

    text: str
    final: bool
    ok: bool


Output = LineEvent | Reply

HexDecoder = Callable[[bytes, str, str, datetime], CallerId]
"""Decodes one unformatted message: ``(message, device_id, line, at) -> CallerId``; raises ``ValueError``."""


def classify_result(text: str) -> Reply | None:
    """The result code ``text`` is, or None when it is not one."""
    upper = text.strip().upper()
    if upper == "OK" or upper.startswith("CONNECT"):
        return Reply(text.strip(), final=True, ok=True)
    if upper in FAILURE_CODES or upper.startswith("+CME ERROR"):
        return Reply(text.strip(), final=True, ok=False)
    return None


@dataclass(slots=True)
class _Block:
    """A caller-ID block being collected."""

    started: datetime
    lines: list[str] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    number: str | None = None
    absence: Absence | None = None
    number_seen: bool = False
    errors: list[str] = field(default_factory=list)

    def has(self, tag: str) -> bool:
        if tag == "NMBR":
            return self.number_seen
        return tag in self.fields


@dataclass(slots=True)
class _Hex:
    """An unformatted (hex) caller-ID message, possibly wrapped over several lines."""

    started: datetime
    digits: str
    lines: list[str]


class HayesParser:
    """Modem lines in, line events and command replies out.

    :param device_id: put on every event.
    :param line: the line label put on every event (a modem serves one line).
    :param block_timeout: seconds a caller-ID block waits for the line that ends it.
    :param decode_hex: turns an unformatted message (bytes) into a :class:`CallerId`
        for ``device_id``, ``line`` and a time, raising ``ValueError`` when it
        cannot; :func:`decode_unformatted` by default.
    :param name_encoding: how the NAME field's bytes are read (``auto``: UTF-8,
        else plausible GB18030, else Latin-1; or any Python codec; see
        :func:`agent.names.decode_name`); used for formatted NAME lines and MDMF names.
    """

    def __init__(
        self,
        device_id: str,
        line: str = "1",
        *,
        block_timeout: float = 2.0,
        decode_hex: HexDecoder = decode_unformatted,
        name_encoding: str = "auto",
    ) -> None:
        self.name_encoding = check_encoding(name_encoding)
        self.device_id = device_id
        self.line = line
        self.block_timeout = timedelta(seconds=block_timeout)
        if decode_hex is decode_unformatted:
            encoding = self.name_encoding

            def with_names(message: bytes, device_id: str, line: str, at: datetime) -> CallerId:
                return decode_unformatted(message, device_id, line, at, name_encoding=encoding)

            decode_hex = with_names
        self.decode_hex = decode_hex
        self.splitter = LineSplitter()
        self.command_pending = False
        self._block: _Block | None = None
        self._hex: _Hex | None = None

    # -- input --------------------------------------------------------------------

    def feed(self, data: bytes, now: datetime) -> list[Output]:
        """Take a chunk of the byte stream; return what its complete lines mean."""
        out: list[Output] = []
        for text in self.splitter.feed(data):
            out.extend(self.feed_line(text, now))
        return out

    def command_sent(self) -> None:
        """A command went to the modem: echo and information lines are its reply until a result code."""
        self.command_pending = True

    def feed_line(self, text: str, now: datetime) -> list[Output]:  # noqa: C901 - one branch per framing a modem prints
        """Take one line (without its line break)."""
        out: list[Output] = []
        if len(text) == 2 and text[0] == chr(DLE):
            kind = DLE_EVENTS.get(text[1])
            if kind is not None:
                out.extend(self._end_block(now))
                out.append(kind(device_id=self.device_id, line=self.line, at=now))
            return out
        stripped = _strip_prefix(text.strip())
        if not stripped:
            return self._end_block(now)
        if self._hex is not None and _HEX.match(stripped):
            self._hex.digits += stripped
            self._hex.lines.append(text)
            return self._try_hex(now)
        out.extend(self._end_hex(now))
        ring = _RING.match(stripped)
        if ring:
            out.extend(self._end_block(now))
            out.append(self._ring(now, ring.group(1)))
            return out
        result = classify_result(stripped)
        if result is not None:
            self.command_pending = False
            out.extend(self._end_block(now))
            out.append(result)
            upper = result.text.upper()
            if upper == "NO CARRIER":
                out.append(OnHook(device_id=self.device_id, line=self.line, at=now))
            elif upper == "LINE IN USE":
                out.append(OffHook(device_id=self.device_id, line=self.line, at=now))
            return out
        if self.command_pending and stripped.upper().startswith("AT"):
            return out  # the modem echoing our command
        if _IGNORED_KEYS.match(stripped):
            return out
        if _FIELD.search(stripped):
            out.extend(self._fields(text, stripped, now))
            return out
        if _looks_hex(stripped):
            out.extend(self._end_block(now))
            self._hex = _Hex(now, stripped, [text])
            out.extend(self._try_hex(now))
            return out
        if self.command_pending:
            out.append(Reply(stripped, final=False, ok=True))
            return out
        if _KEY_LIKE.match(stripped):
            # A caller-ID field that lost characters: the whole message is suspect (formatted
            # caller ID carries no checksum), so it becomes one error with all its lines.
            if self._block is None:
                self._block = _Block(started=now)
            self._block.lines.append(text)
            self._block.errors.append(f"unrecognised caller-ID field {stripped!r}")
            return out
        out.extend(self._end_block(now))
        out.append(self._error("unrecognised modem output", text, now))
        return out

    def flush(self, now: datetime) -> list[Output]:
        """Time passes: end a caller-ID block or hex message that has waited too long."""
        out: list[Output] = []
        if self._hex is not None and now - self._hex.started >= self.block_timeout:
            out.extend(self._end_hex(now))
        if self._block is not None and now - self._block.started >= self.block_timeout:
            out.extend(self._end_block(now, force=True))
        return out

    def deadline(self) -> datetime | None:
        """When :meth:`flush` next has something to do, or None."""
        times = [b.started + self.block_timeout for b in (self._block, self._hex) if b is not None]
        return min(times) if times else None

    def reset(self) -> None:
        """Forget partial input (the port was reopened)."""
        self.splitter = LineSplitter()
        self._block = None
        self._hex = None
        self.command_pending = False

    # -- formatted caller ID ------------------------------------------------------

    def _fields(self, text: str, stripped: str, now: datetime) -> list[Output]:
        out: list[Output] = []
        matches = list(_FIELD.finditer(stripped))
        lead = stripped[: matches[0].start()].strip()
        if lead and _RINGS_ONLY.match(lead):
            out.extend(self._end_block(now))
            out.extend(self._ring(now, None) for _ in range(lead.upper().count("RING")))
            lead = ""
        block = self._block
        for index, match in enumerate(matches):
            end = matches[index + 1].start() if index + 1 < len(matches) else len(stripped)
            tag = re.sub(r"\s+", " ", match.group(1).upper())
            tag = _FIELD_NAMES.get(tag, tag)
            value = stripped[match.end() : end].strip()
            if block is not None and tag != "NMBR" and block.has(tag):
                # A field the block already has: the previous message is over.
                out.extend(self._end_block(now, force=True))
                block = None
            if block is None:
                block = self._block = _Block(started=now)
            if not block.lines or block.lines[-1] is not text:
                block.lines.append(text)
                if lead:
                    block.errors.append(f"unexpected text before the fields: {lead!r}")
            self._set(block, tag, value)
        return out

    def _set(self, block: _Block, tag: str, value: str) -> None:
        if tag == "NMBR":
            absence = _ABSENCE.get(value.upper()) if len(value) == 1 else None
            if absence is not None:
                if block.number is None:
                    block.absence = absence
            elif not value:
                pass  # an empty number field: no number, no reason given
            elif _NUMBER.match(value):
                if block.number is None:
                    block.number = value
                    block.absence = None
            else:
                block.errors.append(f"not a phone number: {value!r}")
            block.number_seen = True
            return
        if tag == "DATE TIME":
            block.fields["DATE"] = value
            block.fields["TIME"] = ""
            return
        block.fields.setdefault(tag, value)

    def _end_block(self, now: datetime, *, force: bool = False) -> list[Output]:
        block = self._block
        if block is None:
            return []
        if not block.number_seen and not force:
            return []  # the number is still to come (a blank line or RING before it)
        self._block = None
        raw = "\n".join(block.lines)
        if block.errors:
            return [self._error("; ".join(block.errors), raw, block.started)]
        if not block.number_seen:
            return [self._error("caller-ID message without a number", raw, block.started)]
        name: str | None = block.fields.get("NAME") or None
        if name is not None:
            # The splitter kept each byte as one Latin-1 character; the modem passes
            # the name's bytes as the exchange sent them (UTF-8, GB18030, ...).
            try:
                name = name_from_text(name, self.name_encoding)
            except ValueError as exc:
                return [self._error(f"name not valid {self.name_encoding}: {exc}", raw, block.started)]
            if not name.isprintable():
                return [self._error(f"name holds control characters: {name!r}", raw, block.started)]
        name_absence = _ABSENCE.get(name.upper()) if name and len(name) == 1 else None
        if name_absence is not None:
            name = None
        device_time = (block.fields.get("DATE", "") + block.fields.get("TIME", "")) or None
        event = CallerId(
            device_id=self.device_id,
            line=self.line,
            at=block.started,
            number=block.number,
            name=name,
            absence=block.absence if block.number is None else None,
            name_absence=name_absence,
            device_time=device_time,
            raw=raw,
        )
        logger.debug("%s: caller ID %s %r", self.device_id, event.number or event.absence, event.name)
        return [event]

    # -- unformatted (hex) caller ID ------------------------------------------------

    def _try_hex(self, now: datetime) -> list[Output]:
        pending = self._hex
        assert pending is not None
        digits = pending.digits
        if len(digits) % 2 == 0 and len(digits) >= 4:
            wanted = 2 * (int(digits[2:4], 16) + 3)  # type, length, body, checksum
            if len(digits) >= wanted:
                self._hex = None
                return [self._decode_hex(digits, "\n".join(pending.lines), pending.started)]
        return []

    def _end_hex(self, now: datetime) -> list[Output]:
        pending = self._hex
        if pending is None:
            return []
        self._hex = None
        return [self._decode_hex(pending.digits, "\n".join(pending.lines), pending.started)]

    def _decode_hex(self, digits: str, raw: str, at: datetime) -> Output:
        if len(digits) % 2:
            return self._error("odd number of hex digits", raw, at)
        try:
            event = self.decode_hex(bytes.fromhex(digits), self.device_id, self.line, at)
        except ValueError as exc:
            return self._error(f"bad caller-ID message: {exc}", raw, at)
        return replace(event, raw=raw)

    # -- helpers ----------------------------------------------------------------------

    def _ring(self, now: datetime, cadence: str | None) -> Ring:
        return Ring(
            device_id=self.device_id, line=self.line, at=now, cadence=cadence.upper() if cadence else None
        )

    def _error(self, error: str, raw: str, at: datetime) -> LineError:
        # DEBUG: the raw text may hold a caller's number (the runtime logs the error itself).
        logger.debug("%s: %s: %r", self.device_id, error, raw)
        return LineError(device_id=self.device_id, line=self.line, at=at, error=error, raw=raw)


class InitPlan:
    """Which command to send next while a modem is set up, decided from its replies.

    Every command of ``init`` must be answered OK. Then the ``cid_commands`` are
    tried in order and the first answered OK wins; when the modem refuses them
    all, :class:`~agent.errors.DeviceError` names each refused command and its
    reply. An empty ``cid_commands`` skips that step (caller ID already on, or a
    box that needs no command).
    """

    def __init__(self, init: Sequence[str], cid_commands: Sequence[str]) -> None:
        self._init = list(init)
        self._cid = list(cid_commands)
        self._index = 0
        self.cid_command: str | None = None
        self.refused: list[tuple[str, str]] = []

    @property
    def done(self) -> bool:
        """True once nothing is left to send."""
        return self.next_command() is None

    def next_command(self) -> str | None:
        """The command to send now, or None when the modem is ready."""
        if self._index < len(self._init):
            return self._init[self._index]
        if self.cid_command is not None or not self._cid:
            return None
        position = self._index - len(self._init)
        return self._cid[position] if position < len(self._cid) else None

    def reply(self, ok: bool, text: str) -> None:
        """The modem answered the current command with ``text`` (``ok``: an OK result).

        Raises :class:`DeviceError` when the plan cannot go on.
        """
        command = self.next_command()
        if command is None:
            raise DeviceError(f"a reply ({text!r}) with no command outstanding")
        self._index += 1
        if self._index <= len(self._init):
            if not ok:
                raise DeviceError(f"the modem refused {command!r} (it answered {text!r})")
            return
        if ok:
            self.cid_command = command
            return
        self.refused.append((command, text))
        if self._index - len(self._init) >= len(self._cid):
            refused = ", ".join(f"{cmd} ({answer})" for cmd, answer in self.refused)
            raise DeviceError(f"the modem refused every caller-ID command: {refused}")


_SNIFF_FIELDS = re.compile(rb"(?:^|[\r\n ])(?:DATE|TIME|NMBR|DDN_NMBR|NAME)\s*=", re.IGNORECASE)
_SNIFF_CODES = re.compile(rb"(?:^|[\r\n])(?:RING|OK|AT[A-Z+#%&])", re.IGNORECASE)


def sniff_capture(head: bytes) -> float:
    """How sure we are that ``head`` is a modem's output (for ``cti-agent decode --format auto``)."""
    if _SNIFF_FIELDS.search(head):
        return 0.9
    if _SNIFF_CODES.search(head):
        return 0.5
    return 0.0


def decode_capture(
    data: bytes, now: datetime, *, device_id: str = "capture", line: str = "1", name_encoding: str = "auto"
) -> list[LineEvent]:
    """Every line event in a captured modem log (a terminal log may include the AT commands typed).

    Command lines and their replies are skipped; what cannot be decoded is a
    :class:`LineError` with its text. ``now`` stamps the events.
    """
    parser = HayesParser(device_id, line, name_encoding=name_encoding)
    out: list[Output] = []
    for text in [*parser.splitter.feed(data), *parser.splitter.flush()]:
        if text.strip().upper().startswith("AT"):
            parser.command_sent()
            continue
        out.extend(parser.feed_line(text, now))
    out.extend(parser.flush(now + parser.block_timeout))
    return [o for o in out if isinstance(o, LineEvent)]


def _strip_prefix(text: str) -> str:
    upper = text.upper()
    for prefix in CHIPSET_PREFIXES:
        if upper.startswith(prefix):
            return text[len(prefix) :].strip()
    return text


def _looks_hex(text: str) -> bool:
    """An unformatted caller-ID message: hex digits starting with a message type byte."""
    return len(text) >= 8 and bool(_HEX.match(text)) and text[:2] in _MESSAGE_TYPES


__all__ = [
    "CHIPSET_PREFIXES",
    "DLE_EVENTS",
    "HayesParser",
    "HexDecoder",
    "InitPlan",
    "LineSplitter",
    "Output",
    "Reply",
    "classify_result",
    "decode_capture",
    "decode_unformatted",
    "sniff_capture",
]
