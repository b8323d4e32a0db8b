"""Prometheus metrics of one seat: call counters, line state, device health, plugin and observer errors.

Everything goes to a :class:`~prometheus_client.CollectorRegistry` handed in by
the caller (never the process-wide default), so tests and several agents in one
process each see only their own numbers.

Call counters move when a call *ends*, so that at any time they equal the ended
calls in the database and Grafana's sums agree with ``cti-agent report``. Line
and device state is read at scrape time by a custom collector from the latest
:class:`~agent.events.LineStatus` of each line.

Labels are limited to who and what (rep, team, seat, line, device, direction,
disposition, state, observer, plugin, hook): never a phone number or a name
from a caller, which would leak personal data and explode the series count.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.events import (
    Call,
    CallEvent,
    CallEventKind,
    Direction,
    Disposition,
    LineState,
    LineStatus,
    Message,
)

logger = logging.getLogger(__name__)

#: Talk-time buckets for telesales: a 10 s brush-off, a one-minute pitch, a real conversation.
TALK_BUCKETS: tuple[float, ...] = (10, 30, 60, 120, 180, 300, 600, 900, 1800, 3600)

# A call's line is "on a call" in these states; the start-time gauge is 0 otherwise.
_BUSY_STATES = frozenset({LineState.RINGING, LineState.DIALING, LineState.TALKING})


@dataclass(frozen=True, slots=True)
class _DeviceState:
    type: str
    up: bool


class _StateCollector(Collector):
    """Reads line and device state at scrape time, so a stale series never outlives its line's state."""

    def __init__(self, seat: str) -> None:
        self._seat = seat
        self.lines: dict[str, LineStatus] = {}
        self.devices: dict[str, _DeviceState] = {}

    def describe(self) -> Iterable[Metric]:
        """The families this collector exports, without samples (for the registry's name-clash check)."""
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        """Current line states, call start times and device health."""
        state, started, device_up = self._families()
        # Copy first: a scrape served from another thread must not see the dicts change under it.
        for status in list(self.lines.values()):
            labels = [self._seat, status.line, status.rep, status.team]
            for candidate in LineState:
                state.add_metric([*labels, candidate.value], 1.0 if candidate == status.state else 0.0)
            started.add_metric(labels, status.since.timestamp() if status.state in _BUSY_STATES else 0.0)
        for device_id, device in sorted(self.devices.items()):
            device_up.add_metric([self._seat, device_id, device.type], 1.0 if device.up else 0.0)
        return [state, started, device_up]

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "cti_line_state",
                "1 for the state each line is in now, 0 for the others.",
                labels=["seat", "line", "rep", "team", "state"],
            ),
            GaugeMetricFamily(
                "cti_line_call_started_timestamp_seconds",
                "Unix time the line entered its ringing, dialing or talking state; 0 when idle or down.",
                labels=["seat", "line", "rep", "team"],
            ),
            GaugeMetricFamily(
                "cti_device_up",
                "1 while the device is open and working, 0 while it is down.",
                labels=["seat", "device", "type"],
            ),
        )


class Metrics:
    """The seat's metrics: an :class:`agent.observers.Observer` and an error counter for the runtime.

    :param registry: where every metric of this object is registered.
    :param seat: this seat's name, a label of the line and device state series.
    :param effective_call_seconds: an answered call with at least this much talk
        time counts in ``cti_effective_calls_total`` (the quota that matters in telesales).
    """

    name = "metrics"
    must_deliver = False

    def __init__(
        self, registry: CollectorRegistry, *, seat: str, effective_call_seconds: float = 60.0
    ) -> None:
        self.registry = registry
        self.seat = seat
        self.effective_call_seconds = effective_call_seconds
        call_labels = ["rep", "team", "direction"]
        self.calls = Counter(
            "cti_calls",
            "Ended calls by disposition.",
            [*call_labels, "disposition"],
            registry=registry,
        )
        self.talk_seconds = Counter(
            "cti_talk_seconds", "Talk time of ended calls, in seconds.", call_labels, registry=registry
        )
        self.ring_seconds = Counter(
            "cti_ring_seconds",
            "Ring (or dialing) time of ended calls, in seconds.",
            call_labels,
            registry=registry,
        )
        self.effective_calls = Counter(
            "cti_effective_calls",
            "Answered calls whose talk time reached the effective-call threshold.",
            call_labels,
            registry=registry,
        )
        self.talk_histogram = Histogram(
            "cti_call_talk_seconds",
            "Talk time of answered calls, in seconds.",
            call_labels,
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
        self._state = _StateCollector(seat)
        registry.register(self._state)
        self._known_owners: set[tuple[str, str]] = set()

    async def notify(self, message: Message) -> None:
        """Count an ended call, or remember a line's new state."""
        if isinstance(message, CallEvent):
            if message.kind is CallEventKind.ENDED:
                self.call_ended(message.call)
        elif isinstance(message, LineStatus):
            self.line_status(message)

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
            self.talk_histogram.labels(*labels).observe(talk)
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
            self.talk_histogram.labels(*labels)


class _MetricsEndpoint:
    """An ASGI endpoint class (not a function) so Starlette's ``Route`` hands it the raw ASGI call."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._app = make_asgi_app(registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def make_metrics_app(registry: CollectorRegistry) -> ASGIApp:
    """An ASGI app serving ``registry`` at ``/metrics`` (GET or HEAD) and 404 on every other path.

    ``prometheus_client.make_asgi_app`` answers every path with the metrics and
    fails on lifespan messages, so it is mounted behind a one-route Starlette router.
    """
    return Starlette(routes=[Route("/metrics", _MetricsEndpoint(registry), methods=["GET", "HEAD"])])
