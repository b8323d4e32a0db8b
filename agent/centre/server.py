"""The centre's one app: the seat API, the team metrics and the supervisor console behind one guard."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route

from agent.centre.api import SeatApiContext, seat_api_routes
from agent.centre.api.context import SeatApiMetrics
from agent.centre.app import make_console_app
from agent.centre.context import ConsoleSettings
from agent.centre.lead_metrics import register_lead_metrics
from agent.centre.metrics import register_team_metrics
from agent.centre.relay import ListenRelay
from agent.centre.relaybus import RelayBus, bus_dsn
from agent.web import MetricsEndpoint, SecurityHeadersMiddleware
from agent.web.guard import HostGuardMiddleware


def make_centre_app(
    engine: Engine, settings: ConsoleSettings, *, registry: CollectorRegistry, hosts: Iterable[str]
) -> Starlette:
    """The centre over ``engine`` (migrated), as one app.

    ``/api/v1/`` and ``/healthz`` for seats, ``/metrics`` for Prometheus, everything else the console.
    The seat API stores recordings in, and the console plays them from, ``settings.store()``.

    Requests for a ``Host`` not in ``hosts`` are refused before any route (DNS rebinding).
    """
    register_team_metrics(registry, engine, settings.zone, settings.effective_seconds)
    register_lead_metrics(registry, engine)
    relay = ListenRelay()
    dsn = bus_dsn(engine)
    seat_api = SeatApiContext(
        engine=engine,
        metrics=SeatApiMetrics(registry),
        relay=relay,
        store=settings.store(),
        region=settings.region,
        dispositions=tuple(settings.dispositions),
        protection=timedelta(days=settings.protection_days),
    )
    routes: list[BaseRoute] = [
        *seat_api_routes(seat_api),
        Route("/metrics", MetricsEndpoint(registry), methods=["GET", "HEAD"]),
        Mount("/", app=make_console_app(engine, settings, relay=relay)),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(HostGuardMiddleware, hosts=frozenset(hosts)),
            Middleware(SecurityHeadersMiddleware),
        ],
    )
    # On PostgreSQL several centre processes may serve the floor: listen-in crosses between them.
    app.state.bus = RelayBus(relay, dsn) if dsn is not None else None
    return app


async def start_centre(app: Starlette) -> None:
    """Start what the centre runs beside its routes (the listen-in bus on PostgreSQL)."""
    if app.state.bus is not None:
        await app.state.bus.start()


async def stop_centre(app: Starlette) -> None:
    """Stop what :func:`start_centre` started."""
    if app.state.bus is not None:
        await app.state.bus.stop()
