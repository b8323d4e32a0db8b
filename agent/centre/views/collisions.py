"""The collision list (撞单): calls a rep made to, or took from, another rep's customer.

Both team leads see a collision (the caller's team and the owner's); managers see the floor's
(admins, who run the system, not the floor, do not). Nothing is blocked: the call has happened;
the list is for the leads to sort it out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from agent.centre.access import Visit, error, render, requires
from agent.centre.auth import Principal
from agent.centre.context import ConsoleContext
from storage.ownership import collisions

#: The longest look back the page offers.
MAX_DAYS = 90


@requires("lead", "manager")
async def collisions_page(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /collisions?days=N``: the last N days' collisions (7 by default), newest first."""
    try:
        days = int(request.query_params.get("days") or 7)
    except ValueError:
        return error(ctx, request, current, 400, "error.bad_request")
    days = min(max(days, 1), MAX_DAYS)
    # A lead without a team sees none rather than everyone's.
    teams = None if who.role != "lead" else ({who.team} if who.team else set())
    since = datetime.now(UTC) - timedelta(days=days)
    rows = await ctx.read(collisions, teams=teams, since=since)
    return render(ctx, request, current, "collisions.html", rows=rows, days=days)
