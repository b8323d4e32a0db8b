"""The customer list and one customer's history across the floor (calls, dispositions, transfers).

Who may see a customer is :func:`storage.timeline.customer_scope` for the
viewer :func:`viewer_of` makes of the user's role; every view of a customer,
page or JSON, is audited (``view_customer``). Numbers are masked for the roles
in ``mask_roles`` as on the calls pages; a call's recording is offered only when
the call is in the user's call scope (the audio route checks it again and
audits each play).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agent.centre.access import STAFF, Visit, client_address, error, render, requires
from agent.centre.auth import Principal
from agent.centre.context import ConsoleContext
from agent.centre.search import display_number, mask_number
from storage import timeline
from storage.repository import add_audit


def viewer_of(who: Principal) -> timeline.Viewer:
    """The storage viewer of a console user: a manager everything, a lead their team, a rep themselves."""
    if who.role == "manager":
        return timeline.Viewer(everything=True)
    if who.role == "lead":
        return timeline.Viewer(team=who.team)
    if who.role == "rep":
        return timeline.Viewer(rep=who.rep)
    return timeline.Viewer()


def _number(e164: str | None, raw: str | None, masked: bool) -> str:
    number = display_number(e164, raw)
    return mask_number(number) if masked else number


@requires(*STAFF)
async def customers_page(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /customers``: the customers the user may see, by name, company or number (``q``), paged."""
    text = request.query_params.get("q", "").strip()[: timeline.MAX_SEARCH]
    raw_page = request.query_params.get("page", "1")
    if not raw_page.isascii() or not raw_page.isdigit() or int(raw_page) < 1:
        return error(ctx, request, current, 400, "error.bad_request")
    page = int(raw_page)
    rows, more = await ctx.read(timeline.search_customers, viewer_of(who), text, page=page)
    masked = ctx.masked_for(who)
    shown = [
        {
            "id": row.id,
            "name": row.name,
            "company": row.company or "",
            "owner_rep": row.owner_rep or "",
            "numbers": [mask_number(n) if masked else n for n in row.numbers],
        }
        for row in rows
    ]
    links = {
        "prev": urllib.parse.urlencode({"q": text, "page": page - 1}) if page > 1 else None,
        "next": urllib.parse.urlencode({"q": text, "page": page + 1}) if more else None,
    }
    return render(ctx, request, current, "customers.html", q=text, rows=shown, page_links=links)


def _entry_json(entry: timeline.Entry, masked: bool) -> dict[str, Any]:
    base: dict[str, Any] = {"kind": entry.kind, "id": entry.id, "at": entry.at.isoformat()}
    if isinstance(entry, timeline.CallEntry):
        base.update(
            call_uuid=entry.uuid,
            rep=entry.rep,
            team=entry.team,
            seat=entry.seat,
            direction=entry.direction,
            number=_number(entry.number_e164, entry.number_raw, masked),
            disposition=entry.disposition,
            talk_seconds=entry.talk_seconds,
            notes=entry.notes,
            recording_ids=list(entry.recording_ids) if entry.in_scope else [],
            in_scope=entry.in_scope,
        )
    elif isinstance(entry, timeline.DispositionEntry):
        base.update(
            rep=entry.rep,
            code=entry.code,
            note=entry.note,
            follow_up_at=entry.follow_up_at.isoformat() if entry.follow_up_at else None,
            call_uuid=entry.call_uuid,
        )
    else:
        base.update(
            actor=entry.actor,
            action=entry.action,
            from_team=entry.from_team,
            from_rep=entry.from_rep,
            to_team=entry.to_team,
            to_rep=entry.to_rep,
            reason=entry.reason,
        )
    return base


async def _page_of(
    ctx: ConsoleContext, request: Request, who: Principal, kind: str
) -> timeline.TimelinePage | str:
    """The timeline page asked for, read and audited in one transaction; or the error key."""
    raw_id = request.path_params["customer_id"]
    before_text = request.query_params.get("before")
    before = timeline.Cursor.decode(before_text)
    if before_text and before is None:
        return "error.bad_request"
    viewer = viewer_of(who)
    addr = client_address(request)

    def read_and_audit(session: Session) -> timeline.TimelinePage | None:
        found = timeline.timeline(session, raw_id, viewer, before=before)
        if found is not None:
            add_audit(
                session,
                "view_customer",
                user=who.login,
                target=f"customer:{raw_id}",
                detail=kind + (f" before={before_text}" if before_text else ""),
                remote_addr=addr,
            )
            # Flushed, then detached: the commit would expire the rows the page still reads.
            session.flush()
            session.expunge_all()
        return found

    found = await ctx.write(read_and_audit)
    return "error.not_found" if found is None else found


@requires(*STAFF)
async def customer_page(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /customers/{id}``: the customer, their numbers and notes, and their history newest first."""
    found = await _page_of(ctx, request, who, "page")
    if isinstance(found, str):
        return error(ctx, request, current, 404 if found == "error.not_found" else 400, found)
    masked = ctx.masked_for(who)
    numbers = [_number(p.number_e164, p.number_raw, masked) for p in found.phones]
    calls = {
        e.id: _number(e.number_e164, e.number_raw, masked)
        for e in found.entries
        if isinstance(e, timeline.CallEntry)
    }
    next_link = (
        urllib.parse.urlencode({"before": found.next_cursor.encode()})
        if found.next_cursor is not None
        else None
    )
    return render(
        ctx,
        request,
        current,
        "customer.html",
        customer=found.customer,
        numbers=numbers,
        entries=found.entries,
        call_numbers=calls,
        next_link=next_link,
        first_page="before" in request.query_params,
    )


@requires(*STAFF)
async def customer_json(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /customers/{id}.json``: the same page as JSON (``customer``, ``entries``, ``next``)."""
    found = await _page_of(ctx, request, who, "json")
    if isinstance(found, str):
        status = 404 if found == "error.not_found" else 400
        return JSONResponse({"error": found}, status_code=status, headers={"Cache-Control": "no-store"})
    masked = ctx.masked_for(who)
    customer = found.customer
    body = {
        "customer": {
            "id": customer.id,
            "name": customer.name,
            "company": customer.company,
            "owner_rep": customer.owner_rep,
            "notes": customer.notes,
            "numbers": [_number(p.number_e164, p.number_raw, masked) for p in found.phones],
        },
        "entries": [_entry_json(e, masked) for e in found.entries],
        "next": found.next_cursor.encode() if found.next_cursor is not None else None,
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
