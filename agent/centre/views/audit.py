"""The audit log page: who played, downloaded, exported, listened or logged in, filtered and paged."""

from __future__ import annotations

import urllib.parse

from starlette.requests import Request
from starlette.responses import Response

from agent.centre import queries
from agent.centre.access import Visit, error, render, requires
from agent.centre.auth import Principal
from agent.centre.context import ConsoleContext
from agent.centre.views.stats import date_param


@requires("manager", "admin")
async def audit_page(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /audit``: newest first, filtered by ``user``, ``action``, ``target``, ``from``, ``to``."""
    params = request.query_params
    try:
        filters = queries.AuditFilter(
            user=params.get("user", "").strip(),
            action=params.get("action", "").strip(),
            target=params.get("target", "").strip(),
            start=date_param(params.get("from")),
            end=date_param(params.get("to")),
            automatic=params.get("automatic") == "1",
        )
        page_no = max(int(params.get("page") or 1), 1)
    except ValueError:
        return error(ctx, request, current, 400, "error.bad_request")

    found = await ctx.read(queries.audit_page, filters, ctx.zone, page_no)
    base = {
        k: v for k, v in (("user", filters.user), ("action", filters.action), ("target", filters.target)) if v
    }
    base.update({k: params[k] for k in ("from", "to") if params.get(k)})
    if filters.automatic:
        base["automatic"] = "1"
    return render(
        ctx,
        request,
        current,
        "audit.html",
        rows=found.rows,
        total=found.total,
        actions=found.actions,
        filters=base,
        detail_fields=queries.detail_fields,
        prev_link=urllib.parse.urlencode({**base, "page": page_no - 1}) if page_no > 1 else None,
        next_link=urllib.parse.urlencode({**base, "page": page_no + 1}) if page_no < found.pages else None,
    )
