"""Team mode's sync loop: replays the seat's outbox to the centre, forever, with back-off.

The replay itself is :class:`storage.outbox.CentralSync` (blocking; run here in
a worker thread). This loop only decides when: a batch right after a full one,
a poll every ``[central] interval`` otherwise, at once when a call ends, and
after a failure an exponentially growing wait with jitter (so a hundred seats
do not all hit a centre that has just come back in the same second). The seat
goes on writing locally the whole time: the loop never blocks the runtime,
and nothing it does can fail a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from sqlalchemy import Engine

from agent.config import Config
from agent.errors import AgentError
from agent.events import CallEvent, CallEventKind, Message
from agent.seat.transport import make_transport
from storage.outbox import BatchResult, CentralSync, SyncError

logger = logging.getLogger(__name__)

BACKOFF_START = 1.0
#: How long shutdown waits for a batch in flight before giving up on it (it is resent next start).
STOP_TIMEOUT = 10.0


@runtime_checkable
class SyncMetrics(Protocol):
    """Where the sync reports itself; the metrics module implements it with four methods.

    - ``sync_backlog(rows)``: set the gauge ``cti_sync_backlog`` (calls and
      recordings waiting to be sent, parked ones not counted, as ``sync
      --status`` counts them), after every round, failed or not;
    - ``sync_parked(entries)``: set the gauge ``cti_sync_parked`` (outbox
      entries set aside: see :mod:`storage.faults`), after every round;
    - ``sync_error(kind)``: add 1 to the counter ``cti_sync_errors_total{kind}``,
      ``kind`` one of ``centre`` (the centre, its database or store down), ``credential``,
      ``parked``, ``local``;
    - ``sync_succeeded(timestamp)``: set the gauge
      ``cti_sync_last_success_timestamp_seconds`` (Unix time) when a batch was
      sent or the outbox was found empty, i.e. when the seat was last in sync.
    """

    def sync_backlog(self, rows: int) -> None:
        """``rows`` calls and recordings are waiting to be sent."""

    def sync_parked(self, entries: int) -> None:
        """``entries`` outbox entries are parked."""

    def sync_error(self, kind: str) -> None:
        """A batch failed (or an entry was parked) for a reason of this kind."""

    def sync_succeeded(self, timestamp: float) -> None:
        """The seat was in sync with the centre at ``timestamp`` (Unix seconds)."""


class Batcher(Protocol):
    """What the loop drives: :class:`storage.outbox.CentralSync`."""

    def enable(self) -> int:
        """Turn the outbox on."""

    def run_batch(self) -> BatchResult:
        """Send one batch."""

    def close(self) -> None:
        """Release the connections to the centre."""


class SyncLoop:
    """Runs :class:`CentralSync` batches until stopped; also an observer that wakes it when a call ends.

    :param rand: a uniform [0, 1) source for the jitter (a test fixes it).
    :param sleep: how the loop waits out a back-off (a test replaces it).
    :param clock: Unix time for the last-success metric.
    """

    name = "sync"
    must_deliver = False

    def __init__(
        self,
        sync: Batcher,
        *,
        interval: float = 5.0,
        backoff_start: float = BACKOFF_START,
        backoff_max: float = 300.0,
        metrics: SyncMetrics | None = None,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sync = sync
        self.interval = interval
        self.backoff_start = backoff_start
        self.backoff_max = max(backoff_max, backoff_start)
        self.metrics = metrics
        self.rand = rand
        self.sleep = sleep
        self.clock = clock
        self.failures = 0
        #: The backlog and parked entries after the last round (None: not known yet), for /healthz.
        self.backlog: int | None = None
        self.parked: int | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def backoff(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row: doubling up to the cap, the upper half jittered."""
        ceiling = min(self.backoff_start * 2.0 ** (failures - 1), self.backoff_max)
        return float(ceiling / 2 + self.rand() * ceiling / 2)

    async def notify(self, message: Message) -> None:
        """Wake the loop when a call ends (its final row is then in the outbox)."""
        if isinstance(message, CallEvent) and message.kind is CallEventKind.ENDED:
            self._wake.set()

    def wake(self) -> None:
        """Send now instead of at the next poll."""
        self._wake.set()

    async def step(self) -> float:
        """One batch; returns how long to wait before the next (0: go on at once)."""
        try:
            result = await asyncio.to_thread(self.sync.run_batch)
        except SyncError as exc:
            # The batch failed, the backlog is still true: the gauges follow it through an outage.
            self._counts(exc.pending, exc.parked)
            return self._failed(exc.kind, exc)
        except (AgentError, OSError) as exc:
            return self._failed("local", exc)
        self.failures = 0
        self._counts(result.remaining, result.parked_total)
        if self.metrics is not None:
            for _ in range(result.parked):
                self.metrics.sync_error("parked")
            self.metrics.sync_succeeded(self.clock())
        if result.entries:
            logger.info(
                "sent %d call(s) and %d recording(s) to the centre; %d waiting",
                result.calls,
                result.recordings,
                result.remaining,
            )
        return 0.0 if result.full else self.interval

    def _counts(self, backlog: int | None, parked: int | None) -> None:
        if backlog is not None:
            self.backlog = backlog
            if self.metrics is not None:
                self.metrics.sync_backlog(backlog)
        if parked is not None:
            self.parked = parked
            if self.metrics is not None:
                self.metrics.sync_parked(parked)

    def _failed(self, kind: str, exc: BaseException) -> float:
        self.failures += 1
        if self.metrics is not None:
            self.metrics.sync_error(kind)
        delay = self.backoff(self.failures)
        logger.warning(
            "sync to the centre failed (%s); the seat goes on locally, retry %d in %.1f s",
            exc,
            self.failures,
            delay,
        )
        return delay

    async def run(self) -> None:
        """Turn the outbox on, then send batches until :meth:`aclose` (or cancellation)."""
        while not self._stopping:
            try:
                queued = await asyncio.to_thread(self.sync.enable)
                break
            except (AgentError, OSError) as exc:
                delay = self._failed("local", exc)
            await self.sleep(delay)
        else:
            return
        if queued:
            logger.info("team mode: %d stored row(s) queued for the centre", queued)
        while not self._stopping:
            delay = await self.step()
            if self._stopping or delay <= 0:
                continue
            if self.failures:
                await self.sleep(delay)
                continue
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a stop's cancel.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
        # Stopping: send what the shutdown itself wrote (the calls it ended), unless the centre is down.
        while not self.failures and await self.step() == 0.0:
            pass

    def start(self) -> asyncio.Task[None]:
        """Run the loop in a task of the running event loop (stopped by :meth:`aclose`)."""
        self._task = asyncio.create_task(self.run(), name="sync")
        return self._task

    async def aclose(self) -> None:
        """Stop after the batch in flight (waiting up to ``STOP_TIMEOUT``); what is unsent stays queued."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is None:
            self.sync.close()
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT)
        except TimeoutError:
            logger.warning(
                "the sync did not stop within %.0f s; its batch is resent next start", STOP_TIMEOUT
            )
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            self.sync.close()


def make_sync(config: Config, local: Engine, metrics: SyncMetrics | None = None) -> SyncLoop | None:
    """The sync loop for this config, or None when no central URL is set (single-machine mode).

    No connection is made here: an unreachable centre only delays the sync.

    :raises ConfigError: the local database is not SQLite, ``[central] url`` is not a centre (a
        database URL), or the centre's token file is unusable.
    """
    transport = make_transport(config)
    if transport is None:
        return None
    sync = CentralSync(
        local, transport=transport, data_dir=config.agent.data_dir, batch_size=config.central.batch_size
    )
    return SyncLoop(
        sync,
        interval=config.central.interval,
        backoff_max=config.central.backoff_max,
        metrics=metrics,
    )


__all__ = ["Batcher", "SyncLoop", "SyncMetrics", "make_sync"]
