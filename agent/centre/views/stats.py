"""Statistics: a day by hour or half-hour, a month by day, and the wallboard with its live feed.

All three show the same telesales KPIs (:mod:`storage.kpis`): calls in and out,
connects, the connect rate (接通率 = connects / calls out), talk time (通时), the
average talk time and effective calls, each against the rep's daily target where one
is set (``[targets]`` with the teams' targets from the database). All three rank reps
the same way (:func:`ranked_lines`, by ``[centre] rank_by``) and scope them the same
way (:func:`stats_scope`): a manager sees any team they pick, a lead their team, a rep
themself, or their team's ranking where ``[centre] reps_see_team_ranking`` is set.

The day and month tables sort by any column (``?sort=talk&order=desc``, links in the
headers); the rank stays the ranking's, whatever the order shown.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from agent.centre import queries
from agent.centre.access import STAFF, Visit, error, render, requires
from agent.centre.auth import Principal
from agent.centre.charts import bar_chart_svg
from agent.centre.context import ConsoleContext
from agent.config import DailyTarget, TargetsSection
from agent.web import format_duration, format_sse
from storage.kpis import Kpis, Progress, kpis, percent_text, team_total
from storage.kpis import ranking as rank_kpis
from storage.report import CLOCK_STEPS, Report, ReportRow, start_of_day, zone_name
from storage.teams import RepInfo


def ranking(rows: list[ReportRow], by: str = "talk_seconds") -> list[ReportRow]:
    """Reps best first by the KPI ``by`` (default talk time), then talk time, calls and name."""
    return rank_kpis(rows, by, of=kpis)


# -- who sees what ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """The figures a visitor sees: one team's (or every team's, ``team`` None) or one rep's."""

    team: str | None
    rep: str | None


def stats_scope(ctx: ConsoleContext, request: Request, who: Principal) -> Scope | None:
    """What ``who`` may see of the statistics; None: nothing (a lead without a team, a rep without a rep).

    A manager: the ``team`` asked for, else every team. A lead: their team. A rep: themself,
    or their team where ``[centre] reps_see_team_ranking`` is set and they have one.
    """
    if who.role == "manager":
        return Scope(request.query_params.get("team") or None, None)
    if who.role == "lead":
        return Scope(who.team, None) if who.team else None
    if who.role == "rep":
        if ctx.settings.reps_see_team_ranking and who.team:
            return Scope(who.team, None)
        return Scope(None, who.rep) if who.rep else None
    return None


# -- the ranked lines ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One rep in a ranking: their place, names, team, KPIs, and whether they are the visitor."""

    rank: int
    rep: str
    name: str
    team: str
    kpi: Kpis
    mine: bool = False


def ranked_lines(
    ctx: ConsoleContext,
    who: Principal,
    rows: list[ReportRow],
    directory: Mapping[str, RepInfo],
    book: TargetsSection,
    scope_team: str | None,
    days: Mapping[str, int] | None = None,
) -> list[Line]:
    """``rows`` (per rep) as KPIs against each rep's targets, ranked by ``[centre] rank_by``.

    ``days``: the days each rep's daily targets count for (one each when None).
    """
    lines = []
    for row in rows:
        info = directory.get(row.key, RepInfo(row.key, ""))
        team = info.team or scope_team or ""
        quota = book.for_rep(row.key, team)
        lines.append(
            Line(
                rank=0,
                rep=row.key,
                name=info.name,
                team=team,
                kpi=kpis(row, quota, days=days.get(row.key, 1) if days is not None else 1),
                mine=who.role == "rep" and row.key == who.rep,
            )
        )
    ordered = rank_kpis(lines, ctx.settings.rank_by, of=lambda line: line.kpi)
    return [Line(n, line.rep, line.name, line.team, line.kpi, line.mine) for n, line in enumerate(ordered, 1)]


def _rate(line: Line) -> Fraction:
    rate = line.kpi.connect_rate
    return Fraction(-1) if rate is None else rate


def _average(line: Line) -> float:
    average = line.kpi.avg_talk_seconds
    return -1.0 if average is None else average


#: The columns the tables sort by: key -> (sort key, whether it sorts high to low first).
SORTS: dict[str, tuple[Callable[[Line], Any], bool]] = {
    "rank": (lambda line: line.rank, False),
    "name": (lambda line: line.name.casefold(), False),
    "calls": (lambda line: line.kpi.calls.value, True),
    "inbound": (lambda line: line.kpi.inbound, True),
    "outbound": (lambda line: line.kpi.outbound, True),
    "connects": (lambda line: line.kpi.connects, True),
    "connect_rate": (_rate, True),
    "talk": (lambda line: line.kpi.talk.value, True),
    "avg_talk": (_average, True),
    "effective": (lambda line: line.kpi.effective.value, True),
    "missed": (lambda line: line.kpi.missed, True),
    "days": (lambda line: line.kpi.days, True),
}
#: The locale key naming each rank key (the page says what the ranking is by).
RANK_LABELS: dict[str, str] = {
    "talk_seconds": "kpi.talk",
    "calls": "kpi.calls",
    "effective": "kpi.effective",
    "connects": "kpi.connects",
    "connect_rate": "kpi.connect_rate",
}


def sort_order(request: Request) -> tuple[str, bool]:
    """The column asked for (``rank`` when none or unknown) and whether high to low."""
    column = request.query_params.get("sort") or "rank"
    if column not in SORTS:
        column = "rank"
    order = request.query_params.get("order")
    descending = SORTS[column][1] if order not in ("asc", "desc") else order == "desc"
    return column, descending


def sorted_lines(lines: list[Line], column: str, descending: bool) -> list[Line]:
    """``lines`` ordered by ``column`` (ties keep the ranking's order: Python's sort is stable both ways)."""
    by_rank = sorted(lines, key=lambda line: line.rank)
    return sorted(by_rank, key=SORTS[column][0], reverse=descending)


def sort_links(request: Request, column: str, descending: bool) -> dict[str, dict[str, str]]:
    """Each sortable column's header link (the page's other parameters kept) and its ``aria-sort``.

    The column shown sorted links to the other order; the others to their own first order.
    """
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in ("sort", "order")]
    links = {}
    for name, (_, high_first) in SORTS.items():
        if name == column:
            state, want_descending = ("descending" if descending else "ascending"), not descending
        else:
            state, want_descending = "none", high_first
        if name == "rank" and not want_descending:
            params = kept  # the ranking itself: the page's plain address
        else:
            params = [*kept, ("sort", name), ("order", "desc" if want_descending else "asc")]
        links[name] = {"href": "?" + urllib.parse.urlencode(params), "state": state}
    return links


def _rank_label(ctx: ConsoleContext) -> str:
    return RANK_LABELS.get(ctx.settings.rank_by, "kpi.talk")


async def _per_rep(
    ctx: ConsoleContext, by: str, start: datetime, end: datetime, scope: Scope
) -> queries.PerRep:
    return await ctx.read(
        queries.per_rep,
        by,
        start,
        end,
        zone=ctx.zone,
        effective_seconds=ctx.settings.effective_seconds,
        team=scope.team,
        rep=scope.rep,
    )


def date_param(value: str | None) -> date | None:
    """An ISO date from the query string, None when empty.

    :raises ValueError: the value is not a date.
    """
    if not value:
        return None
    return date.fromisoformat(value.strip())


def _nothing(start: datetime, end: datetime, ctx: ConsoleContext) -> queries.PerRep:
    """The figures of a visitor who may see none (a lead without a team)."""
    empty = Report(by="rep", start=start, end=end, zone=zone_name(ctx.zone), rows=[])
    return queries.PerRep(empty, {}, {}, {})


def _page_common(ctx: ConsoleContext, request: Request, lines: list[Line]) -> dict[str, Any]:
    column, descending = sort_order(request)
    return {
        "lines": sorted_lines(lines, column, descending),
        "sort": column,
        "sorts": sort_links(request, column, descending),
        "rank_label": _rank_label(ctx),
        "effective_seconds": ctx.settings.effective_seconds,
        "team_total": team_total("total", [line.kpi for line in lines]),
    }


@requires(*STAFF)
async def stats_day(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /stats/day``: the KPIs per rep against targets, with calls by hour or half-hour."""
    try:
        day = date_param(request.query_params.get("date")) or datetime.now(ctx.zone).date()
    except ValueError:
        return error(ctx, request, current, 400, "error.bad_request")
    # The per-rep breakdown is by hour or by half-hour on the floor's clock.
    step = request.query_params.get("step") or "hour"
    if step not in CLOCK_STEPS:
        return error(ctx, request, current, 400, "error.bad_request")
    scope = stats_scope(ctx, request, who)
    team = scope.team if scope is not None else None
    start = start_of_day(day, ctx.zone)
    end = start_of_day(day + timedelta(days=1), ctx.zone)

    data = await _per_rep(ctx, step, start, end, scope) if scope else _nothing(start, end, ctx)
    book = ctx.targets(data.stored_targets)
    lines = ranked_lines(ctx, who, data.by_rep.rows, data.directory, book, team)
    details = []
    for line in sorted(lines, key=lambda item: item.rank):
        if who.role == "rep" and not line.mine:
            continue  # a rep sees the team's ranking, not their colleagues' hours
        hourly = data.breakdown[line.rep]
        labels = [r.key[11:13] if step == "hour" else r.key[11:16] for r in hourly]
        details.append(
            {
                "line": line,
                "hours": hourly,
                "chart": bar_chart_svg(labels, [float(r.calls) for r in hourly]),
            }
        )
    return render(
        ctx,
        request,
        current,
        "stats_day.html",
        day=day.isoformat(),
        step=step,
        steps=list(CLOCK_STEPS),
        details=details,
        total=data.by_rep.total,
        team=team or "",
        prev_day=(day - timedelta(days=1)).isoformat(),
        next_day=(day + timedelta(days=1)).isoformat(),
        **_page_common(ctx, request, lines),
    )


def _day_met(row: ReportRow, quota: DailyTarget) -> bool:
    """Whether a day's figures met every target the quota sets (False when it sets none)."""
    done = kpis(row, quota)
    progress = [p for p in (done.calls, done.talk, done.effective) if p.target is not None]
    return bool(progress) and all(p.met for p in progress)


@requires(*STAFF)
async def stats_month(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /stats/month``: the month's KPIs per rep against their targets for the days they worked."""
    text = request.query_params.get("month") or datetime.now(ctx.zone).strftime("%Y-%m")
    try:
        first = datetime.strptime(text + "-01", "%Y-%m-%d").date()
    except ValueError:
        return error(ctx, request, current, 400, "error.bad_request")
    following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    scope = stats_scope(ctx, request, who)
    team = scope.team if scope is not None else None
    start, end = start_of_day(first, ctx.zone), start_of_day(following, ctx.zone)

    data = await _per_rep(ctx, "day", start, end, scope) if scope else _nothing(start, end, ctx)
    book = ctx.targets(data.stored_targets)
    worked = {rep: max(sum(1 for d in daily if d.calls), 1) for rep, daily in data.breakdown.items()}
    lines = ranked_lines(ctx, who, data.by_rep.rows, data.directory, book, team, worked)
    extra = {}
    for line in lines:
        daily = data.breakdown[line.rep]
        quota = book.for_rep(line.rep, line.team)
        # A rep who sees the team's ranking sees their colleagues' totals, not their days.
        own = who.role != "rep" or line.mine
        extra[line.rep] = {
            "days_on_target": sum(1 for d in daily if _day_met(d, quota)),
            "has_target": line.kpi.has_targets,
            "chart": bar_chart_svg(
                [d.key[8:10] for d in daily], [float(d.calls) for d in daily], target=quota.calls
            )
            if own
            else "",
        }
    return render(
        ctx,
        request,
        current,
        "stats_month.html",
        month=first.strftime("%Y-%m"),
        extra=extra,
        total=data.by_rep.total,
        team=team or "",
        prev_month=(first - timedelta(days=1)).strftime("%Y-%m"),
        next_month=following.strftime("%Y-%m"),
        **_page_common(ctx, request, lines),
    )


# -- the wallboard ------------------------------------------------------------------------


def _progress(progress: Progress, show: Callable[[float], str]) -> dict[str, Any]:
    """A figure and its bar as the wallboard's script draws them."""
    return {
        "text": show(progress.value),
        "target": None if progress.target is None else show(progress.target),
        "share": round(progress.share, 4),
        "percent": progress.percent,
        "met": bool(progress.met),
    }


def _count(value: float) -> str:
    return str(int(value))


def _figures(kpi: Kpis) -> dict[str, Any]:
    average = kpi.avg_talk_seconds
    return {
        "calls_bar": _progress(kpi.calls, _count),
        "talk_bar": _progress(kpi.talk, format_duration),
        "effective_bar": _progress(kpi.effective, _count),
        "inbound": kpi.inbound,
        "outbound": kpi.outbound,
        "connects": kpi.connects,
        "connect_rate": percent_text(kpi.connect_rate),
        "avg_talk": format_duration(average) if average is not None else "",
    }


async def wallboard_figures(ctx: ConsoleContext, who: Principal, scope: Scope | None) -> dict[str, Any]:
    """Today's figures as the wallboard shows them (the page and each event carry the same JSON)."""
    now = datetime.now(ctx.zone)
    rows: list[dict[str, Any]] = []
    lines: list[Line] = []
    if scope is not None:
        data = await ctx.read(
            queries.wallboard,
            start_of_day(now.date(), ctx.zone),
            now + timedelta(seconds=1),
            zone=ctx.zone,
            effective_seconds=ctx.settings.effective_seconds,
            team=scope.team,
            rep=scope.rep,
        )
        book = ctx.targets(data.stored_targets)
        lines = ranked_lines(ctx, who, data.report.rows, data.directory, book, scope.team)
        for line in lines:
            on_call = data.on_call.get(line.rep)
            on_call_seconds = max(int((now - on_call.since).total_seconds()), 0) if on_call else None
            rows.append(
                {
                    "rank": line.rank,
                    "rep": line.rep,
                    "name": line.name,
                    "mine": line.mine,
                    "calls": int(line.kpi.calls.value),
                    "answered": line.kpi.answered,
                    "missed": line.kpi.missed,
                    "talk": format_duration(line.kpi.talk.value),
                    "effective": int(line.kpi.effective.value),
                    "target_calls": None if line.kpi.calls.target is None else int(line.kpi.calls.target),
                    "on_call": on_call.calls if on_call else 0,
                    "on_call_seconds": on_call_seconds,
                    "ringing": bool(on_call and not on_call.answered),
                    **_figures(line.kpi),
                }
            )
    total = team_total("total", [line.kpi for line in lines])
    return {
        "at": now.strftime("%H:%M:%S"),
        "rows": rows,
        "total": {
            "calls": int(total.calls.value),
            "talk": format_duration(total.talk.value),
            "missed": total.missed,
            "effective": int(total.effective.value),
            **_figures(total),
        },
    }


def _wallboard_query(request: Request, scope: Scope | None, who: Principal) -> str:
    """The query string the page's event stream is asked with (the team a manager picked)."""
    if who.role == "manager" and scope is not None and scope.team:
        return "?" + urllib.parse.urlencode({"team": scope.team})
    return ""


@requires(*STAFF)
async def wallboard(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /wallboard``: the full-screen figures (kept fresh by ``/wallboard/events``).

    ``?kiosk=1``: for the TV, with no navigation (see the template).
    """
    scope = stats_scope(ctx, request, who)
    figures = await wallboard_figures(ctx, who, scope)
    return render(
        ctx,
        request,
        current,
        "wallboard.html",
        figures=figures,
        team=(scope.team if scope else None) or "",
        kiosk=request.query_params.get("kiosk") in ("1", "true", "yes"),
        events="/wallboard/events" + _wallboard_query(request, scope, who),
        interval_ms=int(ctx.settings.wallboard_interval * 1000),
        rank_label=_rank_label(ctx),
        effective_seconds=ctx.settings.effective_seconds,
    )


@requires(*STAFF)
async def wallboard_events(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /wallboard/events``: the figures as Server-Sent Events every ``wallboard_interval``."""
    scope = stats_scope(ctx, request, who)
    interval = ctx.settings.wallboard_interval

    async def frames() -> AsyncIterator[bytes]:
        yield f"retry: {int(interval * 1000)}\n\n".encode()
        sequence = 0
        while True:
            figures = await wallboard_figures(ctx, who, scope)
            sequence += 1
            yield format_sse(sequence, "figures", figures)
            await asyncio.sleep(interval)

    # StreamingResponse stops the generator when the client disconnects.
    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
