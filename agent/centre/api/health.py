"""``GET /healthz`` of the centre: its database reachable, its recording store writable (no token needed).

Plain ``ok`` (200) or ``down: ...`` (503) for ``curl -f``, systemd and compose health checks;
the same as JSON for a client that asks for ``application/json``. The store is probed by
:meth:`~storage.blobstore.RecordingBlobStore.health` (a small object written, read back and removed).
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
    """200 with ``{"status": "ok", "database": "ok", "recordings": "ok"}``, or 503 naming what is down.

    ``recordings`` is left out for a centre without a recording store.
    """

    def check_database() -> str | None:
        try:
            with ctx.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return str(exc).splitlines()[0][:200]
        return None

    problems: dict[str, str | None] = {"database": await run_in_threadpool(check_database)}
    if ctx.store is not None:
        health = await run_in_threadpool(ctx.store.health)
        problems["recordings"] = None if health.ok else health.detail[:200]
    down = {part: problem for part, problem in problems.items() if problem is not None}
    for part, problem in down.items():
        logger.warning("centre health: %s unavailable: %s", part, problem)
    status = 503 if down else 200
    if "application/json" in request.headers.get("accept", ""):
        body = {"status": "down" if down else "ok", **{part: p or "ok" for part, p in problems.items()}}
        return SafeJSONResponse(body, status_code=status)
    if not down:
        return PlainTextResponse("ok")
    return PlainTextResponse(
        "down: " + "; ".join(f"{part}: {problem}" for part, problem in down.items()), status_code=status
    )
