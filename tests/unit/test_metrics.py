"""Metrics on a fresh registry: ended calls counted, line state from the collector, no numbers in labels."""

from __future__ import annotations

import re
import tomllib
import warnings
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError

from agent.config import Config, DailyTarget, TargetsSection
from agent.events import (
    Absence,
    Call,
    CallEvent,
    CallEventKind,
    Direction,
    Disposition,
    LineState,
    LineStatus,
)
from agent.seat.metrics import TALK_BUCKETS, Metrics, make_metrics_app
from agent.seat.observers import Observer, PluginErrorCounter

with warnings.catch_warnings():
    # Starlette 1.x warns once at import that it prefers httpx2 for its test client.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SEAT = "seat-7"


def make_call(
    *,
    uuid: str = "c1",
    rep: str = "alice",
    team: str = "north",
    direction: Direction = Direction.IN,
    disposition: Disposition | None = Disposition.ANSWERED,
    ring: float | None = 5.0,
    talk: float | None = 75.0,
    number: str | None = "13812345678",
    name: str | None = "Zhang San",
) -> Call:
    answered = disposition is Disposition.ANSWERED
    return Call(
        uuid=uuid,
        seat=SEAT,
        device_id="modem0",
        line="L1",
        rep=rep,
        team=team,
        direction=direction,
        started_at=T0,
        number_raw=number,
        number_e164=f"+86{number}" if number else None,
        cid_name=name,
        answered_at=T0 + timedelta(seconds=ring or 0) if answered else None,
        ended_at=T0 + timedelta(seconds=(ring or 0) + (talk or 0)),
        ring_seconds=ring,
        talk_seconds=talk if answered else None,
        disposition=disposition,
        customer_id=42,
        customer_name="Acme Trading Co",
    )


def ended(call: Call) -> CallEvent:
    return CallEvent(CallEventKind.ENDED, call, call.ended_at or T0)


def status(line: str, state: LineState, since: datetime, *, rep: str = "alice") -> LineStatus:
    return LineStatus(
        seat=SEAT, line=line, device_id="modem0", rep=rep, team="north", state=state, since=since
    )


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry, seat=SEAT, effective_call_seconds=60.0)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_metrics_is_an_observer_and_an_error_counter(metrics: Metrics) -> None:
    assert isinstance(metrics, Observer)
    assert metrics.name == "metrics"
    assert metrics.must_deliver is False
    counter: PluginErrorCounter = metrics  # the runtime hands it to notify_each as the error counter
    counter.plugin_error("crm_http", "call_ended")
    assert value(metrics.registry, "cti_plugin_errors_total", plugin="crm_http", hook="call_ended") == 1


async def test_only_ended_calls_are_counted(metrics: Metrics, registry: CollectorRegistry) -> None:
    call = make_call(talk=75.0, ring=5.0)
    for kind in (CallEventKind.STARTED, CallEventKind.IDENTIFIED, CallEventKind.ANSWERED):
        await metrics.notify(CallEvent(kind, replace(call, ended_at=None), T0))
    labels = {"rep": "alice", "team": "north", "direction": "in"}
    assert not value(registry, "cti_calls_total", **labels, disposition="answered")

    await metrics.notify(ended(call))
    assert value(registry, "cti_calls_total", **labels, disposition="answered") == 1
    assert value(registry, "cti_talk_seconds_total", **labels) == 75.0
    assert value(registry, "cti_ring_seconds_total", **labels) == 5.0
    assert value(registry, "cti_effective_calls_total", **labels) == 1
    owner = {"rep": "alice", "team": "north"}  # the talk-time histogram has no direction
    assert value(registry, "cti_call_talk_seconds_count", **owner) == 1
    assert value(registry, "cti_call_talk_seconds_sum", **owner) == 75.0


async def test_counters_by_rep_direction_and_disposition(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    calls = [
        make_call(uuid="a", talk=30.0),
        make_call(uuid="b", disposition=Disposition.MISSED, ring=20.0, talk=None),
        make_call(uuid="c", direction=Direction.OUT, disposition=Disposition.ABANDONED, ring=12.0, talk=None),
        make_call(uuid="d", rep="bob", direction=Direction.OUT, talk=200.0, ring=8.0),
        make_call(uuid="e", disposition=None, ring=None, talk=None),
    ]
    for call in calls:
        await metrics.notify(ended(call))

    alice_in = {"rep": "alice", "team": "north", "direction": "in"}
    alice_out = {**alice_in, "direction": "out"}
    bob_out = {"rep": "bob", "team": "north", "direction": "out"}
    assert value(registry, "cti_calls_total", **alice_in, disposition="answered") == 1
    assert value(registry, "cti_calls_total", **alice_in, disposition="missed") == 1
    assert value(registry, "cti_calls_total", **alice_in, disposition="unknown") == 1  # no disposition
    assert value(registry, "cti_calls_total", **alice_out, disposition="abandoned") == 1
    assert value(registry, "cti_calls_total", **bob_out, disposition="answered") == 1
    # Ring time counts for every ended call that rang (or dialed); talk time only for answered ones.
    assert value(registry, "cti_ring_seconds_total", **alice_in) == 25.0
    assert value(registry, "cti_ring_seconds_total", **alice_out) == 12.0
    assert value(registry, "cti_talk_seconds_total", **alice_in) == 30.0
    assert value(registry, "cti_talk_seconds_total", **alice_out) == 0.0
    assert value(registry, "cti_talk_seconds_total", **bob_out) == 200.0
    # A missed or abandoned call is not a talk-time observation.
    assert value(registry, "cti_call_talk_seconds_count", rep="alice", team="north") == 1
    assert value(registry, "cti_call_talk_seconds_count", rep="bob", team="north") == 1
    total = sum(
        value(registry, "cti_calls_total", rep=rep, team="north", direction=d.value, disposition=disp.value)
        or 0
        for rep in ("alice", "bob")
        for d in Direction
        for disp in Disposition
    )
    assert total == len(calls)


@pytest.mark.parametrize(
    ("threshold", "talk", "effective"),
    [(60.0, 60.0, 1), (60.0, 59.9, 0), (60.0, 3600.0, 1), (10.0, 12.0, 1), (10.0, 9.0, 0), (0.0, 0.0, 1)],
)
async def test_effective_call_threshold(threshold: float, talk: float, effective: int) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, seat=SEAT, effective_call_seconds=threshold)
    await metrics.notify(ended(make_call(talk=talk)))
    labels = {"rep": "alice", "team": "north", "direction": "in"}
    assert value(registry, "cti_effective_calls_total", **labels) == effective


async def test_unanswered_calls_are_never_effective(metrics: Metrics, registry: CollectorRegistry) -> None:
    # A tracker oddity (talk time on a missed call) must not count as an effective call.
    odd = replace(make_call(disposition=Disposition.MISSED), talk_seconds=300.0)
    await metrics.notify(ended(odd))
    labels = {"rep": "alice", "team": "north", "direction": "in"}
    assert value(registry, "cti_effective_calls_total", **labels) == 0
    assert value(registry, "cti_talk_seconds_total", **labels) == 0


async def test_talk_histogram_uses_telesales_buckets(metrics: Metrics, registry: CollectorRegistry) -> None:
    for n, talk in enumerate((8.0, 45.0, 75.0, 75.0, 1000.0, 5000.0)):
        direction = Direction.OUT if n % 2 else Direction.IN  # one histogram for both directions
        await metrics.notify(ended(make_call(uuid=str(n), talk=talk, direction=direction)))
    labels = {"rep": "alice", "team": "north"}
    buckets = {
        le: value(registry, "cti_call_talk_seconds_bucket", **labels, le=str(float(le)))
        for le in TALK_BUCKETS
    }
    assert buckets == {
        10: 1,
        30: 1,
        60: 2,
        120: 4,
        180: 4,
        300: 4,
        600: 4,
        900: 4,
        1800: 5,
        3600: 5,
    }
    assert value(registry, "cti_call_talk_seconds_bucket", **labels, le="+Inf") == 6
    assert value(registry, "cti_call_talk_seconds_count", **labels) == 6
    assert value(registry, "cti_call_talk_seconds_sum", **labels) == 6203.0


async def test_call_series_exist_at_zero_once_a_rep_is_seen(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    # Prometheus' increase() misses a series' first sample; starting at 0 makes the first call count.
    await metrics.notify(status("L1", LineState.IDLE, T0, rep="carol"))
    for direction in Direction:
        labels = {"rep": "carol", "team": "north", "direction": direction.value}
        for disposition in Disposition:
            assert value(registry, "cti_calls_total", **labels, disposition=disposition.value) == 0
        assert value(registry, "cti_talk_seconds_total", **labels) == 0
        assert value(registry, "cti_effective_calls_total", **labels) == 0


async def test_no_phone_number_or_name_in_any_label(metrics: Metrics, registry: CollectorRegistry) -> None:
    numbers = ["13812345678", "02161234567", "4155550100", "+8613912345678"]
    names = ["Zhang San", "Li Si", "Acme Trading Co"]
    for n, number in enumerate(numbers):
        call = make_call(uuid=f"u{n}", number=number.lstrip("+"), name=names[n % 2])
        await metrics.notify(CallEvent(CallEventKind.STARTED, replace(call, ended_at=None), T0))
        await metrics.notify(ended(call))
    await metrics.notify(ended(replace(make_call(uuid="w", number=None), absence=Absence.PRIVATE)))
    await metrics.notify(
        LineStatus(SEAT, "L1", "modem0", "alice", "north", LineState.TALKING, T0, call_uuid="u1")
    )
    metrics.device_status("modem0", "hayes", True)
    metrics.line_event("modem0", "caller_id")
    metrics.line_event("modem0", "error")

    seen = 0
    for family in registry.collect():
        for sample in family.samples:
            for label_value in sample.labels.values():
                seen += 1
                assert not re.search(r"\d{7,}", label_value), (sample.name, label_value)
                for secret in [*numbers, *names, "u1", "+86"]:
                    assert secret not in label_value, (sample.name, label_value)
    assert seen > 50  # the check looked at real series
    text = generate_latest(registry).decode()
    for secret in [*numbers, *names]:
        assert secret not in text


async def test_line_state_collector(metrics: Metrics, registry: CollectorRegistry) -> None:
    talking_since = T0 + timedelta(minutes=3)
    await metrics.notify(status("L1", LineState.RINGING, T0))
    await metrics.notify(status("L1", LineState.TALKING, talking_since))
    await metrics.notify(status("L2", LineState.IDLE, T0, rep="bob"))

    l1 = {"seat": SEAT, "line": "L1", "rep": "alice", "team": "north"}
    l2 = {"seat": SEAT, "line": "L2", "rep": "bob", "team": "north"}
    assert line_states(registry) == {("L1", "talking"): 1.0, ("L2", "idle"): 1.0}
    assert value(registry, "cti_line_state", **l1, state="talking") == 1
    assert value(registry, "cti_line_state", **l2, state="idle") == 1
    assert value(registry, "cti_line_call_started_timestamp_seconds", **l1) == talking_since.timestamp()
    assert value(registry, "cti_line_call_started_timestamp_seconds", **l2) == 0

    await metrics.notify(status("L1", LineState.DOWN, T0 + timedelta(minutes=5)))
    assert line_states(registry) == {("L1", "down"): 1.0, ("L2", "idle"): 1.0}
    assert value(registry, "cti_line_call_started_timestamp_seconds", **l1) == 0


def line_states(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """Every cti_line_state series: one per line, its state in the label."""
    found: dict[tuple[str, str], float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "cti_line_state":
                key = (sample.labels["line"], sample.labels["state"])
                assert key not in found
                found[key] = sample.value
    return found


def test_device_up_gauge(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.device_status("modem0", "hayes", True)
    metrics.device_status("ncid1", "ncid", False)
    assert value(registry, "cti_device_up", seat=SEAT, device="modem0", type="hayes") == 1
    assert value(registry, "cti_device_up", seat=SEAT, device="ncid1", type="ncid") == 0
    metrics.device_status("modem0", "hayes", False)
    assert value(registry, "cti_device_up", seat=SEAT, device="modem0", type="hayes") == 0


def test_error_and_event_counters(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.plugin_error("crm_http", "lookup_customer")
    metrics.plugin_error("crm_http", "lookup_customer")
    metrics.plugin_error("notify_desktop", "call_started")
    metrics.observer_error("storage")
    metrics.line_event("modem0", "ring")
    metrics.line_event("modem0", "ring")
    metrics.line_event("modem0", "error")
    metrics.device_reconnect("modem0")
    metrics.queue_depth("storage", 7)
    metrics.queue_depth("storage", 3)

    assert value(registry, "cti_plugin_errors_total", plugin="crm_http", hook="lookup_customer") == 2
    assert value(registry, "cti_plugin_errors_total", plugin="notify_desktop", hook="call_started") == 1
    assert value(registry, "cti_observer_errors_total", observer="storage") == 1
    assert value(registry, "cti_line_events_total", device="modem0", kind="ring") == 2
    assert value(registry, "cti_line_events_total", device="modem0", kind="error") == 1
    assert value(registry, "cti_device_reconnects_total", device="modem0") == 1
    assert value(registry, "cti_observer_queue_depth", observer="storage") == 3


async def test_metrics_never_touch_the_default_registry() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    a = Metrics(first, seat="a")
    Metrics(second, seat="b")  # a second agent in the same process must not clash
    await a.notify(ended(make_call()))
    labels = {"rep": "alice", "team": "north", "direction": "in", "disposition": "answered"}
    assert first.get_sample_value("cti_calls_total", labels) == 1
    assert second.get_sample_value("cti_calls_total", labels) is None
    assert prometheus_client.REGISTRY.get_sample_value("cti_calls_total", labels) is None


async def test_metrics_app_serves_metrics_only_at_metrics(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    await metrics.notify(ended(make_call()))
    await metrics.notify(status("L1", LineState.IDLE, T0))
    with TestClient(make_metrics_app(registry)) as client:
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert 'cti_calls_total{direction="in",disposition="answered",rep="alice",team="north"} 1.0' in (
            response.text
        )
        assert 'cti_line_state{line="L1",rep="alice",seat="seat-7",state="idle",team="north"} 1.0' in (
            response.text
        )
        assert client.get("/").status_code == 404
        assert client.get("/metrics/extra").status_code == 404
        assert client.post("/metrics").status_code == 405


# -- daily targets, latency histograms -------------------------------------------------


def targets_config(text: str) -> TargetsSection:
    return Config.model_validate(tomllib.loads(text)).targets


TARGETS_TOML = """
[targets]
calls = 80
talk_seconds = 7200
[targets.teams.north]
calls = 100
effective_calls = 30
[targets.reps.bob]
talk_seconds = 9000.5
"""


def test_targets_section_layers_rep_over_team_over_defaults() -> None:
    targets = targets_config(TARGETS_TOML)
    assert targets.for_rep("alice", "north") == DailyTarget(calls=100, talk_seconds=7200, effective_calls=30)
    assert targets.for_rep("bob", "north") == DailyTarget(calls=100, talk_seconds=9000.5, effective_calls=30)
    assert targets.for_rep("carol", "south") == DailyTarget(calls=80, talk_seconds=7200)
    assert Config().targets.for_rep("x", "y") == DailyTarget()


@pytest.mark.parametrize(
    "text", ["[targets]\ncalls = -1\n", "[targets]\nquota = 5\n", "[targets.reps.bob]\ncall = 3\n"]
)
def test_targets_section_rejects_bad_values(text: str) -> None:
    with pytest.raises(ValidationError):
        targets_config(text)


async def test_target_gauges_for_every_rep_seen(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry, seat=SEAT, targets=targets_config(TARGETS_TOML))
    assert value(registry, "cti_target_calls", rep="alice", team="north") is None  # not seen yet
    await metrics.notify(status("L1", LineState.IDLE, T0))
    await metrics.notify(ended(make_call(rep="bob")))
    await metrics.notify(ended(make_call(rep="carol", team="south")))
    assert value(registry, "cti_target_calls", rep="alice", team="north") == 100
    assert value(registry, "cti_target_effective_calls", rep="alice", team="north") == 30
    assert value(registry, "cti_target_talk_seconds", rep="bob", team="north") == 9000.5
    assert value(registry, "cti_target_calls", rep="carol", team="south") == 80
    # No target of a kind: no series (Grafana then shows no target line rather than a 0 quota).
    assert value(registry, "cti_target_effective_calls", rep="carol", team="south") is None


def test_no_target_source_exports_no_target_series(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.line_status(status("L1", LineState.IDLE, T0))
    assert not [s for f in registry.collect() for s in f.samples if s.name.startswith("cti_target_")]


def test_latency_histograms_and_threshold_gauge(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry, seat=SEAT, effective_call_seconds=45.0)
    for seconds in (0.004, 0.03, 0.2, 0.2, 3.0, -0.1):
        metrics.pop_latency(seconds)
    metrics.lookup_latency(0.02)
    metrics.lookup_latency(0.6)
    assert value(registry, "cti_screen_pop_latency_seconds_count") == 6
    assert value(registry, "cti_screen_pop_latency_seconds_bucket", le="0.005") == 2  # the negative is 0
    assert value(registry, "cti_screen_pop_latency_seconds_bucket", le="0.25") == 5
    assert value(registry, "cti_screen_pop_latency_seconds_sum") == pytest.approx(3.434)
    assert value(registry, "cti_lookup_latency_seconds_bucket", le="0.025") == 1
    assert value(registry, "cti_lookup_latency_seconds_bucket", le="1.0") == 2
    assert value(registry, "cti_effective_call_threshold_seconds") == 45.0


def test_only_allowed_label_names(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry, seat=SEAT, targets=targets_config(TARGETS_TOML))
    metrics.line_status(status("L1", LineState.TALKING, T0))
    metrics.call_ended(make_call())
    metrics.device_status("modem0", "hayes", True)
    metrics.plugin_error("crm_http", "lookup_customer")
    metrics.observer_error("storage")
    metrics.line_event("modem0", "ring")
    metrics.device_reconnect("modem0")
    metrics.queue_depth("storage", 1)
    metrics.pop_latency(0.1)
    allowed = {"rep", "team", "seat", "line", "direction", "disposition", "state"}
    allowed |= {"device", "type", "kind", "observer", "plugin", "hook", "le", "reason"}
    names = {name for f in registry.collect() for s in f.samples for name in s.labels}
    assert names <= allowed
    assert {"rep", "team", "direction", "disposition", "state", "device", "plugin"} <= names


def test_reconnect_counter_exists_at_zero_once_a_device_reports(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    assert value(registry, "cti_device_reconnects_total", device="modem0") is None
    metrics.device_status("modem0", "hayes", True)
    assert value(registry, "cti_device_reconnects_total", device="modem0") == 0


def test_metrics_counts_what_the_recorder_reports(metrics: Metrics, registry: CollectorRegistry) -> None:
    from agent.seat.recorder import RecordingCounters

    assert isinstance(metrics, RecordingCounters)  # make_recorder hands the recorder this object
    # Every known reason is there at 0 before the first problem (for increase() and the alerts).
    for reason in ("disk_full", "io_error", "device_lost", "device_open", "database"):
        assert value(registry, "cti_recording_errors_total", reason=reason) == 0
    for reason in ("short", "silent", "one_sided"):
        assert value(registry, "cti_recording_suspect_total", reason=reason) == 0
    assert value(registry, "cti_recording_missing_total") == 0
    metrics.recording_bytes(48_000)
    metrics.recording_bytes(2_000)
    metrics.recording_error("disk_full")
    metrics.recording_error("disk_full")
    metrics.recording_overrun()
    metrics.recording_missing()
    metrics.recording_suspect("silent")
    assert value(registry, "cti_recording_bytes_total") == 50_000
    assert value(registry, "cti_recording_errors_total", reason="disk_full") == 2
    assert value(registry, "cti_recording_errors_total", reason="io_error") == 0
    assert value(registry, "cti_recording_overruns_total") == 1
    assert value(registry, "cti_recording_missing_total") == 1
    assert value(registry, "cti_recording_suspect_total", reason="silent") == 1


def test_rep_state_is_one_gauge_per_state_and_time_is_counted_on_leaving(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    from agent.repstate import RepStateSink

    assert isinstance(metrics, RepStateSink)
    metrics.rep_state("rep01", "paused", "meeting")
    assert value(registry, "cti_rep_state", rep="rep01", state="paused") == 1
    assert value(registry, "cti_rep_state", rep="rep01", state="available") == 0
    metrics.rep_state_seconds("rep01", "paused", 120.0)
    metrics.rep_state("rep01", "available", None)
    assert value(registry, "cti_rep_state", rep="rep01", state="paused") == 0
    assert value(registry, "cti_rep_state", rep="rep01", state="available") == 1
    assert value(registry, "cti_rep_state_seconds_total", rep="rep01", state="paused") == 120.0
    text = generate_latest(registry).decode()
    assert "meeting" not in text  # a pause reason is stored, never a label


def test_the_oldest_recording_is_a_timestamp_gauge(metrics: Metrics, registry: CollectorRegistry) -> None:
    assert value(registry, "cti_recording_oldest_timestamp_seconds") == 0
    made = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    metrics.recording_oldest(made)
    assert value(registry, "cti_recording_oldest_timestamp_seconds") == made.timestamp()
    metrics.recording_oldest(None)  # everything purged
    assert value(registry, "cti_recording_oldest_timestamp_seconds") == 0


def test_sync_metrics(metrics: Metrics, registry: CollectorRegistry) -> None:
    from agent.seat.sync import SyncMetrics

    assert isinstance(metrics, SyncMetrics)
    assert value(registry, "cti_sync_errors_total", kind="database") == 0
    metrics.sync_backlog(42)
    metrics.sync_error("database")
    metrics.sync_succeeded(1_800_000_000.0)
    assert value(registry, "cti_sync_backlog") == 42
    assert value(registry, "cti_sync_errors_total", kind="database") == 1
    assert value(registry, "cti_sync_last_success_timestamp_seconds") == 1_800_000_000.0
