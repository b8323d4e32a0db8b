"""Calls in progress and listening in on one (the seat's live audio, proxied: :mod:`agent.centre.listen`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from agent.centre.access import STAFF, Visit, client_address, render, requires
from agent.centre.auth import Principal
from agent.centre.context import ConsoleContext
from agent.centre.listen import live_call, live_calls, may_listen, proxy_seat_audio, relay_audio
from storage.seats import seen_since

#: A seat seen (its poll noted in the database) this recently is dialled in to some centre process.
DIALLED_IN_SECONDS = 60.0


@requires("lead", "manager")
async def live_page(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /live``: the calls in progress the user may see, with a listen button where a seat allows it."""
    reachable = set(ctx.listen_seats) | await _dialled_in(ctx)
    calls = await ctx.read(live_calls, who, reachable, masked=ctx.masked_for(who))
    return render(ctx, request, current, "live.html", calls=calls)


# Any staff role reaches the route so a refusal is audited: may_listen() decides who hears.
@requires(*STAFF, audio=True)
async def live_audio(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /live/{call_uuid}/audio``: the call's live PCM from its seat (audited, refusals too)."""
    call_uuid = request.path_params["call_uuid"]
    addr = client_address(request)
    call, exists = await ctx.read(live_call, call_uuid, who)
    if call is None:
        if exists or not may_listen(who):
            await ctx.audit(who.login, "listen_denied", f"call:{call_uuid}", addr=addr)
            return PlainTextResponse("forbidden", status_code=403)
        return PlainTextResponse("not found", status_code=404)
    if call.ended_at is not None:
        return PlainTextResponse("the call has ended", status_code=404)
    if call.seat in await _dialled_in(ctx):
        await ctx.audit(who.login, "listen", f"call:{call.uuid}", f"seat:{call.seat}", addr)
        return await relay_audio(ctx.relay, call.seat, call.uuid)
    base = ctx.listen_seats.get(call.seat)
    token = ctx.settings.listen_token
    if base is None or token is None:
        return PlainTextResponse("listen-in is not set up for this seat", status_code=503)
    await ctx.audit(who.login, "listen", f"call:{call.uuid}", f"seat:{call.seat}", addr)
    return await proxy_seat_audio(base, token, call.uuid)


async def _dialled_in(ctx: ConsoleContext) -> set[str]:
    """Seats whose listen-in poll reaches this process, or (with other processes) any of them."""
    seats = set(ctx.relay.online_seats())
    if ctx.relay.remote is not None:
        since = datetime.now(UTC) - timedelta(seconds=DIALLED_IN_SECONDS)
        seats |= await ctx.read(seen_since, since)
    return seats
