"""The seat API's context (built once at start-up) and the one place a seat's credential is checked."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from agent.centre.relay import ListenRelay
from agent.config import DispositionCode, default_dispositions
from agent.numbers import DEFAULT_REGION
from agent.web import SafeJSONResponse
from storage.blobstore import RecordingBlobStore
from storage.seats import SeatInfo, seat_for_token

logger = logging.getLogger(__name__)

Handler = Callable[["SeatApiContext", Request], Awaitable[Response]]
SeatHandler = Callable[["SeatApiContext", Request, SeatInfo], Awaitable[Response]]


class SeatApiMetrics:
    """The seat API's own counters, on an injected registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lookups = Counter(
            "cti_centre_lookups",
            "Customer lookups seats asked for, by whether a customer was found (found, not_found).",
            ["result"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "cti_centre_auth_failures",
            "Seat API requests refused for their credential, by reason (missing, unknown, seat_mismatch).",
            ["reason"],
            registry=registry,
        )
        self.clock_skew = Gauge(
            "cti_seat_clock_skew_seconds",
            "How far a seat's clock was ahead of the centre's (negative: behind) at its last batch.",
            ["seat"],
            registry=registry,
        )
        self.entries = Counter(
            "cti_centre_sync_entries",
            "Call entries seats sent, by what became of them (accepted, duplicate, rejected).",
            ["status"],
            registry=registry,
        )
        self.recordings = Counter(
            "cti_centre_recordings",
            "Recording uploads from seats, by outcome "
            "(stored, duplicate, replaced, refused, damaged, failed).",
            ["outcome"],
            registry=registry,
        )
        self.dispositions = Counter(
            "cti_centre_dispositions",
            "Dispositions seats sent, by what became of them (accepted, duplicate, conflict, rejected).",
            ["status"],
            registry=registry,
        )
        self.collisions = Counter(
            "cti_centre_lead_collisions",
            "Calls to or from another rep's customer (撞单), flagged to both team leads.",
            registry=registry,
        )
        self.dnc_dialed = Counter(
            "cti_centre_dnc_dialed",
            "Outbound calls to a number on the do-not-call list (dialed on the handset, or confirmed).",
            registry=registry,
        )
        self.recording_bytes = Counter(
            "cti_centre_recording_bytes", "Bytes of recordings stored from seats.", registry=registry
        )


@dataclass(frozen=True)
class SeatApiContext:
    """What every seat API handler needs: the centre's database, the API's metrics, the recording store.

    ``store`` None: this centre takes no recordings (its recording routes answer 503).
    """

    engine: Engine
    metrics: SeatApiMetrics
    #: Seats waiting for listen requests (shared with the console of the same process).
    relay: ListenRelay = field(default_factory=ListenRelay)
    store: RecordingBlobStore | None = None
    sessions: sessionmaker[Session] = field(init=False)
    #: The floor's region (``[agent] region``): a national number in a lookup is read in it.
    region: str = DEFAULT_REGION
    #: ``[leads] protection_days``: how long an owner keeps a customer before others may claim it.
    protection: timedelta = timedelta(days=30)
    #: ``[[centre.dispositions]]``, in the order the seat page offers them.
    dispositions: tuple[DispositionCode, ...] = field(default_factory=lambda: tuple(default_dispositions()))

    def __post_init__(self) -> None:
        object.__setattr__(self, "sessions", sessionmaker(self.engine))

    def bind(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A Starlette endpoint calling ``handler(ctx, request)``."""

        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            return await handler(self, request)

        return endpoint


def error(status: int, message: str) -> Response:
    """A JSON error answer: ``{"error": message}``."""
    return SafeJSONResponse({"error": message}, status_code=status)


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def seat_only(handler: SeatHandler) -> Handler:
    """Run ``handler`` only for a request carrying an active seat's token; 401 otherwise.

    The one place the seat API checks credentials: every seat route is wrapped in it. A refusal
    is logged (with the client address, never the token) and counted by reason.
    """

    @functools.wraps(handler)
    async def checked(ctx: SeatApiContext, request: Request) -> Response:
        token = _bearer(request)
        if token is None:
            return _refuse(ctx, request, "missing")

        def look_up() -> SeatInfo | None:
            with ctx.sessions() as session:
                return seat_for_token(session, token)

        try:
            seat = await run_in_threadpool(look_up)
        except SQLAlchemyError as exc:
            logger.warning("seat API: the credential cannot be checked, the database failed: %s", exc)
            return error(503, "the centre's database is unavailable; retry later")
        if seat is None:
            return _refuse(ctx, request, "unknown")
        return await handler(ctx, request, seat)

    return checked


def _refuse(ctx: SeatApiContext, request: Request, reason: str) -> Response:
    ctx.metrics.auth_failures.labels(reason).inc()
    client = request.client.host if request.client else "?"
    logger.warning("seat API: %s credential from %s for %s", reason, client, request.url.path)
    response = error(401, "a valid seat token is required (Authorization: Bearer ...)")
    response.headers["WWW-Authenticate"] = 'Bearer realm="cti-agent centre"'
    return response


def refuse_seat_mismatch(ctx: SeatApiContext, request: Request, seat: SeatInfo, claimed: str) -> Response:
    """403 for a seat writing as another seat (logged and counted)."""
    ctx.metrics.auth_failures.labels("seat_mismatch").inc()
    logger.warning("seat API: seat %s claimed to be %r; refused", seat.name, claimed[:64])
    return error(403, f"this credential is seat {seat.name!r}'s; it cannot write as {claimed[:64]!r}")
