"""The screen-pop bus: what the seat page shows, kept in memory and fanned out to live clients.

Every message gets the next integer id. The bus keeps the latest snapshot of
the recent calls and of each line (for a page's first load) and a replay buffer
of the latest messages, so a browser whose ``EventSource`` reconnects with
``Last-Event-ID`` gets exactly what it missed. Each client reads from its own
bounded queue: a client too slow to keep up is dropped (its browser reconnects
and replays) instead of holding up the bus or growing memory without bound.

Everything here runs on the event loop; nothing blocks and nothing is locked.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any

from agent.events import CallEvent, CallEventKind, Customer, LineStatus, Message
from agent.seat.web.repstate import RepState, RepStateChange, RepStateSink

logger = logging.getLogger(__name__)

Item = tuple[int, str, dict[str, Any]]
"""One message for a client: (id, event name, JSON-ready payload)."""

#: Event names. ``reset`` tells a client its ``Last-Event-ID`` is no longer in
#: the replay buffer (or belongs to an earlier run): it must reload the snapshot.
CALL, LINE, RESET, REP = "call", "line", "reset", "rep"

_END = object()


class SubscriptionEnded(Exception):
    """The subscription is over: the bus closed, or the client fell too far behind."""


class Subscription:
    """One client's view of the bus: the replayed messages, then live ones, in id order.

    Use it as ``with bus.subscribe(last_id) as sub:`` and either ``async for`` over
    it or call :meth:`get` with a timeout (for heartbeats). Leaving the ``with``
    block unsubscribes.
    """

    def __init__(self, bus: SeatBus, replay: list[Item], maxsize: int) -> None:
        self._bus = bus
        self._replay: deque[Item] = deque(replay)
        self._queue: asyncio.Queue[Item | object] = asyncio.Queue(maxsize)
        self._ended = False
        #: True when the bus dropped this client for falling behind.
        self.dropped = False

    async def get(self, timeout: float | None = None) -> Item | None:
        """The next message, or None when none came within ``timeout`` seconds.

        :raises SubscriptionEnded: once the bus closed or dropped this client.
        """
        if self._replay:
            return self._replay.popleft()
        if self._ended:
            raise SubscriptionEnded
        try:
            # asyncio.timeout cancels queue.get() cleanly: no message is lost on a timeout.
            async with asyncio.timeout(timeout):
                item = await self._queue.get()
        except TimeoutError:
            return None
        if item is _END:
            self._ended = True
            raise SubscriptionEnded
        assert isinstance(item, tuple)
        return item

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        try:
            item = await self.get()
        except SubscriptionEnded:
            raise StopAsyncIteration from None
        assert item is not None  # no timeout, so get() returns an item or raises
        return item

    def close(self) -> None:
        """Stop receiving messages (idempotent)."""
        self._bus._unsubscribe(self)
        self._ended = True

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _offer(self, item: Item) -> bool:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    def _end(self) -> None:
        # Drop what is queued: a dropped client replays it from the buffer when it reconnects.
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_END)


class SeatBus:
    """Keeps the seat page's state and streams every message to its clients.

    An :class:`agent.seat.observers.Observer`: the runtime calls :meth:`notify` with
    every call event and line status, in order.

    :param max_calls: how many recent calls the snapshot keeps.
    :param replay_size: how many recent messages a reconnecting client can catch up on.
    :param client_queue: how many messages may wait for one client before it is dropped.
    """

    name = "seat-page"
    must_deliver = False

    def __init__(
        self,
        *,
        max_calls: int = 200,
        replay_size: int = 1000,
        client_queue: int = 256,
        rep_state: RepState | None = None,
        rep_sink: RepStateSink | None = None,
    ) -> None:
        if max_calls < 1 or replay_size < 1 or client_queue < 1:
            raise ValueError("max_calls, replay_size and client_queue must be positive")
        self._max_calls = max_calls
        self._client_queue = client_queue
        self._calls: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._customers: dict[str, dict[str, Any]] = {}
        self._lines: dict[str, dict[str, Any]] = {}
        self._replay: deque[Item] = deque(maxlen=replay_size)
        self._subscribers: set[Subscription] = set()
        self._last_id = 0
        self._closed = False
        #: The seat rep's state (None: not tracked), moved by their calls and the page.
        self.rep_state = rep_state
        self._rep_sink = rep_sink
        #: Called with every rep-state change (the seat page stores them for reports).
        self.rep_listeners: list[Callable[[RepStateChange], None]] = []
        self._wrap_up_timer: asyncio.TimerHandle | None = None
        if rep_state is not None and rep_sink is not None:
            rep_sink.rep_state(rep_state.rep, rep_state.state, rep_state.reason)

    @property
    def last_id(self) -> int:
        """The id of the latest message (0 before the first)."""
        return self._last_id

    @property
    def clients(self) -> int:
        """How many clients are subscribed now."""
        return len(self._subscribers)

    async def notify(self, message: Message) -> None:
        """Publish one message (the observer interface)."""
        self.publish(message)

    def publish(self, message: Message) -> int:
        """Record ``message`` in the snapshot and send it to every client; return its id."""
        payload: dict[str, Any]
        if isinstance(message, CallEvent):
            event = CALL
            call = message.call
            payload = message.to_dict()
            customer = self._customers.get(call.uuid)
            if customer is not None:
                payload["call"]["customer"] = customer
            # A known call is updated in place: the list keeps first-seen order.
            self._calls[call.uuid] = payload["call"]
            while len(self._calls) > self._max_calls:
                old, _ = self._calls.popitem(last=False)
                self._customers.pop(old, None)
            self._follow_calls(message)
        elif isinstance(message, LineStatus):
            event = LINE
            payload = message.to_dict()
            self._lines[message.line] = payload
        else:
            raise TypeError(f"cannot publish {type(message).__name__}")
        return self._send(event, payload)

    def _send(self, event: str, payload: dict[str, Any]) -> int:
        self._last_id += 1
        item: Item = (self._last_id, event, payload)
        self._replay.append(item)
        for sub in list(self._subscribers):
            if not sub._offer(item):
                logger.info("seat page client fell %d messages behind; disconnecting it", self._client_queue)
                sub.dropped = True
                self._subscribers.discard(sub)
                sub._end()
        return self._last_id

    # -- rep state --------------------------------------------------------------------

    def _follow_calls(self, message: CallEvent) -> None:
        state = self.rep_state
        if state is None or message.call.rep != state.rep:
            return
        if message.kind is CallEventKind.ANSWERED:
            self._rep_changed(state.call_answered(message.call.uuid, message.at))
        elif message.kind is CallEventKind.ENDED:
            self._rep_changed(state.call_ended(message.call.uuid, message.at))

    def choose_rep_state(self, state: str, reason: str | None, now: datetime) -> RepStateChange | None:
        """The rep chose a state on the page (see :meth:`RepState.choose`; raises ValueError)."""
        if self.rep_state is None:
            raise ValueError("rep state is not tracked on this seat")
        change = self.rep_state.choose(state, reason, now)
        self._rep_changed(change)
        return change

    def tick_rep_state(self, now: datetime) -> None:
        """End a wrap-up that ran out of time (the bus schedules this itself on the event loop)."""
        if self.rep_state is not None:
            self._rep_changed(self.rep_state.tick(now))

    def _rep_changed(self, change: RepStateChange | None) -> None:
        if change is None:
            return
        if self._rep_sink is not None:
            self._rep_sink.rep_state_seconds(change.rep, change.previous, change.previous_seconds)
            self._rep_sink.rep_state(change.rep, change.state, change.reason)
        for listener in self.rep_listeners:
            try:
                listener(change)
            except Exception:
                logger.exception("rep state listener failed")
        self._send(REP, change.to_dict())
        self._schedule_wrap_up()

    def _schedule_wrap_up(self) -> None:
        if self._wrap_up_timer is not None:
            self._wrap_up_timer.cancel()
            self._wrap_up_timer = None
        deadline = self.rep_state.deadline() if self.rep_state is not None else None
        if deadline is None or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a pure test): tick_rep_state is called by hand
        delay = max((deadline - datetime.now(deadline.tzinfo)).total_seconds(), 0.0)
        self._wrap_up_timer = loop.call_later(delay, lambda: self.tick_rep_state(deadline))

    def set_customer(self, uuid: str, customer: Customer) -> None:
        """Who is behind call ``uuid``: its later messages carry ``call.customer``.

        ``{"id", "name", "company", "owner_rep", "source"}`` (``id`` only for our own
        customers table). The runtime sets it just before it publishes the
        ``identified`` event that names the customer.
        """
        self._customers[uuid] = {
            "id": customer.id if customer.source == "sql" else None,
            "name": customer.name,
            "company": customer.company,
            "owner_rep": customer.owner_rep,
            "source": customer.source,
        }

    def call(self, uuid: str) -> dict[str, Any] | None:
        """The latest state of a recent call (as in :meth:`snapshot`), or None."""
        return self._calls.get(uuid)

    def subscribe(self, last_event_id: int | None = None) -> Subscription:
        """A new client's stream: messages after ``last_event_id`` (if given), then live ones.

        With no ``last_event_id`` only live messages come. When the id is older
        than the replay buffer, or newer than the bus has (the agent restarted),
        the stream starts with a ``reset`` event carrying the current id: the
        client must reload :meth:`snapshot`. After :meth:`close` the stream is empty.
        """
        replay: list[Item] = []
        if last_event_id is not None and last_event_id != self._last_id:
            oldest = self._replay[0][0] if self._replay else self._last_id + 1
            if last_event_id > self._last_id or last_event_id < oldest - 1:
                replay = [(self._last_id, RESET, {"last_id": self._last_id})]
            else:
                replay = [item for item in self._replay if item[0] > last_event_id]
        sub = Subscription(self, replay, self._client_queue)
        if self._closed:
            sub._end()
        else:
            self._subscribers.add(sub)
        return sub

    def snapshot(self) -> dict[str, Any]:
        """The state for a page's first load.

        ``{"last_id": int, "calls": [call dicts, newest first], "lines": [line status dicts]}``;
        subscribe with ``last_id`` to get every later message and nothing twice.
        """
        return {
            "last_id": self._last_id,
            "calls": list(reversed(self._calls.values())),
            "lines": list(self._lines.values()),
            "rep_state": self.rep_state.snapshot() if self.rep_state is not None else None,
        }

    def close(self) -> None:
        """End every client's stream (at shutdown, so open event streams do not hold the web server)."""
        self._closed = True
        if self._wrap_up_timer is not None:
            self._wrap_up_timer.cancel()
        for sub in list(self._subscribers):
            self._subscribers.discard(sub)
            sub._end()

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
