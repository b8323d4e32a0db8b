"""The centre's teams and reps as statistics read them: each team's stored targets, each rep's name.

The ``teams`` table keeps each team's daily targets per rep (``target_calls``,
``target_talk_seconds``, ``target_effective_calls``; NULL: none), where the team's
other settings live; the console, its wallboard and ``cti-agent report`` read them
beside the config's ``[targets]`` (``agent.config.TargetsSection.with_teams``). The
``reps`` table gives each rep the display name the wallboard shows (the rep's name
when it has none) and their team, used when a rep's calls in a window carry none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.models import CallRecord, Rep, Team


@dataclass(frozen=True, slots=True)
class StoredTargets:
    """A team's daily targets per rep as the database keeps them (None: no target of that kind)."""

    calls: int | None = None
    talk_seconds: float | None = None
    effective_calls: int | None = None

    @property
    def empty(self) -> bool:
        """Whether no kind of target is set."""
        return self.calls is None and self.talk_seconds is None and self.effective_calls is None


@dataclass(frozen=True, slots=True)
class RepInfo:
    """What the statistics show of a rep: the name to display and their team ("" when none is known)."""

    name: str
    team: str


def team_targets(session: Session) -> dict[str, StoredTargets]:
    """Every team that has at least one stored target, by team name."""
    out: dict[str, StoredTargets] = {}
    for team in session.scalars(select(Team).order_by(Team.name)):
        stored = StoredTargets(
            calls=team.target_calls,
            talk_seconds=None if team.target_talk_seconds is None else float(team.target_talk_seconds),
            effective_calls=team.target_effective_calls,
        )
        if not stored.empty:
            out[team.name] = stored
    return out


def set_team_targets(
    session: Session,
    team: str,
    *,
    calls: int | None = None,
    talk_seconds: int | None = None,
    effective_calls: int | None = None,
) -> None:
    """Store ``team``'s daily targets per rep (None clears a kind); the team is created when unknown.

    The caller owns the transaction.

    :raises ValueError: a negative target.
    """
    given = {"calls": calls, "talk_seconds": talk_seconds, "effective_calls": effective_calls}
    for name, value in given.items():
        if value is not None and value < 0:
            raise ValueError(f"a target is not negative: {name} = {value}")
    row = session.scalar(select(Team).where(Team.name == team))
    if row is None:
        row = Team(name=team)
        session.add(row)
    row.target_calls = calls
    row.target_talk_seconds = talk_seconds
    row.target_effective_calls = effective_calls
    session.flush()


def rep_directory(
    session: Session, reps: Sequence[str], start: datetime, end: datetime
) -> dict[str, RepInfo]:
    """Each of ``reps``: their display name (their rep name without one) and team.

    The team is the one their calls started in ``[start, end)`` carry (the latest name
    in sort order when they moved), else the ``reps`` table's, else "".
    """
    if not reps:
        return {}
    wanted = list(dict.fromkeys(reps))
    call_teams = {
        str(rep): str(team or "")
        for rep, team in session.execute(
            select(CallRecord.rep, func.max(CallRecord.team))
            .where(CallRecord.rep.in_(wanted), CallRecord.started_at >= start, CallRecord.started_at < end)
            .group_by(CallRecord.rep)
        )
    }
    rows = session.execute(
        select(Rep.name, Rep.display_name, Team.name)
        .outerjoin(Team, Rep.team_id == Team.id)
        .where(Rep.name.in_(wanted))
    )
    known = {str(name): (display, team) for name, display, team in rows}
    out = {}
    for rep in wanted:
        display, table_team = known.get(rep, (None, None))
        shown = (display or "").strip() or rep
        out[rep] = RepInfo(name=shown, team=call_teams.get(rep) or (table_team or ""))
    return out


__all__ = ["RepInfo", "StoredTargets", "rep_directory", "set_team_targets", "team_targets"]
