"""Rep state, as telesales floors run it: available, on a call, after-call work (wrap-up), paused.

:class:`RepState` is a pure tracker in the shape of :class:`agent.calls.CallTracker`:
no I/O, no clock reads, no timers; time comes in as an argument. The runtime
owns one for the seat's rep, feeds it every call event (:meth:`RepState.feed`),
ticks it at its :meth:`~RepState.deadline` and passes the rep's choices from
the seat page to :meth:`~RepState.choose`.

Calls move it automatically: a call answered on the rep's line puts them
``on_call``; when the last call ends they are in ``wrap_up`` for at most
``wrap_up_seconds``, then back to what they were before the call. The rep sets
``available`` or ``paused`` (with a reason code from the configured list).
Every change is a :class:`~agent.events.RepStateChange` carrying how long the
previous state lasted; the runtime fans it out to the observers like a call
event (the seat page streams it, metrics count it, storage keeps it for reports).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from agent.events import CallEvent, CallEventKind, RepStateChange

AVAILABLE, ON_CALL, WRAP_UP, PAUSED = "available", "on_call", "wrap_up", "paused"
STATES: tuple[str, ...] = (AVAILABLE, ON_CALL, WRAP_UP, PAUSED)
#: What a rep may choose on the seat page (``on_call`` and ``wrap_up`` follow the calls).
CHOOSABLE: tuple[str, ...] = (AVAILABLE, PAUSED)
DEFAULT_PAUSE_REASONS: tuple[str, ...] = ("meeting", "training", "break", "lunch")


@runtime_checkable
class RepStateSink(Protocol):
    """What counts rep states (the metrics module implements it; see :func:`count_change`).

    - ``rep_state(rep, state, reason)``: set the gauge
      ``cti_rep_state{rep,state}`` to 1 for ``state`` and 0 for the others;
    - ``rep_state_seconds(rep, state, seconds)``: add to the counter
      ``cti_rep_state_seconds_total{rep,state}`` the time spent in ``state``.
    """

    def rep_state(self, rep: str, state: str, reason: str | None) -> None:
        """The rep is now in ``state``."""

    def rep_state_seconds(self, rep: str, state: str, seconds: float) -> None:
        """The rep spent ``seconds`` in ``state`` (counted when they leave it)."""


def count_change(sink: RepStateSink, change: RepStateChange) -> None:
    """Count one change: the seconds of the state left, then the state entered."""
    sink.rep_state_seconds(change.rep, change.previous, change.previous_seconds)
    sink.rep_state(change.rep, change.state, change.reason)


class RepState:
    """One rep's state machine. ``pause_reasons`` are the codes a pause may carry."""

    def __init__(
        self,
        rep: str,
        now: datetime,
        *,
        wrap_up_seconds: float = 30.0,
        pause_reasons: tuple[str, ...] | list[str] = DEFAULT_PAUSE_REASONS,
    ) -> None:
        self.rep = rep
        self.wrap_up = timedelta(seconds=wrap_up_seconds)
        self.pause_reasons = tuple(pause_reasons)
        self.state = AVAILABLE
        self.reason: str | None = None
        self.since = now
        self._calls: set[str] = set()
        self._after_wrap_up = AVAILABLE
        self._after_wrap_up_reason: str | None = None

    def snapshot(self) -> dict[str, Any]:
        """The state now, for a page's first load."""
        return {
            "rep": self.rep,
            "state": self.state,
            "reason": self.reason,
            "since": self.since.isoformat(),
            "pause_reasons": list(self.pause_reasons),
            "wrap_up_seconds": self.wrap_up.total_seconds(),
        }

    def deadline(self) -> datetime | None:
        """When wrap-up ends by itself (None when not in wrap-up)."""
        return self.since + self.wrap_up if self.state == WRAP_UP else None

    def _move(self, state: str, reason: str | None, now: datetime, automatic: bool) -> RepStateChange | None:
        if state == self.state and reason == self.reason:
            return None
        change = RepStateChange(
            rep=self.rep,
            state=state,
            reason=reason,
            since=now,
            previous=self.state,
            previous_reason=self.reason,
            previous_seconds=max((now - self.since).total_seconds(), 0.0),
            automatic=automatic,
        )
        self.state, self.reason, self.since = state, reason, now
        return change

    def feed(self, event: CallEvent, now: datetime) -> RepStateChange | None:
        """Follow one call event: an answer on this rep's line, or the end of one of their calls.

        The change is dated at the event (when the call was answered or ended),
        not at ``now``, so an event handed on late does not lengthen the state
        before it; ``now`` only caps a time from the future. Other reps' calls
        and other kinds of event change nothing.
        """
        if event.call.rep != self.rep:
            return None
        at = min(event.at, now)
        if event.kind is CallEventKind.ANSWERED:
            return self.call_answered(event.call.uuid, at)
        if event.kind is CallEventKind.ENDED:
            return self.call_ended(event.call.uuid, at)
        return None

    def call_answered(self, uuid: str, now: datetime) -> RepStateChange | None:
        """A call on the rep's line connected: on a call (a pause resumes after the wrap-up)."""
        if not self._calls and self.state in (AVAILABLE, PAUSED):
            self._after_wrap_up = self.state
            self._after_wrap_up_reason = self.reason
        self._calls.add(uuid)
        return self._move(ON_CALL, None, now, automatic=True)

    def call_ended(self, uuid: str, now: datetime) -> RepStateChange | None:
        """A call ended: after the last connected one, wrap-up starts."""
        if uuid not in self._calls:
            return None
        self._calls.discard(uuid)
        if self._calls:
            return None
        if self.wrap_up <= timedelta(0):
            return self._move(self._after_wrap_up, self._after_wrap_up_reason, now, automatic=True)
        return self._move(WRAP_UP, None, now, automatic=True)

    def tick(self, now: datetime) -> RepStateChange | None:
        """End a wrap-up that ran out of time (back to what the rep was before the call)."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        return self._move(self._after_wrap_up, self._after_wrap_up_reason, deadline, automatic=True)

    def choose(self, state: str, reason: str | None, now: datetime) -> RepStateChange | None:
        """The rep chose a state on the seat page.

        :raises ValueError: the state cannot be chosen (``on_call``, ``wrap_up``), a
            pause has no reason or one not in the list, or the rep is on a call.
        """
        if state not in CHOOSABLE:
            raise ValueError(f"state must be one of {', '.join(CHOOSABLE)}")
        if self._calls:
            raise ValueError("on a call: the state changes when the call ends")
        if state == PAUSED:
            if reason not in self.pause_reasons:
                raise ValueError(f"a pause needs a reason: one of {', '.join(self.pause_reasons)}")
        else:
            reason = None
        self._after_wrap_up, self._after_wrap_up_reason = AVAILABLE, None
        return self._move(state, reason, now, automatic=False)
