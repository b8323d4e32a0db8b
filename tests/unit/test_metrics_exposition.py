"""The fast exposition: the same series as prometheus_client writes, no _created, gzip at /metrics."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.config import TargetsSection
from agent.events import Call, Direction, Disposition, LineState, LineStatus
from agent.seat.metrics import Metrics, make_metrics_app
from agent.web.exposition import CounterFamily, HistogramFamily, render

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def call(n: int, rep: str, *, disposition: Disposition = Disposition.ANSWERED) -> Call:
    talk = 20.0 + n * 37 % 400 if disposition is Disposition.ANSWERED else None
    return Call(
        uuid=f"c{n}",
        seat="s1",
        device_id="d",
        line=f"L-{rep}",
        rep=rep,
        team="north",
        direction=Direction.OUT if n % 2 else Direction.IN,
        started_at=T0,
        answered_at=T0 + timedelta(seconds=4) if talk else None,
        ended_at=T0 + timedelta(seconds=4 + (talk or 0)),
        ring_seconds=4.0,
        talk_seconds=talk,
        disposition=disposition,
    )


def busy_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    metrics = Metrics(
        registry, seat="s1", effective_call_seconds=60, targets=TargetsSection(calls=80, talk_seconds=7200)
    )
    for r, rep in enumerate(("alice", 'o"brien\\x', "李雷")):
        state = (LineState.TALKING, LineState.IDLE, LineState.DOWN)[r]
        metrics.line_status(LineStatus("s1", f"L-{rep}", "d", rep, "north", state, T0))
        for n in range(7):
            metrics.call_ended(call(n, rep, disposition=(Disposition.ANSWERED, Disposition.MISSED)[n % 2]))
    metrics.device_status("d", "simulator", True)
    metrics.pop_latency(0.02)
    metrics.plugin_error("crm_http", "lookup_customer")
    return registry


def series(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in found, key
            found[key] = sample.value
    return found


def families(text: str) -> dict[str, tuple[str, str]]:
    return {f.name: (f.type, f.documentation) for f in text_string_to_metric_families(text)}


def test_render_writes_what_prometheus_client_writes() -> None:
    registry = busy_registry()
    fast = render(registry).decode()
    slow = generate_latest(registry).decode()
    assert series(fast) == series(slow)
    assert families(fast) == families(slow)
    assert len(series(fast)) > 100


def test_no_created_series() -> None:
    registry = busy_registry()
    Counter("cti_other", "A plain prometheus_client counter.", registry=registry).inc()
    assert "_created" not in render(registry).decode()


def test_histogram_counts_are_cumulative_and_count_is_the_inf_bucket() -> None:
    histogram = HistogramFamily("h_seconds", "A histogram.", ["rep"], buckets=(1, 10))
    child = histogram.labels("a")
    for observed in (0.5, 1.0, 3.0, 50.0):
        child.observe(observed)
    registry = CollectorRegistry()
    registry.register(histogram)
    assert registry.get_sample_value("h_seconds_bucket", {"rep": "a", "le": "1.0"}) == 2
    assert registry.get_sample_value("h_seconds_bucket", {"rep": "a", "le": "10.0"}) == 3
    assert registry.get_sample_value("h_seconds_bucket", {"rep": "a", "le": "+Inf"}) == 4
    assert registry.get_sample_value("h_seconds_count", {"rep": "a"}) == 4
    assert registry.get_sample_value("h_seconds_sum", {"rep": "a"}) == 54.5


def test_large_values_are_written_as_go_writes_them() -> None:
    counter = CounterFamily("big", "A big counter.", ["rep"])
    counter.labels("a").inc(12_345_678)
    registry = CollectorRegistry()
    registry.register(counter)
    assert 'big_total{rep="a"} 1.2345678e+07\n' in render(registry).decode()


def test_counter_family_refuses_what_a_counter_refuses() -> None:
    counter = CounterFamily("c", "A counter.", ["rep", "team"])
    with pytest.raises(ValueError, match="go up"):
        counter.labels("a", "b").inc(-1)
    with pytest.raises(ValueError, match="expected labels"):
        counter.labels("a")


def test_metrics_endpoint_gzips_when_asked() -> None:
    registry = busy_registry()
    with TestClient(make_metrics_app(registry)) as client:
        plain = client.get("/metrics", headers={"Accept-Encoding": "identity"})
        assert plain.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "content-encoding" not in plain.headers
        zipped = client.get("/metrics", headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        # httpx undoes the gzip itself: the same text either way
        assert series(zipped.text) == series(plain.text)
        raw = client.head("/metrics", headers={"Accept-Encoding": "gzip"})
        assert raw.status_code == 200
