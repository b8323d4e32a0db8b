"""``GET /healthz`` of the centre: is its database reachable (no credential needed, no data shown).

Plain ``ok`` (200) or ``down: ...`` (503) for ``curl -f``, systemd and compose health checks;
the same as JSON for a client that asks for ``application/json``.
"""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from agent.centre.api.context import SeatApiContext
from agent.web import SafeJSONResponse

logger = logging.getLogger(__name__)


async def healthz(ctx: SeatApiContext, request: Request) -> Response:
    """200 with ``{"status": "ok", "database": "ok"}``, or 503 naming what is down."""

    def check() -> str | None:
        try:
            with ctx.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return str(exc).splitlines()[0][:200]
        return None

    problem = await run_in_threadpool(check)
    if problem is not None:
        logger.warning("centre health: database unreachable: %s", problem)
    status = 200 if problem is None else 503
    if "application/json" in request.headers.get("accept", ""):
        body = {"status": "ok" if problem is None else "down", "database": problem or "ok"}
        return SafeJSONResponse(body, status_code=status)
    return PlainTextResponse("ok" if problem is None else f"down: database: {problem}", status_code=status)
