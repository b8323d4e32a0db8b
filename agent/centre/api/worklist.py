"""``GET /api/v1/worklist`` (the seat's rep's leads to call) and ``POST /api/v1/dispositions``.

A seat's credential opens the worklist of the rep the centre has for that seat (``cti-agent
seats add NAME --rep R`` or ``seats set-rep``), never another rep's: a seat without a rep is
answered 409 saying how to give it one. The worklist's JSON::

    {"seat": "seat-01", "rep": "rep01", "rep_active": true, "as_of": "...", "until": "...",
     "dispositions": [{"code": "no_answer", "en": "No answer", "zh": "无人接听",
                       "final": false, "follow_up": false}, ...],
     "items": [{"lead_id", "customer_id", "name", "company", "numbers": ["+86..."], "list",
                "premium", "reason": "follow_up" | "new" | "retry", "due_at", "last_code",
                "last_at", "assigned_at"}, ...]}

``?until=`` (ISO 8601 with offset) is the end of the seat's day: follow-ups due by then are on
the list. Dispositions are answered one result per entry, in order (see
:class:`storage.worklist.DispositionOutcome`); a disposition for a lead that is someone else's
now is kept and answered ``conflict``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from agent.centre.api.calls import read_json
from agent.centre.api.context import SeatApiContext, error, refuse_seat_mismatch, seat_only
from agent.seatapi import (
    MAX_BATCH_BYTES,
    DispositionBatch,
    DispositionEntry,
    DispositionResult,
    parse_disposition,
)
from agent.web import SafeJSONResponse
from storage.seats import SeatInfo
from storage.worklist import DispositionIn, Rule, record_dispositions, rep_active, worklist

logger = logging.getLogger(__name__)

#: How far ``until`` may lie from now: a seat's day, with room for a clock a little off.
UNTIL_RANGE = timedelta(days=2)


def _no_rep(seat: SeatInfo) -> Response:
    return error(
        409,
        f"seat {seat.name} has no rep at the centre; give it one: "
        f"cti-agent seats set-rep {seat.name} REP (at the centre)",
    )


def _until(value: str | None, now: datetime) -> datetime:
    if value is None:
        return now
    try:
        until = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("until: not an ISO 8601 time") from None
    if until.tzinfo is None:
        raise ValueError("until: a time with its UTC offset is needed")
    if abs(until - now) > UNTIL_RANGE:
        raise ValueError(f"until: more than {UNTIL_RANGE.days} days from the centre's clock")
    return until


@seat_only
async def get_worklist(ctx: SeatApiContext, request: Request, seat: SeatInfo) -> Response:
    """The seat's rep's open leads in calling order, with the floor's dispositions."""
    rep = seat.rep
    if rep is None:
        return _no_rep(seat)
    now = datetime.now(UTC)
    try:
        until = _until(request.query_params.get("until"), now)
    except ValueError as exc:
        return error(400, str(exc))

    def read() -> tuple[bool, list[dict[str, object]]]:
        with ctx.sessions() as session:
            return rep_active(session, rep), [i.to_dict() for i in worklist(session, rep, until=until)]

    try:
        active, items = await run_in_threadpool(read)
    except SQLAlchemyError as exc:
        logger.warning(
            "seat API: worklist for seat %s failed, the database cannot be read: %s", seat.name, exc
        )
        return error(503, "the centre's database is unavailable; retry later")
    return SafeJSONResponse(
        {
            "seat": seat.name,
            "rep": rep,
            "rep_active": active,
            "as_of": now.isoformat(),
            "until": until.isoformat(),
            "dispositions": [d.model_dump() for d in ctx.dispositions],
            "items": items,
        },
        headers={"Cache-Control": "no-store"},
    )


@seat_only
async def post_dispositions(ctx: SeatApiContext, request: Request, seat: SeatInfo) -> Response:
    """Store the seat's dispositions; one result per entry, in order.

    400 for a body that is not a batch; 403 for a batch naming another seat; 409 for a seat
    without a rep; 503 when the database cannot be written (the seat sends them again).
    """
    rep = seat.rep
    if rep is None:
        return _no_rep(seat)
    try:
        batch = DispositionBatch.model_validate(await read_json(request, MAX_BATCH_BYTES))
    except ValueError as exc:
        reason = (
            str(exc).splitlines()[0] if not isinstance(exc, ValidationError) else "not a disposition batch"
        )
        return error(400, reason)
    if batch.seat != seat.name:
        return refuse_seat_mismatch(ctx, request, seat, batch.seat)
    parsed = [parse_disposition(raw) for raw in batch.dispositions]
    valid = [entry for entry in parsed if isinstance(entry, DispositionEntry)]
    rules = {
        d.code: Rule(final=d.final, follow_up=d.follow_up, do_not_call=d.do_not_call)
        for d in ctx.dispositions
    }

    def write() -> dict[str, DispositionResult]:
        rows = [
            DispositionIn(
                uuid=e.uuid,
                code=e.code,
                at=e.at,
                lead_id=e.lead_id,
                customer_id=e.customer_id,
                note=e.note,
                follow_up_at=e.follow_up_at,
                call_uuid=e.call_uuid,
            )
            for e in valid
        ]
        with ctx.sessions.begin() as session:
            outcomes = record_dispositions(session, rows, seat=seat.name, rep=rep, rules=rules)
        return {o.uuid: DispositionResult(uuid=o.uuid, status=o.status, reason=o.reason) for o in outcomes}

    try:
        written = await run_in_threadpool(write)
    except SQLAlchemyError as exc:
        logger.warning("seat API: dispositions from seat %s not stored: %s", seat.name, exc)
        return error(503, "the centre's database is unavailable; retry later")
    results = [written[e.uuid] if isinstance(e, DispositionEntry) else e for e in parsed]
    for result in results:
        ctx.metrics.dispositions.labels(result.status).inc()
    return SafeJSONResponse({"results": [r.model_dump() for r in results]})
