"""The call search, its exports and one call's page."""

from __future__ import annotations

import logging
import urllib.parse
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from agent.centre import queries
from agent.centre.access import STAFF, Visit, client_address, error, render, requires
from agent.centre.auth import Principal
from agent.centre.context import ConsoleContext
from agent.centre.search import (
    DIRECTIONS,
    DISPOSITIONS,
    EXPORT_LIMIT,
    PER_PAGE_CHOICES,
    CallRow,
    QueryError,
    SearchQuery,
    display_number,
    export_rows,
    mask_number,
    search,
    to_csv,
    to_xlsx,
    visible_call,
)
from agent.centre.views.recordings import availability
from storage.models import CallRecord, Recording
from storage.repository import add_audit
from storage.sheets import ExportOutcome
from storage.timeline import customer_of_number

logger = logging.getLogger(__name__)

EXPORT_MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def _choices() -> dict[str, Any]:
    return {"directions": DIRECTIONS, "dispositions": DISPOSITIONS, "per_page_choices": PER_PAGE_CHOICES}


@requires(*STAFF)
async def calls_page(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /calls``: the search form and one page of results (the query string is the search)."""
    try:
        query = SearchQuery.from_params(request.query_params, ctx.zone, country_code=ctx.country_code)
    except QueryError as exc:
        return render(
            ctx,
            request,
            current,
            "calls.html",
            status=400,
            query_error=str(exc),
            result=None,
            params=dict(request.query_params),
            page_links={},
            export_query="",
            **_choices(),
        )
    result = await ctx.read(search, query, who, masked=ctx.masked_for(who))
    params = query.to_params(ctx.zone, page=1)
    page_links = {
        "prev": urllib.parse.urlencode(query.to_params(ctx.zone, page=query.page - 1))
        if query.page > 1
        else None,
        "next": urllib.parse.urlencode(query.to_params(ctx.zone, page=query.page + 1))
        if query.page < result.pages
        else None,
    }
    return render(
        ctx,
        request,
        current,
        "calls.html",
        query_error=None,
        result=result,
        params=params,
        page_links=page_links,
        export_query=urllib.parse.urlencode(params),
        **_choices(),
    )


async def _export(ctx: ConsoleContext, request: Request, who: Principal, kind: str) -> Response:
    try:
        query = SearchQuery.from_params(request.query_params, ctx.zone, country_code=ctx.country_code)
    except QueryError as exc:
        return PlainTextResponse(str(exc), status_code=400)
    addr = client_address(request)

    def rows_and_audit(session: Session) -> list[CallRow]:
        # One transaction: the rows are read and the export audited together.
        rows = export_rows(session, query, who, masked=ctx.masked_for(who))
        detail = urllib.parse.urlencode(query.to_params(ctx.zone))
        add_audit(
            session,
            f"export_{kind}",
            user=who.login,
            target=f"{len(rows)} calls",
            detail=detail,
            remote_addr=addr,
        )
        return rows

    # Headers in the user's own language when they chose one (the console's setting), else English.
    lang = who.language if who.language in ("en", "zh-CN") else "en"
    outcome = ExportOutcome()

    def encode(rows: list[CallRow]) -> bytes:
        if kind == "csv":
            return to_csv(rows, ctx.zone, lang=lang, limit=EXPORT_LIMIT, outcome=outcome).encode("utf-8")
        return to_xlsx(rows, ctx.zone, lang=lang, limit=EXPORT_LIMIT, outcome=outcome)

    slot = ctx.exports.try_acquire(who.login)
    if slot is None:
        return PlainTextResponse("an export of yours is still running; try again when it is done", 429)
    try:
        rows = await ctx.write(rows_and_audit)
        # The file is built after the commit, so a large export holds no database lock meanwhile.
        body = await run_in_threadpool(encode, rows)
    finally:
        slot.release()
    if outcome.truncated:
        logger.info("export by %s cut at %d rows (the file says so)", who.login, EXPORT_LIMIT)
    stamp = datetime.now(ctx.zone).strftime("%Y%m%d-%H%M%S")
    return Response(
        body,
        media_type=EXPORT_MEDIA[kind],
        headers={
            "Content-Disposition": f'attachment; filename="calls-{stamp}.{kind}"',
            "Cache-Control": "no-store",
        },
    )


@requires(*STAFF)
async def export_csv(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /calls/export.csv``: the whole result as CSV (audited)."""
    return await _export(ctx, request, who, "csv")


@requires(*STAFF)
async def export_xlsx(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /calls/export.xlsx``: the whole result as a workbook (audited)."""
    return await _export(ctx, request, who, "xlsx")


def _call_and_recordings(
    session: Session, call_uuid: str, who: Principal
) -> tuple[CallRecord, list[Recording], int | None] | None:
    call = visible_call(session, call_uuid, who)
    if call is None:
        return None
    customer_id = call.customer_id or customer_of_number(session, call.number_e164)
    return call, queries.call_recordings(session, call.uuid), customer_id


@requires(*STAFF)
async def call_page(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /calls/{call_uuid}``: one call, its notes and its recordings with a player."""
    found = await ctx.read(_call_and_recordings, request.path_params["call_uuid"], who)
    if found is None:
        return error(ctx, request, current, 404, "error.not_found")
    call, recordings, customer_id = found
    store = ctx.store if ctx.store is not None else ctx.settings.store()
    root = ctx.settings.recordings_dir
    playable = {rec.id: await run_in_threadpool(availability, rec, root, store) for rec in recordings}
    number = display_number(call.number_e164, call.number_raw)
    return render(
        ctx,
        request,
        current,
        "call.html",
        call=call,
        recordings=recordings,
        playable=playable,
        customer_id=customer_id,
        number=mask_number(number) if ctx.masked_for(who) else number,
    )
