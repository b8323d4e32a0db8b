"""The centre's one app: the seat API, the team metrics and the supervisor console behind one guard."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route

from agent.centre.api import SeatApiContext, seat_api_routes
from agent.centre.api.context import SeatApiMetrics
from agent.centre.app import make_console_app
from agent.centre.context import ConsoleSettings
from agent.centre.metrics import register_team_metrics
from agent.web import MetricsEndpoint, SecurityHeadersMiddleware
from agent.web.guard import HostGuardMiddleware


def make_centre_app(
    engine: Engine, settings: ConsoleSettings, *, registry: CollectorRegistry, hosts: Iterable[str]
) -> Starlette:
    """The centre over ``engine`` (migrated), as one app.

    ``/api/v1/`` and ``/healthz`` for seats, ``/metrics`` for Prometheus, everything else the console.

    Requests for a ``Host`` not in ``hosts`` are refused before any route (DNS rebinding).
    """
    register_team_metrics(registry, engine, settings.zone, settings.effective_seconds)
    seat_api = SeatApiContext(engine=engine, metrics=SeatApiMetrics(registry), region=settings.region)
    routes: list[BaseRoute] = [
        *seat_api_routes(seat_api),
        Route("/metrics", MetricsEndpoint(registry), methods=["GET", "HEAD"]),
        Mount("/", app=make_console_app(engine, settings)),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(HostGuardMiddleware, hosts=frozenset(hosts)),
            Middleware(SecurityHeadersMiddleware),
        ],
    )
