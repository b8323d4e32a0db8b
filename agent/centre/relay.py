"""Live listen-in with the seat calling out: the centre relays a call's audio from a seat that dialled in.

Seats sit behind NAT and DHCP and keep their page on loopback, so the centre cannot reach them.
Instead each seat in team mode keeps one long-poll open to the centre (``GET
/api/v1/listen/wait``, with its own credential). When a lead or manager presses Listen, the
console opens a :class:`Ticket` for that call here; the seat's waiting poll is answered with the
ticket, and the seat streams the call's live tap as the body of ``POST
/api/v1/listen/{ticket}`` (16-bit 8 kHz mono PCM, the same as the pulled stream), which the
console passes on to the browser. The role check and the ``listen`` audit row happen in the
console before any ticket exists; a ticket opens only that one call of that one seat.

Everything here lives on the centre's event loop and does no I/O: one relay per centre process.
A listener on one centre process and a seat polling another is the scale-out case: the
ticket travels over PostgreSQL ``LISTEN/NOTIFY`` (:mod:`agent.centre.relaybus`, the ``remote``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)

#: A seat counts as connected this long after its last poll ended (it re-polls at once).
ONLINE_GRACE = 5.0
#: Audio chunks a ticket holds for a slow listener before it drops the oldest (about 2 s of 20 ms blocks).
MAX_CHUNKS = 100
#: How long a listener waits for the seat to start streaming.
ATTACH_SECONDS = 3.0


@dataclass(eq=False)
class Ticket:
    """One listener's request for one call's audio from one seat, and the audio as it arrives."""

    id: str
    seat: str
    call_uuid: str
    chunks: collections.deque[bytes] = field(default_factory=lambda: collections.deque(maxlen=MAX_CHUNKS))
    attached: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    refused: str | None = None
    ended: bool = False
    closed: bool = False
    dropped: int = 0
    #: Set when the listener is on another centre process: what the seat sends goes there instead.
    listener: Callable[[str, bytes | str | None], None] | None = None

    def put(self, chunk: bytes) -> None:
        """A chunk from the seat; the oldest goes when a slow listener lets the buffer fill."""
        if self.closed or not chunk:
            return
        if self.listener is not None:
            self.listener("audio", chunk)
            return
        if len(self.chunks) == self.chunks.maxlen:
            self.dropped += 1
        self.chunks.append(chunk)
        self.ready.set()

    def refuse(self, reason: str) -> None:
        """The seat cannot give this call (it is not live there)."""
        self.refused = reason
        self.attached.set()
        if self.listener is not None:
            self.listener("refused", reason)
            self.listener = None
        self.finish()

    def finish(self) -> None:
        """The seat's stream ended (the call ended, or the seat went away)."""
        if self.ended:
            return
        self.ended = True
        self.ready.set()
        if self.listener is not None:
            self.listener("end", None)

    async def audio(self) -> AsyncIterator[bytes]:
        """The audio for the listener, until the seat's stream ends or the listener goes."""
        while not self.closed:
            if not self.chunks:
                if self.ended:
                    return
                self.ready.clear()
                await self.ready.wait()
                continue
            yield self.chunks.popleft()


class Remote(Protocol):
    """The other centre processes (:class:`agent.centre.relaybus.RelayBus`)."""

    async def ask(self, ticket: Ticket) -> None:
        """Ask the other processes' seats for this ticket."""

    async def closed(self, ticket: Ticket) -> None:
        """Tell the other processes that the listener of an asked ticket went."""


class ListenRelay:
    """Seats waiting for listen requests, and the tickets in flight (see the module docstring).

    ``remote``: the other centre processes of the floor, when there are any (set by the bus).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.remote: Remote | None = None
        self._clock = clock
        self._waiting: dict[str, int] = collections.Counter()
        self._last_poll: dict[str, float] = {}
        self._queues: dict[str, collections.deque[Ticket]] = collections.defaultdict(collections.deque)
        self._wakeups: dict[str, asyncio.Event] = collections.defaultdict(asyncio.Event)
        self._tickets: dict[str, Ticket] = {}
        self._pending: set[asyncio.Task[None]] = set()

    def online(self, seat: str) -> bool:
        """Whether ``seat`` is polling this process now, or polled it within :data:`ONLINE_GRACE` s."""
        if self._waiting.get(seat):
            return True
        last = self._last_poll.get(seat)
        return last is not None and self._clock() - last < ONLINE_GRACE

    def online_seats(self) -> frozenset[str]:
        """The seats :meth:`online` says are connected."""
        return frozenset(seat for seat in set(self._waiting) | set(self._last_poll) if self.online(seat))

    # -- the seat's side ------------------------------------------------------------------

    async def wait(self, seat: str, timeout: float) -> Ticket | None:
        """The next listen request for ``seat``, or None after ``timeout`` seconds of none."""
        self._waiting[seat] += 1
        try:
            deadline = self._clock() + timeout
            while True:
                queue = self._queues[seat]
                while queue:
                    ticket = queue.popleft()
                    if not ticket.closed:
                        return ticket
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return None
                wakeup = self._wakeups[seat]
                wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await wakeup.wait()
        finally:
            self._waiting[seat] -= 1
            if not self._waiting[seat]:
                del self._waiting[seat]
            self._last_poll[seat] = self._clock()

    def attach(self, seat: str, ticket_id: str) -> Ticket | None:
        """The ticket the seat is streaming for, or None when it is unknown, over or not this seat's."""
        ticket = self._tickets.get(ticket_id)
        if ticket is None or ticket.seat != seat or ticket.closed or ticket.attached.is_set():
            return None
        ticket.attached.set()
        if ticket.listener is not None:
            ticket.listener("attached", None)
        return ticket

    def ticket(self, ticket_id: str) -> Ticket | None:
        """A ticket in flight by its id."""
        return self._tickets.get(ticket_id)

    # -- the listener's side --------------------------------------------------------------

    def open(
        self, seat: str, call_uuid: str, *, ticket_id: str | None = None, local_only: bool = False
    ) -> Ticket:
        """Ask ``seat`` for the call's audio; the ticket is handed to its next (or waiting) poll.

        A seat that polls another centre process is asked through ``remote`` (unless
        ``local_only``); its answer and audio come back on the same ticket.
        """
        ticket = Ticket(id=ticket_id or secrets.token_urlsafe(18), seat=seat, call_uuid=call_uuid)
        self._tickets[ticket.id] = ticket
        if local_only or self.remote is None or self.online(seat):
            self._queues[seat].append(ticket)
            self._wakeups[seat].set()
        else:
            self._background(self.remote.ask(ticket))
        return ticket

    async def attached(self, ticket: Ticket, timeout: float = ATTACH_SECONDS) -> bool:
        """Wait for the seat to start streaming (or refuse); False when it did not within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                await ticket.attached.wait()
        except TimeoutError:
            return False
        return True

    def close(self, ticket: Ticket) -> None:
        """The listener went: stop taking the seat's audio and forget the ticket."""
        if ticket.closed:
            return
        ticket.closed = True
        ticket.listener = None
        ticket.chunks.clear()
        ticket.ready.set()
        self._tickets.pop(ticket.id, None)
        if self.remote is not None:
            self._background(self.remote.closed(ticket))
        if ticket.dropped:
            logger.info(
                "listen-in: call %s: %d chunk(s) dropped for a slow listener",
                ticket.call_uuid,
                ticket.dropped,
            )

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


__all__ = ["ATTACH_SECONDS", "ListenRelay", "Remote", "Ticket"]
