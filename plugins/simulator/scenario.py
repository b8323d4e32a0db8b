"""Scripts of simulated calls: pure and seeded, no asyncio and no clock.

A :class:`Scenario` draws one line's calls, one at a time: the idle gap before
the call (exponential, so arrivals are Poisson at ``rate`` per minute; the gap
starts when the previous call is over, as a line carries one call at a time)
and the call's :class:`Step`\\ s, each an offset in seconds from the call's
start and the line event to report then. The device plays the steps in real
time; the tests feed them straight to :class:`agent.calls.CallTracker`.

What the calls look like:

Numbers are made up (valid in the region's numbering plan) or, when ``known_numbers`` are
given (the demo's customers), one of those for ``known_ratio`` of the calls.

- inbound: rings every ``ring_period``; caller ID in the silence between the
  first and second ring (Bell 202 / ETSI FSK on-hook caller ID), or for a few
  calls just before the first ring (DTMF caller ID). Answered: off-hook after
  one to four rings, talk, on-hook. Unanswered: ``max_rings`` rings, then the
  line stays quiet for :data:`QUIET_AFTER_RINGS` (the line was never picked up,
  so there is no on-hook; the quiet lets a tracker's ring time-out end the call
  before the next one rings).
- outbound: off-hook, the number dialed in one to three bursts less than 3 s
  apart (the whole number, ``0`` then a mobile number, area code then the
  rest, ...), ringback, then either the far end answers (``Connected``), talk,
  on-hook; or the rep gives up (on-hook).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agent.events import (
    Absence,
    CallerId,
    Connected,
    Dialed,
    Direction,
    Disposition,
    LineEvent,
    OffHook,
    OnHook,
    Ring,
)
from plugins.simulator.config import SimulatorConfig
from plugins.simulator.people import caller_name, phone_number

TALK_MIN = 3.0
TALK_MAX = 3600.0
DTMF_CID_RATIO = 0.1
"""Share of inbound calls whose caller ID comes before the first ring (DTMF caller ID)."""
NO_NAME_RATIO = 0.1
"""Share of identified inbound calls whose network sends no name."""
PRIVATE_RATIO = 0.7
"""Among withheld numbers, the share withheld by the caller (``P``); the rest are unavailable (``O``)."""
QUIET_AFTER_RINGS = 12.0
"""Seconds an unanswered call's line stays quiet after its last ring (over the tracker's 8 s time-out)."""


def _ms(seconds: float) -> float:
    return round(seconds, 3)


@dataclass(frozen=True, slots=True)
class Step:
    """One line event of a call script, ``offset`` seconds after the call's start."""

    offset: float
    event: type[LineEvent]
    fields: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, offset: float, event: type[LineEvent], **fields: Any) -> Step:
        """A step reporting ``event(**fields)`` at ``offset`` (rounded to the millisecond)."""
        return cls(_ms(offset), event, tuple(fields.items()))

    @property
    def kind(self) -> str:
        """The event's kind (``ring``, ``caller_id``, ...)."""
        return self.event.kind

    @property
    def kwargs(self) -> Mapping[str, Any]:
        """The event's own fields (besides device, line and time)."""
        return dict(self.fields)

    def build(self, *, device_id: str, line: str, at: datetime, **extra: Any) -> LineEvent:
        """The line event, stamped with ``device_id``, ``line`` and ``at``; ``extra`` adds fields."""
        return self.event(device_id=device_id, line=line, at=at, **{**dict(self.fields), **extra})


@dataclass(frozen=True, slots=True, kw_only=True)
class CallScript:
    """One simulated call: what happens on the line and what the call should come out as.

    :ivar gap: idle seconds on the line before the call starts.
    :ivar steps: the line events, in time order, offsets from the call's start.
    :ivar duration: seconds from the start until the line is free for the next call.
    :ivar number: what a tracker records as the raw number: the caller ID's
        number, or all dialed digits; None when withheld.
    :ivar disposition: the intended outcome (answered, missed or abandoned).
    :ivar rings: ring events of an inbound call.
    :ivar talk_seconds: from the answer (off-hook, or ``Connected``) to on-hook; 0 when not connected.
    :ivar cid_before_ring: the caller ID comes before the first ring.
    """

    gap: float
    direction: Direction
    disposition: Disposition
    steps: tuple[Step, ...]
    duration: float
    number: str | None = None
    name: str | None = None
    absence: Absence | None = None
    rings: int = 0
    talk_seconds: float = 0.0
    cid_before_ring: bool = False

    @property
    def answered(self) -> bool:
        """The call connects."""
        return self.disposition is Disposition.ANSWERED

    def events(self, *, device_id: str, line: str, start: datetime) -> list[LineEvent]:
        """The script's line events for a call starting at ``start`` (pure; for tests and tools)."""
        return [
            step.build(device_id=device_id, line=line, at=start + timedelta(seconds=step.offset))
            for step in self.steps
        ]


def line_random(seed: int | None, line: str) -> random.Random:
    """The random source of one line: derived from ``seed`` and the label, so lines are independent.

    With ``seed`` None it is seeded from the system's entropy (a different run each time).
    """
    if seed is None:
        return random.Random()  # noqa: S311 - simulation, not cryptography
    return random.Random(f"cti-simulator:{seed}:{line}")  # noqa: S311


class Scenario:
    """The calls of one simulated line, drawn from ``rng`` (pure: same rng state, same calls)."""

    def __init__(self, config: SimulatorConfig, line: str, rng: random.Random) -> None:
        self.config = config
        self.line = line
        self._rng = rng

    def __repr__(self) -> str:
        return f"Scenario(line={self.line!r}, rate={self.config.rate})"

    def next_call(self) -> CallScript:
        """The next call on the line, with the idle gap before it."""
        rng = self._rng
        gap = _ms(rng.expovariate(self.config.rate / 60.0))
        if rng.random() < self.config.inbound_ratio:
            return self._inbound(gap)
        answered = rng.random() < self.config.answer_rate
        number = self._number()
        bursts = self._bursts(number)
        start = rng.uniform(1.0, 3.0)  # dial tone, then the rep starts keying
        dial_steps = []
        at = start
        for index, burst in enumerate(bursts):
            if index:
                at += rng.uniform(0.5, 2.0)  # keying plus a pause: under 3 s, shorter than dial time-outs
            dial_steps.append(Step.of(at, Dialed, digits=burst))
        return self._outbound(gap, "".join(bursts), dial_steps, answered)

    def outbound(self, number: str) -> CallScript:
        """A click-to-dial call to ``number``, starting at once: the device dials the whole number.

        Whether the far end answers is drawn as for any call (``answer_rate``).
        """
        rng = self._rng
        answered = rng.random() < self.config.answer_rate
        dialed_at = rng.uniform(0.5, 1.5)  # dial tone detection and DTMF of the whole number
        steps = [Step.of(dialed_at, Dialed, digits=number, complete=True)]
        return self._outbound(0.0, number, steps, answered)

    # -- building blocks ----------------------------------------------------------

    def _number(self) -> str:
        """A made-up number, or (``known_ratio`` of the time) one of the ``known_numbers``."""
        rng = self._rng
        known = self.config.known_numbers
        # Drawn only when there are known numbers, so a seeded run without them is as before.
        if known and rng.random() < self.config.known_ratio:
            return rng.choice(known)
        return phone_number(rng, self.config.region)

    def _inbound(self, gap: float) -> CallScript:
        rng = self._rng
        config = self.config
        period = config.ring_period
        absence: Absence | None = None
        number: str | None = None
        name: str | None = None
        cid: dict[str, Any]
        if rng.random() < config.withheld_ratio:
            absence = Absence.PRIVATE if rng.random() < PRIVATE_RATIO else Absence.UNAVAILABLE
            cid = {"absence": absence, "name_absence": absence}
        else:
            number = self._number()
            if rng.random() < NO_NAME_RATIO:
                cid = {"number": number, "name_absence": Absence.UNAVAILABLE}
            else:
                name = caller_name(rng, config.region)
                cid = {"number": number, "name": name}
        cid_first = rng.random() < DTMF_CID_RATIO
        answered = rng.random() < config.answer_rate
        if cid_first:
            cid_at = 0.0
            first_ring = rng.uniform(0.5, min(1.0, period / 2))
        else:
            first_ring = 0.0
            # FSK caller ID is sent about half a second after the first ring burst ends.
            cid_at = period * rng.uniform(0.4, 0.6)
        rings = rng.randint(1, min(4, config.max_rings)) if answered else config.max_rings
        ring_times = [_ms(first_ring + i * period) for i in range(rings)]
        steps = [Step.of(t, Ring) for t in ring_times]
        steps.append(Step.of(cid_at, CallerId, **cid))
        talk = 0.0
        if answered:
            # Picked up in the silence after the last ring, after the caller ID arrived.
            off_hook = _ms(ring_times[-1] + period * rng.uniform(0.65, 0.9))
            talk = self._talk()
            steps.append(Step.of(off_hook, OffHook))
            steps.append(Step.of(off_hook + talk, OnHook))
            duration = _ms(off_hook + talk)
        else:
            duration = _ms(ring_times[-1] + max(period, QUIET_AFTER_RINGS))
        steps.sort(key=lambda step: step.offset)
        return CallScript(
            gap=gap,
            direction=Direction.IN,
            disposition=Disposition.ANSWERED if answered else Disposition.MISSED,
            steps=tuple(steps),
            duration=duration,
            number=number,
            name=name,
            absence=absence,
            rings=rings,
            talk_seconds=talk,
            cid_before_ring=cid_first,
        )

    def _outbound(self, gap: float, number: str, dial_steps: list[Step], answered: bool) -> CallScript:
        rng = self._rng
        last_digit = dial_steps[-1].offset
        steps = [Step.of(0.0, OffHook), *dial_steps]
        talk = 0.0
        if answered:
            connected = _ms(last_digit + rng.uniform(5.0, 25.0))  # ringback
            talk = self._talk()
            steps.append(Step.of(connected, Connected))
            end = _ms(connected + talk)
        else:
            end = _ms(last_digit + rng.uniform(15.0, 40.0))  # nobody answers; the rep gives up
        steps.append(Step.of(end, OnHook))
        return CallScript(
            gap=gap,
            direction=Direction.OUT,
            disposition=Disposition.ANSWERED if answered else Disposition.ABANDONED,
            steps=tuple(steps),
            duration=end,
            number=number,
            talk_seconds=talk,
        )

    def _talk(self) -> float:
        config = self.config
        seconds = self._rng.lognormvariate(math.log(config.talk_median), config.talk_sigma)
        return _ms(min(TALK_MAX, max(TALK_MIN, seconds)))

    def _bursts(self, number: str) -> list[str]:
        """How a rep keys ``number``: one to three bursts of digits that join up to what is dialed."""
        rng = self._rng
        count = rng.randint(1, 3)
        if count == 1:
            return [number]
        if number.startswith("1") and len(number) == 11:  # mainland mobile, read out 3-4-4
            if count == 2:
                # "0" first: the long-distance prefix some desk phones want before a mobile.
                return ["0", number] if rng.random() < 0.5 else [number[:3], number[3:]]
            return [number[:3], number[3:7], number[7:]]
        if number.startswith("0"):  # mainland landline: area code, then the subscriber number
            area = 3 if number[1] in "12" else 4
            rest = number[area:]
            if count == 2:
                return [number[:area], rest]
            half = len(rest) // 2
            return [number[:area], rest[:half], rest[half:]]
        if len(number) == 10:  # North America: 1 first (long distance), or area code, exchange, line
            if count == 2:
                return ["1", number] if rng.random() < 0.5 else [number[:3], number[3:]]
            return [number[:3], number[3:6], number[6:]]
        size = math.ceil(len(number) / count)
        return [number[i : i + size] for i in range(0, len(number), size)]


__all__ = [
    "DTMF_CID_RATIO",
    "QUIET_AFTER_RINGS",
    "TALK_MAX",
    "TALK_MIN",
    "CallScript",
    "Scenario",
    "Step",
    "line_random",
]
