"""The seat's HTTP listeners (the seat page, the metrics exporter), started and stopped together."""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp

from agent.config import parse_listen
from agent.errors import AgentError
from agent.web.serve import AgentServer, make_server

logger = logging.getLogger(__name__)


class Listeners:
    """Each named app on its ``HOST:PORT``; :attr:`ports` are the ports bound (``:0`` picks one)."""

    def __init__(self) -> None:
        self.ports: dict[str, int] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self._servers: list[AgentServer] = []

    async def start(self, what: str, listen: str, app: ASGIApp) -> int:
        """Serve ``app`` on ``listen``; the port bound, once it accepts connections.

        :raises AgentError: the address is taken or cannot be bound (it says which listener).
        """
        host, port = parse_listen(listen)
        server = make_server(app, host, port)
        self._servers.append(server)
        self.tasks.append(asyncio.create_task(server.serve(), name=f"web:{what}"))
        try:
            await server.wait_started()
        except AgentError as exc:
            raise AgentError(f"cannot listen on {listen} for the {what}: {exc}") from None
        bound = server.port
        if bound is None:
            raise AgentError(f"the {what} on {listen} started without a port")
        self.ports[what] = bound
        return bound

    async def stop(self, timeout: float = 10.0) -> None:
        """Ask every server to exit and wait up to ``timeout`` seconds for them."""
        for server in self._servers:
            server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), timeout)
        except TimeoutError:
            logger.warning("web listeners did not stop in time")


__all__ = ["Listeners"]
