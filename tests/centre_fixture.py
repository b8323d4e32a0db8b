"""A centre's seat API in process, for the outbox's tests: the real app over a database and a store.

Seats reach it through Starlette's test client (real HTTP semantics, no socket) with their own
tokens, via the real :class:`agent.seat.transport.HttpTransport`; the tests that need a socket and
a process use ``cti-agent centre`` itself (tests/integration/test_centre_process.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.testclient import TestClient

from agent.centre.api import SeatApiContext, seat_api_routes
from agent.centre.api.context import SeatApiMetrics
from agent.seat.centre_client import CentreClient
from agent.seat.transport import HttpTransport
from storage.blobstore import DirectoryBlobStore
from storage.db import upgrade
from storage.outbox import CentralSync
from storage.seats import add_seat

BASE_URL = "http://centre.test"


@dataclass
class Centre:
    """The seat API over ``engine`` (migrated here) with its recordings under ``store_dir``."""

    engine: Engine
    store_dir: Path
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        upgrade(self.engine)
        self.store = DirectoryBlobStore(self.store_dir)
        ctx = SeatApiContext(engine=self.engine, metrics=SeatApiMetrics(self.registry), store=self.store)
        self.client = TestClient(Starlette(routes=seat_api_routes(ctx)), base_url=BASE_URL)
        self._tokens: dict[str, str] = {}

    def token(self, seat: str = "seat-1", team: str | None = "north") -> str:
        """The seat's token (the seat is added the first time it is asked for)."""
        if seat not in self._tokens:
            with Session(self.engine) as session, session.begin():
                self._tokens[seat] = add_seat(session, seat, team)[1]
        return self._tokens[seat]

    def transport(self, seat: str = "seat-1") -> HttpTransport:
        """A seat's transport to this centre, with the seat's own token."""
        return HttpTransport(CentreClient(BASE_URL, self.token(seat), client=self.client), seat)

    def sync(
        self,
        local: Engine,
        data_dir: Path,
        *,
        seat: str = "seat-1",
        batch_size: int = 200,
        enable: bool = True,
    ) -> CentralSync:
        """A seat's outbox replay to this centre."""
        syncer = CentralSync(local, transport=self.transport(seat), data_dir=data_dir, batch_size=batch_size)
        if enable:
            syncer.enable()
        return syncer


__all__ = ["BASE_URL", "Centre"]
