"""What devices see (``LineEvent``) and what happens to calls (``CallEvent``, ``Call``).

Line events are frozen, slotted dataclasses, one class per kind, each with the
device id, the device's own label for the line and a tz-aware time. Devices
report what they can: a plain modem sees rings and caller ID only, a line-tap
box sees hook state and digits, a PBX sees everything. The call tracker
(:mod:`agent.calls`) copes with partial information.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, ClassVar


class Absence(enum.StrEnum):
    """Why a caller-ID message carries no number (Bellcore GR-30 / ETSI EN 300 659-3)."""

    PRIVATE = "P"  # withheld by the caller
    UNAVAILABLE = "O"  # out of area, or the network did not pass it on


def _fields_to_json(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as JSON-ready values: times in ISO 8601, enums as their values."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, Customer):
            value = value.to_dict()
        out[f.name] = value
    return out


#: Longest line label kept (longer ones are cut).
MAX_LABEL = 64
#: Longest number or digit string kept; a longer one is dropped, since a cut number is a wrong one.
MAX_NUMBER = 64
#: Longest ``raw`` text kept: a caller-ID message or a protocol line is a few hundred characters.
MAX_RAW = 2048
#: Longest value of any other text field (names, cadences, reasons).
MAX_TEXT = 200

# NUL, the other C0 controls, DEL and the C1 controls: never meaningful in a number, name or
# label, and harmful in logs, terminals, pages and databases (PostgreSQL refuses NUL in text).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_EDGE_CONTROLS = re.compile(r"^[\x00-\x1f\x7f-\x9f\s]+|[\x00-\x1f\x7f-\x9f\s]+$")
#: Fields that hold a phone number or digits: cleaned by dropping, never by joining or cutting.
_NUMBER_FIELDS = frozenset({"number", "digits"})
_TEXT_FIELDS: dict[type[Any], tuple[tuple[str, bool], ...]] = {}


def escape_controls(text: str) -> str:
    """``text`` with each control character written as a ``\\xNN`` escape, the rest as it was."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def strip_controls(text: str) -> str:
    """``text`` without control characters."""
    return _CONTROL.sub("", text)


def _clean_number(value: str) -> str:
    """A number or digit string without controls at its ends; ``""`` when one is inside or it is too long."""
    inner = _EDGE_CONTROLS.sub("", value)
    if _CONTROL.search(inner) or len(inner) > MAX_NUMBER:
        return ""
    return inner if _CONTROL.search(value) else value


def _clean_text(name: str, value: str) -> str:
    limit = MAX_LABEL if name == "line" else MAX_TEXT
    clean = strip_controls(value) if _CONTROL.search(value) else value
    return clean[:limit]


def _text_fields(cls: type[Any]) -> tuple[tuple[str, bool], ...]:
    """The names of ``cls``'s fields other than ``raw``, each with whether it may be None."""
    found = _TEXT_FIELDS.get(cls)
    if found is None:
        found = tuple((f.name, f.default is None) for f in fields(cls) if f.name not in ("raw", "at"))
        _TEXT_FIELDS[cls] = found
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class LineEvent:
    """Something a device saw on one of its lines.

    Constructing one is the boundary between device input and the rest of the
    program, so every event cleans itself (see :meth:`__post_init__`): past it
    no text field but ``raw`` holds a control character, none runs on without
    bound, and nothing downstream has to check.
    """

    kind: ClassVar[str] = "event"

    device_id: str
    line: str
    at: datetime

    def __post_init__(self) -> None:
        """Clean the text fields: control characters out, lengths bounded, the original kept in ``raw``.

        Every ``str`` field loses NUL and the C0/C1 control characters and is
        cut to its bound (:data:`MAX_LABEL` for ``line``, :data:`MAX_TEXT`
        otherwise). A number or digit string is never joined up or cut: one
        with a control character between its characters, or longer than
        :data:`MAX_NUMBER`, is dropped (None, or ``""`` where it is required),
        as the digits left might be somebody else's number. ``raw`` is the
        diagnosis: it keeps what the device sent, control characters included
        (it is never stored or shown, only logged with ``%r`` and written as
        JSON, both of which escape them), bounded by :data:`MAX_RAW`; when
        another field had to be cleaned and ``raw`` is empty, the original
        values go there, escaped. Never raises on content.
        """
        cleaned: list[str] = []
        for name, optional in _text_fields(type(self)):
            value = getattr(self, name)
            if not isinstance(value, str):
                continue
            clean = _clean_number(value) if name in _NUMBER_FIELDS else _clean_text(name, value)
            if clean == value:
                continue
            cleaned.append(f"{name}={escape_controls(value)[:MAX_TEXT]}")
            object.__setattr__(self, name, None if optional and not clean else clean)
        if not hasattr(self, "raw"):
            return
        raw = getattr(self, "raw", None)
        if raw:
            if len(raw) > MAX_RAW:
                object.__setattr__(self, "raw", raw[:MAX_RAW])
        elif cleaned:
            object.__setattr__(self, "raw", "; ".join(cleaned)[:MAX_RAW])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with ``kind`` first and the time in ISO 8601."""
        return {"kind": self.kind, **_fields_to_json(self)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Ring(LineEvent):
    """One ring burst. ``cadence`` is a distinctive-ring label (``A``, ``2``) when the device tells."""

    kind: ClassVar[str] = "ring"
    cadence: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerId(LineEvent):
    """Caller identification as the device sent it.

    ``number`` is exactly what the device sent (not reformatted); it is None when
    ``absence`` says why there is none. ``device_time`` is the date/time field of
    the message, as sent (caller-ID clocks carry no year and are often wrong).
    """

    kind: ClassVar[str] = "caller_id"
    number: str | None = None
    name: str | None = None
    absence: Absence | None = None
    name_absence: Absence | None = None
    device_time: str | None = None
    raw: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OffHook(LineEvent):
    """The local handset went off hook (picked up)."""

    kind: ClassVar[str] = "off_hook"


@dataclass(frozen=True, slots=True, kw_only=True)
class OnHook(LineEvent):
    """The local handset went on hook (hung up)."""

    kind: ClassVar[str] = "on_hook"


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialed(LineEvent):
    """Digits dialed on the line.

    A line-tap box reports digits as the rep presses them (``complete`` False,
    possibly in several bursts); a PBX or NCID reports the whole number of an
    outbound call at once (``complete`` True).
    """

    kind: ClassVar[str] = "dialed"
    digits: str
    complete: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Connected(LineEvent):
    """The far end of an outbound call answered (call progress, or a PBX saying so)."""

    kind: ClassVar[str] = "connected"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallReport(LineEvent):
    """The device's own account of the call on the line: how long it rang and talked, and how it ended.

    End and detail records (a Whozz Calling unit's ``E`` record, an NCID
    gateway's ``END:``) and blocked-caller lines (NCID ``HUP:``/``BLK:``) carry
    what the device measured. A unit that reports a call only at its start and
    end (no hook events in real time) is then still credited with real ring and
    talk seconds. The tracker uses each value only within sane bounds (never
    more than the call has lasted by our clock), and the arrival times otherwise.

    :param talk_seconds: how long the call was connected, as the device counted.
    :param duration: seconds from the call's start (first ring, or dialing) to its end.
    :param answered: the device knows it was answered (True) or not (False); None: it cannot tell.
    :param ends_call: no hang-up event follows: the report itself ends the call.
    :param blocked: the server or device cut the caller off (a blacklist); they never reached a phone.
    :param device_start: the device's own start time of the call, as sent (for diagnosis).
    :param device_end: the device's own end time, as sent.
    """

    kind: ClassVar[str] = "call_report"
    talk_seconds: float | None = None
    duration: float | None = None
    answered: bool | None = None
    ends_call: bool = False
    blocked: bool = False
    device_start: str | None = None
    device_end: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceUp(LineEvent):
    """The device is open and working. ``line`` is ``"*"``: it concerns every line of the device."""

    kind: ClassVar[str] = "device_up"
    detail: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceDown(LineEvent):
    """The device went away (port vanished, connection lost); ``line`` is ``"*"``."""

    kind: ClassVar[str] = "device_down"
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LineError(LineEvent):
    """Something the device sent that could not be decoded, kept with the offending text."""

    kind: ClassVar[str] = "error"
    error: str
    raw: str = ""


ALL_LINES = "*"

LINE_EVENT_TYPES: tuple[type[LineEvent], ...] = (
    Ring,
    CallerId,
    OffHook,
    OnHook,
    Dialed,
    Connected,
    CallReport,
    DeviceUp,
    DeviceDown,
    LineError,
)


class Direction(enum.StrEnum):
    """Which way a call went."""

    IN = "in"
    OUT = "out"


class Disposition(enum.StrEnum):
    """How a call ended.

    - ``answered``: it connected (inbound picked up; outbound answered by the far
      end, or dialing finished on a device that cannot see the answer).
    - ``missed``: inbound that rang and was not picked up (also a call-waiting
      caller that rang during another call).
    - ``abandoned``: outbound that was dialed but never connected; the rep gave up.
    - ``unknown``: the device could not tell (no hook state, or it went down
      before the call connected).
    """

    ANSWERED = "answered"
    MISSED = "missed"
    ABANDONED = "abandoned"
    UNKNOWN = "unknown"


class EndReason(enum.StrEnum):
    """What made the tracker end a call."""

    HANGUP = "hangup"  # on-hook seen
    RING_TIMEOUT = "ring_timeout"  # rings stopped
    DEVICE_DOWN = "device_down"
    SHUTDOWN = "shutdown"  # the agent stopped with the call in progress
    NO_NUMBER = "no_number"  # off-hook and on-hook with nothing dialed
    NEXT_CALLER = "next_caller"  # a hook-blind line rang with another caller's ID
    BLOCKED = "blocked"  # the server or device cut the caller off (a blacklist)
    AGENT_CRASH = "agent_crash"  # left open by a run that died; closed at the next start


class LineState(enum.StrEnum):
    """What a line is doing now; exported as a metric and shown on the seat page."""

    IDLE = "idle"
    RINGING = "ringing"
    DIALING = "dialing"
    TALKING = "talking"
    DOWN = "down"


@dataclass(frozen=True, slots=True, kw_only=True)
class Customer:
    """Who is behind a number, as a ``lookup_customer`` plugin found them.

    ``source`` names the plugin that answered (``sql``, ``crm_http``, ``centre``, ...);
    ``status`` the customer's standing where the source keeps one (the centre's ``owned`` or
    ``pool``), None where it does not.
    """

    id: int | None = None
    name: str | None = None
    company: str | None = None
    owner_rep: str | None = None
    source: str = ""
    status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields (``status`` only when the source gave one)."""
        data = _fields_to_json(self)
        if self.status is None:
            del data["status"]  # spooled calls and the page's JSON stay as they were for other sources
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """A snapshot of one call. The tracker replaces it as the call goes on.

    Times are tz-aware; seconds are floats rounded to milliseconds. ``number_raw``
    is the number as the device gave it, ``number_e164`` its normalised form
    (None when it cannot be normalised or is absent).

    ``customer`` is who the lookup found, the same for every observer (storage,
    hooks, the seat page, metrics); ``customer_id`` and ``customer_name`` are
    its id and name as the ``calls`` table keeps them. Set all three with
    :meth:`with_customer`.
    """

    uuid: str
    seat: str
    device_id: str
    line: str
    rep: str
    team: str
    direction: Direction
    started_at: datetime
    number_raw: str | None = None
    number_e164: str | None = None
    cid_name: str | None = None
    absence: Absence | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    ring_seconds: float | None = None
    talk_seconds: float | None = None
    disposition: Disposition | None = None
    end_reason: EndReason | None = None
    rings: int = 0
    waiting: bool = False
    customer_id: int | None = None
    customer_name: str | None = None
    customer: Customer | None = None

    @property
    def ended(self) -> bool:
        """True once the call has ended."""
        return self.ended_at is not None

    def with_customer(self, customer: Customer) -> Call:
        """The call with its customer: the name always, the id only when it is a row of our ``customers``.

        A CRM's ids are not ours: storing one in ``calls.customer_id`` (or
        offering it to the card) would link the call to whichever local
        customer happens to have that number, so a foreign id is dropped.
        """
        ours = customer.source == "sql"
        if not ours and customer.id is not None:
            customer = replace(customer, id=None)
        return replace(self, customer_id=customer.id, customer_name=customer.name, customer=customer)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (times ISO 8601, enums as their values)."""
        return _fields_to_json(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Call:
        """The inverse of :meth:`to_dict` (used to replay spooled calls)."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if value is not None and f.name in _CALL_CONVERTERS:
                value = _CALL_CONVERTERS[f.name](value)
            kwargs[f.name] = value
        return cls(**kwargs)


_CALL_CONVERTERS: dict[str, Any] = {
    "direction": Direction,
    "absence": Absence,
    "disposition": Disposition,
    "end_reason": EndReason,
    "started_at": datetime.fromisoformat,
    "answered_at": datetime.fromisoformat,
    "ended_at": datetime.fromisoformat,
    "customer": lambda data: Customer(**data),
}


class CallEventKind(enum.StrEnum):
    """What happened to a call."""

    STARTED = "started"
    IDENTIFIED = "identified"
    ANSWERED = "answered"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One step in a call's life, carrying the call as it is after that step."""

    kind: CallEventKind
    call: Call
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``kind``, ``at`` and the call."""
        return {"kind": self.kind.value, "at": self.at.isoformat(), "call": self.call.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallEvent:
        """The inverse of :meth:`to_dict`."""
        return cls(
            CallEventKind(data["kind"]), Call.from_dict(data["call"]), datetime.fromisoformat(data["at"])
        )


@dataclass(frozen=True, slots=True)
class LineStatus:
    """A line changed state (or its device went up or down)."""

    seat: str
    line: str
    device_id: str
    rep: str
    team: str
    state: LineState
    since: datetime
    call_uuid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "kind": "line",
            "seat": self.seat,
            "line": self.line,
            "device_id": self.device_id,
            "rep": self.rep,
            "team": self.team,
            "state": self.state.value,
            "since": self.since.isoformat(),
            "call_uuid": self.call_uuid,
        }


@dataclass(frozen=True, slots=True)
class RepStateChange:
    """The rep went from ``previous`` (which lasted ``previous_seconds``) to ``state`` at ``since``.

    States are ``available``, ``on_call``, ``wrap_up`` and ``paused`` (``reason``:
    the pause's code). ``automatic`` is False when the rep chose the state on the
    seat page, True when a call moved it (see :mod:`agent.repstate`).
    """

    rep: str
    state: str
    reason: str | None
    since: datetime
    previous: str
    previous_reason: str | None
    previous_seconds: float
    automatic: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the ``rep`` event of the seat page's stream)."""
        return {
            "rep": self.rep,
            "state": self.state,
            "reason": self.reason,
            "since": self.since.isoformat(),
            "previous": self.previous,
            "previous_reason": self.previous_reason,
            "previous_seconds": round(self.previous_seconds, 3),
            "automatic": self.automatic,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RepStateChange:
        """The inverse of :meth:`to_dict` (used to replay spooled changes)."""
        return cls(
            rep=str(data["rep"]),
            state=str(data["state"]),
            reason=data["reason"],
            since=datetime.fromisoformat(data["since"]),
            previous=str(data["previous"]),
            previous_reason=data["previous_reason"],
            previous_seconds=float(data["previous_seconds"]),
            automatic=bool(data["automatic"]),
        )


Message = CallEvent | LineStatus | RepStateChange
"""What the runtime fans out to observers."""


@dataclass(frozen=True, slots=True)
class RecordingFacts:
    """What a ``recordings`` row says about a file (``path`` relative to the data directory)."""

    call_uuid: str
    path: str
    codec: str
    sample_rate: int
    channels: int
    seconds: float
    bytes: int
    sha256: str | None
    status: str
    flags: tuple[str, ...] = field(default_factory=tuple)
    #: A recovered recording only: when its last audio reached the disk (the torn file's
    #: modification time), so the call was alive until then. Not part of the row.
    audio_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Decoder:
    """One input format ``decode`` understands.

    :param name: the ``--format`` value (``hayes``, ``ncid``, ``wav`` ...).
    :param description: one line for ``--help`` and error messages.
    :param decode: the whole input → line events (or ready records, for
        decoders whose events carry extra fields such as an offset in seconds).
        It must not raise on bad input: what cannot be decoded is a
        :class:`~agent.events.LineError` with the offending text.
    :param sniff: the first bytes of the input → confidence 0..1 that it is this format.
    :param reads_names: ``decode`` also takes a keyword ``name_encoding`` (``auto`` or a text
        codec, as a device's ``name_encoding`` option), which ``decode --name-encoding`` passes
        when it is not ``auto``: a capture is then read as the device configured so would read it.
    """

    name: str
    description: str
    decode: Callable[..., Iterable[LineEvent | dict[str, Any]]]
    sniff: Callable[[bytes], float]
    reads_names: bool = False
