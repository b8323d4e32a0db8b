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
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from agent.events import Call, CallEvent, LineStatus, Message, RepStateChange
from agent.numbers import DEFAULT_REGION, national

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
    every call event, line status and rep-state change, in order. The bus only
    keeps what the page shows: the calls carry their customer, and the rep's
    state is the runtime's (:class:`agent.repstate.RepState`), of which the bus
    keeps the latest as the changes pass.

    :param max_calls: how many recent calls the snapshot keeps.
    :param replay_size: how many recent messages a reconnecting client can catch up on.
    :param client_queue: how many messages may wait for one client before it is dropped.
    :param rep_state: the rep's state at start (:meth:`agent.repstate.RepState.snapshot`);
        None when this seat does not track one.
    """

    name = "seat-page"
    must_deliver = False

    def __init__(
        self,
        *,
        max_calls: int = 200,
        replay_size: int = 1000,
        client_queue: int = 256,
        rep_state: dict[str, Any] | None = None,
        region: str = DEFAULT_REGION,
    ) -> None:
        if max_calls < 1 or replay_size < 1 or client_queue < 1:
            raise ValueError("max_calls, replay_size and client_queue must be positive")
        self._max_calls = max_calls
        self._client_queue = client_queue
        self._calls: OrderedDict[str, Call] = OrderedDict()
        self._lines: dict[str, dict[str, Any]] = {}
        self._replay: deque[Item] = deque(maxlen=replay_size)
        self._subscribers: set[Subscription] = set()
        self._last_id = 0
        self._closed = False
        self._rep_state = dict(rep_state) if rep_state is not None else None
        self._region = region

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
            payload["call"] = self._call_dict(call)
            # A known call is updated in place: the list keeps first-seen order.
            self._calls[call.uuid] = call
            while len(self._calls) > self._max_calls:
                self._calls.popitem(last=False)
        elif isinstance(message, LineStatus):
            event = LINE
            payload = message.to_dict()
            self._lines[message.line] = payload
        elif isinstance(message, RepStateChange):
            event = REP
            payload = message.to_dict()
            if self._rep_state is not None:
                self._rep_state.update(state=message.state, reason=message.reason, since=payload["since"])
        else:
            raise TypeError(f"cannot publish {type(message).__name__}")
        return self._send(event, payload)

    def _call_dict(self, call: Call) -> dict[str, Any]:
        """A call as the page gets it: its fields and ``number_display`` (the number as written here)."""
        out = call.to_dict()
        out["number_display"] = national(call.number_e164, self._region)
        return out

    def seed(self, calls: Iterable[Call]) -> int:
        """Put calls from before this start (oldest first) into the snapshot, sending nothing.

        So a page opened after a restart still lists the day's calls and can open
        their cards; a call the bus already knows keeps its live snapshot. Returns
        how many were added.
        """
        fresh = sorted((c for c in calls if c.uuid not in self._calls), key=lambda c: c.started_at)
        # Calls from before the start come before anything live in the list.
        merged = [*fresh, *self._calls.values()][-self._max_calls :]
        self._calls = OrderedDict((c.uuid, c) for c in merged)
        added = len(fresh)
        return added

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

    def call(self, uuid: str) -> Call | None:
        """The latest snapshot of a recent call (with its customer, once known), or None."""
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

        ``{"last_id": int, "calls": [call dicts, newest first], "lines": [line status dicts],
        "rep_state": the rep's state or None}``; subscribe with ``last_id`` to get every
        later message and nothing twice.
        """
        return {
            "last_id": self._last_id,
            "calls": [self._call_dict(call) for call in reversed(self._calls.values())],
            "lines": list(self._lines.values()),
            "rep_state": dict(self._rep_state) if self._rep_state is not None else None,
        }

    def close(self) -> None:
        """End every client's stream (at shutdown, so open event streams do not hold the web server)."""
        self._closed = True
        for sub in list(self._subscribers):
            self._subscribers.discard(sub)
            sub._end()

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
