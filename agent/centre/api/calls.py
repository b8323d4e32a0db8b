"""``POST /api/v1/calls`` (a seat's batch of calls) and ``GET /api/v1/whoami``."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from agent.centre.api.context import SeatApiContext, error, refuse_seat_mismatch, seat_only
from agent.seatapi import MAX_BATCH_BYTES, BatchAnswer, CallBatch, CallEntry, EntryResult, parse_entry
from agent.web import SafeJSONResponse
from storage.dnc import flag_dialed
from storage.ingest import Incoming, ingest_calls
from storage.ownership import flag_collisions
from storage.seats import SeatInfo, seat_seen

logger = logging.getLogger(__name__)


async def read_json(request: Request, limit: int) -> object:
    """The request's JSON body, read while counting; ValueError when too large or not JSON."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ValueError(f"request body over {limit} bytes")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None


@seat_only
async def post_calls(ctx: SeatApiContext, request: Request, seat: SeatInfo) -> Response:
    """Store a batch of the seat's calls; answer one result per entry, in order.

    400 for a body that is not a batch at all; 403 when the batch, or any call in it, names
    another seat (nothing is stored); 503 when the database cannot be written (the seat retries).
    """
    try:
        batch = CallBatch.model_validate(await read_json(request, MAX_BATCH_BYTES))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError too
        reason = str(exc).splitlines()[0] if not isinstance(exc, ValidationError) else "not a call batch"
        return error(400, reason)
    if batch.seat != seat.name:
        return refuse_seat_mismatch(ctx, request, seat, batch.seat)
    if batch.sent_at is not None:
        _note_skew(ctx, seat.name, batch.sent_at)
    parsed: list[CallEntry | EntryResult] = [
        parse_entry(raw)
        if isinstance(raw, dict)
        else EntryResult(uuid=None, status="rejected", reason="not an object")
        for raw in batch.calls
    ]
    valid = [entry for entry in parsed if isinstance(entry, CallEntry)]
    for entry in valid:
        if entry.seat != seat.name:
            return refuse_seat_mismatch(ctx, request, seat, entry.seat)

    def write() -> dict[str, EntryResult]:
        items = [Incoming(entry.to_call(), entry.notes, entry.follow_up_at) for entry in valid]
        with ctx.sessions.begin() as session:
            # The write first: on SQLite a transaction that read before it writes cannot take the
            # write lock once another seat has committed (WAL's snapshot rule, no waiting), so
            # concurrent seats would get "database is locked"; a write first waits its turn.
            seat_seen(session, seat.name, batch.backlog)
            outcomes = ingest_calls(session, items)
            flagged = flag_collisions(
                session,
                [
                    (e.uuid, e.number_e164, e.rep, e.team or None, e.started_at)
                    for e, o in zip(valid, outcomes, strict=True)
                    if o.status == "accepted"
                ],
                now=datetime.now(UTC),
            )
            barred = flag_dialed(
                session,
                [
                    (e.uuid, e.number_e164, e.rep, str(e.direction))
                    for e, o in zip(valid, outcomes, strict=True)
                    if o.status == "accepted"
                ],
                now=datetime.now(UTC),
            )
        ctx.metrics.collisions.inc(len(flagged))
        ctx.metrics.dnc_dialed.inc(barred)
        return {
            entry.uuid: EntryResult(uuid=entry.uuid, status=outcome.status, reason=outcome.reason)
            for entry, outcome in zip(valid, outcomes, strict=True)
        }

    try:
        written = await run_in_threadpool(write)
    except SQLAlchemyError as exc:
        logger.warning("seat API: batch from seat %s not stored: %s", seat.name, exc)
        return error(503, "the centre's database is unavailable; retry later")
    answer = BatchAnswer(
        results=[written[entry.uuid] if isinstance(entry, CallEntry) else entry for entry in parsed]
    )
    for result in answer.results:
        ctx.metrics.entries.labels(result.status).inc()
    return SafeJSONResponse(answer.model_dump())


#: A seat clock this far off (seconds) is logged: its calls' times are off by as much.
SKEW_WARNING = 120.0


def _note_skew(ctx: SeatApiContext, seat: str, sent_at: datetime) -> None:
    """Export how far the seat's clock is off; warn when it is off by more than :data:`SKEW_WARNING`."""
    if sent_at.tzinfo is None:
        return
    skew = (sent_at - datetime.now(UTC)).total_seconds()
    ctx.metrics.clock_skew.labels(seat).set(round(skew, 1))
    if abs(skew) > SKEW_WARNING:
        logger.warning(
            "seat %s's clock is %.0f s %s the centre's: its call times are off by as much; check its NTP",
            seat,
            abs(skew),
            "ahead of" if skew > 0 else "behind",
        )


@seat_only
async def whoami(ctx: SeatApiContext, request: Request, seat: SeatInfo) -> Response:
    """The seat this token belongs to (the seat checks its credential and the centre with it)."""
    return SafeJSONResponse({"seat": seat.name, "team": seat.team})
