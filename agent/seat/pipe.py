"""One observer's queue and delivery loop: retried with back-off, refused messages parked.

The runtime (:mod:`agent.seat.runner`) gives each observer its own pipe, so a slow or
failing observer never holds up another. Storage must not lose a call: a failed write is
retried with back-off until it succeeds; a call the database refuses for what it is
(:class:`storage.faults.Rejected`) is parked after a few tries so the calls behind it are
written (park, don't block). What is still undelivered at shutdown is :meth:`pending`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from agent.events import Message
from agent.seat.metrics import Metrics
from agent.seat.observers import Observer
from storage.faults import Rejected

logger = logging.getLogger(__name__)

#: First and longest wait between two tries of a failed delivery (seconds).
BACKOFF_START = 0.5
BACKOFF_MAX = 30.0


def utcnow() -> datetime:
    """The wall clock, tz-aware UTC."""
    return datetime.now(UTC)


class Parking(Protocol):
    """An observer that can set aside a message it refuses for good (the storage observer)."""

    def tries_before_parking(self, message: Message) -> int:
        """Refusals of ``message`` before it is parked (0: never)."""

    def park(self, message: Message, reason: str, now: datetime) -> None:
        """Keep ``message`` aside with ``reason`` (blocking); raises OSError when it cannot."""


class ObserverPipe:
    """One observer's queue and delivery loop.

    :param parking: where a message the observer refuses (:class:`Rejected`)
        goes after its tries; None: it is retried like any failure.
    :param gate: awaited before each message is handed to the observer (the runtime
        holds the database writes until the screen-pop is on its way: ``SeatBus.sent``).
    """

    def __init__(
        self,
        observer: Observer,
        metrics: Metrics,
        *,
        parking: Parking | None = None,
        clock: Callable[[], datetime] = utcnow,
        gate: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.observer = observer
        self.gate = gate
        self.metrics = metrics
        self.parking = parking
        self.clock = clock
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        self.in_flight: Message | None = None
        #: Futures set once the message (by identity) has been handled (or given up on).
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}

    async def run(self) -> None:
        """Deliver queued messages one at a time, in order, until cancelled."""
        while True:
            message = await self.queue.get()
            self.in_flight = message
            if self.gate is not None:
                await self.gate()
            await self._deliver(message)
            self.in_flight = None
            for waiter in self._waiters.pop(id(message), []):
                if not waiter.done():
                    waiter.set_result(None)
            self.queue.task_done()
            self.metrics.queue_depth(self.observer.name, self.queue.qsize())

    def handled(self, message: Message) -> asyncio.Future[None]:
        """A future set once ``message``, already queued, has been handled by this observer."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(id(message), []).append(waiter)
        return waiter

    async def _deliver(self, message: Message) -> None:
        delay = BACKOFF_START
        refusals = 0
        while True:
            try:
                await self.observer.notify(message)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.observer_error(self.observer.name)
                if not self.observer.must_deliver:
                    logger.exception("observer %s failed; going on", self.observer.name)
                    return
                if isinstance(exc, Rejected) and self.parking is not None:
                    refusals += 1
                    if await self.park(message, exc, refusals):
                        return
                logger.warning(
                    "observer %s failed (%s); retrying in %.1f s with %d queued",
                    self.observer.name,
                    exc,
                    delay,
                    self.queue.qsize() + 1,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)

    async def park(self, message: Message, exc: Rejected, refusals: int) -> bool:
        """Park ``message`` once it was refused often enough; True when it is parked."""
        assert self.parking is not None
        tries = self.parking.tries_before_parking(message)
        if tries <= 0 or refusals < tries:
            return False
        try:
            await asyncio.to_thread(self.parking.park, message, str(exc), self.clock())
        except OSError as park_error:
            logger.error(
                "observer %s cannot park a refused message (%s); retrying it", self.observer.name, park_error
            )
            return False
        return True

    def pending(self) -> list[Message]:
        """What has not been delivered: the message being retried and everything queued."""
        out: list[Message] = [self.in_flight] if self.in_flight is not None else []
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
            self.queue.task_done()
        return out


__all__ = ["BACKOFF_MAX", "BACKOFF_START", "ObserverPipe", "Parking", "utcnow"]
