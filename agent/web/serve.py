"""Running the agent's web listeners (seat page, ``/metrics``) inside the agent's own event loop.

``uvicorn.Server.serve()`` (0.54) is made for owning a process: it replaces the
SIGINT/SIGTERM handlers for as long as it runs (``capture_signals``) and
re-raises the signal afterwards, it calls ``sys.exit(1)`` when it cannot bind
(a ``SystemExit`` that would escape the agent's task group and end the whole
event loop), and by default it configures logging and logs every request.
:class:`AgentServer` keeps the agent in charge of all three: no signal handling,
a :class:`ListenError` naming the address, and the host's logging untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from agent.errors import AgentError

logger = logging.getLogger(__name__)


class ListenError(AgentError):
    """A web listener could not bind its address (in use, not local, not permitted)."""


class AgentServer(uvicorn.Server):
    """A uvicorn server for a host program that owns signals, logging and shutdown.

    Start it with ``task = asyncio.create_task(server.serve())`` and
    ``await server.wait_started()``; stop it with ``server.should_exit = True``
    and ``await task``. Open event streams hold shutdown for at most the
    configured graceful timeout; close the :class:`agent.seat.web.bus.SeatBus`
    first to end them at once.
    """

    #: Why the server could not start, once ``serve()`` failed to (``wait_started`` raises it).
    startup_error: ListenError | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave the host program's signal handlers alone (uvicorn would replace them)."""
        yield

    def bind(self) -> socket.socket:
        """Open the listening socket, raising :class:`ListenError` with the OS's reason."""
        host, port = self.config.host, self.config.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.create_server((host, port), family=family, backlog=self.config.backlog)
        except OSError as exc:
            raise ListenError(f"cannot listen on {_address(host, port)}: {exc.strerror or exc}") from exc
        # Accepted connections inherit it. asyncio sets it only on sockets whose proto is TCP, and
        # create_server's is 0: without it a response written in two parts (headers, then body)
        # waits ~40 ms on a kept-alive connection for the client's delayed ACK (Nagle).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Bind (unless given sockets) and serve until ``should_exit`` is set."""
        if sockets is None:
            try:
                sockets = [self.bind()]
            except ListenError as exc:
                self.startup_error = exc
                raise
        try:
            await super().serve(sockets=sockets)
        finally:
            for sock in sockets:
                sock.close()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving; uvicorn's ``sys.exit`` on a failed start becomes a :class:`ListenError`."""
        try:
            await super().startup(sockets=sockets)
        except SystemExit:
            self.startup_error = ListenError(f"web server on {self.address} failed to start")
            raise self.startup_error from None
        logger.info("listening on %s://%s", self.scheme, self.address)

    @property
    def scheme(self) -> str:
        """``https`` when serving TLS, else ``http``."""
        return "https" if self.config.ssl_certfile else "http"

    @property
    def port(self) -> int | None:
        """The bound port (useful with port 0), or None before the server started."""
        if not self.started:
            return None
        return int(self.servers[0].sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        """``host:port`` as configured, or as bound once started."""
        return _address(self.config.host, self.port if self.port is not None else self.config.port)

    async def wait_started(self, timeout: float = 10.0) -> None:
        """Wait until the server accepts connections.

        :raises ListenError: as soon as ``serve()`` failed to bind or start.
        :raises TimeoutError: when it has not started within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while not self.started:
                if self.startup_error is not None:
                    raise self.startup_error
                await asyncio.sleep(0.02)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def make_server(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    graceful_timeout: int = 3,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> AgentServer:
    """A server for ``app`` on ``host:port`` (port 0 picks a free one; read :attr:`AgentServer.port`).

    Nothing is opened until ``serve()``. No lifespan (the agent starts and stops
    what the apps use), no access log, no ``Server`` header, no proxy headers
    (the listeners are local), and the host's logging configuration is left as it is.
    With ``tls_cert`` and ``tls_key`` (PEM) it serves HTTPS through uvicorn's own TLS.

    :raises ListenError: the certificate or key cannot be read.
    """
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            raise ListenError(f"{path}: no such TLS certificate or key file")
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=graceful_timeout,
        ssl_certfile=str(tls_cert) if tls_cert is not None else None,
        ssl_keyfile=str(tls_key) if tls_key is not None else None,
    )
    try:
        config.load()
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ListenError(f"cannot use the TLS certificate {tls_cert} with key {tls_key}: {exc}") from None
    return AgentServer(config)
