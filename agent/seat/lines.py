"""Per line: the tracker, its queue of events in order, and the customer lookup that enriches them.

The pop is two-phase: ``identified`` goes out at once with the number, and when the
``lookup_customer`` hook answers (in a worker thread, bounded by ``[agent] lookup_timeout``)
a second ``identified`` carries the customer. The runtime's per-line task
(:meth:`agent.seat.runner.Agent`) takes the queue in order and hands each event to
:class:`CallEnricher` before fanning it out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pluggy

from agent.calls import CallTracker
from agent.events import Call, CallEvent, CallEventKind, Customer, LineStatus
from agent.seat.metrics import Metrics

logger = logging.getLogger(__name__)


@dataclass
class Line:
    """A line's tracker and the queue of call events waiting for enrichment, in order."""

    tracker: CallTracker
    device_type: str
    queue: asyncio.Queue[CallEvent | LineStatus | LookupDone] = field(default_factory=asyncio.Queue)
    last_status: tuple[Any, ...] | None = None
    customers: dict[str, Customer | None] = field(default_factory=dict)
    #: Customer lookups in flight, by call uuid, and the latest snapshot of each call in progress.
    lookups: dict[str, asyncio.Task[Customer | None]] = field(default_factory=dict)
    latest: dict[str, Call] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LookupDone:
    """A customer lookup finished; queued on its line so its result keeps the call's order."""

    uuid: str
    task: asyncio.Task[Customer | None]


class CallEnricher:
    """Adds the customer to a line's call events, looking each number up once.

    :param pm: whose ``lookup_customer`` hook answers (blocking: run in a worker thread).
    :param timeout: seconds a lookup may take before the call goes on without a customer.
    :param gate: awaited before a lookup starts its worker thread (the runtime passes
        ``SeatBus.sent``: the thread's pure-Python database work would otherwise hold the
        GIL while the number's frame is being written to the page).
    """

    def __init__(
        self,
        pm: pluggy.PluginManager,
        metrics: Metrics,
        *,
        timeout: float,
        clock: Callable[[], datetime],
        gate: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.pm = pm
        self.metrics = metrics
        self.timeout = timeout
        self.clock = clock
        self.gate = gate

    async def enrich(self, line: Line, event: CallEvent) -> CallEvent:
        """The event with the customer known so far; starts the lookup once the number is known.

        The pop is two-phase: ``identified`` goes out at once with the number,
        and when the lookup answers a second ``identified`` carries the
        customer (see :meth:`lookup_done`). ``ended`` waits for a lookup still
        in flight (bounded by ``lookup_timeout``), so the final row has the
        customer and nothing about a call ever comes after its end.
        """
        call = event.call
        uuid = call.uuid
        if event.kind is CallEventKind.IDENTIFIED and call.number_raw:
            previous = line.lookups.pop(uuid, None)
            if previous is not None:
                previous.cancel()
            line.customers.pop(uuid, None)
            task = asyncio.create_task(self.lookup(call), name=f"lookup:{uuid}")
            line.lookups[uuid] = task
            task.add_done_callback(lambda done: line.queue.put_nowait(LookupDone(uuid, done)))
        if event.kind is CallEventKind.ENDED:
            pending = line.lookups.pop(uuid, None)
            if pending is not None:
                await asyncio.wait({pending})
                found = None if pending.cancelled() else pending.result()
                if found is not None:
                    line.customers[uuid] = found
            customer = line.customers.pop(uuid, None)
            line.latest.pop(uuid, None)
        else:
            line.latest[uuid] = call
            customer = line.customers.get(uuid)
        if customer is None:
            return event
        return CallEvent(event.kind, call.with_customer(customer), event.at)

    def lookup_done(self, line: Line, done: LookupDone) -> CallEvent | None:
        """The late ``identified`` carrying the customer, or None (no customer, or the call ended)."""
        if line.lookups.get(done.uuid) is not done.task:
            return None  # the call ended (and took the result) or a newer lookup replaced this one
        del line.lookups[done.uuid]
        customer = None if done.task.cancelled() else done.task.result()
        line.customers[done.uuid] = customer
        call = line.latest.get(done.uuid)
        if customer is None or call is None:
            return None
        return CallEvent(CallEventKind.IDENTIFIED, call.with_customer(customer), self.clock())

    async def lookup(self, call: Call) -> Customer | None:
        """The customer ``lookup_customer`` finds for the call's number; None on time-out or error."""
        assert call.number_raw is not None
        if self.gate is not None:
            await self.gate()
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(
                asyncio.to_thread(
                    self.pm.hook.lookup_customer, number_e164=call.number_e164, number_raw=call.number_raw
                ),
                self.timeout,
            )
        except TimeoutError:
            logger.warning("customer lookup for call %s took too long; going on without", call.uuid)
            return None
        except Exception:
            logger.exception("customer lookup for call %s failed", call.uuid)
            self.metrics.plugin_error("lookup_customer", "lookup_customer")
            return None
        finally:
            self.metrics.lookup_latency(time.monotonic() - started)
        return result if isinstance(result, Customer) else None


__all__ = ["CallEnricher", "Line", "LookupDone"]
