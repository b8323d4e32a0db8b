"""What a seat runs for its centre besides sync: the team's customer card for the pop, listen-in dialled out.

Started only in team mode with a centre URL (``[central] url`` naming a centre, not a
database); the sync loop (:mod:`agent.seat.sync`) is an observer and starts with the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pluggy
from sqlalchemy import Engine

from agent.config import Config, is_centre_url
from agent.seat.centre_client import CentreClient
from agent.seat.centre_lookup import CentreLookup, register_centre_lookup
from agent.seat.listen_out import Tap, start_listen_out, stop_listen_out
from agent.seat.transport import centre_access, make_client
from agent.seat.web.context import local_now
from agent.seat.worklist import SeatWorklist
from storage.lookup import CardCall

logger = logging.getLogger(__name__)


class CentreServices:
    """The centre lookup (a ``lookup_customer`` plugin, cached) and the listen-in connection out."""

    def __init__(self, config: Config, pm: pluggy.PluginManager) -> None:
        self.config = config
        self.pm = pm
        self._listen_out: asyncio.Task[None] | None = None
        self._lookup: CentreLookup | None = None
        self._client: CentreClient | None = None
        #: The rep's worklist from the centre (None outside team mode, or before :meth:`start`).
        self.worklist: SeatWorklist | None = None

    def start(self, live: Callable[[str], Tap | None] | None, engine: Engine | None = None) -> None:
        """Register the centre lookup and, with ``live`` (the recorder's taps), connect out for listen-in.

        With ``engine`` (the seat's database, where dispositions are written first) the rep's
        worklist is fetched too. Does nothing outside team mode with a centre.
        """
        url = self.config.central_url
        if not url or not is_centre_url(url):
            return
        # The team's customer card first (cached: the pop never waits on the network).
        self._client = make_client(self.config)
        self._lookup = register_centre_lookup(self.pm, self.config, self._client)
        if live is not None:
            _, self._listen_out = start_listen_out(centre_access(self.config), live)
        if engine is not None:
            self.worklist = SeatWorklist(self._client, engine, self.config.agent.data_dir, now=local_now)
            self.worklist.start()

    def team_calls(self, number_e164: str) -> tuple[CardCall, ...]:
        """The number's last calls at the centre from any seat of the team, as last fetched (never waits).

        Empty outside team mode, before :meth:`start` and after :meth:`stop`.
        """
        lookup = self._lookup
        return lookup.team_calls(number_e164) if lookup is not None else ()

    def ownership(self, number_e164: str) -> dict[str, Any] | None:
        """Who owns the number across the floor, as last fetched (never waits); None outside team mode."""
        lookup = self._lookup
        return lookup.ownership(number_e164) if lookup is not None else None

    def do_not_call(self, number_e164: str) -> bool:
        """Whether the number is on the floor's do-not-call list, as last fetched (never waits)."""
        lookup = self._lookup
        return lookup.do_not_call(number_e164) if lookup is not None else False

    async def stop(self) -> None:
        """Stop the worklist and listen-in, unregister the lookup, close the client (idempotent)."""
        if self.worklist is not None:
            await self.worklist.stop()
            self.worklist = None
        if self._listen_out is not None:
            await stop_listen_out(self._listen_out)
            self._listen_out = None
        if self._lookup is not None:
            await asyncio.to_thread(self._lookup.close)
            self.pm.unregister(self._lookup)
            self._lookup = None
        if self._client is not None:
            self._client.close()
            self._client = None


__all__ = ["CentreServices"]
