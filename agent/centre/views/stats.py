"""Statistics: a day by hour or half-hour, a month by day, and the wallboard with its live feed.

All three rank reps the same way (:func:`ranking`) and scope them the same way:
a lead sees their team, a rep themself, a manager any team they pick.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from agent.centre import queries
from agent.centre.access import STAFF, Visit, error, render, requires
from agent.centre.auth import Principal
from agent.centre.charts import bar_chart_svg
from agent.centre.context import ConsoleContext
from agent.web import format_duration, format_sse
from storage.report import CLOCK_STEPS, ReportRow, start_of_day


def ranking(rows: list[ReportRow]) -> list[ReportRow]:
    """Reps best first: most talk time, then most calls, then by name (so ties keep one order)."""
    return sorted(rows, key=lambda r: (-r.talk_seconds, -r.calls, r.key))


def team_filter(request: Request, who: Principal) -> str | None:
    """The team the figures are for: a lead's own, else the ``team`` asked for (None for all)."""
    if who.role == "lead":
        return who.team
    return request.query_params.get("team") or None


def rep_filter(who: Principal) -> str | None:
    """A rep sees their own figures only."""
    return who.rep if who.role == "rep" else None


def date_param(value: str | None) -> date | None:
    """An ISO date from the query string, None when empty.

    :raises ValueError: the value is not a date.
    """
    if not value:
        return None
    return date.fromisoformat(value.strip())


async def _per_rep(
    ctx: ConsoleContext, by: str, start: datetime, end: datetime, team: str | None, who: Principal
) -> queries.PerRep:
    return await ctx.read(
        queries.per_rep,
        by,
        start,
        end,
        zone=ctx.zone,
        effective_seconds=ctx.settings.effective_seconds,
        team=team,
        rep=rep_filter(who),
    )


@requires(*STAFF)
async def stats_day(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /stats/day``: calls and talk time per rep against targets, by hour or half-hour."""
    try:
        day = date_param(request.query_params.get("date")) or datetime.now(ctx.zone).date()
    except ValueError:
        return error(ctx, request, current, 400, "error.bad_request")
    # The per-rep breakdown is by hour or by half-hour on the floor's clock.
    step = request.query_params.get("step") or "hour"
    if step not in CLOCK_STEPS:
        return error(ctx, request, current, 400, "error.bad_request")
    team = team_filter(request, who)
    start = start_of_day(day, ctx.zone)
    end = start_of_day(day + timedelta(days=1), ctx.zone)

    data = await _per_rep(ctx, step, start, end, team, who)
    reps = []
    for position, row in enumerate(ranking(data.by_rep.rows), start=1):
        target = ctx.target_for(row.key, data.teams.get(row.key, team or ""))
        hourly = data.breakdown[row.key]
        labels = [r.key[11:13] if step == "hour" else r.key[11:16] for r in hourly]
        reps.append(
            {
                "rank": position,
                "row": row,
                "target": target,
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
        reps=reps,
        total=data.by_rep.total,
        team=team or "",
        prev_day=(day - timedelta(days=1)).isoformat(),
        next_day=(day + timedelta(days=1)).isoformat(),
    )


@requires(*STAFF)
async def stats_month(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /stats/month``: calls per rep per day of a month, and the days each met the target."""
    text = request.query_params.get("month") or datetime.now(ctx.zone).strftime("%Y-%m")
    try:
        first = datetime.strptime(text + "-01", "%Y-%m-%d").date()
    except ValueError:
        return error(ctx, request, current, 400, "error.bad_request")
    following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    team = team_filter(request, who)
    start, end = start_of_day(first, ctx.zone), start_of_day(following, ctx.zone)

    data = await _per_rep(ctx, "day", start, end, team, who)
    reps = []
    for position, row in enumerate(ranking(data.by_rep.rows), start=1):
        target = ctx.target_for(row.key, data.teams.get(row.key, team or ""))
        daily = data.breakdown[row.key]
        reps.append(
            {
                "rank": position,
                "row": row,
                "days": daily,
                "target": target,
                "days_on_target": sum(
                    1 for d in daily if target.calls is not None and d.calls >= target.calls
                ),
                "chart": bar_chart_svg(
                    [d.key[8:10] for d in daily], [float(d.calls) for d in daily], target=target.calls
                ),
            }
        )
    return render(
        ctx,
        request,
        current,
        "stats_month.html",
        month=first.strftime("%Y-%m"),
        reps=reps,
        total=data.by_rep.total,
        team=team or "",
        prev_month=(first - timedelta(days=1)).strftime("%Y-%m"),
        next_month=following.strftime("%Y-%m"),
    )


async def wallboard_figures(ctx: ConsoleContext, who: Principal, team: str | None) -> dict[str, Any]:
    """Today's figures as the wallboard shows them (the page and each event carry the same JSON)."""
    now = datetime.now(ctx.zone)
    data = await ctx.read(
        queries.wallboard,
        who,
        start_of_day(now.date(), ctx.zone),
        now + timedelta(seconds=1),
        zone=ctx.zone,
        effective_seconds=ctx.settings.effective_seconds,
        team=team,
        rep=rep_filter(who),
    )
    rows = []
    for row in ranking(data.report.rows):
        target = ctx.target_for(row.key, data.teams.get(row.key, team or ""))
        rows.append(
            {
                "rep": row.key,
                "calls": row.calls,
                "answered": row.answered,
                "missed": row.missed,
                "talk": format_duration(row.talk_seconds),
                "effective": row.effective,
                "target_calls": target.calls,
                "on_call": data.on_call.get(row.key, 0),
            }
        )
    total = data.report.total
    return {
        "at": now.strftime("%H:%M:%S"),
        "rows": rows,
        "total": {
            "calls": total.calls,
            "talk": format_duration(total.talk_seconds),
            "missed": total.missed,
        },
    }


@requires(*STAFF)
async def wallboard(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /wallboard``: the full-screen figures (kept fresh by ``/wallboard/events``)."""
    team = team_filter(request, who)
    figures = await wallboard_figures(ctx, who, team)
    return render(ctx, request, current, "wallboard.html", figures=figures, team=team or "")


@requires(*STAFF)
async def wallboard_events(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /wallboard/events``: the figures as Server-Sent Events every ``wallboard_interval``."""
    team = team_filter(request, who)
    interval = ctx.settings.wallboard_interval

    async def frames() -> AsyncIterator[bytes]:
        yield f"retry: {int(interval * 1000)}\n\n".encode()
        sequence = 0
        while True:
            figures = await wallboard_figures(ctx, who, team)
            sequence += 1
            yield format_sse(sequence, "figures", figures)
            await asyncio.sleep(interval)

    # StreamingResponse stops the generator when the client disconnects.
    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
