"""The asyncio runtime: devices → trackers → observers, with back-off and an orderly shutdown.

This module owns the seat's tasks and their order of start and shutdown; each room it
wires together lives and is tested on its own:

- one task per device: open it, read its events, and on failure report
  ``device_down`` to its lines, back off, and open it again (here);
- one tracker per line, fed synchronously (it is pure), plus one ticker task
  that wakes at the earliest tracker deadline (here);
- one task per line that enriches call events in order (:mod:`agent.seat.lines`:
  customer lookup in a worker thread, bounded by ``[agent] lookup_timeout``) and hands them on;
- the rep's state (:class:`agent.repstate.RepState`, pure like the trackers),
  fed every call event and ticked by the same ticker; its changes go out
  through the same fan-out as call events;
- one queue and task per observer (:mod:`agent.seat.pipe`), so a slow or failing observer
  never holds up another; storage retries with back-off and parks what the database refuses;
- what is still unwritten at shutdown is spooled, and written first at the next start
  (:mod:`agent.seat.unwritten`); a start then ends the calls a crash left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pluggy
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from agent.calls import CallTracker, LineIdentity
from agent.config import Config, device_options, parse_listen
from agent.errors import AgentError, DeviceError
from agent.events import (
    ALL_LINES,
    Call,
    CallEvent,
    CallEventKind,
    LineError,
    LineEvent,
    LineStatus,
    Message,
    RecordingFacts,
    RepStateChange,
)
from agent.repstate import RepState
from agent.seat.centre_services import CentreServices
from agent.seat.device_loop import keep_open
from agent.seat.devices import Device, DeviceRegistry
from agent.seat.lines import CallEnricher, Line, LookupDone
from agent.seat.listeners import Listeners
from agent.seat.metrics import Metrics, make_metrics_app
from agent.seat.observers import HookObserver, Observer, configure_plugins, notify_each
from agent.seat.pipe import ObserverPipe, utcnow
from agent.seat.recorder import Recorder, make_recorder
from agent.seat.spool import SPOOL_NAME as SPOOL_NAME  # re-exported: tests and tools name the spool by it
from agent.seat.sync import SyncLoop, make_sync
from agent.seat.unwritten import replay_spool, spool_unwritten
from agent.seat.web.app import make_seat_app
from agent.seat.web.bus import SeatBus
from agent.seat.web.context import SeatContext
from agent.seat.web.login import HASH_FILE_NAME, SeatLogin
from agent.web.guard import allowed_hosts
from storage.db import make_engine, upgrade
from storage.observer import PARKED_NAME, ParkedCalls, StorageObserver
from storage.plugin import SqlStore
from storage.recordings import RecordingStore
from storage.repository import close_open_calls, seat_calls_since

logger = logging.getLogger(__name__)

SHUTDOWN_DRAIN_SECONDS = 10.0
#: How long the seat page waits for a rep-state change to be stored before it answers anyway.
REP_STATE_STORE_SECONDS = 5.0


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
        self.bus = SeatBus(
            rep_state=self.rep_state.snapshot() if self.rep_state is not None else None,
            region=self.config.agent.region,
        )
        # The lookup's worker thread starts once the number is on its way to the page (two-phase pop).
        self.enricher = CallEnricher(
            pm, self.metrics, timeout=config.agent.lookup_timeout, clock=clock, gate=self.bus.sent
        )
        self.engine: Engine | None = None
        self.devices: dict[str, Device] = {}
        self.lines: dict[tuple[str, str], Line] = {}
        self.started = asyncio.Event()
        self.web_port: int | None = None
        self.metrics_port: int | None = None
        self._pipes: list[ObserverPipe] = []
        self._wake = asyncio.Event()
        self._line_tasks: list[asyncio.Task[None]] = []
        self.listeners = Listeners()
        self.recorder: Recorder | None = None
        self.sync: SyncLoop | None = None
        self.centre_services = CentreServices(config, pm)
        self.storage: StorageObserver | None = None
        #: Calls the shutdown could write neither to the database nor to the spool (then run() raises).
        self.spool_lost = 0
        self._run_started: datetime | None = None
        #: When the dead run last wrote each recovered recording (see close_open_calls).
        self._audio_until: dict[str, datetime] = {}

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
        # The seat bus is not among them: the line tasks publish to it first (see _fan_out).
        observers: list[Observer] = [
            storage,
            self.metrics,
            HookObserver(self.pm, self.metrics),
        ]
        # The recorder: repair what a crash left, then record from call events (see agent.seat.recorder).
        self.recorder = make_recorder(
            self.config, self.engine, self.devices, self.metrics, on_finished=self._recording_finished
        )
        if self.recorder is not None:
            recovered = await asyncio.to_thread(self.recorder.recover)
            self._audio_until = {f.call_uuid: f.audio_until for f in recovered if f.audio_until is not None}
            self.recorder.start()
            await asyncio.to_thread(self._refresh_oldest_recording)
            observers.append(self.recorder)
        # Team mode: replay the local outbox to the centre (see agent.seat.sync).
        self.sync = make_sync(self.config, self.engine, self.metrics)
        if self.sync is not None:
            observers.append(self.sync)
            self.sync.start()
        self.centre_services.start(
            self.recorder.subscribe_live if self.recorder is not None else None, self.engine
        )
        # What takes the GIL for milliseconds (database writes in a worker thread, plugin hooks,
        # the outbox) waits until the seat page's streams have the pop; metrics and the
        # recorder (whose start must not lose audio) do not wait.
        self._pipes = [
            ObserverPipe(
                observer,
                self.metrics,
                parking=storage if observer is storage else None,
                clock=self.clock,
                gate=None if observer is self.metrics or observer is self.recorder else self.bus.sent,
            )
            for observer in observers
        ]
        await replay_spool(self._pipes, self.config.agent.data_dir)
        await asyncio.to_thread(self._close_open_calls)
        await asyncio.to_thread(self._seed_page)
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
            asyncio.create_task(
                keep_open(device, self.feed, self.metrics, self.clock), name=f"device:{device_id}"
            )
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
            done, _ = await asyncio.wait(
                [stopped, *self.listeners.tasks], return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task is not stopped and task.exception() is not None:
                    raise AgentError(f"{task.get_name()} failed: {task.exception()}")
        finally:
            stopped.cancel()
            await self._shutdown(device_tasks, ticker, pipe_tasks)

    def _open_database(self) -> Engine:
        url = self.config.database_url
        engine = make_engine(url)
        upgrade(engine)
        return engine

    async def _start_servers(self) -> None:
        """Start the seat page and metrics listeners; a port already taken is a clear error."""
        if self.config.web.enabled:
            app = make_seat_app(self.seat_context())
            self.web_port = await self.listeners.start("seat page", self.config.web.listen, app)
        if self.config.metrics.enabled:
            exporter = make_metrics_app(self.registry)
            self.metrics_port = await self.listeners.start("metrics", self.config.metrics.listen, exporter)

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
            team_calls=self.centre_services.team_calls,
            region=self.config.agent.region,
            worklist=self.centre_services.worklist,
            ownership=self.centre_services.ownership,
            do_not_call=self.centre_services.do_not_call,
            wake_sync=self.sync.wake if self.sync is not None else None,
        )

    async def _shutdown(
        self,
        device_tasks: list[asyncio.Task[None]],
        ticker: asyncio.Task[None] | None,
        pipe_tasks: list[asyncio.Task[None]],
    ) -> None:
        await self.centre_services.stop()
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
        self.spool_lost = spool_unwritten(self._pipes, self.config.agent.data_dir)
        # Close the event streams first, so the servers need not wait them out.
        self.bus.close()
        await self.listeners.stop()
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

    def _line(self, device: Device, port: str) -> Line:
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
                reports_hook=device.reports_hook,
                reports_connect=device.reports_connect,
                reports_end=device.reports_end,
            )
            line = Line(CallTracker(identity, tracker_config, now=self.clock()), device.type)
            self.lines[key] = line
            self._line_tasks.append(asyncio.create_task(self._run_line(line), name=f"line:{section.id}"))
            self._publish_status(line)
            problem = self.config.line_problem(device.device_id, port)
            if problem is not None:
                # The label cannot be an id as it is: its calls go on a derived one, and this says so.
                self.feed(LineError(device_id=device.device_id, line=port, at=self.clock(), error=problem))
        return line

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

    def _emit(self, line: Line, events: list[CallEvent]) -> None:
        for event in events:
            line.queue.put_nowait(event)
        self._publish_status(line)

    def _publish_status(self, line: Line) -> None:
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

    async def _run_line(self, line: Line) -> None:
        while True:
            message = await line.queue.get()
            try:
                if isinstance(message, LookupDone):
                    late = self.enricher.lookup_done(line, message)
                    if late is not None:
                        self._fan_out(late)
                    continue
                if isinstance(message, CallEvent):
                    message = await self.enricher.enrich(line, message)
                    if message.kind is CallEventKind.IDENTIFIED:
                        # From the tracker seeing the number to the seat page being handed it.
                        self.metrics.pop_latency(max(0.0, (self.clock() - message.at).total_seconds()))
                self._fan_out(message)
            finally:
                line.queue.task_done()

    def _fan_out(self, message: Message) -> None:
        # The seat page first, from this task: the pop goes out before any observer runs.
        try:
            self.bus.publish(message)
        except Exception:
            logger.exception("the seat page's bus failed on a %s; going on", type(message).__name__)
            self.metrics.observer_error(self.bus.name)
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
                    session,
                    now=self.clock(),
                    seat=self.config.agent.seat,
                    run_started=self._run_started,
                    audio_until=self._audio_until,
                )
        except SQLAlchemyError as exc:
            logger.error("cannot close the calls the last run left open: %s", exc)

    def _seed_page(self) -> None:
        """Give the seat page today's calls from the database (blocking: from a worker thread).

        A restarted agent otherwise shows an empty list, and a rep's unsaved
        note (kept by the browser) would have no call to go back to.
        """
        if self.engine is None:
            return
        midnight = self.clock().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
        try:
            with Session(self.engine) as session:
                rows = seat_calls_since(session, seat=self.config.agent.seat, since=midnight.astimezone(UTC))
                calls = []
                for row in rows:
                    try:
                        calls.append(row.to_call())
                    except ValueError as exc:
                        logger.warning("seat page: call %s is not shown after the restart: %s", row.uuid, exc)
        except SQLAlchemyError as exc:
            logger.warning("seat page: cannot read today's calls: %s", exc)
            return
        self.bus.seed(calls)
