"""Prometheus metrics of one seat: call counters, line state, device health, plugin and observer errors.

Everything goes to a :class:`~prometheus_client.CollectorRegistry` handed in by
the caller (never the process-wide default), so tests and several agents in one
process each see only their own numbers.

Call counters move when a call *ends*, so that at any time they equal the ended
calls in the database and Grafana's sums agree with ``cti-agent report``. Line
and device state is read at scrape time by a custom collector from the latest
:class:`~agent.events.LineStatus` of each line.

Labels are limited to who and what (rep, team, seat, line, device, direction,
disposition, state, observer, plugin, hook, and a recording problem's fixed
``reason``): never a phone number or a name
from a caller, which would leak personal data and explode the series count.

Restarts and seat moves. Counters live in the agent's memory and start again at
0 when it restarts. Prometheus' ``increase()`` and ``rate()`` treat any drop of
a counter as a reset and add the value after the drop, so a day's increase
stays right across a restart; only what was counted between the last scrape and
the restart is lost (at most one scrape interval of calls; ``cti-agent report``
reads the database and loses nothing). Each seat is its own scrape target, so a
rep who works on two seats in a day has two sets of series (different
``instance``/``seat``); ``sum by (rep) (increase(...))`` adds them, and nothing
ever subtracts one seat's counter from another's. Functions over counters must
be applied per series *before* summing (``sum(increase(x))``, never
``increase(sum(x))``), or a restart on one seat would look like a reset of all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp

from agent.events import (
    Call,
    CallEvent,
    CallEventKind,
    Direction,
    Disposition,
    LineState,
    LineStatus,
    Message,
    RepStateChange,
)
from agent.repstate import STATES as REP_STATES
from agent.repstate import count_change
from agent.web import MetricsEndpoint
from agent.web.exposition import (
    CounterFamily,
    HistogramFamily,
    Prefixes,
    RenderedMetric,
    format_value,
    gauge_metric,
    no_created_series,
)

logger = logging.getLogger(__name__)

#: Talk-time buckets for telesales: a 10 s brush-off, a one-minute pitch, a real conversation.
TALK_BUCKETS: tuple[float, ...] = (10, 30, 60, 120, 180, 300, 600, 900, 1800, 3600)

#: Why a recording failed (``cti_recording_errors_total{reason}``), as the recorder reports it.
RECORDING_ERROR_REASONS: tuple[str, ...] = ("disk_full", "io_error", "device_lost", "device_open", "database")
#: Why a finished recording looks wrong (``cti_recording_suspect_total{reason}``).
RECORDING_SUSPECT_REASONS: tuple[str, ...] = ("short", "silent", "one_sided")
#: Kinds of failed sync attempts in team mode (see agent.seat.sync). ``database`` and
#: ``recording_store`` were the direct-database mode's; kept at 0 so existing alerts find the series.
SYNC_ERROR_KINDS: tuple[str, ...] = ("database", "recording_store", "centre", "credential", "parked", "local")

#: Screen-pop and lookup latency buckets, in seconds: a pop must feel instant (< 0.25 s).
LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# A call's line is "on a call" in these states; the start-time gauge is 0 otherwise.
_BUSY_STATES = frozenset({LineState.RINGING, LineState.DIALING, LineState.TALKING})


@dataclass(frozen=True, slots=True)
class _DeviceState:
    type: str
    up: bool


class DailyTargets(Protocol):
    """One rep's daily targets (``agent.config.DailyTarget`` is one); None: no target."""

    @property
    def calls(self) -> int | None: ...  # noqa: D102

    @property
    def talk_seconds(self) -> float | None: ...  # noqa: D102

    @property
    def effective_calls(self) -> int | None: ...  # noqa: D102


class TargetSource(Protocol):
    """Where a rep's targets come from (``agent.config.TargetsSection`` is one)."""

    def for_rep(self, rep: str, team: str) -> DailyTargets:
        """The daily targets of ``rep`` in ``team``."""


class _TargetCollector(Collector):
    """The daily targets of every rep seen on this seat, as gauges (read at scrape time)."""

    _HELP: ClassVar[tuple[tuple[str, str], ...]] = (
        ("cti_target_calls", "Daily target: calls per rep."),
        ("cti_target_talk_seconds", "Daily target: talk time per rep, in seconds."),
        (
            "cti_target_effective_calls",
            "Daily target: effective calls (talk time over the threshold) per rep.",
        ),
    )

    def __init__(self, source: Callable[[], TargetSource | None], owners: set[tuple[str, str]]) -> None:
        self._source = source
        self._owners = owners
        self._prefixes = [Prefixes(name, ("rep", "team")) for name, _ in self._HELP]

    def describe(self) -> Iterable[Metric]:
        """The families this collector exports, without samples."""
        return [Metric(name, documentation, "gauge") for name, documentation in self._HELP]

    def collect(self) -> Iterable[Metric]:
        """One sample per rep and kind of target that has a value."""
        rows: tuple[list[tuple[tuple[str, ...], float]], ...] = ([], [], [])
        source = self._source()
        if source is not None:
            for rep, team in sorted(list(self._owners)):
                target = source.for_rep(rep, team)
                for kind, value in enumerate((target.calls, target.talk_seconds, target.effective_calls)):
                    if value is not None:
                        rows[kind].append(((rep, team), float(value)))
        return [
            gauge_metric(name, documentation, prefixes, kind_rows)
            for (name, documentation), prefixes, kind_rows in zip(
                self._HELP, self._prefixes, rows, strict=True
            )
        ]


class _StateCollector(Collector):
    """Reads line and device state at scrape time, so a stale series never outlives its line's state.

    One ``cti_line_state`` series per line, its ``state`` label the state the line is in now
    (value 1): when the line changes state the old series ends and a new one starts. A line's
    two lines of text are written again only when its status changed since the last scrape.
    """

    _LINE_LABELS = ("seat", "line", "rep", "team")

    def __init__(self, seat: str) -> None:
        self._seat = seat
        self.lines: dict[str, LineStatus] = {}
        self.devices: dict[str, _DeviceState] = {}
        self._state_prefixes = Prefixes("cti_line_state", (*self._LINE_LABELS, "state"))
        self._started_prefixes = Prefixes("cti_line_call_started_timestamp_seconds", self._LINE_LABELS)
        self._device_prefixes = Prefixes("cti_device_up", ("seat", "device", "type"))
        #: line -> (the status last written, its state line, its start-time line)
        self._written: dict[str, tuple[LineStatus, str, str]] = {}

    def describe(self) -> Iterable[Metric]:
        """The families this collector exports, without samples (for the registry's name-clash check)."""
        return [Metric(name, documentation, "gauge") for name, documentation in _STATE_HELP]

    def _rows(self, status: LineStatus) -> tuple[tuple[str, ...], tuple[str, ...], float]:
        labels = (self._seat, status.line, status.rep, status.team)
        started = status.since.timestamp() if status.state in _BUSY_STATES else 0.0
        return (*labels, status.state.value), labels, started

    def _written_lines(self, status: LineStatus) -> tuple[str, str]:
        written = self._written.get(status.line)
        if written is None or written[0] is not status:
            state_labels, labels, started = self._rows(status)
            written = (
                status,
                f"{self._state_prefixes(state_labels)}1.0\n",
                f"{self._started_prefixes(labels)}{format_value(started)}\n",
            )
            self._written[status.line] = written
        return written[1], written[2]

    def collect(self) -> Iterable[Metric]:
        """Current line states, call start times and device health."""
        # Copy first: a scrape served from another thread must not see the dicts change under it.
        statuses = list(self.lines.values())
        lines = [self._written_lines(status) for status in statuses]
        rows = [self._rows(status) for status in statuses]
        (state_name, state_help), (started_name, started_help), (device_name, device_help) = _STATE_HELP

        def state_samples() -> list[Sample]:
            names = self._state_prefixes.labelnames
            return [Sample(state_name, dict(zip(names, r[0], strict=True)), 1.0) for r in rows]

        def started_samples() -> list[Sample]:
            names = self._started_prefixes.labelnames
            return [Sample(started_name, dict(zip(names, r[1], strict=True)), r[2]) for r in rows]

        devices = [
            ((self._seat, device_id, device.type), 1.0 if device.up else 0.0)
            for device_id, device in sorted(self.devices.items())
        ]
        return [
            RenderedMetric(
                state_name,
                state_help,
                "gauge",
                text=lambda: "".join([state for state, _ in lines]),
                samples=state_samples,
            ),
            RenderedMetric(
                started_name,
                started_help,
                "gauge",
                text=lambda: "".join([started for _, started in lines]),
                samples=started_samples,
            ),
            gauge_metric(device_name, device_help, self._device_prefixes, devices),
        ]


_STATE_HELP: tuple[tuple[str, str], ...] = (
    (
        "cti_line_state",
        "1, one series per line: its state label is the state the line is in now "
        "(idle, ringing, dialing, talking, down).",
    ),
    (
        "cti_line_call_started_timestamp_seconds",
        "Unix time the line entered its ringing, dialing or talking state; 0 when idle or down.",
    ),
    ("cti_device_up", "1 while the device is open and working, 0 while it is down."),
)


class Metrics:
    """The seat's metrics: an :class:`agent.seat.observers.Observer` and an error counter for the runtime.

    :param registry: where every metric of this object is registered.
    :param seat: this seat's name, a label of the line and device state series.
    :param effective_call_seconds: an answered call with at least this much talk
        time counts in ``cti_effective_calls_total`` (the quota that matters in telesales).
    :param targets: the daily targets exported for every rep seen on this seat
        (``config.targets``); None exports no ``cti_target_*`` series.
    """

    name = "metrics"
    must_deliver = False

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        seat: str,
        effective_call_seconds: float = 60.0,
        targets: TargetSource | None = None,
    ) -> None:
        no_created_series()
        self.registry = registry
        self.seat = seat
        self.effective_call_seconds = effective_call_seconds
        call_labels = ["rep", "team", "direction"]
        # The per-rep series are most of a floor exporter's scrape: they keep their text rendered
        # (agent.web.exposition), so 1000 reps scrape in milliseconds, not most of a second.
        self.calls = CounterFamily(
            "cti_calls",
            "Ended calls by disposition.",
            [*call_labels, "disposition"],
            registry=registry,
        )
        self.talk_seconds = CounterFamily(
            "cti_talk_seconds", "Talk time of ended calls, in seconds.", call_labels, registry=registry
        )
        self.ring_seconds = CounterFamily(
            "cti_ring_seconds",
            "Ring (or dialing) time of ended calls, in seconds.",
            call_labels,
            registry=registry,
        )
        self.effective_calls = CounterFamily(
            "cti_effective_calls",
            "Answered calls whose talk time reached the effective-call threshold.",
            call_labels,
            registry=registry,
        )
        # Without direction: the dashboards read its quantiles over both, and it is 11 buckets a series.
        self.talk_histogram = HistogramFamily(
            "cti_call_talk_seconds",
            "Talk time of answered calls (both directions), in seconds.",
            ["rep", "team"],
            buckets=TALK_BUCKETS,
            registry=registry,
        )
        self.observer_errors = Counter(
            "cti_observer_errors", "Messages an observer failed to handle.", ["observer"], registry=registry
        )
        self.plugin_errors = Counter(
            "cti_plugin_errors",
            "Exceptions raised by plugins, by hook.",
            ["plugin", "hook"],
            registry=registry,
        )
        self.line_events = Counter(
            "cti_line_events",
            "Line events reported by devices (kind 'error' counts undecodable input).",
            ["device", "kind"],
            registry=registry,
        )
        self.device_reconnects = Counter(
            "cti_device_reconnects",
            "Times a device was opened again after going down.",
            ["device"],
            registry=registry,
        )
        self.observer_queue_depth = Gauge(
            "cti_observer_queue_depth",
            "Messages waiting in an observer's queue.",
            ["observer"],
            registry=registry,
        )
        self.pop_latency_seconds = Histogram(
            "cti_screen_pop_latency_seconds",
            "From the first line event of a call to its screen-pop reaching the seat page, in seconds.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.lookup_latency_seconds = Histogram(
            "cti_lookup_latency_seconds",
            "Time the customer lookup hooks took for one call, in seconds (time-outs included).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.recording_bytes_total = Counter(
            "cti_recording_bytes", "Bytes of finished recording files.", registry=registry
        )
        self.recording_errors = Counter(
            "cti_recording_errors",
            "Recordings that failed or stopped early, by reason.",
            ["reason"],
            registry=registry,
        )
        self.recording_overruns = Counter(
            "cti_recording_overruns",
            "Times audio was lost because the device or the writer fell behind.",
            registry=registry,
        )
        self.recording_missing_total = Counter(
            "cti_recording_missing",
            "Calls that should have a recording and have none.",
            registry=registry,
        )
        self.recording_suspects = Counter(
            "cti_recording_suspect",
            "Finished recordings flagged by the completeness checks, by reason.",
            ["reason"],
            registry=registry,
        )
        # The known reasons exist at 0 from the start, so increase() and the alerts see the first one.
        for reason in RECORDING_ERROR_REASONS:
            self.recording_errors.labels(reason)
        for reason in RECORDING_SUSPECT_REASONS:
            self.recording_suspects.labels(reason)
        self.recording_oldest_timestamp = Gauge(
            "cti_recording_oldest_timestamp_seconds",
            "When the oldest recording kept on this seat was made (0: none); its age is time() minus this.",
            registry=registry,
        )
        self.sync_backlog_rows = Gauge(
            "cti_sync_backlog",
            "Calls and recordings waiting to be sent to the central database (team mode).",
            registry=registry,
        )
        self.sync_errors = Counter(
            "cti_sync_errors",
            "Failed attempts to sync with the centre, by kind (centre, credential, parked, local).",
            ["kind"],
            registry=registry,
        )
        self.sync_last_success = Gauge(
            "cti_sync_last_success_timestamp_seconds",
            "When this seat was last fully in sync with the centre (0: never).",
            registry=registry,
        )
        for kind in SYNC_ERROR_KINDS:
            self.sync_errors.labels(kind)
        # Park, don't block (storage.faults): rows set aside instead of holding up the queue.
        self.storage_parked = Gauge(
            "cti_storage_parked",
            "Calls the local database refused for good, kept in parked-calls.jsonl (sync --retry-parked).",
            registry=registry,
        )
        self.sync_parked_rows = Gauge(
            "cti_sync_parked",
            "Outbox entries parked in team mode: the centre refused them or their file is unusable.",
            registry=registry,
        )
        self.rep_state_gauge = Gauge(
            "cti_rep_state",
            "1 for the state the rep is in now (available, on_call, wrap_up, paused), 0 for the others.",
            ["rep", "state"],
            registry=registry,
        )
        self.rep_state_seconds_total = Counter(
            "cti_rep_state_seconds",
            "Seconds reps spent in each state, counted when they leave it.",
            ["rep", "state"],
            registry=registry,
        )
        threshold = Gauge(
            "cti_effective_call_threshold_seconds",
            "Talk time from which an answered call counts as effective.",
            registry=registry,
        )
        threshold.set(effective_call_seconds)
        self._state = _StateCollector(seat)
        registry.register(self._state)
        self._known_owners: set[tuple[str, str]] = set()
        #: Where the ``cti_target_*`` gauges come from; read at every scrape, so it may be replaced.
        self.targets = targets
        registry.register(_TargetCollector(lambda: self.targets, self._known_owners))

    async def notify(self, message: Message) -> None:
        """Count an ended call or a rep-state change, or remember a line's new state."""
        if isinstance(message, CallEvent):
            if message.kind is CallEventKind.ENDED:
                self.call_ended(message.call)
        elif isinstance(message, LineStatus):
            self.line_status(message)
        elif isinstance(message, RepStateChange):
            count_change(self, message)

    def call_ended(self, call: Call) -> None:
        """Count one ended call in the call counters and the talk-time histogram."""
        self._prepare(call.rep, call.team)
        labels = (call.rep, call.team, call.direction.value)
        disposition = call.disposition or Disposition.UNKNOWN
        self.calls.labels(*labels, disposition.value).inc()
        if call.ring_seconds:
            self.ring_seconds.labels(*labels).inc(max(call.ring_seconds, 0.0))
        if disposition is Disposition.ANSWERED:
            talk = max(call.talk_seconds or 0.0, 0.0)
            self.talk_seconds.labels(*labels).inc(talk)
            self.talk_histogram.labels(call.rep, call.team).observe(talk)
            if talk >= self.effective_call_seconds:
                self.effective_calls.labels(*labels).inc()
        elif call.talk_seconds:
            # Only answered calls talk; anything else is a tracker oddity worth seeing in the log.
            logger.debug("call %s ended %s with %.1f s talk time", call.uuid, disposition, call.talk_seconds)

    def line_status(self, status: LineStatus) -> None:
        """Remember the latest state of a line (exported at the next scrape)."""
        self._prepare(status.rep, status.team)
        self._state.lines[status.line] = status

    def device_status(self, device_id: str, type: str, up: bool) -> None:
        """Record whether a device is up (``type`` is its config ``type``)."""
        self._state.devices[device_id] = _DeviceState(type=type, up=up)
        # At 0 from the device's first report, so increase() counts its first reconnect too.
        self.device_reconnects.labels(device_id)

    def observer_error(self, name: str) -> None:
        """Count one message an observer failed to handle."""
        self.observer_errors.labels(name).inc()

    def plugin_error(self, plugin: str, hook: str) -> None:
        """Count one exception raised by ``plugin`` in ``hook`` (see ``PluginErrorCounter``)."""
        self.plugin_errors.labels(plugin, hook).inc()

    def line_event(self, device_id: str, kind: str) -> None:
        """Count one line event of ``kind`` (a :attr:`agent.events.LineEvent.kind`) from a device."""
        self.line_events.labels(device_id, kind).inc()

    def device_reconnect(self, device_id: str) -> None:
        """Count one successful re-open of a device after it went down."""
        self.device_reconnects.labels(device_id).inc()

    def pop_latency(self, seconds: float) -> None:
        """Observe one screen-pop's latency: from the call's first line event to the pop being sent."""
        self.pop_latency_seconds.observe(max(seconds, 0.0))

    def lookup_latency(self, seconds: float) -> None:
        """Observe how long one call's customer lookup took (a lookup that timed out counts its wait)."""
        self.lookup_latency_seconds.observe(max(seconds, 0.0))

    # -- agent.repstate.RepStateSink -------------------------------------------------------

    def rep_state(self, rep: str, state: str, reason: str | None) -> None:
        """The rep is now in ``state`` (the pause reason is stored, not labelled)."""
        for known in REP_STATES:
            self.rep_state_gauge.labels(rep, known).set(1 if known == state else 0)

    def rep_state_seconds(self, rep: str, state: str, seconds: float) -> None:
        """Add the time the rep spent in ``state``."""
        self.rep_state_seconds_total.labels(rep, state).inc(max(seconds, 0.0))

    # -- agent.seat.recorder.RecordingCounters (called from the recorder's writer thread) --

    def recording_bytes(self, n: int) -> None:
        """Count ``n`` bytes of finished recording files."""
        self.recording_bytes_total.inc(max(n, 0))

    def recording_error(self, reason: str) -> None:
        """Count one recording that failed or stopped early for ``reason`` (a short fixed word)."""
        self.recording_errors.labels(reason).inc()

    def recording_overrun(self) -> None:
        """Count one overrun: audio lost because the device or the writer fell behind."""
        self.recording_overruns.inc()

    def recording_missing(self) -> None:
        """Count one call that should have a recording and has none."""
        self.recording_missing_total.inc()

    def recording_suspect(self, reason: str) -> None:
        """Count one recording flagged ``reason`` (``short``, ``silent``, ``one_sided``)."""
        self.recording_suspects.labels(reason).inc()

    # -- agent.seat.sync.SyncMetrics ---------------------------------------------------------

    def sync_backlog(self, rows: int) -> None:
        """``rows`` calls and recordings are waiting to be sent upstream."""
        self.sync_backlog_rows.set(rows)

    def sync_error(self, kind: str) -> None:
        """Count one failed sync attempt of ``kind``."""
        self.sync_errors.labels(kind).inc()

    def sync_parked(self, entries: int) -> None:
        """``entries`` outbox entries are parked."""
        self.sync_parked_rows.set(entries)

    def sync_succeeded(self, timestamp: float) -> None:
        """The seat was in sync at ``timestamp`` (Unix time)."""
        self.sync_last_success.set(timestamp)

    def recording_oldest(self, made_at: datetime | None) -> None:
        """The oldest recording kept now (None: there is none), for the retention-age alert."""
        self.recording_oldest_timestamp.set(made_at.timestamp() if made_at is not None else 0)

    def queue_depth(self, name: str, depth: int) -> None:
        """Set how many messages wait in observer ``name``'s queue."""
        self.observer_queue_depth.labels(name).set(depth)

    def _prepare(self, rep: str, team: str) -> None:
        # Create every call series of a rep at 0 as soon as the rep is seen, so that
        # Prometheus' increase() also counts the first call of the day.
        if (rep, team) in self._known_owners:
            return
        self._known_owners.add((rep, team))
        for direction in Direction:
            labels = (rep, team, direction.value)
            for disposition in Disposition:
                self.calls.labels(*labels, disposition.value)
            self.talk_seconds.labels(*labels)
            self.ring_seconds.labels(*labels)
            self.effective_calls.labels(*labels)
        self.talk_histogram.labels(rep, team)


def make_metrics_app(registry: CollectorRegistry) -> ASGIApp:
    """An ASGI app serving ``registry`` at ``/metrics`` (GET or HEAD) and 404 on every other path.

    ``prometheus_client.make_asgi_app`` answers every path with the metrics and
    fails on lifespan messages, so it is mounted behind a one-route Starlette router.
    """
    return Starlette(routes=[Route("/metrics", MetricsEndpoint(registry), methods=["GET", "HEAD"])])
