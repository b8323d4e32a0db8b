"""The call tracker, driven by plain event sequences (the spec is agent/calls.py's docstring)."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.calls import CallTracker, LineIdentity, TrackerConfig
from agent.events import (
    ALL_LINES,
    Absence,
    Call,
    CallerId,
    CallEvent,
    CallEventKind,
    CallReport,
    Connected,
    DeviceDown,
    DeviceUp,
    Dialed,
    Direction,
    Disposition,
    EndReason,
    LineError,
    LineEvent,
    LineState,
    OffHook,
    OnHook,
    Ring,
)
from agent.numbers import to_e164

BASE_TIME = datetime(2024, 5, 6, 9, 0, 0, tzinfo=UTC)
DEV = "modem0"
LINE = "1"
IDENTITY = LineIdentity(seat="seat-7", device_id=DEV, line=LINE, rep="wang", team="north")

IN, OUT = Direction.IN, Direction.OUT
ANSWERED, MISSED, ABANDONED, UNKNOWN = (
    Disposition.ANSWERED,
    Disposition.MISSED,
    Disposition.ABANDONED,
    Disposition.UNKNOWN,
)
HANGUP, RING_TIMEOUT, DEVICE_DOWN, SHUTDOWN, NO_NUMBER = (
    EndReason.HANGUP,
    EndReason.RING_TIMEOUT,
    EndReason.DEVICE_DOWN,
    EndReason.SHUTDOWN,
    EndReason.NO_NUMBER,
)

# -- building event sequences ---------------------------------------------------------

EventFactory = Callable[..., LineEvent]
TICK = "tick"
CLOSE = "close"
Step = tuple[float, "EventFactory | str"]


def _ev(cls: type[LineEvent], **fields: object) -> EventFactory:
    return functools.partial(cls, device_id=DEV, line=LINE, **fields)


RING = _ev(Ring)
OFF = _ev(OffHook)
ON = _ev(OnHook)
CONNECTED = _ev(Connected)
ERROR = _ev(LineError, error="bad checksum", raw="80 0c")
DOWN = functools.partial(DeviceDown, device_id=DEV, line=ALL_LINES, reason="port vanished")
UP = functools.partial(DeviceUp, device_id=DEV, line=ALL_LINES)


def cid(number: str | None = None, name: str | None = None, absence: Absence | None = None) -> EventFactory:
    return _ev(CallerId, number=number, name=name, absence=absence)


def report(**fields: object) -> EventFactory:
    return _ev(CallReport, **fields)


def dial(digits: str, complete: bool = False) -> EventFactory:
    return _ev(Dialed, digits=digits, complete=complete)


def t(seconds: float) -> datetime:
    return BASE_TIME + timedelta(seconds=seconds)


def secs(when: datetime) -> float:
    return (when - BASE_TIME).total_seconds()


def offset(when: datetime | None) -> float | None:
    return None if when is None else secs(when)


def run(tracker: CallTracker, steps: list[Step]) -> list[CallEvent]:
    """Feed ``steps`` (offset, event factory / TICK / CLOSE) and collect every call event."""
    out: list[CallEvent] = []
    for seconds, what in steps:
        now = t(seconds)
        if what == TICK:
            out.extend(tracker.tick(now))
        elif what == CLOSE:
            out.extend(tracker.close(now))
        else:
            assert callable(what)
            out.extend(tracker.feed(what(at=now), now))
    return out


def kinds(events: list[CallEvent]) -> list[str]:
    return [e.kind.value for e in events]


@dataclass(frozen=True)
class Final:
    """What a finished call must look like; times are offsets from BASE_TIME."""

    direction: Direction
    started: float
    answered: float | None
    ended: float
    ring: float
    talk: float
    disposition: Disposition
    end_reason: EndReason
    number_raw: str | None = None
    number_e164: str | None = None
    cid_name: str | None = None
    absence: Absence | None = None
    rings: int = 0
    waiting: bool = False

    @classmethod
    def of(cls, call: Call) -> Final:
        assert call.ended_at is not None
        assert call.ring_seconds is not None
        assert call.talk_seconds is not None
        assert call.disposition is not None
        assert call.end_reason is not None
        return cls(
            direction=call.direction,
            started=secs(call.started_at),
            answered=offset(call.answered_at),
            ended=secs(call.ended_at),
            ring=call.ring_seconds,
            talk=call.talk_seconds,
            disposition=call.disposition,
            end_reason=call.end_reason,
            number_raw=call.number_raw,
            number_e164=call.number_e164,
            cid_name=call.cid_name,
            absence=call.absence,
            rings=call.rings,
            waiting=call.waiting,
        )


# -- one call from start to end ---------------------------------------------------------

MOBILE = "13812345678"
MOBILE_E164 = "+8613812345678"
TIANJIN = "02223456789"
TIANJIN_E164 = "+862223456789"


@dataclass(frozen=True)
class Case:
    id: str
    steps: list[Step]
    kinds: list[str]
    final: Final
    state: LineState = LineState.IDLE
    config: TrackerConfig = field(default_factory=TrackerConfig)


S, ID, A, E = "started", "identified", "answered", "ended"

CASES = [
    Case(
        "inbound, caller ID between rings, answered, hung up",
        [(0, RING), (1.5, cid(MOBILE, "ZHANG SAN")), (5, RING), (7, OFF), (67.25, ON)],
        [S, ID, A, E],
        Final(IN, 0, 7, 67.25, 7.0, 60.25, ANSWERED, HANGUP, MOBILE, MOBILE_E164, "ZHANG SAN", rings=2),
    ),
    Case(
        "inbound missed on a hook-reporting device: ends at the last ring",
        [(0, RING), (1.5, cid(TIANJIN)), (5, RING), (10, RING), (17.9, TICK), (18, TICK)],
        [S, ID, E],
        Final(IN, 0, None, 10, 10.0, 0.0, MISSED, RING_TIMEOUT, TIANJIN, TIANJIN_E164, rings=3),
    ),
    Case(
        "inbound on a plain modem (no hook state): unknown after the ring timeout",
        [(0, RING), (1.5, cid(MOBILE, "LI SI")), (5, RING), (12.9, TICK), (13, TICK)],
        [S, ID, E],
        Final(IN, 0, None, 5, 5.0, 0.0, UNKNOWN, RING_TIMEOUT, MOBILE, MOBILE_E164, "LI SI", rings=2),
        config=TrackerConfig(reports_hook=False),
    ),
    Case(
        "outbound in bursts, far end answer reported: ringback is the ring time",
        [(0, OFF), (2, dial("138")), (3.5, dial("1234")), (5, dial("5678")), (12, CONNECTED), (72, ON)],
        [S, ID, A, E],
        Final(OUT, 0, 12, 72, 7.0, 60.0, ANSWERED, HANGUP, MOBILE, MOBILE_E164),
        config=TrackerConfig(reports_connect=True),
    ),
    Case(
        "outbound in bursts, no answer reported: answered at the last digit",
        [
            (0, OFF),
            (2, dial("0755-")),
            (3.5, dial("8601")),
            (5, dial("3388")),
            (8.9, TICK),
            (9, TICK),
            (69, ON),
        ],
        [S, ID, A, E],
        Final(OUT, 0, 5, 69, 0.0, 64.0, ANSWERED, HANGUP, "075586013388", "+8675586013388"),
    ),
    Case(
        "outbound hung up within the dial timeout, no answer reported: abandoned, never a connected call",
        [(0, OFF), (2, dial(MOBILE)), (5, ON)],
        [S, ID, E],
        Final(OUT, 0, None, 5, 3.0, 0.0, ABANDONED, HANGUP, MOBILE, MOBILE_E164),
    ),
    Case(
        "outbound dialed, never connected: abandoned",
        [(0, OFF), (2, dial(MOBILE)), (20, ON)],
        [S, ID, E],
        Final(OUT, 0, None, 20, 18.0, 0.0, ABANDONED, HANGUP, MOBILE, MOBILE_E164),
        config=TrackerConfig(reports_connect=True),
    ),
    Case(
        "outbound given up while dialing: abandoned with the partial number",
        [(0, OFF), (2, dial("138")), (4, ON)],
        [S, ID, E],
        Final(OUT, 0, None, 4, 2.0, 0.0, ABANDONED, HANGUP, "138", None),
        config=TrackerConfig(reports_connect=True),
    ),
    Case(
        "off-hook and on-hook with nothing dialed, recorded as a no-number call",
        [(0, OFF), (10, ON)],
        [S, E],
        Final(OUT, 0, None, 10, 0.0, 0.0, UNKNOWN, NO_NUMBER),
        config=TrackerConfig(no_number_calls=True),
    ),
    Case(
        "whole number at once on an idle line (NCID OUT): identified and answered at once",
        [(0, dial(MOBILE, complete=True)), (45, ON)],
        [S, ID, A, E],
        Final(OUT, 0, 0, 45, 0.0, 45.0, ANSWERED, HANGUP, MOBILE, MOBILE_E164),
    ),
    Case(
        "whole number at once, then the far end answers",
        [(0, dial(MOBILE, complete=True)), (8, CONNECTED), (38, ON)],
        [S, ID, A, E],
        Final(OUT, 0, 8, 38, 8.0, 30.0, ANSWERED, HANGUP, MOBILE, MOBILE_E164),
        config=TrackerConfig(reports_connect=True),
    ),
    Case(
        "caller ID before the first ring (DTMF caller ID)",
        [(0, cid(MOBILE)), (0.8, RING), (5.8, RING), (7, OFF), (37, ON)],
        [S, ID, A, E],
        Final(IN, 0, 7, 37, 7.0, 30.0, ANSWERED, HANGUP, MOBILE, MOBILE_E164, rings=2),
    ),
    Case(
        "the same caller ID twice identifies once",
        [(0, RING), (1, cid(MOBILE, "ZHANG SAN")), (1.2, cid(MOBILE, "ZHANG SAN")), (5, RING), (13, TICK)],
        [S, ID, E],
        Final(IN, 0, None, 5, 5.0, 0.0, MISSED, RING_TIMEOUT, MOBILE, MOBILE_E164, "ZHANG SAN", rings=2),
    ),
    Case(
        "number withheld (P); a later O does not replace it; caller ID counts as a ring for the timeout",
        [(0, RING), (1, cid(absence=Absence.PRIVATE)), (1.5, cid(absence=Absence.UNAVAILABLE)), (13, TICK)],
        [S, ID, E],
        Final(IN, 0, None, 1.5, 1.5, 0.0, MISSED, RING_TIMEOUT, absence=Absence.PRIVATE, rings=1),
    ),
    Case(
        "number unavailable (O), answered",
        [(0, RING), (1, cid(absence=Absence.UNAVAILABLE)), (4, OFF), (10, ON)],
        [S, ID, A, E],
        Final(IN, 0, 4, 10, 4.0, 6.0, ANSWERED, HANGUP, absence=Absence.UNAVAILABLE, rings=1),
    ),
    Case(
        "a later P does not mask a number already received",
        [(0, RING), (1, cid(MOBILE)), (1.5, cid(absence=Absence.PRIVATE)), (5, OFF), (20, ON)],
        [S, ID, A, E],
        Final(IN, 0, 5, 20, 5.0, 15.0, ANSWERED, HANGUP, MOBILE, MOBILE_E164, rings=1),
    ),
    Case(
        "a name-only update identifies again",
        [(0, RING), (1, cid(MOBILE)), (2, cid(name="ZHANG SAN")), (3, OFF), (9, ON)],
        [S, ID, ID, A, E],
        Final(IN, 0, 3, 9, 3.0, 6.0, ANSWERED, HANGUP, MOBILE, MOBILE_E164, "ZHANG SAN", rings=1),
    ),
    Case(
        "a short code is kept raw without an E.164 form",
        [(0, RING), (1, cid("10086")), (3, OFF), (9, ON)],
        [S, ID, A, E],
        Final(IN, 0, 3, 9, 3.0, 6.0, ANSWERED, HANGUP, "10086", None, rings=1),
    ),
    Case(
        "device down while ringing: unknown",
        [(0, RING), (2, DOWN)],
        [S, E],
        Final(IN, 0, None, 2, 2.0, 0.0, UNKNOWN, DEVICE_DOWN, rings=1),
        state=LineState.DOWN,
    ),
    Case(
        "device down mid-call: answered, talk until then",
        [(0, RING), (3, OFF), (30, DOWN)],
        [S, A, E],
        Final(IN, 0, 3, 30, 3.0, 27.0, ANSWERED, DEVICE_DOWN, rings=1),
        state=LineState.DOWN,
    ),
    Case(
        "device down while dialing: the partial number is identified, unknown",
        [(0, OFF), (1, dial("138")), (2, DOWN)],
        [S, ID, E],
        Final(OUT, 0, None, 2, 0.0, 0.0, UNKNOWN, DEVICE_DOWN, "138", None),
        state=LineState.DOWN,
    ),
    Case(
        "shutdown mid-call",
        [(0, RING), (3, OFF), (50, CLOSE)],
        [S, A, E],
        Final(IN, 0, 3, 50, 3.0, 47.0, ANSWERED, SHUTDOWN, rings=1),
    ),
    Case(
        "shutdown while ringing",
        [(0, RING), (2, CLOSE)],
        [S, E],
        Final(IN, 0, None, 2, 2.0, 0.0, UNKNOWN, SHUTDOWN, rings=1),
    ),
    Case(
        "shutdown after the rings stopped: the ring timeout comes first",
        [(0, RING), (20, CLOSE)],
        [S, E],
        Final(IN, 0, None, 0, 0.0, 0.0, MISSED, RING_TIMEOUT, rings=1),
    ),
    Case(
        "undecodable device output changes nothing",
        [(0, RING), (1, ERROR), (2, OFF), (3, ERROR), (5, ON)],
        [S, A, E],
        Final(IN, 0, 2, 5, 2.0, 3.0, ANSWERED, HANGUP, rings=1),
    ),
]


HOOK_BLIND = TrackerConfig(reports_hook=False)
#: A unit that cannot see the handset but sends an end record for every call (Whozz Basic, NCID gateways).
END_RECORDS = TrackerConfig(reports_hook=False, reports_end=True)
NEXT_CALLER, BLOCKED = EndReason.NEXT_CALLER, EndReason.BLOCKED

# A device's own report of the call (end records, NCID END:/HUP:/BLK:): its counts replace
# arrival times where they are believable, and a report that ends the call ends it.
CASES += [
    Case(
        "hook-blind unit's end record: the device's talk seconds, answered",
        [(0, RING), (0.1, cid(MOBILE)), (5, RING), (65, report(talk_seconds=52.0, answered=True)), (65, ON)],
        [S, ID, E],
        Final(IN, 0, 13, 65, 13.0, 52.0, ANSWERED, HANGUP, MOBILE, MOBILE_E164, rings=2),
        config=END_RECORDS,
    ),
    Case(
        "a talk count longer than the call by our clock is ignored: arrival times",
        [(0, RING), (0.1, cid(MOBILE)), (7, OFF), (30, report(talk_seconds=500.0)), (30, ON)],
        [S, ID, A, E],
        Final(IN, 0, 7, 30, 7.0, 23.0, ANSWERED, HANGUP, MOBILE, MOBILE_E164, rings=1),
    ),
    Case(
        "a talk count within the clocks' tolerance is cut to the call's length",
        [(0, RING), (0.1, cid(MOBILE)), (30, report(talk_seconds=31.5, answered=True)), (30, ON)],
        [S, ID, E],
        Final(IN, 0, 0, 30, 0.0, 30.0, ANSWERED, HANGUP, MOBILE, MOBILE_E164, rings=1),
        config=END_RECORDS,
    ),
    Case(
        "answered with only a start-to-end duration: talked after the rings we saw",
        [
            (0, cid(MOBILE)),
            (1, RING),
            (6, RING),
            (40, report(duration=39.0, answered=True)),
            (40, OFF),
            (40, ON),
        ],
        [S, ID, A, E],
        Final(IN, 0, 7, 40, 7.0, 33.0, ANSWERED, HANGUP, MOBILE, MOBILE_E164, rings=2),
        config=END_RECORDS,
    ),
    Case(
        "answered, no counts: answered after the last ring we saw",
        [(0, cid(MOBILE)), (1, RING), (6, RING), (40, report(answered=True)), (40, ON)],
        [S, ID, E],
        Final(IN, 0, 6, 40, 6.0, 34.0, ANSWERED, HANGUP, MOBILE, MOBILE_E164, rings=2),
        config=END_RECORDS,
    ),
    Case(
        "a blocked caller (NCID HUP:/BLK:) ends at once, missed, not at the ring timeout",
        [(0, cid(MOBILE, "JUNK")), (0.2, report(ends_call=True, answered=False, blocked=True))],
        [S, ID, E],
        Final(IN, 0, None, 0.2, 0.2, 0.0, MISSED, BLOCKED, MOBILE, MOBILE_E164, "JUNK"),
        config=HOOK_BLIND,
    ),
    Case(
        "a report that ends the call, not answered, on a hook-blind line: missed, not unknown",
        [(0, RING), (1, cid(MOBILE)), (6, report(ends_call=True, answered=False))],
        [S, ID, E],
        Final(IN, 0, None, 6, 6.0, 0.0, MISSED, HANGUP, MOBILE, MOBILE_E164, rings=1),
        config=HOOK_BLIND,
    ),
    Case(
        "a report with no call in progress changes nothing",
        [(0, report(talk_seconds=5.0, ends_call=True)), (1, RING), (2, OFF), (12, ON)],
        [S, A, E],
        Final(IN, 1, 2, 12, 1.0, 10.0, ANSWERED, HANGUP, rings=1),
    ),
    Case(
        "an identical caller ID repeated within a second is one call, also right after it ended",
        [(0, cid(MOBILE, "ZHANG SAN")), (0.6, ON), (0.9, cid(MOBILE, "ZHANG SAN"))],
        [S, ID, E],
        Final(IN, 0, None, 0.6, 0.6, 0.0, MISSED, HANGUP, MOBILE, MOBILE_E164, "ZHANG SAN"),
    ),
    Case(
        "hook-blind: the same number again while ringing is the same call",
        [(0, cid(MOBILE)), (3, cid(MOBILE)), (5, RING), (13, TICK)],
        [S, ID, E],
        Final(IN, 0, None, 5, 5.0, 0.0, UNKNOWN, RING_TIMEOUT, MOBILE, MOBILE_E164, rings=1),
        config=HOOK_BLIND,
    ),
]


@dataclass(frozen=True)
class Calls:
    """A sequence that makes several calls: what each must look like, in the order they end."""

    id: str
    steps: list[Step]
    finals: list[Final]
    config: TrackerConfig = field(default_factory=TrackerConfig)


MANY = [
    Calls(
        "hook-blind: another caller's ID while ringing ends the first call, missed with its number",
        [(0, cid(MOBILE, "LEAD")), (1, RING), (4, cid(TIANJIN)), (5, RING), (13, TICK)],
        [
            Final(IN, 0, None, 1, 1.0, 0.0, MISSED, NEXT_CALLER, MOBILE, MOBILE_E164, "LEAD", rings=1),
            Final(IN, 4, None, 5, 1.0, 0.0, UNKNOWN, RING_TIMEOUT, TIANJIN, TIANJIN_E164, rings=1),
        ],
        config=HOOK_BLIND,
    ),
    Calls(
        "hook-blind: two callers a few seconds apart with no rings between",
        [(0, cid(MOBILE)), (3, cid(TIANJIN)), (3.5, cid(TIANJIN)), (12, TICK)],
        [
            Final(IN, 0, None, 0, 0.0, 0.0, MISSED, NEXT_CALLER, MOBILE, MOBILE_E164),
            # The repeat within a second changes nothing, not even the ring time-out.
            Final(IN, 3, None, 3, 0.0, 0.0, UNKNOWN, RING_TIMEOUT, TIANJIN, TIANJIN_E164),
        ],
        config=HOOK_BLIND,
    ),
    Calls(
        "hook-blind: a repeat of the first message after the second is a third call",
        [(0, cid(MOBILE)), (2, cid(TIANJIN)), (2.5, cid(MOBILE)), (11, TICK)],
        [
            Final(IN, 0, None, 0, 0.0, 0.0, MISSED, NEXT_CALLER, MOBILE, MOBILE_E164),
            Final(IN, 2, None, 2, 0.0, 0.0, MISSED, NEXT_CALLER, TIANJIN, TIANJIN_E164),
            Final(IN, 2.5, None, 2.5, 0.0, 0.0, UNKNOWN, RING_TIMEOUT, MOBILE, MOBILE_E164),
        ],
        config=HOOK_BLIND,
    ),
    Calls(
        "hook-reporting line: a second number while ringing updates the call (the hang-up would show)",
        [(0, cid(MOBILE)), (3, cid(TIANJIN)), (5, OFF), (9, ON)],
        [Final(IN, 0, 5, 9, 5.0, 4.0, ANSWERED, HANGUP, TIANJIN, TIANJIN_E164)],
    ),
    Calls(
        "the first end record teaches the line: later calls wait for theirs, not the ring time-out",
        [
            (0, RING),
            (0.1, cid(MOBILE)),
            (9, TICK),
            (70, report(talk_seconds=50.0, answered=True)),
            (70, ON),
            (100, RING),
            (100.1, cid(TIANJIN)),
            (200, TICK),
            (230, report(talk_seconds=120.0, answered=True)),
            (230, ON),
        ],
        [
            Final(IN, 0, None, 0.1, 0.1, 0.0, UNKNOWN, RING_TIMEOUT, MOBILE, MOBILE_E164, rings=1),
            Final(IN, 100, 110, 230, 10.0, 120.0, ANSWERED, HANGUP, TIANJIN, TIANJIN_E164, rings=1),
        ],
        config=HOOK_BLIND,
    ),
    Calls(
        "an end record lost on a hook-blind unit: the next caller still gets their own call",
        [
            (0, RING),
            (0.1, cid(MOBILE)),
            (30, report(talk_seconds=20.0, answered=True)),
            (30, ON),  # the end record's on-hook: the line now reads hook-aware, the unit is still blind
            (100, RING),
            (100.1, cid(TIANJIN)),
            (300, RING),
            (300.1, cid("02112345678")),
            (400, report(talk_seconds=50.0, answered=True)),
            (400, ON),
        ],
        [
            Final(IN, 0, 10, 30, 10.0, 20.0, ANSWERED, HANGUP, MOBILE, MOBILE_E164, rings=1),
            Final(IN, 100, None, 300, 200.0, 0.0, MISSED, NEXT_CALLER, TIANJIN, TIANJIN_E164, rings=2),
            Final(IN, 300.1, 350, 400, 49.9, 50.0, ANSWERED, HANGUP, "02112345678", "+862112345678"),
        ],
        config=END_RECORDS,
    ),
    Calls(
        "waiting for an end record that never comes: ended after end_timeout",
        [(0, RING), (0.1, cid(MOBILE)), (59.9, TICK), (60, TICK)],
        [Final(IN, 0, None, 0.1, 0.1, 0.0, UNKNOWN, RING_TIMEOUT, MOBILE, MOBILE_E164, rings=1)],
        config=TrackerConfig(reports_hook=False, reports_end=True, end_timeout=59.9),
    ),
    Calls(
        "a blocked caller, then the next caller rings normally",
        [
            (0, cid("4005551111", "JUNK")),
            (0.1, report(ends_call=True, answered=False, blocked=True)),
            (20, RING),
            (20.5, cid(MOBILE)),
            (26, TICK),
            (30, TICK),
        ],
        [
            Final(IN, 0, None, 0.1, 0.1, 0.0, MISSED, BLOCKED, "4005551111", "+864005551111", "JUNK"),
            Final(IN, 20, None, 20.5, 0.5, 0.0, UNKNOWN, RING_TIMEOUT, MOBILE, MOBILE_E164, rings=1),
        ],
        config=HOOK_BLIND,
    ),
]


@pytest.mark.parametrize("case", MANY, ids=[c.id for c in MANY])
def test_calls_in_sequence(case: Calls, uuids: Callable[[], str]) -> None:
    tracker = CallTracker(IDENTITY, case.config, new_uuid=uuids)
    events = run(tracker, case.steps)

    ended = [e.call for e in events if e.kind is CallEventKind.ENDED]
    assert [Final.of(call) for call in ended] == case.finals
    assert len({call.uuid for call in ended}) == len(case.finals)
    assert (tracker.call, tracker.state) == (None, LineState.IDLE)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_one_call(case: Case, uuids: Callable[[], str]) -> None:
    tracker = CallTracker(IDENTITY, case.config, new_uuid=uuids)
    events = run(tracker, case.steps)

    assert kinds(events) == case.kinds
    assert {e.call.uuid for e in events} == {"call-1"}
    assert events[-1].kind is CallEventKind.ENDED
    final = events[-1].call
    assert Final.of(final) == case.final
    assert events[-1].at == final.ended_at
    assert (final.seat, final.device_id, final.line, final.rep, final.team) == (
        "seat-7",
        DEV,
        LINE,
        "wang",
        "north",
    )
    assert tracker.state is case.state
    assert tracker.call is None
    assert tracker.waiting_call is None
    assert tracker.deadline() is None


def test_started_and_answered_events_carry_the_call_so_far(uuids: Callable[[], str]) -> None:
    tracker = CallTracker(IDENTITY, new_uuid=uuids)
    started, identified = run(tracker, [(0, RING), (1.5, cid(MOBILE, "ZHANG SAN"))])
    assert started.at == t(0)
    assert started.call.number_raw is None
    assert not started.call.ended
    assert identified.at == t(1.5)
    assert (identified.call.number_raw, identified.call.number_e164) == (MOBILE, MOBILE_E164)
    assert tracker.state is LineState.RINGING
    assert tracker.call == identified.call

    (answered,) = run(tracker, [(5, RING), (7, OFF)])
    assert answered.at == t(7)
    assert (answered.call.answered_at, answered.call.ring_seconds, answered.call.rings) == (t(7), 7.0, 2)
    assert answered.call.talk_seconds is None
    assert tracker.state is LineState.TALKING
    assert tracker.state_since == t(7)


def test_off_hook_then_on_hook_with_nothing_dialed_is_no_call(uuids: Callable[[], str]) -> None:
    tracker = CallTracker(IDENTITY, new_uuid=uuids)
    assert run(tracker, [(0, OFF)]) == []
    assert tracker.state is LineState.DIALING
    assert tracker.call is None
    assert run(tracker, [(10, ON)]) == []
    assert tracker.state is LineState.IDLE
    assert tracker.state_since == t(10)


def test_missed_call_leaves_the_line_idle_since_the_last_ring(uuids: Callable[[], str]) -> None:
    tracker = CallTracker(IDENTITY, new_uuid=uuids, now=t(-60))
    assert tracker.state_since == t(-60)
    run(tracker, [(0, RING), (5, RING), (30, TICK)])
    assert tracker.state is LineState.IDLE
    assert tracker.state_since == t(5)


def test_one_hook_event_switches_a_plain_modem_to_hook_aware_reading(uuids: Callable[[], str]) -> None:
    tracker = CallTracker(IDENTITY, TrackerConfig(reports_hook=False), new_uuid=uuids)
    first = run(tracker, [(0, RING), (3, OFF), (30, ON)])
    assert kinds(first) == [S, A, E]
    assert Final.of(first[-1].call) == Final(IN, 0, 3, 30, 3.0, 27.0, ANSWERED, HANGUP, rings=1)

    second = run(tracker, [(100, RING), (105, RING), (113, TICK)])
    assert kinds(second) == [S, E]
    assert second[-1].call.uuid == "call-2"
    assert Final.of(second[-1].call) == Final(IN, 100, None, 105, 5.0, 0.0, MISSED, RING_TIMEOUT, rings=2)


# -- call waiting ------------------------------------------------------------------------


def test_call_waiting_caller_ends_missed_when_its_rings_stop(uuids: Callable[[], str]) -> None:
    tracker = CallTracker(IDENTITY, new_uuid=uuids)
    events = run(tracker, [(0, RING), (2, cid(MOBILE)), (4, OFF), (20, RING), (21, cid(TIANJIN, "LI SI"))])
    assert [(e.kind.value, e.call.uuid) for e in events] == [
        (S, "call-1"),
        (ID, "call-1"),
        (A, "call-1"),
        (S, "call-2"),
        (ID, "call-2"),
    ]
    main_answered = events[2].call
    assert events[3].call.waiting
    assert tracker.state is LineState.TALKING
    assert tracker.call == main_answered
    assert tracker.waiting_call is not None
    assert tracker.waiting_call.number_raw == TIANJIN

    events = run(tracker, [(26, RING), (33.9, TICK), (34, TICK)])
    assert kinds(events) == [E]
    assert Final.of(events[0].call) == Final(
        IN,
        20,
        None,
        26,
        6.0,
        0.0,
        MISSED,
        RING_TIMEOUT,
        TIANJIN,
        TIANJIN_E164,
        "LI SI",
        rings=2,
        waiting=True,
    )
    assert tracker.waiting_call is None
    assert tracker.state is LineState.TALKING
    assert tracker.call == main_answered

    events = run(tracker, [(60, ON)])
    assert [(e.kind.value, e.call.uuid) for e in events] == [(E, "call-1")]
    assert Final.of(events[0].call) == Final(
        IN, 0, 4, 60, 4.0, 56.0, ANSWERED, HANGUP, MOBILE, MOBILE_E164, rings=1
    )


@pytest.mark.parametrize(
    ("steps", "main"),
    [
        (
            [(0, RING), (4, OFF), (20, RING), (22, ON)],
            Final(IN, 0, 4, 22, 4.0, 18.0, ANSWERED, HANGUP, rings=1),
        ),
        (
            [(0, dial(MOBILE, complete=True)), (20, RING), (22, ON)],
            Final(OUT, 0, 0, 22, 0.0, 22.0, ANSWERED, HANGUP, MOBILE, MOBILE_E164),
        ),
        (
            [(0, RING), (4, OFF), (20, RING), (22, DOWN)],
            Final(IN, 0, 4, 22, 4.0, 18.0, ANSWERED, DEVICE_DOWN, rings=1),
        ),
        (
            [(0, RING), (4, OFF), (20, RING), (22, CLOSE)],
            Final(IN, 0, 4, 22, 4.0, 18.0, ANSWERED, SHUTDOWN, rings=1),
        ),
    ],
    ids=["inbound hung up", "outbound hung up", "device down", "shutdown"],
)
def test_call_waiting_caller_ends_missed_when_the_main_call_ends_first(
    steps: list[Step], main: Final, uuids: Callable[[], str]
) -> None:
    tracker = CallTracker(IDENTITY, new_uuid=uuids)
    events = run(tracker, steps)
    ended = [e for e in events if e.kind is CallEventKind.ENDED]
    assert [e.call.uuid for e in ended] == ["call-1", "call-2"]
    assert Final.of(ended[0].call) == main
    # The waiting caller rang once at 20 s; it ends there, with the main call's reason.
    assert Final.of(ended[1].call) == Final(
        IN, 20, None, 20, 0.0, 0.0, MISSED, main.end_reason, rings=1, waiting=True
    )
    assert tracker.call is None
    assert tracker.waiting_call is None


# -- device down and up -----------------------------------------------------------------


def test_device_down_and_up_loses_nothing(uuids: Callable[[], str]) -> None:
    tracker = CallTracker(IDENTITY, new_uuid=uuids)
    events = run(tracker, [(0, RING), (4, OFF), (20, RING), (25, DOWN)])
    assert tracker.state is LineState.DOWN
    assert tracker.state_since == t(25)
    ended = {e.call.uuid: e.call for e in events if e.kind is CallEventKind.ENDED}
    assert Final.of(ended["call-1"]) == Final(IN, 0, 4, 25, 4.0, 21.0, ANSWERED, DEVICE_DOWN, rings=1)
    assert Final.of(ended["call-2"]) == Final(
        IN, 20, None, 20, 0.0, 0.0, MISSED, DEVICE_DOWN, rings=1, waiting=True
    )

    # Repeated down reports and stray hook events while down change nothing.
    assert run(tracker, [(26, DOWN), (27, ON)]) == []
    assert tracker.state is LineState.DOWN
    assert tracker.state_since == t(25)

    assert run(tracker, [(30, UP)]) == []
    assert tracker.state is LineState.IDLE
    assert tracker.state_since == t(30)
    # Up while already up is not a state change.
    assert run(tracker, [(31, UP)]) == []
    assert tracker.state_since == t(30)

    events += run(tracker, [(40, RING), (42, OFF), (50, CLOSE)])
    started = [e.call.uuid for e in events if e.kind is CallEventKind.STARTED]
    ended_ids = [e.call.uuid for e in events if e.kind is CallEventKind.ENDED]
    assert started == ["call-1", "call-2", "call-3"]
    assert sorted(ended_ids) == started
    assert tracker.state is LineState.IDLE


def test_a_ring_on_a_down_line_starts_a_call(uuids: Callable[[], str]) -> None:
    # Some devices send nothing between losing and regaining their port but a ring.
    tracker = CallTracker(IDENTITY, new_uuid=uuids)
    run(tracker, [(0, DOWN)])
    assert kinds(run(tracker, [(5, RING)])) == [S]
    assert tracker.state is LineState.RINGING


def test_close_on_an_idle_line_emits_nothing(uuids: Callable[[], str]) -> None:
    tracker = CallTracker(IDENTITY, new_uuid=uuids)
    assert tracker.close(t(0)) == []
    assert tracker.state is LineState.IDLE


# -- deadlines and ticks ----------------------------------------------------------------

DEADLINES = [
    ("idle", [], TrackerConfig(), None, LineState.IDLE),
    ("ringing", [(0, RING), (5, RING)], TrackerConfig(), 13, LineState.RINGING),
    ("caller ID only", [(0, cid(MOBILE))], TrackerConfig(), 8, LineState.RINGING),
    ("short ring timeout", [(0, RING)], TrackerConfig(ring_timeout=5), 5, LineState.RINGING),
    ("off hook, no digits", [(0, OFF)], TrackerConfig(), None, LineState.DIALING),
    ("dialing", [(0, OFF), (2, dial("138"))], TrackerConfig(), 6, LineState.DIALING),
    (
        "dialing, short timeout",
        [(0, OFF), (2, dial("138"))],
        TrackerConfig(dial_timeout=2),
        4,
        LineState.DIALING,
    ),
    (
        "dialed, waiting for the far end",
        [(0, OFF), (2, dial("138")), (6, TICK)],
        TrackerConfig(reports_connect=True),
        None,
        LineState.DIALING,
    ),
    ("talking", [(0, RING), (3, OFF)], TrackerConfig(), None, LineState.TALKING),
    ("talking, call waiting", [(0, RING), (3, OFF), (20, RING)], TrackerConfig(), 28, LineState.TALKING),
    ("down", [(0, RING), (2, DOWN)], TrackerConfig(), None, LineState.DOWN),
    ("idle after a missed call", [(0, RING), (9, TICK)], TrackerConfig(), None, LineState.IDLE),
]


@pytest.mark.parametrize(
    ("steps", "config", "deadline", "state"), [d[1:] for d in DEADLINES], ids=[d[0] for d in DEADLINES]
)
def test_deadline(
    steps: list[Step],
    config: TrackerConfig,
    deadline: float | None,
    state: LineState,
    uuids: Callable[[], str],
) -> None:
    tracker = CallTracker(IDENTITY, config, new_uuid=uuids)
    run(tracker, steps)
    assert tracker.state is state
    assert offset(tracker.deadline()) == deadline
    if deadline is None:
        assert tracker.tick(t(3600)) == []
        assert tracker.state is state
        return
    call, waiting = tracker.call, tracker.waiting_call
    assert tracker.tick(t(deadline - 0.001)) == []
    assert (tracker.state, tracker.call, tracker.waiting_call) == (state, call, waiting)
    assert tracker.tick(t(deadline)) != []


# -- any sequence at all ----------------------------------------------------------------

_numbers = st.sampled_from([MOBILE, TIANJIN, "10086", "", " ", "+1 650 253 0000", "１３８１２３４５６７８"])
_event = st.one_of(
    st.sampled_from([RING, OFF, ON, CONNECTED, DOWN, UP, ERROR, TICK]),
    st.builds(
        cid,
        number=st.none() | _numbers,
        name=st.none() | st.sampled_from(["ZHANG SAN", "", " LI SI "]),
        absence=st.none() | st.sampled_from(Absence),
    ),
    st.builds(dial, digits=st.text(alphabet="0123456789*#+- ", max_size=6), complete=st.booleans()),
    st.builds(
        report,
        talk_seconds=st.none() | st.sampled_from([0.0, 1.0, 7.5, 1000.0, -3.0]),
        duration=st.none() | st.sampled_from([0.0, 4.0, 30.0, 1e9]),
        answered=st.none() | st.booleans(),
        ends_call=st.booleans(),
        blocked=st.booleans(),
    ),
)
_steps = st.lists(st.tuples(st.sampled_from([0, 0, 0.5, 1, 3.999, 4, 7.9, 8, 30]), _event), max_size=30)
_config = st.builds(
    TrackerConfig,
    reports_hook=st.booleans(),
    reports_connect=st.booleans(),
    no_number_calls=st.booleans(),
)


def _check_line(tracker: CallTracker, now: datetime) -> None:
    assert tracker.state_since is not None
    assert tracker.state_since <= now
    if tracker.state in (LineState.IDLE, LineState.DOWN):
        assert tracker.call is None
    if tracker.state in (LineState.RINGING, LineState.TALKING):
        assert tracker.call is not None
    if tracker.state is LineState.TALKING:
        assert tracker.call is not None
        assert tracker.call.answered_at is not None
    deadline = tracker.deadline()
    if deadline is not None:
        # "The earliest time at which tick may change something": not a moment before, and then it does.
        before = copy.deepcopy(tracker)
        assert before.tick(deadline - timedelta(milliseconds=1)) == []
        assert copy.deepcopy(tracker).tick(deadline) != []


def _check_ended(call: Call) -> None:
    assert call.ended_at is not None
    assert call.ring_seconds is not None
    assert call.talk_seconds is not None
    assert call.disposition is not None
    assert call.end_reason is not None
    assert call.ended_at >= call.started_at
    assert call.ring_seconds >= 0
    assert call.talk_seconds >= 0
    assert (call.disposition is Disposition.ANSWERED) == (call.answered_at is not None)
    if call.answered_at is None:
        assert call.talk_seconds == 0
    else:
        assert call.started_at <= call.answered_at <= call.ended_at
        assert call.talk_seconds == round((call.ended_at - call.answered_at).total_seconds(), 3)
    if call.waiting:
        assert (call.direction, call.disposition) == (Direction.IN, Disposition.MISSED)
    if call.direction is Direction.IN:
        assert call.disposition is not Disposition.ABANDONED
    else:
        assert call.disposition is not Disposition.MISSED
    if call.end_reason is EndReason.NO_NUMBER and not call.waiting:
        # (A call-waiting caller ends with the reason of the call it rang into.)
        assert (call.direction, call.number_raw) == (Direction.OUT, None)
    assert call.number_e164 == to_e164(call.number_raw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(config=_config, steps=_steps)
def test_any_sequence_ends_every_call_exactly_once(
    config: TrackerConfig, steps: list[tuple[float, EventFactory | str]]
) -> None:
    counter = iter(range(10_000))
    tracker = CallTracker(IDENTITY, config, new_uuid=lambda: f"call-{next(counter)}", now=BASE_TIME)
    events: list[CallEvent] = []
    elapsed = 0.0
    for step, what in steps:
        elapsed += step
        events += run(tracker, [(elapsed, what)])
        _check_line(tracker, t(elapsed))
    events += tracker.close(t(elapsed + 1))

    assert tracker.state is LineState.IDLE
    assert (tracker.call, tracker.waiting_call, tracker.deadline()) == (None, None, None)
    by_uuid: dict[str, list[CallEvent]] = {}
    for event in events:
        by_uuid.setdefault(event.call.uuid, []).append(event)
    for history in by_uuid.values():
        sequence = [e.kind for e in history]
        assert sequence[0] is CallEventKind.STARTED
        assert sequence.count(CallEventKind.STARTED) == 1
        assert sequence.count(CallEventKind.ENDED) == 1
        assert sequence[-1] is CallEventKind.ENDED
        assert sequence.count(CallEventKind.ANSWERED) <= 1
        first = history[0].call
        for event in history[:-1]:
            assert not event.call.ended
            assert (event.call.direction, event.call.started_at, event.call.waiting) == (
                first.direction,
                first.started_at,
                first.waiting,
            )
        ended = history[-1]
        assert ended.at == ended.call.ended_at
        assert (ended.call.direction, ended.call.started_at) == (first.direction, first.started_at)
        _check_ended(ended.call)


def test_the_same_caller_right_after_their_call_ended_is_a_new_call() -> None:
    # The repeat rule is for one call's duplicated message, not for a caller who rings again.
    tracker = CallTracker(IDENTITY, TrackerConfig(reports_hook=True))
    t = BASE_TIME
    events = [
        CallerId(device_id=DEV, line=LINE, at=t, number="13812345678"),
        OffHook(device_id=DEV, line=LINE, at=t),
        OnHook(device_id=DEV, line=LINE, at=t),
        CallerId(device_id=DEV, line=LINE, at=t, number="13812345678"),
    ]
    out = [
        e for n, event in enumerate(events) for e in tracker.feed(event, t + timedelta(milliseconds=100 * n))
    ]
    started = [e.call.uuid for e in out if e.kind.value == "started"]
    assert len(started) == 2
    assert len(set(started)) == 2
