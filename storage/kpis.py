"""Telesales KPIs of a rep (or a team) over a window, from a report row and a daily quota.

Pure arithmetic over :class:`storage.report.ReportRow` figures (anything with their
attributes); no SQL, no clock. The console's statistics pages, its wallboard and
``cti-agent report`` all compute their KPIs here, so they agree to the last rounding:

- calls in and out: ``inbound`` and ``outbound``;
- connects: outbound calls the far end answered (``outbound_connected``);
- connect rate (接通率) = connects / calls out; none without outbound calls (not 0 %);
- talk time (通时): the talk seconds of answered calls; average talk time = talk time / answered calls;
- effective calls: answered calls whose talk time reached the effective-call threshold
  (``[metrics] effective_call_seconds``; counted by :mod:`storage.report`).

A quota (``agent.config.DailyTarget`` is one) is per rep per day: over a window of several
days a rep's target is the daily one times the days they worked (days with a call), so a
month's report does not count weekends against anyone. A kind of target the quota leaves
unset (None) has no target: its :class:`Progress` has no ratio and is neither met nor missed.

Percentages are rounded half up from the exact fraction (1/8 is 12.5 %, 1/16 is 6.3 % at one
decimal), never by the float's binary neighbours, so a page and a CSV never disagree.

Reps are ranked by one key, best first (:data:`RANK_KEYS`); ties fall to talk time, then calls,
then name, so a ranking is one order whatever the key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Protocol, TypeVar


class Figures(Protocol):
    """What a KPI is computed from (a :class:`storage.report.ReportRow` is one)."""

    @property
    def key(self) -> str:
        """The rep, team or time the figures are of."""

    @property
    def calls(self) -> int:
        """Ended calls."""

    @property
    def answered(self) -> int:
        """Answered calls."""

    @property
    def missed(self) -> int:
        """Missed calls."""

    @property
    def talk_seconds(self) -> float:
        """Talk time of the answered calls."""

    @property
    def effective(self) -> int:
        """Answered calls that talked at least the threshold."""

    @property
    def inbound(self) -> int:
        """Calls in."""

    @property
    def outbound(self) -> int:
        """Calls out."""

    @property
    def outbound_connected(self) -> int:
        """Calls out the far end answered (connects)."""


class Quota(Protocol):
    """A rep's daily targets, None where there is none (``agent.config.DailyTarget`` is one)."""

    @property
    def calls(self) -> int | None:
        """Calls a day."""

    @property
    def talk_seconds(self) -> float | None:
        """Talk seconds a day."""

    @property
    def effective_calls(self) -> int | None:
        """Effective calls a day."""


def ratio(part: float, whole: float) -> Fraction | None:
    """``part / whole`` exactly (floats are taken at their exact binary value); None when ``whole`` is 0."""
    if not whole:
        return None
    return Fraction(part) / Fraction(whole)


def percent(value: Fraction | float | None, digits: int = 1) -> Decimal | None:
    """``value`` (a share, 1 = 100 %) in percent, rounded half up to ``digits`` decimals; None stays None.

    Exact: the fraction is scaled and rounded as integers, so 1/8 is 12.5 and 1/16 is 6.3, never 6.2.
    """
    if value is None:
        return None
    scaled = Fraction(value) * 100 * 10**digits
    whole = math.floor(abs(scaled) + Fraction(1, 2))
    return Decimal(-whole if scaled < 0 else whole).scaleb(-digits)


def percent_text(value: Fraction | float | None, digits: int = 1) -> str:
    """``value`` as ``66.7%`` (``digits`` decimals, half up); empty when there is no value."""
    rounded = percent(value, digits)
    return "" if rounded is None else f"{rounded}%"


@dataclass(frozen=True, slots=True)
class Progress:
    """A figure against its target; ``target`` None: there is no target of this kind."""

    value: float
    target: float | None = None

    @property
    def ratio(self) -> Fraction | None:
        """How much of the target is done (1 = all of it, more past it); None without a target.

        A target of 0 is met by anything (ratio 1).
        """
        if self.target is None:
            return None
        if self.target == 0:
            return Fraction(1)
        return ratio(self.value, self.target)

    @property
    def met(self) -> bool | None:
        """Whether the target is reached; None without a target."""
        done = self.ratio
        return None if done is None else done >= 1

    @property
    def share(self) -> float:
        """The part of a bar toward the target to fill (0..1); 0 without a target."""
        done = self.ratio
        return 0.0 if done is None else float(min(done, Fraction(1)))

    @property
    def percent(self) -> int | None:
        """The ratio in whole percent, rounded half up (past 100 when over target); None without a target."""
        rounded = percent(self.ratio, 0)
        return None if rounded is None else int(rounded)


@dataclass(frozen=True, slots=True)
class Kpis:
    """One rep's (or team's) KPIs over a window, each figure with a quota against its target."""

    key: str
    calls: Progress
    inbound: int
    outbound: int
    connects: int
    answered: int
    missed: int
    talk: Progress
    effective: Progress
    #: The days the targets were multiplied by (days worked in the window).
    days: int = 1

    @property
    def connect_rate(self) -> Fraction | None:
        """接通率: connects / calls out; None without outbound calls."""
        return ratio(self.connects, self.outbound)

    @property
    def avg_talk_seconds(self) -> float | None:
        """Talk time per answered call; None when none was answered."""
        return self.talk.value / self.answered if self.answered else None

    @property
    def has_targets(self) -> bool:
        """Whether any figure has a target."""
        return any(p.target is not None for p in (self.calls, self.talk, self.effective))


def _times(daily: float | None, days: int) -> float | None:
    return None if daily is None else daily * days


def kpis(figures: Figures, quota: Quota | None = None, *, days: int = 1) -> Kpis:
    """The KPIs of ``figures`` against ``quota`` (a daily one) times ``days``; no quota: no targets.

    :raises ValueError: ``days`` is negative.
    """
    if days < 0:
        raise ValueError(f"days must not be negative, got {days}")
    calls_target = _times(quota.calls, days) if quota is not None else None
    talk_target = _times(quota.talk_seconds, days) if quota is not None else None
    effective_target = _times(quota.effective_calls, days) if quota is not None else None
    return Kpis(
        key=figures.key,
        calls=Progress(figures.calls, calls_target),
        inbound=figures.inbound,
        outbound=figures.outbound,
        connects=figures.outbound_connected,
        answered=figures.answered,
        missed=figures.missed,
        talk=Progress(figures.talk_seconds, talk_target),
        effective=Progress(figures.effective, effective_target),
        days=days,
    )


def team_total(key: str, members: Iterable[Kpis]) -> Kpis:
    """The members' KPIs added up; a kind of target is the members' sum, or none if no member has one."""
    rows = list(members)

    def summed(pick: Callable[[Kpis], Progress]) -> Progress:
        targets = [pick(r).target for r in rows if pick(r).target is not None]
        return Progress(
            sum(pick(r).value for r in rows), sum(t for t in targets if t is not None) if targets else None
        )

    return Kpis(
        key=key,
        calls=summed(lambda r: r.calls),
        inbound=sum(r.inbound for r in rows),
        outbound=sum(r.outbound for r in rows),
        connects=sum(r.connects for r in rows),
        answered=sum(r.answered for r in rows),
        missed=sum(r.missed for r in rows),
        talk=summed(lambda r: r.talk),
        effective=summed(lambda r: r.effective),
        days=max((r.days for r in rows), default=0),
    )


# -- ranking ---------------------------------------------------------------------------


def _rate_or_minus(row: Kpis) -> Fraction:
    rate = row.connect_rate
    return Fraction(-1) if rate is None else rate


#: The keys reps may be ranked by (``[centre] rank_by``): the figure, higher is better.
RANK_KEYS: dict[str, Callable[[Kpis], float | Fraction]] = {
    "talk_seconds": lambda r: r.talk.value,
    "calls": lambda r: r.calls.value,
    "effective": lambda r: r.effective.value,
    "connects": lambda r: r.connects,
    "connect_rate": _rate_or_minus,
}
DEFAULT_RANK_KEY = "talk_seconds"

K = TypeVar("K")


def ranking(rows: Sequence[K], by: str = DEFAULT_RANK_KEY, *, of: Callable[[K], Kpis]) -> list[K]:
    """``rows`` best first by the KPI ``by`` (:data:`RANK_KEYS`), then talk time, calls and key.

    ``of`` gives a row's :class:`Kpis` (rows may be anything carrying them).

    :raises ValueError: ``by`` is not a rank key.
    """
    if by not in RANK_KEYS:
        raise ValueError(f"cannot rank by {by!r}; one of {', '.join(RANK_KEYS)}")
    first = RANK_KEYS[by]

    def order(row: K) -> tuple[float | Fraction, float, float, str]:
        k = of(row)
        return (-first(k), -k.talk.value, -k.calls.value, k.key)

    return sorted(rows, key=order)


__all__ = [
    "DEFAULT_RANK_KEY",
    "RANK_KEYS",
    "Figures",
    "Kpis",
    "Progress",
    "Quota",
    "kpis",
    "percent",
    "percent_text",
    "ranking",
    "ratio",
    "team_total",
]
