"""The asyncio runtime: devices → trackers → observers, with back-off and an orderly shutdown.

This module alone owns tasks, queues, retries and shutdown. Everything it wires
together is tested on its own; here is only the glue:

- one task per device: open it, read its events, and on failure report
  ``device_down`` to its lines, back off, and open it again;
- one tracker per line, fed synchronously (it is pure), plus one ticker task
  that wakes at the earliest tracker deadline;
- one task per line that enriches call events in order (customer lookup in a
  worker thread, bounded by ``[agent] lookup_timeout``) and hands them on;
- the rep's state (:class:`agent.repstate.RepState`, pure like the trackers),
  fed every call event and ticked by the same ticker; its changes go out
  through the same fan-out as call events;
- one queue and task per observer, so a slow or failing observer never holds
  up another. Storage must not lose a call: a failed write is retried with
  back-off, and whatever is still unwritten at shutdown is spooled, in space
  reserved at start (:mod:`agent.seat.spool`), to a file that the next start
  writes first; a start then ends the calls a crash left open. Park, don't
  block: a call the database refuses for what it is (``storage.faults.Rejected``)
  is parked after a few tries, so the calls behind it are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pluggy
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from agent.calls import CallTracker, LineIdentity
from agent.config import Config, device_options, is_centre_url, parse_listen
from agent.errors import AgentError, ConfigError, DeviceError
from agent.events import (
    ALL_LINES,
    Call,
    CallEvent,
    CallEventKind,
    Customer,
    DeviceDown,
    DeviceUp,
    LineError,
    LineEvent,
    LineStatus,
    Message,
    RecordingFacts,
    RepStateChange,
)
from agent.repstate import RepState
from agent.seat.centre_client import CentreClient
from agent.seat.centre_lookup import CentreLookup, register_centre_lookup
from agent.seat.devices import Device, DeviceRegistry
from agent.seat.listen_out import start_listen_out, stop_listen_out
from agent.seat.metrics import Metrics, make_metrics_app
from agent.seat.observers import HookObserver, Observer, PluginErrorCounter, notify_each
from agent.seat.recorder import Recorder, make_recorder
from agent.seat.spool import SPOOL_NAME as SPOOL_NAME  # re-exported: tests and tools name the spool by it
from agent.seat.spool import Spool
from agent.seat.sync import SyncLoop, make_sync
from agent.seat.transport import centre_access, make_client
from agent.seat.web.app import make_seat_app
from agent.seat.web.bus import SeatBus
from agent.seat.web.context import SeatContext
from agent.seat.web.login import HASH_FILE_NAME, SeatLogin
from agent.web.guard import allowed_hosts
from agent.web.serve import AgentServer, make_server
from storage.db import make_engine, upgrade
from storage.faults import PARK_AFTER, Rejected
from storage.observer import PARKED_NAME, ParkedCalls, StorageObserver
from storage.plugin import SqlStore
from storage.recordings import RecordingStore
from storage.repository import close_open_calls

logger = logging.getLogger(__name__)

#: Rep-state changes storage could not take at shutdown, beside the calls (every one counts).
REP_SPOOL_NAME = "unwritten-rep-states.jsonl"
BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
DEVICE_STABLE_SECONDS = 60.0
SHUTDOWN_DRAIN_SECONDS = 10.0
#: How long the seat page waits for a rep-state change to be stored before it answers anyway.
REP_STATE_STORE_SECONDS = 5.0


def utcnow() -> datetime:
    """The wall clock, tz-aware UTC."""
    return datetime.now(UTC)


def configure_plugins(pm: pluggy.PluginManager, config: Config, errors: PluginErrorCounter | None) -> None:
    """Call ``agent_configured`` on each plugin; register what each returns as ``<name>.configured``.

    A :class:`ConfigError` from a plugin propagates (the agent must not start
    misconfigured); any other exception is logged, counted, and that plugin's
    object left out.
    """
    for impl in pm.hook.agent_configured.get_hookimpls():
        try:
            result = impl.function(**{name: config for name in impl.argnames if name == "config"})
        except ConfigError:
            raise
        except Exception:
            logger.exception("plugin %s failed in agent_configured", impl.plugin_name)
            if errors is not None:
                errors.plugin_error(impl.plugin_name, "agent_configured")
            continue
        if result is None:
            continue
        name = f"{impl.plugin_name}.configured"
        if pm.has_plugin(name):
            pm.unregister(name=name)
        pm.register(result, name=name)
        logger.info("plugin %s is configured", impl.plugin_name)


@dataclass
class _Line:
    """A line's tracker and the queue of call events waiting for enrichment, in order."""

    tracker: CallTracker
    device_type: str
    queue: asyncio.Queue[CallEvent | LineStatus | _LookupDone] = field(default_factory=asyncio.Queue)
    last_status: tuple[Any, ...] | None = None
    customers: dict[str, Customer | None] = field(default_factory=dict)
    #: Customer lookups in flight, by call uuid, and the latest snapshot of each call in progress.
    lookups: dict[str, asyncio.Task[Customer | None]] = field(default_factory=dict)
    latest: dict[str, Call] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _LookupDone:
    """A customer lookup finished; queued on its line so its result keeps the call's order."""

    uuid: str
    task: asyncio.Task[Customer | None]


class Parking(Protocol):
    """An observer that can set aside a message it refuses for good (the storage observer)."""

    def tries_before_parking(self, message: Message) -> int:
        """Refusals of ``message`` before it is parked (0: never)."""

    def park(self, message: Message, reason: str, now: datetime) -> None:
        """Keep ``message`` aside with ``reason`` (blocking); raises OSError when it cannot."""


class _Pipe:
    """One observer's queue and delivery loop.

    :param parking: where a message the observer refuses (:class:`Rejected`)
        goes after its tries; None: it is retried like any failure.
    """

    def __init__(
        self,
        observer: Observer,
        metrics: Metrics,
        *,
        parking: Parking | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.observer = observer
        self.metrics = metrics
        self.parking = parking
        self.clock = clock
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        self.in_flight: Message | None = None
        #: Futures set once the message (by identity) has been handled (or given up on).
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}

    async def run(self) -> None:
        while True:
            message = await self.queue.get()
            self.in_flight = message
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
                    if await self._park(message, exc, refusals):
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

    async def _park(self, message: Message, exc: Rejected, refusals: int) -> bool:
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


class Agent:
    """The seat agent: runs devices, trackers, storage, metrics and the seat page until stopped."""

    def __init__(
        self,
        config: Config,
        pm: pluggy.PluginManager,
        *,
        devices: DeviceRegistry | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.pm = pm
        self.device_types = devices or DeviceRegistry.from_plugins(pm)
        self.registry = registry or CollectorRegistry()
        self.clock = clock
        self.metrics = Metrics(
            self.registry,
            seat=config.agent.seat,
            effective_call_seconds=config.metrics.effective_call_seconds,
            targets=config.targets,
        )
        #: The seat rep's state (None without a rep), moved by their calls and the page.
        self.rep_state: RepState | None = None
        if config.agent.rep:
            self.rep_state = RepState(
                config.agent.rep,
                clock(),
                wrap_up_seconds=config.rep_state.wrap_up_seconds,
                pause_reasons=config.rep_state.pause_reasons,
            )
            self.metrics.rep_state(self.rep_state.rep, self.rep_state.state, self.rep_state.reason)
        self.bus = SeatBus(rep_state=self.rep_state.snapshot() if self.rep_state is not None else None)
        self.engine: Engine | None = None
        self.devices: dict[str, Device] = {}
        self.lines: dict[tuple[str, str], _Line] = {}
        self.started = asyncio.Event()
        self.web_port: int | None = None
        self.metrics_port: int | None = None
        self._pipes: list[_Pipe] = []
        self._wake = asyncio.Event()
        self._line_tasks: list[asyncio.Task[None]] = []
        self._servers: list[AgentServer] = []
        self._server_tasks: list[asyncio.Task[None]] = []
        self.recorder: Recorder | None = None
        self.sync: SyncLoop | None = None
        self._listen_out: asyncio.Task[None] | None = None
        self._centre_lookup: CentreLookup | None = None
        self._lookup_client: CentreClient | None = None
        self.storage: StorageObserver | None = None
        #: Calls the shutdown could write neither to the database nor to the spool (then run() raises).
        self.spool_lost = 0
        self._run_started: datetime | None = None

    # -- life cycle ---------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Start everything, run until ``stop`` is set, then shut down in order."""
        self._run_started = self.clock()
        data_dir = self.config.agent.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = await asyncio.to_thread(self._open_database)
        if not self.pm.is_blocked("sql") and self.pm.get_plugin("sql") is None:
            self.pm.register(SqlStore(self.engine, region=self.config.agent.region), name="sql")
        configure_plugins(self.pm, self.config, self.metrics)
        storage = StorageObserver(self.engine, parked=ParkedCalls(data_dir / PARKED_NAME))
        self.storage = storage
        self.metrics.storage_parked.set_function(storage.parked_count)
        observers: list[Observer] = [
            storage,
            self.metrics,
            self.bus,
            HookObserver(self.pm, self.metrics),
        ]
        # The recorder: repair what a crash left, then record from call events (see agent.seat.recorder).
        self.recorder = make_recorder(
            self.config, self.engine, self.devices, self.metrics, on_finished=self._recording_finished
        )
        if self.recorder is not None:
            await asyncio.to_thread(self.recorder.recover)
            self.recorder.start()
            await asyncio.to_thread(self._refresh_oldest_recording)
            observers.append(self.recorder)
        # Team mode: replay the local outbox to the centre (see agent.seat.sync).
        self.sync = make_sync(self.config, self.engine, self.metrics)
        if self.sync is not None:
            observers.append(self.sync)
            self.sync.start()
        self._start_centre_services()
        self._pipes = [
            _Pipe(observer, self.metrics, parking=storage if observer is storage else None, clock=self.clock)
            for observer in observers
        ]
        await self._replay_spool()
        await asyncio.to_thread(self._close_open_calls)
        pipe_tasks = [asyncio.create_task(p.run(), name=f"observer:{p.observer.name}") for p in self._pipes]
        device_tasks: list[asyncio.Task[None]] = []
        ticker: asyncio.Task[None] | None = None
        try:
            await self._start_servers()
        except BaseException:
            await self._shutdown(device_tasks, ticker, pipe_tasks)
            raise
        for device_section in self.config.devices:
            if not device_section.enabled:
                continue
            device_cls = self.device_types.get(device_section.type)
            device = device_cls(
                device_section.id, device_options(self.config, self.device_types, device_section)
            )
            self.devices[device_section.id] = device
            for port in device.lines():
                self._line(device, port)
        device_tasks = [
            asyncio.create_task(self._run_device(device), name=f"device:{device_id}")
            for device_id, device in self.devices.items()
        ]
        ticker = asyncio.create_task(self._ticker(), name="ticker")
        self.started.set()
        logger.info(
            "agent running on seat %s: %d device(s), %d line(s)",
            self.config.agent.seat,
            len(self.devices),
            len(self.lines),
        )
        stopped = asyncio.create_task(stop.wait(), name="stop")
        try:
            done, _ = await asyncio.wait([stopped, *self._server_tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopped and task.exception() is not None:
                    raise AgentError(f"{task.get_name()} failed: {task.exception()}")
        finally:
            stopped.cancel()
            await self._shutdown(device_tasks, ticker, pipe_tasks)

    def _start_centre_services(self) -> None:
        """Team mode with the centre: its customer cards for the pop, and listen-in dialled out."""
        url = self.config.central_url
        if not url or not is_centre_url(url):
            return
        # The team's customer card first (cached: the pop never waits on the network).
        self._lookup_client = make_client(self.config)
        self._centre_lookup = register_centre_lookup(self.pm, self.config, self._lookup_client)
        if self.recorder is not None:
            _, self._listen_out = start_listen_out(centre_access(self.config), self.recorder.subscribe_live)

    async def _stop_centre_services(self) -> None:
        if self._listen_out is not None:
            await stop_listen_out(self._listen_out)
        if self._centre_lookup is not None:
            await asyncio.to_thread(self._centre_lookup.close)
            self.pm.unregister(self._centre_lookup)
            self._centre_lookup = None
        if self._lookup_client is not None:
            self._lookup_client.close()
            self._lookup_client = None

    def _open_database(self) -> Engine:
        url = self.config.database_url
        engine = make_engine(url)
        upgrade(engine)
        return engine

    async def _start_servers(self) -> None:
        """Start the seat page and metrics listeners; a port already taken is a clear error."""
        wanted: list[tuple[str, str, Any]] = []
        if self.config.web.enabled:
            app = make_seat_app(self.seat_context())
            wanted.append(("seat page", self.config.web.listen, app))
        if self.config.metrics.enabled:
            wanted.append(("metrics", self.config.metrics.listen, make_metrics_app(self.registry)))
        for what, listen, app in wanted:
            host, port = parse_listen(listen)
            server = make_server(app, host, port)
            self._servers.append(server)
            self._server_tasks.append(asyncio.create_task(server.serve(), name=f"web:{what}"))
            try:
                await server.wait_started()
            except AgentError as exc:
                raise AgentError(f"cannot listen on {listen} for the {what}: {exc}") from None
            if what == "seat page":
                self.web_port = server.port
            else:
                self.metrics_port = server.port

    def seat_context(self) -> SeatContext:
        """What the seat page is built from: this agent's bus, database, lines, rep and config."""
        agent = self.config.agent
        web_host, _ = parse_listen(self.config.web.listen)
        return SeatContext(
            bus=self.bus,
            seat=agent.seat,
            rep=agent.rep,
            pm=self.pm,
            errors=self.metrics,
            engine=self.engine,
            dialer=self,
            rep_desk=self,
            targets=self.config.targets.for_rep(agent.rep, agent.team),
            effective_call_seconds=self.config.metrics.effective_call_seconds,
            protection_days=self.config.leads.protection_days,
            daily_claim_limit=self.config.leads.daily_claim_limit,
            console_url=self.config.web.console_url,
            # Listen-in streams what the recorder captures (see agent.seat.recorder.LiveTap).
            live=self.recorder.subscribe_live if self.recorder is not None else None,
            listen_token=self.config.web.listen_token,
            health=self.health,
            recordings_dir=self.recorder.store.root if self.recorder is not None else None,
            hosts=allowed_hosts(web_host, self.config.web.hosts),
            # Asked only of requests that reach the page over the network (agent.seat.web.login).
            login=SeatLogin(agent.data_dir / HASH_FILE_NAME),
        )

    async def _shutdown(
        self,
        device_tasks: list[asyncio.Task[None]],
        ticker: asyncio.Task[None] | None,
        pipe_tasks: list[asyncio.Task[None]],
    ) -> None:
        await self._stop_centre_services()
        stoppable = [*device_tasks, *([ticker] if ticker else [])]
        for task in stoppable:
            task.cancel()
        await asyncio.gather(*stoppable, return_exceptions=True)
        now = self.clock()
        for line in self.lines.values():
            self._emit(line, line.tracker.close(now))
        # Let each line finish enriching what it has, then let observers drain.
        await self._drain_lines()
        for task in self._line_tasks:
            task.cancel()
        await asyncio.gather(*self._line_tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(
                asyncio.gather(*(p.queue.join() for p in self._pipes)), SHUTDOWN_DRAIN_SECONDS
            )
        except TimeoutError:
            logger.warning("observers did not drain within %.0f s", SHUTDOWN_DRAIN_SECONDS)
        for task in pipe_tasks:
            task.cancel()
        await asyncio.gather(*pipe_tasks, return_exceptions=True)
        if self.recorder is not None:
            await self.recorder.aclose()
        if self.sync is not None:
            await self.sync.aclose()
        self._spool_unwritten()
        # Close the event streams first, so the servers need not wait them out.
        self.bus.close()
        for server in self._servers:
            server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.gather(*self._server_tasks, return_exceptions=True), 10)
        except TimeoutError:
            logger.warning("web listeners did not stop in time")
        if self.engine is not None:
            self.engine.dispose()
        logger.info("agent stopped")
        if self.spool_lost:
            raise AgentError(
                f"{self.spool_lost} call(s) could be written neither to the database nor the spool"
            )

    def health(self) -> dict[str, int]:
        """What is parked or waiting, for ``/healthz`` and ``/api/state`` (cheap: no database query)."""
        counts = {"storage_parked": self.storage.parked_count() if self.storage is not None else 0}
        if self.sync is not None:
            counts["sync_backlog"] = self.sync.backlog or 0
            counts["sync_parked"] = self.sync.parked or 0
        return counts

    async def _drain_lines(self) -> None:
        for line in self.lines.values():
            await line.queue.join()

    def _recording_finished(self, call: Call, recording: RecordingFacts) -> None:
        self._refresh_oldest_recording()
        notify_each(self.pm, "recording_finished", self.metrics, call=call, recording=recording)

    def _refresh_oldest_recording(self) -> None:
        """Update the oldest-recording gauge (blocking: call it from a worker thread)."""
        if self.engine is None:
            return
        try:
            with Session(self.engine) as session:
                self.metrics.recording_oldest(RecordingStore.oldest(session))
        except SQLAlchemyError as exc:
            logger.warning("cannot read the oldest recording's age: %s", exc)

    # -- devices ------------------------------------------------------------------

    def _line(self, device: Device, port: str) -> _Line:
        key = (device.device_id, port)
        line = self.lines.get(key)
        if line is None:
            section = self.config.line_for(device.device_id, port)
            identity = LineIdentity(
                seat=self.config.agent.seat,
                device_id=device.device_id,
                line=section.id,
                rep=section.rep if section.rep is not None else self.config.agent.rep,
                team=section.team if section.team is not None else self.config.agent.team,
            )
            tracker_config = self.config.tracker_config(
                reports_hook=device.reports_hook, reports_connect=device.reports_connect
            )
            line = _Line(CallTracker(identity, tracker_config, now=self.clock()), device.type)
            self.lines[key] = line
            self._line_tasks.append(asyncio.create_task(self._run_line(line), name=f"line:{section.id}"))
            self._publish_status(line)
            problem = self.config.line_problem(device.device_id, port)
            if problem is not None:
                # The label cannot be an id as it is: its calls go on a derived one, and this says so.
                self.feed(LineError(device_id=device.device_id, line=port, at=self.clock(), error=problem))
        return line

    async def _run_device(self, device: Device) -> None:
        delay = BACKOFF_START
        while True:
            opened_at: datetime | None = None
            try:
                async with device:
                    opened_at = self.clock()
                    self.metrics.device_status(device.device_id, device.type, True)
                    self.feed(DeviceUp(device_id=device.device_id, line=ALL_LINES, at=opened_at))
                    async for event in device.events():
                        self.feed(event)
                reason = "closed"
            except asyncio.CancelledError:
                raise
            except (DeviceError, OSError) as exc:
                reason = str(exc) or type(exc).__name__
                logger.warning("device %s: %s", device.device_id, reason)
            except Exception as exc:
                # A bug in a device plugin must not take the agent down.
                reason = f"{type(exc).__name__}: {exc}"
                logger.exception("device %s failed", device.device_id)
            now = self.clock()
            self.metrics.device_status(device.device_id, device.type, False)
            self.metrics.device_reconnect(device.device_id)
            self.feed(DeviceDown(device_id=device.device_id, line=ALL_LINES, at=now, reason=reason))
            if opened_at is not None and (now - opened_at).total_seconds() > DEVICE_STABLE_SECONDS:
                delay = BACKOFF_START
            logger.info("device %s: reopening in %.1f s", device.device_id, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    def feed(self, event: LineEvent) -> None:
        """Route one line event to its line's tracker (``"*"`` goes to every line of the device)."""
        self.metrics.line_event(event.device_id, event.kind)
        device = self.devices.get(event.device_id)
        if device is None:
            logger.warning("event from unknown device %s dropped: %s", event.device_id, event.kind)
            return
        if isinstance(event, LineError):
            logger.warning("device %s line %s: %s: %r", event.device_id, event.line, event.error, event.raw)
            return
        if event.line == ALL_LINES:
            targets = [line for (dev, _), line in self.lines.items() if dev == event.device_id]
        else:
            targets = [self._line(device, event.line)]
        now = self.clock()
        for line in targets:
            self._emit(line, line.tracker.feed(event, now))
        self._wake.set()

    def dialable_lines(self) -> list[str]:
        """The ids of the lines whose device can dial (click-to-dial is offered on these)."""
        return [
            line.tracker.identity.line
            for (device_id, _), line in self.lines.items()
            if self.devices[device_id].can_dial
        ]

    async def dial(self, line_id: str, number: str) -> None:
        """Dial ``number`` on the line ``line_id`` (its ``[[lines]]`` id), through the line's device.

        :raises LookupError: there is no such line.
        :raises DeviceError: the device cannot dial, is not open, or failed to.
        """
        for (device_id, port), line in self.lines.items():
            if line.tracker.identity.line == line_id:
                device = self.devices[device_id]
                if not device.can_dial:
                    raise DeviceError(f"{device_id}: a {device.type} device cannot dial")
                logger.info("device %s line %s: dialing", device_id, line_id)
                await device.dial(port, number)
                return
        raise LookupError(f"no line {line_id!r}")

    async def _ticker(self) -> None:
        while True:
            deadlines = [d for line in self.lines.values() if (d := line.tracker.deadline()) is not None]
            if self.rep_state is not None and (rep_deadline := self.rep_state.deadline()) is not None:
                deadlines.append(rep_deadline)
            timeout = 1.0
            if deadlines:
                timeout = max(0.0, min(timeout, (min(deadlines) - self.clock()).total_seconds()))
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that lands as the
            # wake-up completes (a device going down as the agent stops), and the ticker then
            # runs on and holds the shutdown forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            now = self.clock()
            for line in self.lines.values():
                deadline = line.tracker.deadline()
                if deadline is not None and deadline <= now:
                    self._emit(line, line.tracker.tick(now))
            if self.rep_state is not None:
                self._rep_changed(self.rep_state.tick(now))

    def _emit(self, line: _Line, events: list[CallEvent]) -> None:
        for event in events:
            line.queue.put_nowait(event)
        self._publish_status(line)

    def _publish_status(self, line: _Line) -> None:
        tracker = line.tracker
        call = tracker.call
        key = (tracker.state, call.uuid if call else None)
        if key == line.last_status:
            return
        line.last_status = key
        ident = tracker.identity
        line.queue.put_nowait(
            LineStatus(
                seat=ident.seat,
                line=ident.line,
                device_id=ident.device_id,
                rep=ident.rep,
                team=ident.team,
                state=tracker.state,
                since=tracker.state_since or self.clock(),
                call_uuid=call.uuid if call else None,
            )
        )

    # -- per line: enrich in order, then fan out ----------------------------------

    async def _run_line(self, line: _Line) -> None:
        while True:
            message = await line.queue.get()
            try:
                if isinstance(message, _LookupDone):
                    late = self._lookup_done(line, message)
                    if late is not None:
                        self._fan_out(late)
                    continue
                if isinstance(message, CallEvent):
                    message = await self._enrich(line, message)
                    if message.kind is CallEventKind.IDENTIFIED:
                        # From the tracker seeing the number to the seat page being handed it.
                        self.metrics.pop_latency(max(0.0, (self.clock() - message.at).total_seconds()))
                self._fan_out(message)
            finally:
                line.queue.task_done()

    async def _enrich(self, line: _Line, event: CallEvent) -> CallEvent:
        """The event with the customer known so far; starts the lookup once the number is known.

        The pop is two-phase: ``identified`` goes out at once with the number,
        and when the lookup answers a second ``identified`` carries the
        customer (see :meth:`_lookup_done`). ``ended`` waits for a lookup still
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
            task = asyncio.create_task(self._lookup(call), name=f"lookup:{uuid}")
            line.lookups[uuid] = task
            task.add_done_callback(lambda done: line.queue.put_nowait(_LookupDone(uuid, done)))
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

    def _lookup_done(self, line: _Line, done: _LookupDone) -> CallEvent | None:
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

    async def _lookup(self, call: Call) -> Customer | None:
        assert call.number_raw is not None
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(
                asyncio.to_thread(
                    self.pm.hook.lookup_customer, number_e164=call.number_e164, number_raw=call.number_raw
                ),
                self.config.agent.lookup_timeout,
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

    def _fan_out(self, message: Message) -> None:
        for pipe in self._pipes:
            pipe.queue.put_nowait(message)
        if isinstance(message, CallEvent) and self.rep_state is not None:
            # After the call event, so every observer sees the call move before the rep does.
            self._rep_changed(self.rep_state.feed(message, self.clock()))

    def _rep_changed(self, change: RepStateChange | None) -> None:
        if change is not None:
            self._fan_out(change)
            self._wake.set()  # a wrap-up may have started: its end is a new deadline

    # -- the rep's state, chosen on the seat page -------------------------------------

    async def choose_rep_state(self, state: str, reason: str | None) -> dict[str, Any]:
        """The rep chose a state on the seat page (see :meth:`agent.repstate.RepState.choose`).

        Returns the state now, once every observer has the change (so storage
        has stored it and the page's snapshot shows it), or after
        :data:`REP_STATE_STORE_SECONDS` (storage is then still retrying).

        :raises ValueError: the seat has no rep, or the state cannot be chosen now.
        """
        if self.rep_state is None:
            raise ValueError("rep state is not tracked on this seat")
        change = self.rep_state.choose(state, reason, self.clock())
        if change is not None:
            self._rep_changed(change)
            handled = [pipe.handled(change) for pipe in self._pipes]
            if handled:
                _, waiting = await asyncio.wait(handled, timeout=REP_STATE_STORE_SECONDS)
                if waiting:
                    logger.warning(
                        "rep state %s of %s not stored yet; answering anyway", change.state, change.rep
                    )
        return self.rep_state.snapshot()

    # -- nothing lost: the spool ------------------------------------------------

    def _spool(self) -> Spool:
        return Spool(self.config.agent.data_dir)

    def _spool_unwritten(self) -> None:
        """Spool what the database did not take, in the space reserved at start (see agent.seat.spool)."""
        pipe = next((p for p in self._pipes if p.observer.must_deliver), None)
        if pipe is None:
            return
        latest: dict[str, CallEvent] = {}
        rep_changes: list[RepStateChange] = []
        for message in pipe.pending():
            if isinstance(message, CallEvent):
                latest[message.call.uuid] = message
            elif isinstance(message, RepStateChange):
                rep_changes.append(message)  # every one: each closes the state before it
        # Calls first, into the space reserved for them; rep states after, as room allows.
        self._spool_calls(latest)
        if rep_changes:
            self._spool_rep_states(rep_changes)

    def _spool_rep_states(self, changes: list[RepStateChange]) -> None:
        rep_path = self.config.agent.data_dir / REP_SPOOL_NAME
        try:
            _append_lines(rep_path, [change.to_dict() for change in changes])
        except OSError as exc:
            # Statistics of the rep's day, not calls: lost loudly rather than failing the shutdown.
            logger.error(
                "%d rep-state change(s) could not be spooled to %s (%s): lost", len(changes), rep_path, exc
            )
            return
        logger.error(
            "the database could not take %d rep-state change(s); kept in %s for the next start",
            len(changes),
            rep_path,
        )

    def _spool_calls(self, latest: dict[str, CallEvent]) -> None:
        if not latest:
            return
        spool = self._spool()
        earlier = spool.lines()  # what the last start could not write either
        lines = [*earlier, *(json.dumps(e.to_dict(), ensure_ascii=False) for e in latest.values())]
        lost = spool.write(lines)
        if lost:
            self.spool_lost = lost
            logger.error(
                "the database could not take %d call(s) and %d spooled line(s) did not fit in %s: lost",
                len(latest),
                lost,
                spool.path,
            )
            return
        logger.error(
            "the database could not take %d call(s); kept in %s for the next start", len(latest), spool.path
        )

    async def _replay_spool(self) -> None:
        spool = self._spool()
        lines = await asyncio.to_thread(spool.lines)
        if lines:
            await self._replay_lines(spool, lines)
        # Room for the next shutdown's spool, taken while the disk has some.
        await asyncio.to_thread(spool.reserve)
        storage = next(p for p in self._pipes if p.observer.must_deliver)
        changes = await _replay_file(
            self.config.agent.data_dir / REP_SPOOL_NAME, storage.observer, RepStateChange.from_dict
        )
        if changes is not None:
            logger.info("wrote %d spooled rep-state change(s) from the last run", changes)

    async def _replay_lines(self, spool: Spool, lines: list[str]) -> None:
        storage = next(p for p in self._pipes if p.observer.must_deliver)
        kept: list[str] = []
        replayed = 0
        for number, text in enumerate(lines, start=1):
            try:
                event = CallEvent.from_dict(json.loads(text))
            except (ValueError, KeyError, TypeError) as exc:
                logger.error("%s:%d: unreadable spooled call kept aside: %s", spool.path, number, exc)
                kept.append(text)
                continue
            try:
                await storage.observer.notify(event)
                replayed += 1
            except Rejected as exc:
                # Spooled by the last run, refused again now: its tries are spent, park it.
                if not await storage._park(event, exc, refusals=PARK_AFTER):
                    kept.append(text)
            except Exception as exc:
                logger.error("spooled call %s still cannot be written: %s", event.call.uuid, exc)
                kept.append(text)
        await asyncio.to_thread(spool.replace, kept)
        logger.info("wrote %d spooled call(s) from the last run", replayed)

    def _close_open_calls(self) -> None:
        """End the calls a run that died left open (blocking: call it from a worker thread).

        At start no device runs yet, so no open row is a call in progress. A
        database error is logged: the rows stay open for the next start to close.
        """
        if self.engine is None:
            return
        try:
            with Session(self.engine) as session, session.begin():
                close_open_calls(
                    session, now=self.clock(), seat=self.config.agent.seat, run_started=self._run_started
                )
        except SQLAlchemyError as exc:
            logger.error("cannot close the calls the last run left open: %s", exc)


def _append_lines(path: Path, records: list[dict[str, Any]]) -> None:
    """Append JSON lines to a spool file and fsync it (the agent is stopping: nothing may be lost)."""
    with path.open("a", encoding="utf-8") as spool:
        for record in records:
            spool.write(json.dumps(record, ensure_ascii=False) + "\n")
        spool.flush()
        os.fsync(spool.fileno())


async def _replay_file(
    path: Path,
    storage: Observer,
    parse: Callable[[dict[str, Any]], Message],
) -> int | None:
    """Hand every line of a spool file to storage; keep what fails. None when there is no file."""
    if not path.exists():
        return None
    kept: list[str] = []
    replayed = 0
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            message = parse(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("%s:%d: unreadable spooled line kept aside: %s", path, number, exc)
            kept.append(text)
            continue
        try:
            await storage.notify(message)
            replayed += 1
        except Exception as exc:
            what = f"call {message.call.uuid}" if isinstance(message, CallEvent) else "rep-state change"
            logger.error("spooled %s still cannot be written: %s", what, exc)
            kept.append(text)
    if kept:
        path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    else:
        path.unlink()
    return replayed
