"""The seat API (``/api/v1/``): what seats send the centre and ask of it, each with its own credential.

Every route but ``/healthz`` takes the seat's token as ``Authorization: Bearer`` and acts only
for that seat (:func:`seat_only`): a seat writes its own calls and never reads another's.
Routes: ``POST /api/v1/calls`` (a batch of calls and notes, answered per entry), ``GET
/api/v1/whoami`` (the seat the token belongs to), ``PUT /api/v1/recordings/{call_uuid}`` (a
recording streamed into the centre's store, checked by its SHA-256) and ``GET`` of the same
(what the store holds of it now), ``GET /api/v1/worklist`` and ``POST /api/v1/dispositions`` (the
seat's rep's leads and what their calls came to: :mod:`agent.centre.api.worklist`), ``GET
/api/v1/listen/wait`` and ``POST
/api/v1/listen/{ticket}`` (listen-in, the seat calling out: :mod:`agent.centre.api.listen`),
``GET /healthz``.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from agent.centre.api import lookup
from agent.centre.api.calls import post_calls, whoami
from agent.centre.api.context import SeatApiContext
from agent.centre.api.health import healthz
from agent.centre.api.listen import listen_stream, listen_wait
from agent.centre.api.recordings import get_recording, put_recording
from agent.centre.api.worklist import get_worklist, post_dispositions
from agent.seatapi import API_PREFIX

__all__ = ["SeatApiContext", "seat_api_routes"]


def seat_api_routes(ctx: SeatApiContext) -> list[BaseRoute]:
    """The seat API's routes over one context."""
    return [
        Route(f"{API_PREFIX}/lookup", ctx.bind(lookup.get_lookup), methods=["GET"]),
        Route(f"{API_PREFIX}/calls", ctx.bind(post_calls), methods=["POST"]),
        Route(f"{API_PREFIX}/whoami", ctx.bind(whoami), methods=["GET"]),
        Route(f"{API_PREFIX}/worklist", ctx.bind(get_worklist), methods=["GET"]),
        Route(f"{API_PREFIX}/dispositions", ctx.bind(post_dispositions), methods=["POST"]),
        Route(f"{API_PREFIX}/listen/wait", ctx.bind(listen_wait), methods=["GET"]),
        Route(f"{API_PREFIX}/listen/{{ticket}}", ctx.bind(listen_stream), methods=["POST"]),
        Route(f"{API_PREFIX}/recordings/{{call_uuid}}", ctx.bind(put_recording), methods=["PUT"]),
        Route(f"{API_PREFIX}/recordings/{{call_uuid}}", ctx.bind(get_recording), methods=["GET"]),
        Route("/healthz", ctx.bind(healthz), methods=["GET"]),
    ]
