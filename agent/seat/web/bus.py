"""The screen-pop bus: what the seat page shows, kept in memory and fanned out to live clients.

Every message gets the next integer id. The bus keeps the latest snapshot of
the recent calls and of each line (for a page's first load) and a replay buffer
of the latest messages, so a browser whose ``EventSource`` reconnects with
``Last-Event-ID`` gets exactly what it missed. Each client reads from its own
bounded queue: a client too slow to keep up is dropped (its browser reconnects
and replays) instead of holding up the bus or growing memory without bound.

Each message is encoded as an SSE frame once, however many clients get it, and a client's
stream sends what is waiting as one write (:meth:`Subscription.frames`). The stream tells
its subscription what it has handed to the server (:meth:`Subscription.written`), so the
runtime can hold its heavy work (the database writes, the customer lookup's thread)
until the pop is on its way (:meth:`SeatBus.sent`).

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
from agent.web import format_sse

logger = logging.getLogger(__name__)

Item = tuple[int, str, dict[str, Any]]
"""One message for a client: (id, event name, JSON-ready payload)."""

#: Event names. ``reset`` tells a client its ``Last-Event-ID`` is no longer in
#: the replay buffer (or belongs to an earlier run): it must reload the snapshot.
CALL, LINE, RESET, REP = "call", "line", "reset", "rep"

_END = object()

#: How long :meth:`SeatBus.sent` waits for a slow client before it lets the caller go on.
SENT_TIMEOUT = 0.05


class _Entry:
    """A message and its SSE frame, encoded the first time a client needs it (once for all)."""

    __slots__ = ("_frame", "item")

    def __init__(self, item: Item) -> None:
        self.item = item
        self._frame: bytes | None = None

    @property
    def frame(self) -> bytes:
        if self._frame is None:
            self._frame = format_sse(*self.item)
        return self._frame


class SubscriptionEnded(Exception):
    """The subscription is over: the bus closed, or the client fell too far behind."""


class Subscription:
    """One client's view of the bus: the replayed messages, then live ones, in id order.

    Use it as ``with bus.subscribe(last_id) as sub:`` and either ``async for`` over
    it or call :meth:`get` with a timeout (for heartbeats). Leaving the ``with``
    block unsubscribes.
    """

    def __init__(self, bus: SeatBus, replay: list[_Entry], maxsize: int) -> None:
        self._bus = bus
        self._replay: deque[_Entry] = deque(replay)
        self._queue: asyncio.Queue[_Entry | object] = asyncio.Queue(maxsize)
        self._ended = False
        #: True when the bus dropped this client for falling behind.
        self.dropped = False
        #: True once :meth:`SeatBus.sent` gave up waiting for this client, until it catches up.
        self.lagging = False
        #: The id of the last message this client's stream handed over (see :meth:`written`).
        self.written_id = replay[0].item[0] - 1 if replay else bus.last_id

    async def _next(self, timeout: float | None) -> _Entry | None:
        if self._replay:
            return self._replay.popleft()
        if self._ended:
            raise SubscriptionEnded
        try:
            # asyncio.timeout cancels queue.get() cleanly: no message is lost on a timeout.
            async with asyncio.timeout(timeout):
                entry = await self._queue.get()
        except TimeoutError:
            return None
        if entry is _END:
            self._ended = True
            raise SubscriptionEnded
        assert isinstance(entry, _Entry)
        return entry

    async def get(self, timeout: float | None = None) -> Item | None:
        """The next message, or None when none came within ``timeout`` seconds (it counts as written).

        :raises SubscriptionEnded: once the bus closed or dropped this client.
        """
        entry = await self._next(timeout)
        if entry is None:
            return None
        self.written(entry.item[0])
        return entry.item

    async def frames(self, timeout: float | None = None) -> tuple[int, bytes] | None:
        """Every message waiting (at least one), as SSE frames in one piece, and the last one's id.

        None when nothing came within ``timeout`` seconds. Call :meth:`written` with the id
        once the piece is handed to the server.

        :raises SubscriptionEnded: once the bus closed or dropped this client and nothing is left.
        """
        entry = await self._next(timeout)
        if entry is None:
            return None
        entries = [entry]
        while self._replay:
            entries.append(self._replay.popleft())
        while not self._queue.empty():
            more = self._queue.get_nowait()
            if more is _END:
                self._ended = True  # the next call raises SubscriptionEnded
                break
            assert isinstance(more, _Entry)
            entries.append(more)
        if len(entries) == 1:
            return entry.item[0], entry.frame
        return entries[-1].item[0], b"".join([e.frame for e in entries])

    def written(self, message_id: int) -> None:
        """Note that the stream handed over every message up to ``message_id``."""
        if message_id > self.written_id:
            self.written_id = message_id
            if message_id >= self._bus.last_id:
                self.lagging = False
            self._bus._written()

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

    def _offer(self, entry: _Entry) -> bool:
        try:
            self._queue.put_nowait(entry)
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
        self._replay: deque[_Entry] = deque(maxlen=replay_size)
        self._subscribers: set[Subscription] = set()
        #: Callers of sent(): the message id each waits for and its future.
        self._sent_waiters: list[tuple[int, asyncio.Future[None]]] = []
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
        entry = _Entry((self._last_id, event, payload))
        self._replay.append(entry)
        for sub in list(self._subscribers):
            if not sub._offer(entry):
                logger.info("seat page client fell %d messages behind; disconnecting it", self._client_queue)
                sub.dropped = True
                self._subscribers.discard(sub)
                sub._end()
                self._written()
        return self._last_id

    async def sent(self, timeout: float = SENT_TIMEOUT) -> None:
        """Return once every client's stream has handed over everything published so far.

        At most ``timeout`` seconds: a slow or stuck client never holds the caller up for
        longer. Returns at once when there is no client or nothing is waiting.
        """
        target = self._last_id
        behind = [sub for sub in self._subscribers if sub.written_id < target and not sub.lagging]
        if not behind:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (target, waiter)
        self._sent_waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            # Not waited for again until it catches up: one stall costs one time-out, not one each.
            for sub in behind:
                if sub.written_id < target:
                    sub.lagging = True
        finally:
            if entry in self._sent_waiters:
                self._sent_waiters.remove(entry)

    def _written(self) -> None:
        """A client wrote something or went away: wake the callers of :meth:`sent` now satisfied."""
        if not self._sent_waiters:
            return
        lowest = min((sub.written_id for sub in self._subscribers if not sub.lagging), default=self._last_id)
        for target, waiter in list(self._sent_waiters):
            if target <= lowest and not waiter.done():
                waiter.set_result(None)

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
        replay: list[_Entry] = []
        if last_event_id is not None and last_event_id != self._last_id:
            oldest = self._replay[0].item[0] if self._replay else self._last_id + 1
            if last_event_id > self._last_id or last_event_id < oldest - 1:
                replay = [_Entry((self._last_id, RESET, {"last_id": self._last_id}))]
            else:
                replay = [entry for entry in self._replay if entry.item[0] > last_event_id]
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
        self._written()

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
        self._written()
