"""``GET /api/v1/lookup?number=...``: the customer card of a number, team-wide, for a seat's screen-pop.

``number`` is E.164 (``+8613812345678``) or a national number, read in the centre's region
(``[agent] region``); one that cannot be normalised is answered 400 with the reason, never
guessed at. The answer::

    {"number": "+8613812345678",
     "customer": {"id": 7, "name": "...", "company": "...", "owner_rep": "alice", "status": "owned"} | null,
     "calls": [{"uuid", "started_at", "direction", "seat", "rep", "talk_seconds", "disposition", "notes",
                "has_recording"}],
     "ownership": {"state": "yours" | "protected" | "owned" | "pool", "owner_rep", "owner_team",
                   "until", "may_claim"} | null,
     "as_of": "2026-12-03T17:05:12.123456+00:00"}

``do_not_call`` says the number is on the floor's do-not-call list (:mod:`storage.dnc`).
``ownership`` is who owns the number across the whole floor, as the seat's rep sees it
(:class:`storage.ownership.Ownership`): shown even when the customer is another team's and
stays hidden, so the rep knows it is someone else's (null: no customer has the number).

Scope (what the seat's rep may see; :mod:`storage.lookup`): the calls of the seat's own team and
always of its own seat (a seat without a team: its own seat's only), at most five, newest first;
the customer only when a rep of the seat's team owns them or nobody does (``status`` ``pool``).
The permissions issue (#17) refines this by role, data scope and hidden fields; the seat then
asks the same route and gets less or more.

Lookups are counted by ``cti_centre_lookups_total{result}`` (``found``, ``not_found``: whether
a customer card came back); never a number as a label.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from agent.centre.api.context import SeatApiContext, error, seat_only
from agent.numbers import to_e164
from agent.web import SafeJSONResponse
from storage.dnc import listed
from storage.lookup import CardCall, CardCustomer, LookupScope, customer_for_number, last_calls
from storage.ownership import Ownership, ownership_of
from storage.seats import SeatInfo

logger = logging.getLogger(__name__)

#: The longest ``number`` taken (a dial string is far shorter; anything longer is not a number).
MAX_NUMBER = 64


def parse_number(value: str | None, region: str) -> str:
    """The E.164 form of the ``number`` parameter.

    :raises ValueError: missing, too long, or not a valid number in ``region``'s numbering plan
        (the message says which; it names the number only by its length).
    """
    if value is None or not value.strip():
        raise ValueError("give the number to look up: ?number=+8613812345678 (or a national number)")
    if len(value) > MAX_NUMBER:
        raise ValueError(f"number too long ({len(value)} characters; at most {MAX_NUMBER})")
    e164 = to_e164(value, region)
    if e164 is None:
        raise ValueError(f"not a valid phone number in region {region} (give E.164, +<country><number>)")
    return e164


@seat_only
async def get_lookup(ctx: SeatApiContext, request: Request, seat: SeatInfo) -> Response:
    """The card of ``?number=`` as this seat may see it.

    400 for a number that is not one (nothing is guessed); 503 when the database cannot be read.
    """
    try:
        number = parse_number(request.query_params.get("number"), ctx.region)
    except ValueError as exc:
        return error(400, str(exc))
    # An empty team is no team: it must not open every teamless seat's calls to this one.
    scope = LookupScope(seat=seat.name, team=seat.team or None)

    def read() -> tuple[CardCustomer | None, list[CardCall], Ownership | None, bool]:
        with ctx.sessions() as session:
            return (
                customer_for_number(session, number, scope),
                last_calls(session, number, scope),
                ownership_of(session, number, seat.rep, protection=ctx.protection, now=datetime.now(UTC)),
                bool(listed(session, [number])),
            )

    try:
        customer, calls, owner, barred = await run_in_threadpool(read)
    except SQLAlchemyError as exc:
        logger.warning("seat API: lookup for seat %s failed, the database cannot be read: %s", seat.name, exc)
        return error(503, "the centre's database is unavailable; retry later")
    ctx.metrics.lookups.labels("found" if customer is not None else "not_found").inc()
    logger.debug("seat API: lookup %s for seat %s: customer %s", number, seat.name, customer and customer.id)
    return SafeJSONResponse(
        {
            "number": number,
            "customer": customer.to_dict() if customer is not None else None,
            "calls": [call.to_dict() for call in calls],
            "ownership": owner.to_dict() if owner is not None else None,
            "do_not_call": barred,
            "as_of": datetime.now(UTC).isoformat(),
        },
        headers={"Cache-Control": "no-store"},
    )
