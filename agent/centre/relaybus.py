"""Listen-in across centre processes: relay tickets and audio over PostgreSQL ``LISTEN/NOTIFY``.

Several centre processes serve one floor behind a load balancer, so a lead's browser may reach
one process while the seat's long-poll sits on another. Each process keeps one connection
listening on the channel :data:`CHANNEL` and sends small JSON notes on it, addressed by process:

- ``ask`` (listener's process → all): a lead asked for ``call`` of ``seat`` under ``ticket``;
- ``attached`` / ``refused`` (seat's process → asker): the seat started streaming, or has no such
  call live;
- ``audio`` (seat's process → asker): up to :data:`AUDIO_BYTES` of PCM, base64;
- ``end`` (seat's process → asker): the seat's stream ended;
- ``close`` (asker → seat's process): the listener went; stop taking the seat's audio.

A note must fit PostgreSQL's 8000-byte payload limit, so audio travels in pieces of 1200 bytes
(75 ms). That is about 14 notes a second per listener: a handful of listeners on a floor is
nothing for PostgreSQL; the console never sends audio through the database otherwise. A
process that is not on PostgreSQL (the embedded SQLite centre) has no bus and needs none: it is
the only process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Engine

from agent.centre.relay import ListenRelay, Ticket

logger = logging.getLogger(__name__)

CHANNEL = "cti_listen"
#: PCM bytes per ``audio`` note (base64 and JSON keep it well under the 8000-byte payload limit).
AUDIO_BYTES = 1200
#: Seconds between tries to reconnect the listening connection after it failed.
RECONNECT_SECONDS = 2.0

Send = Callable[[dict[str, Any]], Awaitable[None]]


class RelayBus:
    """One process's end of the bus: forwards tickets to and from the other centre processes.

    :param relay: this process's relay (its seats' polls and its listeners' tickets).
    :param dsn: the floor's PostgreSQL, as libpq takes it.
    """

    def __init__(self, relay: ListenRelay, dsn: str) -> None:
        self.relay = relay
        self.dsn = dsn
        self.process = secrets.token_hex(8)
        self._task: asyncio.Task[None] | None = None
        self._sender: Any = None
        self._send_lock = asyncio.Lock()
        self._ready = asyncio.Event()
        #: Tickets this process asked other processes for (its listeners'), by ticket id.
        self._asked: dict[str, Ticket] = {}
        #: Tickets this process's seats stream for listeners elsewhere: ticket id → asking process.
        self._serving: dict[str, str] = {}

    async def start(self) -> None:
        """Start listening (returns once the first connection is up, or after 5 s without it)."""
        self.relay.remote = self  # the relay asks the bus for seats it does not have
        self._task = asyncio.create_task(self._listen(), name="relay-bus")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._ready.wait()

    async def stop(self) -> None:
        """Stop listening and close the connections."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await self._sender.close()

    # -- what the relay calls --------------------------------------------------------------

    async def ask(self, ticket: Ticket) -> None:
        """Ask the other processes for ``ticket`` (its seat's poll is not on this process)."""
        self._asked[ticket.id] = ticket
        await self._send({"op": "ask", "ticket": ticket.id, "seat": ticket.seat, "call": ticket.call_uuid})

    async def closed(self, ticket: Ticket) -> None:
        """A listener here went: tell the process streaming for it."""
        if self._asked.pop(ticket.id, None) is not None:
            await self._send({"op": "close", "ticket": ticket.id})

    def forward(self, ticket: Ticket) -> None:
        """Make ``ticket`` (served by a seat here for a listener elsewhere) send what it gets onwards."""
        asker = self._serving.get(ticket.id)
        if asker is None:
            return

        def on_event(op: str, data: bytes | str | None) -> None:
            note: dict[str, Any] = {"op": op, "ticket": ticket.id, "to": asker}
            if op == "audio" and isinstance(data, bytes):
                for start in range(0, len(data), AUDIO_BYTES):
                    piece = data[start : start + AUDIO_BYTES]
                    self._spawn({**note, "data": base64.b64encode(piece).decode("ascii")})
                return
            if op == "refused":
                note["reason"] = data
            if op in ("end", "refused"):
                self._serving.pop(ticket.id, None)
            self._spawn(note)

        ticket.listener = on_event

    # -- the wire --------------------------------------------------------------------------

    def _spawn(self, note: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._send(note))
        task.add_done_callback(_log_failure)

    async def _send(self, note: dict[str, Any]) -> None:
        import psycopg

        payload = json.dumps({**note, "from": self.process}, separators=(",", ":"))
        async with self._send_lock:
            try:
                if self._sender is None or self._sender.closed:
                    self._sender = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
                await self._sender.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            except psycopg.Error as exc:
                logger.warning("listen-in bus: cannot send %s: %s", note.get("op"), exc)
                self._sender = None

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._ready.set()
                    async for notify in conn.notifies():
                        self._receive(notify.payload)
            except psycopg.Error as exc:
                logger.warning("listen-in bus: connection lost (%s); again in %.0f s", exc, RECONNECT_SECONDS)
                await asyncio.sleep(RECONNECT_SECONDS)

    def _receive(self, payload: str) -> None:
        try:
            note = json.loads(payload)
        except ValueError:
            return
        if not isinstance(note, dict) or note.get("from") == self.process:
            return
        if note.get("to") not in (None, self.process):
            return
        op, ticket_id = note.get("op"), str(note.get("ticket", ""))
        if op == "ask":
            seat, call = str(note.get("seat", "")), str(note.get("call", ""))
            if self.relay.online(seat):
                self._serving[ticket_id] = str(note["from"])
                ticket = self.relay.open(seat, call, ticket_id=ticket_id, local_only=True)
                self.forward(ticket)
            return
        if op == "close":
            if self._serving.pop(ticket_id, None) is not None:
                served = self.relay.ticket(ticket_id)
                if served is not None:
                    self.relay.close(served)
            return
        asked = self._asked.get(ticket_id)
        if asked is None:
            return
        if op == "attached":
            asked.attached.set()
        elif op == "refused":
            asked.refuse(str(note.get("reason") or "the call is not live on its seat"))
        elif op == "audio":
            with contextlib.suppress(ValueError, TypeError):
                asked.put(base64.b64decode(note.get("data", "")))
        elif op == "end":
            asked.finish()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("listen-in bus: a note was not sent: %s", task.exception())


def bus_dsn(engine: Engine) -> str | None:
    """The libpq connection string of the centre's PostgreSQL, or None for another database."""
    if engine.dialect.name != "postgresql":
        return None
    url = engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


__all__ = ["AUDIO_BYTES", "CHANNEL", "RelayBus", "bus_dsn"]
