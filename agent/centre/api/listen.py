"""Listen-in with the seat calling out (:mod:`agent.centre.relay`): the seat's two routes.

``GET /api/v1/listen/wait`` is the seat's long-poll: held open up to :data:`POLL_SECONDS` and
answered ``200 {"ticket": ..., "call_uuid": ...}`` as soon as a listener asks for one of its
calls, or ``204`` when none did (the seat polls again at once). ``POST
/api/v1/listen/{ticket}`` carries the call's live audio as its (chunked) body until the call
ends or the listener goes; ``?status=not_live`` with an empty body says the seat has no such
call in progress. A ticket opens only one call of the seat it was issued to.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from agent.centre.api.context import SeatApiContext, error, seat_only
from agent.web import SafeJSONResponse
from storage.seats import SeatInfo, seat_seen

logger = logging.getLogger(__name__)

#: How long a seat's poll is held open when no listener asks (under common proxies' idle limits).
POLL_SECONDS = 25.0


@seat_only
async def listen_wait(ctx: SeatApiContext, request: Request, seat: SeatInfo) -> Response:
    """The seat's long-poll for listen requests (it also tells the other centre processes it is here)."""

    def seen() -> None:
        with ctx.sessions.begin() as session:
            seat_seen(session, seat.name, None)

    try:
        await run_in_threadpool(seen)
    except SQLAlchemyError as exc:
        logger.warning("seat API: seat %s's poll not noted: %s", seat.name, exc)
    ticket = await ctx.relay.wait(seat.name, POLL_SECONDS)
    if ticket is None:
        return Response(status_code=204)
    logger.info("listen-in: asking seat %s for call %s", seat.name, ticket.call_uuid)
    return SafeJSONResponse({"ticket": ticket.id, "call_uuid": ticket.call_uuid})


@seat_only
async def listen_stream(ctx: SeatApiContext, request: Request, seat: SeatInfo) -> Response:
    """The seat's audio for one ticket, passed on to its listener as it arrives."""
    ticket = ctx.relay.attach(seat.name, request.path_params["ticket"])
    if ticket is None:
        return error(404, "no such listen request for this seat (over, or another seat's)")
    if request.query_params.get("status") == "not_live":
        ticket.refuse("the call is not live on its seat")
        return SafeJSONResponse({"bytes": 0})
    received = 0
    try:
        async for chunk in request.stream():
            if ticket.closed:
                break  # the listener went; answering ends the seat's upload
            ticket.put(chunk)
            received += len(chunk)
    except ClientDisconnect:
        logger.info("listen-in: seat %s stopped streaming call %s", seat.name, ticket.call_uuid)
    finally:
        ticket.finish()
    return SafeJSONResponse({"bytes": received})
