"""The call tracker: a pure per-line state machine from ``LineEvent`` to ``CallEvent``.

It does no I/O and reads no clock: every time comes in as an argument, so it is
tested with plain event sequences. One tracker per line.

How it reads the line, in short:

- inbound: a ring or a caller-ID message on an idle line starts a call (caller
  ID may come before the first ring, as DTMF caller ID does); off-hook answers
  it; on-hook ends it. When rings stop for ``ring_timeout`` seconds without an
  answer the call ended unanswered: ``missed`` where the device reports hook
  state, ``unknown`` where it cannot (a plain modem never sees the handset).
- outbound: off-hook on an idle line starts dialing; the first digit starts the
  call; dialing is complete after ``dial_timeout`` seconds without a digit (or at
  once when the device reports the whole number). Where the device sees the far
  end answer (``Connected``) that is the answer time; where it cannot, the end
  of dialing is taken as the answer, so talk time still counts toward quotas.
- a ring or caller ID during a call is call waiting: it becomes a separate call
  that ends ``missed`` (the rep did not take it, as far as we can see), so the
  customer who tried is not lost.
- a new caller ID is a new call: on a line whose device reports no hook state,
  a caller ID with a different number while the line rings means the first
  caller is gone (the line cannot say whether anyone picked up): that call ends
  ``missed`` with its number (end reason ``next_caller``) and the new one starts.
  The same message repeated within :data:`REPEAT_WINDOW` (devices and servers
  send some twice) is the same call and changes nothing.
- a device's own report of a call (:class:`~agent.events.CallReport`: end
  records, blocked callers) is kept with the call and, when it ends, replaces
  arrival times with the device's counts where they are within bounds (never
  longer than the call has lasted by our clock, plus :data:`REPORT_TOLERANCE`).
  A report that ``ends_call`` ends it at once (``blocked`` callers: ``missed``).
  On a line that cannot see the handset but whose device sends end records
  (``reports_end``, or learned from the first one), a call whose rings stopped
  is not over until its end record (or ``end_timeout``): it may be a long talk.
- a device going down ends what is in progress with what is known.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from agent.events import (
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
from agent.numbers import DEFAULT_REGION, to_e164

logger = logging.getLogger(__name__)

#: Seconds within which an identical caller-ID message is a repeat of the last, not a new caller.
REPEAT_WINDOW = 1.0
#: Seconds a device's count may exceed the call's length by our clock (the two clocks differ).
REPORT_TOLERANCE = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerConfig:
    """How a tracker reads its line.

    :param ring_timeout: seconds after the last ring (or caller ID) with no more
        rings before an unanswered call is over. Ring cycles are 5 s in China
        (1 s on, 4 s off) and 6 s in North America, so 8 s is one missed cycle.
    :param dial_timeout: seconds after the last dialed digit before dialing is complete.
    :param reports_hook: the device reports off-hook/on-hook. When False the
        tracker still switches to hook-aware reading on the first hook event it sees.
    :param reports_connect: the device reports when the far end answers an outbound call.
    :param no_number_calls: record off-hook then on-hook with nothing dialed as an
        outbound call (disposition ``unknown``, end reason ``no_number``).
    :param reports_end: the device reports the end of every call (end records). On a line that
        cannot see the handset (``reports_hook`` False) a call is then not over when its rings
        stop (the rep may have picked up) but when the device says so, or after ``end_timeout``.
        When False the tracker still switches to this reading on the first end report it sees.
    :param end_timeout: seconds after the last ring before a call waiting for its end report is
        ended anyway (the report was lost).
    :param region: default region for normalising numbers.
    """

    ring_timeout: float = 8.0
    dial_timeout: float = 4.0
    reports_hook: bool = True
    reports_connect: bool = False
    no_number_calls: bool = False
    reports_end: bool = False
    end_timeout: float = 4 * 3600.0
    region: str = DEFAULT_REGION


@dataclass(frozen=True, slots=True, kw_only=True)
class LineIdentity:
    """Who and where a line is: written on every call it carries."""

    seat: str
    device_id: str
    line: str
    rep: str = ""
    team: str = ""


def _seconds(later: datetime, earlier: datetime) -> float:
    return round(max(0.0, (later - earlier).total_seconds()), 3)


def _new_uuid() -> str:
    return str(uuidlib.uuid4())


class CallTracker:
    """Pure state machine for one line. Feed it events and ticks; it returns call events."""

    def __init__(
        self,
        identity: LineIdentity,
        config: TrackerConfig | None = None,
        *,
        new_uuid: Callable[[], str] = _new_uuid,
        now: datetime | None = None,
    ) -> None:
        self.identity = identity
        self.config = config or TrackerConfig()
        self._new_uuid = new_uuid
        self._hook_seen = self.config.reports_hook
        self._state = LineState.IDLE
        self._state_since: datetime | None = now
        self._call: Call | None = None
        self._waiting: Call | None = None
        self._last_ring: datetime | None = None
        self._waiting_last: datetime | None = None
        self._offhook_at: datetime | None = None
        self._last_digit: datetime | None = None
        self._dial_done_at: datetime | None = None
        #: The device's report of the call in progress, applied when it ends.
        self._report: CallReport | None = None
        #: Whether the call in progress was answered before its report came (a real-time answer).
        self._answer_seen = False
        self._end_reports = self.config.reports_end
        #: The last caller-ID message seen (its content and when), to recognise repeats.
        self._last_cid: tuple[tuple[object, ...], datetime] | None = None
        #: Whether the last call that ended here had been answered (see :meth:`_on_caller_id`).
        self._last_answered = False

    # -- what the runtime reads -------------------------------------------------

    @property
    def state(self) -> LineState:
        """The line's state now."""
        return self._state

    @property
    def state_since(self) -> datetime | None:
        """When the line entered its state (None before the first event)."""
        return self._state_since

    @property
    def call(self) -> Call | None:
        """The call in progress, if any."""
        return self._call

    @property
    def waiting_call(self) -> Call | None:
        """A call-waiting caller ringing during the current call, if any."""
        return self._waiting

    def deadline(self) -> datetime | None:
        """The earliest time at which :meth:`tick` may change something, or None."""
        times: list[datetime] = []
        if self._state is LineState.RINGING and self._last_ring is not None:
            times.append(self._after(self._last_ring, self._ring_timeout()))
        if self._waiting is not None and self._waiting_last is not None:
            times.append(self._after(self._waiting_last, self.config.ring_timeout))
        if (
            self._state is LineState.DIALING
            and self._call is not None
            and self._dial_done_at is None
            and self._last_digit is not None
        ):
            times.append(self._after(self._last_digit, self.config.dial_timeout))
        return min(times) if times else None

    # -- input --------------------------------------------------------------------

    def feed(self, event: LineEvent, now: datetime) -> list[CallEvent]:
        """Take one line event seen at ``now``; return what happened to calls because of it."""
        out: list[CallEvent] = []
        # A timer may have run out between the last event and this one.
        out.extend(self.tick(now))
        match event:
            case Ring():
                self._on_ring(now, out)
            case CallerId():
                self._on_caller_id(event, now, out)
            case OffHook():
                self._hook_seen = True
                self._on_off_hook(now, out)
            case OnHook():
                self._hook_seen = True
                self._on_on_hook(now, out)
            case Dialed():
                self._on_dialed(event, now, out)
            case Connected():
                self._on_connected(now, out)
            case CallReport():
                self._on_report(event, now, out)
            case DeviceDown():
                self._end_all(now, EndReason.DEVICE_DOWN, out)
                self._set_state(LineState.DOWN, now)
            case DeviceUp():
                if self._state is LineState.DOWN:
                    self._set_state(LineState.IDLE, now)
            case LineError():
                pass  # the runtime logs and counts these; they change no call
            case _:
                logger.debug("%s: ignoring unknown event %r", self.identity.line, event)
        return out

    def tick(self, now: datetime) -> list[CallEvent]:
        """Advance time to ``now``: end calls whose rings stopped, complete dialing."""
        out: list[CallEvent] = []
        timeout = self.config.ring_timeout
        if (
            self._waiting is not None
            and self._waiting_last is not None
            and now >= self._after(self._waiting_last, timeout)
        ):
            self._end_waiting(self._waiting_last, EndReason.RING_TIMEOUT, out)
        if (
            self._state is LineState.RINGING
            and self._call is not None
            and self._last_ring is not None
            and now >= self._after(self._last_ring, self._ring_timeout())
        ):
            disposition = Disposition.MISSED if self._hook_seen else Disposition.UNKNOWN
            last_ring = self._last_ring  # _finish clears it
            self._finish(last_ring, disposition, EndReason.RING_TIMEOUT, out)
            self._set_state(LineState.IDLE, last_ring)
        if (
            self._state is LineState.DIALING
            and self._call is not None
            and self._dial_done_at is None
            and self._last_digit is not None
            and now >= self._after(self._last_digit, self.config.dial_timeout)
        ):
            self._complete_dialing(self._last_digit, now, out)
        return out

    def close(self, now: datetime) -> list[CallEvent]:
        """The agent is stopping: end what is in progress with what is known."""
        out = self.tick(now)
        self._end_all(now, EndReason.SHUTDOWN, out)
        self._set_state(LineState.IDLE, now)
        return out

    # -- handlers -----------------------------------------------------------------

    def _on_ring(self, now: datetime, out: list[CallEvent]) -> None:
        if self._state in (LineState.IDLE, LineState.DOWN):
            self._start(Direction.IN, now, out)
            self._call = replace(self._require_call(), rings=1)
            self._last_ring = now
            self._set_state(LineState.RINGING, now)
        elif self._state is LineState.RINGING:
            call = self._require_call()
            self._call = replace(call, rings=call.rings + 1)
            self._last_ring = now
        else:
            self._ring_waiting(now, out)

    def _on_caller_id(self, event: CallerId, now: datetime, out: list[CallEvent]) -> None:
        content = (event.number, event.name, event.absence, event.name_absence)
        last = self._last_cid
        self._last_cid = (content, now)
        # A repeat belongs to the call it repeats: the call in progress that already carries this
        # caller ID, or, on an idle line, the call that just ended unanswered (the duplicate outran
        # the hang-up). A new call without a number yet (a ring started it) takes the message as
        # its own, and after a conversation the same number is the caller ringing again.
        if self._call is not None:
            repeats = self._call.number_raw == event.number and self._call.absence == event.absence
        else:
            repeats = not self._last_answered
        if repeats and last is not None and last[0] == content and _seconds(now, last[1]) <= REPEAT_WINDOW:
            logger.debug("%s: caller ID repeated; the same call", self.identity.line)
            return
        if self._state is LineState.RINGING and self._is_next_caller(event):
            # The line cannot see the first caller go: this message is their end.
            logger.info("%s: another caller's ID while ringing; a new call", self.identity.line)
            ended_at = self._last_ring or now
            self._finish(ended_at, Disposition.MISSED, EndReason.NEXT_CALLER, out)
            self._set_state(LineState.IDLE, ended_at)
        if self._state in (LineState.IDLE, LineState.DOWN):
            self._start(Direction.IN, now, out)
            self._last_ring = now
            self._set_state(LineState.RINGING, now)
            self._call = self._apply_caller_id(self._require_call(), event, now, out)
        elif self._state is LineState.RINGING:
            self._last_ring = max(now, self._last_ring or now)
            self._call = self._apply_caller_id(self._require_call(), event, now, out)
        else:
            self._ring_waiting(now, out, counts_as_ring=False)
            assert self._waiting is not None
            self._waiting = self._apply_caller_id(self._waiting, event, now, out)

    def _ring_timeout(self) -> float:
        """Seconds after the last ring before a ringing call is over."""
        if self._end_reports and not self.config.reports_hook:
            # The device will say when the call ends; rings stopping may mean it was picked up.
            return max(self.config.ring_timeout, self.config.end_timeout)
        return self.config.ring_timeout

    def _is_next_caller(self, event: CallerId) -> bool:
        """On a hook-blind line, whether ``event`` names a caller other than the ringing call's.

        Hook-blind is the device's own capability, not what the line has shown:
        a unit whose end records come as on-hooks (and switch the line to
        hook-aware reading) still sees no hang-up in real time, so a caller whose
        end record was lost must not take the next caller's call.
        """
        if self.config.reports_hook or self._call is None:
            return False
        number = event.number.strip() if event.number else None
        current = self._call.number_raw
        return bool(number and current and number != current)

    def _on_report(self, event: CallReport, now: datetime, out: list[CallEvent]) -> None:
        if not event.ends_call:
            # An end record: this line's device reports ends, so later calls wait for theirs.
            self._end_reports = True
        if self._call is None:
            logger.debug("%s: a device's call report with no call in progress", self.identity.line)
            return
        self._report = event
        self._answer_seen = self._call.answered_at is not None
        if not event.ends_call:
            return
        call = self._call
        # An inbound call the report says was answered is made so by _apply_report.
        if call.answered_at is not None:
            disposition = Disposition.ANSWERED
        elif call.direction is Direction.OUT:
            disposition = Disposition.ABANDONED
        else:
            disposition = Disposition.MISSED
        reason = EndReason.BLOCKED if event.blocked else EndReason.HANGUP
        self._finish(now, disposition, reason, out)
        self._set_state(LineState.IDLE, now)

    def _apply_report(self, call: Call, at: datetime, disposition: Disposition) -> tuple[Call, Disposition]:
        """The ending call with the device's counts where they are believable, and its disposition.

        Inbound only: an outbound call's ring time is measured from the end of
        dialing, which no device reports. A talk count is used when it is no
        longer than the call by our clock (plus :data:`REPORT_TOLERANCE`). An
        answer the line showed before the report stands unless the report
        counts talk; an answered call the line did not see answered talked
        for the part of the device's start-to-end duration after the rings we
        saw (a zero duration, from a clock with whole seconds, says nothing).
        """
        report = self._report
        if report is None:
            return call, disposition
        if report.answered is False and call.answered_at is None and disposition is Disposition.UNKNOWN:
            disposition = Disposition.MISSED if call.direction is Direction.IN else Disposition.ABANDONED
        if call.direction is not Direction.IN:
            return call, disposition
        elapsed = _seconds(at, call.started_at)

        def believable(value: float | None) -> float | None:
            if value is None or value < 0 or value > elapsed + REPORT_TOLERANCE:
                if value is not None:
                    logger.info(
                        "%s: the device's count of %.1f s is out of bounds (%.1f s by our clock)",
                        self.identity.line,
                        value,
                        elapsed,
                    )
                return None
            return min(value, elapsed)

        talk = believable(report.talk_seconds)
        if talk is None and report.answered and not self._answer_seen:
            # Answered, but the line did not show when (an off-hook that comes with the end
            # record, as NCID's END: BYE, is no answer time): after the last ring we saw.
            rang_until = self._last_ring or call.started_at
            duration = believable(report.duration) if report.duration else None
            if duration is not None:
                talk = max(0.0, duration - _seconds(rang_until, call.started_at))
            else:
                talk = _seconds(at, rang_until)
        if talk is None or (talk == 0 and not report.answered):
            return call, disposition
        answered_at = max(call.started_at, at - timedelta(seconds=talk))
        call = replace(call, answered_at=answered_at, ring_seconds=_seconds(answered_at, call.started_at))
        return call, Disposition.ANSWERED

    def _on_off_hook(self, now: datetime, out: list[CallEvent]) -> None:
        if self._state is LineState.RINGING:
            call = self._require_call()
            self._call = replace(call, answered_at=now, ring_seconds=_seconds(now, call.started_at))
            self._set_state(LineState.TALKING, now)
            out.append(CallEvent(CallEventKind.ANSWERED, self._call, now))
        elif self._state in (LineState.IDLE, LineState.DOWN):
            self._begin_dialing(now)
        # Off-hook while already off hook is a repeat; nothing changes.

    def _on_on_hook(self, now: datetime, out: list[CallEvent]) -> None:
        if self._state is LineState.TALKING:
            self._finish(now, Disposition.ANSWERED, EndReason.HANGUP, out)
        elif self._state is LineState.DIALING:
            if self._call is None:
                if self.config.no_number_calls and self._offhook_at is not None:
                    self._start(Direction.OUT, self._offhook_at, out)
                    self._finish(now, Disposition.UNKNOWN, EndReason.NO_NUMBER, out)
            else:
                if self._dial_done_at is None:
                    # Hung up while still dialing: the number is what was dialed,
                    # but the call never got through, so it must not count as a
                    # connected call toward quotas.
                    self._dial_done_at = self._last_digit
                    self._identify_dialed(now, out)
                    self._finish(now, Disposition.ABANDONED, EndReason.HANGUP, out)
                else:
                    self._finish(now, Disposition.ABANDONED, EndReason.HANGUP, out)
        elif self._state is LineState.RINGING:
            # A device that reports the end of an unanswered call (a PBX, an
            # Ethernet unit's end record) tells us the caller gave up.
            self._finish(now, Disposition.MISSED, EndReason.HANGUP, out)
        else:
            return
        self._set_state(LineState.IDLE, now)

    def _on_dialed(self, event: Dialed, now: datetime, out: list[CallEvent]) -> None:
        digits = "".join(ch for ch in event.digits if ch.isdigit() or ch in "*#+")
        if not digits:
            return
        if self._state in (LineState.IDLE, LineState.DOWN):
            # Digits without an off-hook first: the device does not report hook
            # state before dialing (a PBX, NCID's OUT line). The call starts now.
            self._begin_dialing(now)
        if self._state is not LineState.DIALING:
            if self._state is LineState.TALKING:
                logger.debug("%s: digits during a call (not part of the number)", self.identity.line)
            return
        if self._dial_done_at is not None:
            return
        if self._call is None:
            assert self._offhook_at is not None
            self._start(Direction.OUT, self._offhook_at, out)
        call = self._require_call()
        self._call = replace(call, number_raw=(call.number_raw or "") + digits)
        self._last_digit = now
        if event.complete:
            self._complete_dialing(now, now, out)

    def _on_connected(self, now: datetime, out: list[CallEvent]) -> None:
        if self._state is not LineState.DIALING or self._call is None:
            return
        if self._dial_done_at is None:
            self._complete_dialing(self._last_digit or now, now, out)
        if self._state is LineState.DIALING:
            self._answer_outbound(now, out)

    # -- building blocks ----------------------------------------------------------

    def _begin_dialing(self, now: datetime) -> None:
        self._offhook_at = now
        self._last_digit = None
        self._dial_done_at = None
        self._set_state(LineState.DIALING, now)

    def _complete_dialing(self, done_at: datetime, now: datetime, out: list[CallEvent]) -> None:
        """Dialing is over at ``done_at``: the number is known; answer it if nothing else will."""
        self._dial_done_at = done_at
        self._identify_dialed(now, out)
        if not self.config.reports_connect:
            self._answer_outbound(done_at, out)

    def _identify_dialed(self, now: datetime, out: list[CallEvent]) -> None:
        call = self._require_call()
        self._call = replace(call, number_e164=to_e164(call.number_raw, self.config.region))
        out.append(CallEvent(CallEventKind.IDENTIFIED, self._call, now))

    def _answer_outbound(self, at: datetime, out: list[CallEvent]) -> None:
        call = self._require_call()
        dial_done = self._dial_done_at or at
        self._call = replace(call, answered_at=at, ring_seconds=_seconds(at, dial_done))
        self._set_state(LineState.TALKING, at)
        out.append(CallEvent(CallEventKind.ANSWERED, self._call, at))

    def _start(
        self, direction: Direction, at: datetime, out: list[CallEvent], *, waiting: bool = False
    ) -> Call:
        ident = self.identity
        call = Call(
            uuid=self._new_uuid(),
            seat=ident.seat,
            device_id=ident.device_id,
            line=ident.line,
            rep=ident.rep,
            team=ident.team,
            direction=direction,
            started_at=at,
            waiting=waiting,
        )
        if waiting:
            self._waiting = call
        else:
            self._call = call
        out.append(CallEvent(CallEventKind.STARTED, call, at))
        return call

    def _ring_waiting(self, now: datetime, out: list[CallEvent], *, counts_as_ring: bool = True) -> None:
        if self._waiting is None:
            self._start(Direction.IN, now, out, waiting=True)
        assert self._waiting is not None
        if counts_as_ring:
            self._waiting = replace(self._waiting, rings=self._waiting.rings + 1)
        self._waiting_last = now

    def _apply_caller_id(self, call: Call, event: CallerId, now: datetime, out: list[CallEvent]) -> Call:
        """Merge a caller-ID message into ``call``; emit ``identified`` when it taught us something."""
        number = event.number.strip() if event.number else None
        name = event.name.strip() if event.name else None
        updated = call
        if number:
            if call.number_raw and call.number_raw != number:
                logger.info("%s: caller ID changed during the call", self.identity.line)
            if call.number_raw != number:
                updated = replace(
                    updated, number_raw=number, number_e164=to_e164(number, self.config.region), absence=None
                )
        elif event.absence is not None and not call.number_raw and call.absence is None:
            # A later "O"/"P" never masks a number we already have.
            updated = replace(updated, absence=event.absence)
        if name and name != call.cid_name:
            updated = replace(updated, cid_name=name)
        if updated != call:
            out.append(CallEvent(CallEventKind.IDENTIFIED, updated, now))
        return updated

    def _finish(
        self, at: datetime, disposition: Disposition, reason: EndReason, out: list[CallEvent]
    ) -> None:
        call, disposition = self._apply_report(self._require_call(), at, disposition)
        if call.number_raw and call.number_e164 is None:
            # Ended before dialing was complete (a device's end report): the digits so far are the number.
            call = replace(call, number_e164=to_e164(call.number_raw, self.config.region))
        self._last_answered = disposition is Disposition.ANSWERED
        self._call = None
        self._report = None
        self._answer_seen = False
        out.append(CallEvent(CallEventKind.ENDED, self._ended(call, at, disposition, reason), at))
        self._last_ring = None
        self._offhook_at = None
        self._last_digit = None
        self._dial_done_at = None
        # The call-waiting caller was not taken (as far as the line shows).
        if self._waiting is not None:
            waiting_reason = (
                reason if reason in (EndReason.DEVICE_DOWN, EndReason.SHUTDOWN) else EndReason.HANGUP
            )
            self._end_waiting(self._waiting_last or at, waiting_reason, out)

    def _ended(self, call: Call, at: datetime, disposition: Disposition, reason: EndReason) -> Call:
        ring = call.ring_seconds
        if ring is None:
            if call.direction is Direction.IN:
                ring = _seconds(call.answered_at or at, call.started_at)
            else:
                ring = _seconds(at, self._dial_done_at) if self._dial_done_at else 0.0
        talk = _seconds(at, call.answered_at) if call.answered_at is not None else 0.0
        return replace(
            call,
            ended_at=at,
            ring_seconds=ring,
            talk_seconds=talk,
            disposition=disposition,
            end_reason=reason,
        )

    def _end_waiting(self, at: datetime, reason: EndReason, out: list[CallEvent]) -> None:
        waiting = self._waiting
        if waiting is None:
            return
        self._waiting = None
        self._waiting_last = None
        ended = self._ended(waiting, max(at, waiting.started_at), Disposition.MISSED, reason)
        out.append(CallEvent(CallEventKind.ENDED, ended, at))

    def _end_all(self, now: datetime, reason: EndReason, out: list[CallEvent]) -> None:
        if self._call is not None:
            call = self._call
            if self._state is LineState.DIALING and self._dial_done_at is None and call.number_raw:
                self._identify_dialed(now, out)
                call = self._require_call()
            disposition = Disposition.ANSWERED if call.answered_at is not None else Disposition.UNKNOWN
            self._finish(now, disposition, reason, out)
        elif self._waiting is not None:
            self._end_waiting(now, reason, out)
        self._offhook_at = None
        self._last_ring = None

    def _set_state(self, state: LineState, at: datetime) -> None:
        if state is not self._state:
            self._state = state
            self._state_since = at

    def _require_call(self) -> Call:
        if self._call is None:  # pragma: no cover - a bug in this module, not in the input
            raise RuntimeError(f"{self.identity.line}: no call in state {self._state}")
        return self._call

    @staticmethod
    def _after(at: datetime, seconds: float) -> datetime:
        return at + timedelta(seconds=seconds)


__all__ = ["CallTracker", "LineIdentity", "TrackerConfig"]
