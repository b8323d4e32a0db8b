"""The NCID client protocol, pure: server text lines in, line events out.

Written from the NCID API document (``doc/NCID-API.md`` of the NCID project,
http://ncid.sourceforge.net/doc/NCID-API.html, API 1.x), sections "Feature Set 1:
Server Output Lines", "Client Implementation" and "Feature Set 2: Server-to-Gateway".
What a client sees, in order::

    200 Server: ncidd (NCID) x.x            greeting (older servers: "200 NCID Server: ...")
    210 API x.x Feature Set 1 2 3 4         optional: API version (the client may answer HELLO:)
    CIDLOG: *DATE*...*                      the call log, each label with LOG appended
    250 End of call log                     or 251/252/253 when no log is sent
    OPT: hangup-1                           server options, informational
    300 End of connection startup           (servers before API 1.0: "300 End of call log")
    CID: *DATE*01152026*TIME*1230*LINE*POTS*NMBR*5551234567*MESG*NONE*NAME*JOHN DOE*
    CIDINFO: *LINE*POTS*RING*2*TIME*12:30:05*
    ...

Line types and what they become here (the tracker in :mod:`agent.calls` reads them):

- ``CID:`` incoming caller ID -> :class:`CallerId` (the tracker starts an inbound call);
  ``WID:`` (call waiting) and ``PID:`` (smartphone) the same.
- ``OUT:`` an outgoing call -> :class:`Dialed` with ``complete=True``.
- ``HUP:`` the server hung up a blacklisted caller, ``BLK:`` a unit blocked one: these
  come *instead of* ``CID:``, so they give :class:`CallerId` (the call is recorded with
  its number) and nothing else: the tracker's ring time-out ends it (see ``_call``).
- ``CIDINFO:`` ring count ``n > 0`` -> :class:`Ring`; ``-1`` (hung up before answer)
  -> :class:`OnHook`; ``0`` -> :class:`OffHook` (answered) on gateway-fed lines only,
  since a modem-fed server sends it whenever ringing stops (see ``ring_zero_answers``);
  ``-2`` is left to the ``END:`` line that comes with it.
- ``END:`` a gateway's end of call (``HTYPE`` BYE after answer, CANCEL before):
  BYE -> :class:`OffHook` + :class:`OnHook` (an answered call ends; the off-hook only
  when this session saw the call begin), CANCEL -> :class:`OnHook`.
- ``…LOG:`` lines are the call log, history: counted, never live calls.
- ``MSG:``, ``NOT:``, ``OPT:``, numeric status lines: informational, counted.
- ``+CID:`` and every other ``+`` line: "clients must always ignore line types that
  begin with +" (API 1.4, forwarding gateways).
- anything else, or a call line without its fields: :class:`LineError` with the raw text.

Field values follow the API's conventions: ``-``, ``NO-NUMBER``, ``NO NAME`` and
``NO-LINE`` mean "nothing"; withheld and unavailable callers arrive as ``PRIVATE`` /
``OUT-OF-AREA`` (or a device's bare ``P`` / ``O``), which become :class:`Absence` values.
Numbers are kept exactly as the server sent them.
"""

from __future__ import annotations

import enum
import logging
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from agent.events import Absence, CallerId, Dialed, LineError, LineEvent, OffHook, OnHook, Ring
from agent.names import check_encoding, decode_name, name_from_text

logger = logging.getLogger(__name__)

DEFAULT_LINE = "1"

#: Call line types that carry the CID field layout (``*DATE*..*NAME*..*``).
CALL_TYPES = frozenset({"CID", "OUT", "HUP", "BLK", "PID", "WID"})
#: Message line types (``<text>***DATE*...*``).
MESSAGE_TYPES = frozenset({"MSG", "NOT"})
#: Every live type the API documents; ``<type>LOG`` is its call-log form.
LIVE_TYPES = CALL_TYPES | MESSAGE_TYPES | {"CIDINFO", "END"}
LOG_TYPES = frozenset({f"{t}LOG" for t in LIVE_TYPES} | {"LOG"})
#: Lines a client receives but has no use for (server-bound or informational).
INFO_TYPES = frozenset({"OPT", "ACK", "INFO", "RESP", "REQ", "WRK", "HELLO"})

_NOTHING = frozenset({"", "-", "NO-NUMBER", "NO NUMBER", "NO-NAME", "NO NAME", "NONAME", "NO-LINE"})
_PRIVATE = frozenset({"P", "PRIVATE", "PRIVATE NUMBER", "ANONYMOUS"})
_UNAVAILABLE = frozenset({"O", "OUT-OF-AREA", "OUT OF AREA", "UNAVAILABLE", "UNKNOWN"})

_LABEL = re.compile(r"^(\+?)([A-Z][A-Z0-9]*):\s?(.*)$", re.DOTALL)
_STATUS = re.compile(r"^(\d{3})(?:\s(.*))?$", re.DOTALL)


class Phase(enum.Enum):
    """Where a connection is in the NCID start-up sequence."""

    GREETING = "greeting"  # waiting for the 200 line
    STARTUP = "startup"  # call log, 25x, OPT lines, until 300
    LIVE = "live"


@dataclass(frozen=True, slots=True)
class NcidLine:
    """One server line, split: its type, whether it came from a forwarding gateway, its fields.

    ``fields`` holds the ``*LABEL*value*`` pairs in order of appearance (later
    duplicates win); ``text`` is what precedes them (the message of ``MSG:``/``NOT:``,
    the text of a status line); ``code`` is the number of a status line.
    """

    type: str
    raw: str
    fields: dict[str, str] = field(default_factory=dict)
    text: str = ""
    code: int | None = None
    forwarded: bool = False

    @property
    def is_log(self) -> bool:
        """A call-log (history) line."""
        return self.type in LOG_TYPES


class NcidSyntaxError(ValueError):
    """A line that is not NCID."""


def split_fields(body: str) -> dict[str, str]:
    """``*DATE*0115*TIME*1230*`` -> ``{"DATE": "0115", "TIME": "1230"}``.

    The API: "Fields are separated by a * and the first field starts after a *".
    Values are stripped of surrounding blanks; an odd trailing label is dropped.
    """
    parts = body.split("*")
    # The body starts and ends with '*': the first and last parts are empty.
    if parts and parts[0].strip() == "":
        parts = parts[1:]
    if parts and parts[-1].strip() == "":
        parts = parts[:-1]
    out: dict[str, str] = {}
    for index in range(0, len(parts) - 1, 2):
        label = parts[index].strip().upper()
        if label:
            out[label] = parts[index + 1].strip()
    return out


def parse_line(raw: str) -> NcidLine:
    """Split one server line (without its line ending). Raises :class:`NcidSyntaxError`."""
    text = raw.strip("\r\n")
    stripped = text.strip()
    if not stripped:
        raise NcidSyntaxError("empty line")
    status = _STATUS.match(stripped)
    if status:
        return NcidLine(
            type="STATUS", raw=text, text=(status.group(2) or "").strip(), code=int(status.group(1))
        )
    match = _LABEL.match(stripped)
    if not match:
        raise NcidSyntaxError("no line label")
    plus, kind, body = match.groups()
    message = ""
    fields: dict[str, str] = {}
    if kind in MESSAGE_TYPES or kind in {"MSGLOG", "NOTLOG"}:
        # "MSG: <message>***DATE*<date>*..." (clients send ### instead of ***).
        for marker in ("***", "###"):
            if marker in body:
                message, _, rest = body.partition(marker)
                fields = split_fields("*" + rest)
                break
        else:
            message = body
        message = message.strip()
    elif body.lstrip().startswith("*"):
        fields = split_fields(body.strip())
    else:
        message = body.strip()
    return NcidLine(type=kind, raw=text, fields=fields, text=message, forwarded=bool(plus))


def _value(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return None if value.upper() in _NOTHING else value


def _absence(value: str | None) -> Absence | None:
    if value is None:
        return None
    upper = value.strip().upper()
    if upper in _PRIVATE:
        return Absence.PRIVATE
    if upper in _UNAVAILABLE:
        return Absence.UNAVAILABLE
    return None


def caller_fields(fields: Mapping[str, str]) -> tuple[str | None, Absence | None, str | None, Absence | None]:
    """``(number, absence, name, name_absence)`` from a call line's fields.

    A number is what the server sent in ``NMBR``, untouched; the API's "nothing"
    values and the private/out-of-area words are not numbers.
    """
    number = _value(fields.get("NMBR"))
    absence = _absence(number)
    if absence is not None:
        number = None
    name = _value(fields.get("NAME"))
    name_absence = _absence(name)
    if name_absence is not None:
        name = None
    return number, absence, name, name_absence


@dataclass
class NcidStats:
    """What a session has seen, by kind (for logs, tests and ``cti-agent devices``)."""

    lines: int = 0
    log_lines: int = 0
    ignored: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    options: list[str] = field(default_factory=list)
    greeting: str | None = None
    api: str | None = None


class NcidSession:
    """One connection's worth of NCID lines -> line events. Pure: no I/O, no clock.

    :param device_id: written on every event.
    :param lines: NCID ``LINE`` label -> our line label. Labels not in it are used
        as they are; ``-``, ``NO-LINE`` and an empty label are ``"1"``.
    :param ring_zero_answers: whether ``CIDINFO`` ring count 0 means the call was
        answered. A gateway (SIP, Whozz Calling) sends it on answer; a modem-fed
        server sends it whenever ringing stops, answered or not. None: learn it per
        line, true once the line has reported an end of call (``END:``, ``-1``, ``-2``).
    :param name_encoding: how the bytes of a ``NAME`` field are read (:mod:`agent.names`).
    """

    def __init__(
        self,
        device_id: str,
        lines: Mapping[str, str] | None = None,
        *,
        ring_zero_answers: bool | None = None,
        name_encoding: str = "auto",
    ) -> None:
        self.device_id = device_id
        self.name_encoding = check_encoding(name_encoding)
        self.line_map = dict(lines or {})
        self.ring_zero_answers = ring_zero_answers
        # Lines seen reporting ends of calls (END:, CIDINFO -1/-2): gateway-fed lines.
        self._gateway_lines: set[str] = set()
        self.phase = Phase.GREETING
        self.stats = NcidStats()
        # Lines with a call this session has seen start and not yet end.
        self._active: set[str] = set()

    # -- start-up -------------------------------------------------------------

    @property
    def live(self) -> bool:
        """True once the start-up (greeting, call log, options) is over."""
        return self.phase is Phase.LIVE

    def line_label(self, ncid_line: str | None) -> str:
        """Our label for NCID's ``LINE`` value."""
        value = (ncid_line or "").strip()
        if value in self.line_map:
            return self.line_map[value]
        # "*" is the runtime's every-line label; no single NCID line may claim it.
        if value.upper() in _NOTHING or value == "*":
            return self.line_map.get("-", DEFAULT_LINE)
        return value

    # -- input ----------------------------------------------------------------

    def feed(self, raw: str | bytes, at: datetime) -> list[LineEvent]:
        """Take one server line (seen at ``at``); return the events it means. Never raises.

        ``raw`` is best given as the bytes read: the line is then split on its
        bytes and the ``NAME`` field read by :func:`agent.names.decode_name` with
        the session's ``name_encoding`` (ncidd passes on the name's bytes as the
        modem or gateway sent them: UTF-8, GB18030, Latin-1). A name not valid in
        a forced encoding is an error event with the line, never a guessed name.
        ``str`` input is taken as already-decoded text.
        """
        self.stats.lines += 1
        if isinstance(raw, bytes):
            return self._feed_bytes(raw, at)
        if not raw.strip():
            return []
        try:
            line = parse_line(raw)
        except NcidSyntaxError as exc:
            return [self._error(f"not an NCID line ({exc})", raw, at)]
        return self._handle(line, raw, at)

    def _feed_bytes(self, data: bytes, at: datetime) -> list[LineEvent]:
        # Latin-1 maps each byte to one character, so the split is on bytes; the
        # line as shown (raw, messages) is read by the same rule as names.
        shown = decode_name(data)
        if not shown.strip():
            return []
        try:
            line = parse_line(data.decode("latin-1"))
        except NcidSyntaxError as exc:
            return [self._error(f"not an NCID line ({exc})", shown, at)]
        fields = {key: name_from_text(value) for key, value in line.fields.items()}
        if "NAME" in line.fields:
            try:
                fields["NAME"] = name_from_text(line.fields["NAME"], self.name_encoding)
            except ValueError as exc:
                return [self._error(f"NCID name not valid {self.name_encoding} ({exc})", shown, at)]
            # Control characters (a NUL from a broken switch) are the name's problem, not the
            # number's: the call goes on and the kernel's event sanitising strips them.
        line = replace(line, raw=shown.strip("\r\n"), fields=fields, text=name_from_text(line.text))
        return self._handle(line, shown, at)

    def _handle(self, line: NcidLine, raw: str, at: datetime) -> list[LineEvent]:
        try:
            return self._dispatch(line, at)
        except ValueError as exc:
            return [self._error(str(exc), raw, at)]

    def _dispatch(self, line: NcidLine, at: datetime) -> list[LineEvent]:
        if line.type == "STATUS":
            return self._status(line)
        if self.phase is Phase.GREETING:
            # Some servers are quiet until the first call; a label before a greeting
            # still counts, but the start-up is then assumed over.
            logger.info("%s: NCID line before any greeting; assuming the start-up is over", self.device_id)
            self.phase = Phase.LIVE
        if line.forwarded:
            self.stats.ignored["+" + line.type] += 1
            return []
        if line.is_log:
            self.stats.log_lines += 1
            return []
        if line.type == "OPT":
            self.stats.options.append(line.text)
            return []
        if line.type in INFO_TYPES or line.type in MESSAGE_TYPES:
            self.stats.ignored[line.type] += 1
            logger.debug("%s: NCID %s line ignored", self.device_id, line.type)
            return []
        if line.type in CALL_TYPES:
            return self._call(line, at)
        if line.type == "CIDINFO":
            return self._cidinfo(line, at)
        if line.type == "END":
            return self._end(line, at)
        raise ValueError(f"unknown NCID line type {line.type!r}")

    def _status(self, line: NcidLine) -> list[LineEvent]:
        code = line.code or 0
        if code == 200:
            self.stats.greeting = line.text
            self.phase = Phase.STARTUP
        elif code == 210:
            self.stats.api = line.text
        elif code == 300:
            if self.phase is not Phase.LIVE:
                logger.info(
                    "%s: NCID start-up done (%d call-log line(s) skipped)",
                    self.device_id,
                    self.stats.log_lines,
                )
            self.phase = Phase.LIVE
        else:
            # 250-253 (call log sent / not sent / empty / none), 4xx job replies...
            self.stats.ignored[str(code)] += 1
        return []

    def _call(self, line: NcidLine, at: datetime) -> list[LineEvent]:
        fields = line.fields
        if "NMBR" not in fields and "NAME" not in fields:
            raise ValueError(f"NCID {line.type} line without NMBR or NAME fields")
        label = self.line_label(fields.get("LINE"))
        number, absence, name, name_absence = caller_fields(fields)
        if line.type == "OUT":
            if number is None:
                raise ValueError("NCID OUT line without a number")
            self._active.add(label)
            return [Dialed(device_id=self.device_id, line=label, at=at, digits=number, complete=True)]
        date, time = fields.get("DATE", ""), fields.get("TIME", "")
        caller = CallerId(
            device_id=self.device_id,
            line=label,
            at=at,
            number=number,
            name=name,
            absence=absence,
            name_absence=name_absence,
            device_time=f"{date} {time}".strip() or None,
            raw=line.raw,
        )
        if line.type in ("HUP", "BLK"):
            # Sent instead of CID: the caller was cut off or never reached a phone.
            # No on-hook with it: the first hook event switches the tracker to
            # hook-aware reading for good, and on a modem-fed server (which never
            # reports hook state) every later unanswered call would then count as
            # missed when the rep may well have picked it up. The ring time-out
            # ends this call instead.
            return [caller]
        self._active.add(label)
        return [caller]

    def _cidinfo(self, line: NcidLine, at: datetime) -> list[LineEvent]:
        label = self.line_label(line.fields.get("LINE"))
        text = line.fields.get("RING", "")
        try:
            count = int(text)
        except ValueError:
            raise ValueError(f"NCID CIDINFO line with ring count {text!r}") from None
        if count > 0:
            self._active.add(label)
            return [Ring(device_id=self.device_id, line=label, at=at)]
        if count == -1:
            # "ringing has stopped, call was not answered" (gateways): the caller gave up.
            self._gateway_lines.add(label)
            self._active.discard(label)
            return [OnHook(device_id=self.device_id, line=label, at=at)]
        if count == 0 and self._ring_zero_answers(label):
            return [OffHook(device_id=self.device_id, line=label, at=at)]
        # 0 from a modem-fed server: ringing stopped, answered or not, which proves
        # nothing (the tracker's ring time-out ends the call). -2 (hung up after
        # answer) comes with an END: BYE line, which ends the call.
        if count < -1:
            self._gateway_lines.add(label)
        return []

    def _ring_zero_answers(self, label: str) -> bool:
        if self.ring_zero_answers is not None:
            return self.ring_zero_answers
        return label in self._gateway_lines

    def _end(self, line: NcidLine, at: datetime) -> list[LineEvent]:
        fields = line.fields
        htype = fields.get("HTYPE", "").upper()
        if htype not in ("BYE", "CANCEL"):
            raise ValueError(f"NCID END line with HTYPE {htype!r}")
        label = self.line_label(fields.get("LINE"))
        self._gateway_lines.add(label)
        logger.debug(
            "%s: NCID end of call on %s: %s, %s to %s",
            self.device_id,
            label,
            htype,
            fields.get("SCALL", "?"),
            fields.get("ECALL", "?"),
        )
        on_hook = OnHook(device_id=self.device_id, line=label, at=at)
        active = label in self._active
        self._active.discard(label)
        if htype == "BYE" and active:
            # Answered, then hung up. An off-hook first makes the tracker count an
            # inbound call it only saw ringing as answered (it ignores a repeat). On
            # a line with no call seen (it began before we connected) it would
            # start a phantom dialing instead, so there only the on-hook goes.
            return [OffHook(device_id=self.device_id, line=label, at=at), on_hook]
        return [on_hook]

    def _error(self, message: str, raw: str, at: datetime) -> LineError:
        self.stats.errors += 1
        return LineError(
            device_id=self.device_id, line=DEFAULT_LINE, at=at, error=message, raw=raw.rstrip("\r\n")
        )


__all__ = [
    "CALL_TYPES",
    "LOG_TYPES",
    "NcidLine",
    "NcidSession",
    "NcidStats",
    "NcidSyntaxError",
    "Phase",
    "caller_fields",
    "parse_line",
    "split_fields",
]
