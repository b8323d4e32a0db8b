"""Live listen-in: a lead or manager hears a call in progress on the floor from the console.

Two directions. In team mode the seat *calls out*: it keeps a long-poll open to the centre
and streams a call's audio up when a listener asks (:mod:`agent.centre.relay`), so the seat
page stays on loopback and the centre never reaches into the floor's network; that path is
used whenever the call's seat is dialled in. Otherwise the console *pulls* from the seat, as
below (single-machine mode, or seats configured with ``--seat NAME=URL``).

Pulling: the console asks the seat. Each seat's page (``agent/seat/web/app.py``)
serves ``GET /listen/{call_uuid}``: the call's live audio as raw 16-bit
little-endian mono PCM at 8 kHz (``audio/L16;rate=8000;channels=1``, RFC 2586
style), in chunks of at most 100 ms, until the call ends. The audio is the
recorder's live tap (:class:`agent.seat.recorder.LiveTap`), so only calls the seat
records can be listened to (``[recording] enabled``; what ``start_on`` decides
is written to disk, but the tap streams from the moment the line's audio source
opens at the start of the call).

Why pull: the console asks only when someone listens, so a seat sends no audio
the rest of the time; a seat needs no knowledge of where the console is; and
the console, which already decides who may see which call, decides who may
listen before any audio moves. The price is that the console must reach each
seat: a floor that wants listen-in sets the seat page's ``[web] listen`` to an
address the console can reach (``0.0.0.0:8330``) instead of loopback.

Authentication between seat and centre: a shared secret. The seat refuses the
route (404) unless ``[web] listen_token`` is set, and answers 401 unless the
request carries that token as ``Authorization: Bearer`` (compared with
:func:`hmac.compare_digest`). The console holds the same token
(``cti-agent console --listen-token-file``) and the seats' addresses
(``--seat NAME=URL``). The browser never sees the token or a seat's address:
it fetches ``/live/{uuid}/audio`` from the console, which checks the user's
role against the call row, writes the ``listen`` audit row and proxies the
seat's stream. Plain HTTP carries the audio and the token in the clear: keep
the seats and the console on the floor's own network, or put TLS in front.

The list of calls in progress comes from the database the console reads (calls
with ``ended_at`` unset, started within :data:`LIVE_WINDOW`), scoped like every
other page (:func:`agent.centre.search.scope_clause`): in team mode the seats'
outboxes sync those rows as calls start; in single-machine mode the local
database has them.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import AsyncIterator, Container, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from agent.centre.auth import Principal
from agent.centre.relay import ListenRelay
from agent.centre.search import display_number, mask_number, scope_clause
from storage.models import CallRecord

logger = logging.getLogger(__name__)

#: What the seat streams and the console passes on to the browser.
LISTEN_MEDIA_TYPE = "audio/L16;rate=8000;channels=1"
#: Roles that may listen in (a lead to their own team's calls, a manager to all).
LISTEN_ROLES = frozenset({"lead", "manager"})
#: A call without an end older than this is a seat that went away mid-call, not a call in progress.
LIVE_WINDOW = timedelta(hours=12)
#: How long the console waits for a seat to answer before telling the browser it is unreachable.
CONNECT_SECONDS = 3.0
#: A seat's stream that sends nothing for this long is dead (a live call sends audio all the time).
READ_SECONDS = 10.0


@dataclass(frozen=True)
class LiveCall:
    """One call in progress as the live page shows it."""

    uuid: str
    seat: str
    rep: str
    team: str
    line: str
    direction: str
    number: str
    started_at: datetime
    elapsed_seconds: float
    answered: bool
    listenable: bool
    #: ``ringing`` (inbound, not answered), ``dialing`` (outbound, not answered) or ``talking``.
    state: str = "ringing"
    #: Seconds since the state began (the answer, else the start): the page's timer starts there.
    state_seconds: float = 0.0


def line_state(direction: str, answered: bool) -> str:
    """What the line of a call in progress is doing: ``talking``, ``dialing`` or ``ringing``."""
    if answered:
        return "talking"
    return "dialing" if direction == "out" else "ringing"


def may_listen(who: Principal) -> bool:
    """Whether ``who``'s role may listen in at all (the call row decides which calls)."""
    return who.role in LISTEN_ROLES


def live_calls(
    session: Session,
    who: Principal,
    seats: Container[str],
    *,
    masked: bool,
    now: datetime | None = None,
) -> list[LiveCall]:
    """The calls in progress ``who`` may see, oldest first, numbers masked when ``masked``.

    ``seats``: the seats listen-in can reach now (pulled from, or dialled in to the relay).
    """
    now = now or datetime.now(UTC)
    rows = session.scalars(
        select(CallRecord)
        .where(
            scope_clause(who),
            CallRecord.ended_at.is_(None),
            CallRecord.started_at >= now - LIVE_WINDOW,
        )
        .order_by(CallRecord.started_at, CallRecord.id)
    )
    calls = []
    for call in rows:
        number = display_number(call.number_e164, call.number_raw)
        calls.append(
            LiveCall(
                uuid=call.uuid,
                seat=call.seat,
                rep=call.rep,
                team=call.team,
                line=call.line,
                direction=call.direction,
                number=mask_number(number) if masked else number,
                started_at=call.started_at,
                elapsed_seconds=max((now - call.started_at).total_seconds(), 0.0),
                answered=call.answered_at is not None,
                listenable=call.seat in seats,
                state=line_state(call.direction, call.answered_at is not None),
                state_seconds=max((now - (call.answered_at or call.started_at)).total_seconds(), 0.0),
            )
        )
    return calls


def live_call(session: Session, call_uuid: str, who: Principal) -> tuple[CallRecord | None, bool]:
    """The call if ``who`` may listen to it, and whether a call of that id exists at all.

    A role that may not listen gets None for every call, like a call outside its scope.
    """
    call = None
    if may_listen(who):
        call = session.scalar(select(CallRecord).where(CallRecord.uuid == call_uuid, scope_clause(who)))
    if call is not None:
        session.expunge(call)
        return call, True
    exists = session.scalar(select(CallRecord.id).where(CallRecord.uuid == call_uuid)) is not None
    return None, exists


def parse_seats(values: Iterable[str]) -> dict[str, str]:
    """``NAME=URL`` pairs (the console's ``--seat`` options) as a mapping of seat name to base URL.

    :raises ValueError: for a pair without ``=``, an empty name or a URL that is not http(s).
    """
    seats: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        name, url = name.strip(), url.strip()
        parts = urllib.parse.urlsplit(url)
        if not sep or not name:
            raise ValueError(f"expected NAME=URL, got {value!r}")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"not an http(s) base URL for seat {name!r}: {url!r}")
        seats[name] = url.rstrip("/")
    return seats


def seat_listen_url(base: str, call_uuid: str) -> str:
    """The seat's listen URL for a call (the id quoted, so it stays one path segment)."""
    return f"{base}/listen/{urllib.parse.quote(call_uuid, safe='')}"


async def proxy_seat_audio(
    base: str,
    token: str,
    call_uuid: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Response:
    """Open the seat's live stream and pass it through; 502 when the seat cannot give it.

    The seat's 404 (the call is not being captured, or already over) stays a 404.
    """
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS), transport=transport
    )
    request = client.build_request(
        "GET", seat_listen_url(base, call_uuid), headers={"Authorization": f"Bearer {token}"}
    )
    try:
        upstream = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        await client.aclose()
        logger.warning("listen-in: call %s: seat %s unreachable: %s", call_uuid, base, exc)
        return PlainTextResponse("the seat cannot be reached", status_code=502)
    if upstream.status_code != 200:
        await upstream.aclose()
        await client.aclose()
        logger.warning("listen-in: call %s: seat %s answered %d", call_uuid, base, upstream.status_code)
        if upstream.status_code == 404:
            return PlainTextResponse("the call is not live on its seat", status_code=404)
        return PlainTextResponse("the seat refused the stream", status_code=502)

    async def close() -> None:
        await upstream.aclose()
        await client.aclose()

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            logger.info("listen-in: call %s: the seat's stream stopped: %s", call_uuid, exc)
        finally:
            await close()

    return StreamingResponse(
        body(),
        media_type=LISTEN_MEDIA_TYPE,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        background=BackgroundTask(close),
    )


async def relay_audio(relay: ListenRelay, seat: str, call_uuid: str) -> Response:
    """Ask the seat (dialled in to ``relay``) for the call's audio and pass it on as it comes.

    404 when the seat says the call is not live there; 504 when it does not start within
    :data:`agent.centre.relay.ATTACH_SECONDS`.
    """
    ticket = relay.open(seat, call_uuid)
    if not await relay.attached(ticket):
        relay.close(ticket)
        logger.warning("listen-in: call %s: seat %s did not answer", call_uuid, seat)
        return PlainTextResponse("the seat did not answer", status_code=504)
    if ticket.refused is not None:
        relay.close(ticket)
        return PlainTextResponse(ticket.refused, status_code=404)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in ticket.audio():
                yield chunk
        finally:
            relay.close(ticket)

    return StreamingResponse(
        body(),
        media_type=LISTEN_MEDIA_TYPE,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        background=BackgroundTask(relay.close, ticket),
    )


__all__ = [
    "LISTEN_MEDIA_TYPE",
    "LISTEN_ROLES",
    "LIVE_WINDOW",
    "LiveCall",
    "live_call",
    "live_calls",
    "may_listen",
    "parse_seats",
    "proxy_seat_audio",
    "relay_audio",
    "seat_listen_url",
]
