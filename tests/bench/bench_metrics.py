"""Metrics exporter cost: scrape time and memory with 1, 50 and 1000 reps; CPU at 100 calls/s.

Run: .venv/bin/python tests/bench/bench_metrics.py

"GET /metrics" is the whole scrape through the exporter's ASGI app with the headers
Prometheus sends (OpenMetrics preferred, gzip); "format" is the text alone, ours
(agent.web.exposition.render) beside prometheus_client's generate_latest on the same registry.

Prints numbers, not pass/fail. A seat has one to a few reps; 1000 reps on one exporter is
the worst case (a gateway exporting a whole floor), not the normal one.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp

from agent.config import TargetsSection
from agent.events import Call, CallEvent, CallEventKind, Direction, Disposition, LineState, LineStatus
from agent.seat.metrics import Metrics, make_metrics_app

try:
    from agent.web.exposition import render
except ImportError:  # an older tree (the "before" figures): prometheus_client's formatter only
    render = None  # type: ignore[assignment]

BASE = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
TARGETS = TargetsSection(calls=80, talk_seconds=7200, effective_calls=30)
DISPOSITIONS = (Disposition.ANSWERED, Disposition.ANSWERED, Disposition.MISSED, Disposition.ABANDONED)


def make_call(n: int, rep: str, at: datetime) -> Call:
    disposition = DISPOSITIONS[n % len(DISPOSITIONS)]
    answered = disposition is Disposition.ANSWERED
    talk = 20.0 + (n * 37) % 400 if answered else None
    return Call(
        uuid=f"c{n}",
        seat="bench",
        device_id="sim",
        line=f"L-{rep}",
        rep=rep,
        team=f"team-{hash(rep) % 8}",
        direction=Direction.IN if n % 3 else Direction.OUT,
        started_at=at,
        answered_at=at + timedelta(seconds=5) if answered else None,
        ended_at=at + timedelta(seconds=5 + (talk or 0)),
        ring_seconds=5.0,
        talk_seconds=talk,
        disposition=disposition,
    )


def populated(reps: int) -> Metrics:
    """An exporter that has seen every rep on a line and a few calls of every kind per rep."""
    metrics = Metrics(CollectorRegistry(), seat="bench", effective_call_seconds=60, targets=TARGETS)
    n = 0
    for r in range(reps):
        rep = f"rep{r:04d}"
        metrics.line_status(
            LineStatus("bench", f"L-{rep}", "sim", rep, f"team-{hash(rep) % 8}", LineState.TALKING, BASE)
        )
        for _ in range(12):
            metrics.call_ended(make_call(n, rep, BASE))
            n += 1
    metrics.device_status("sim", "simulator", True)
    for _ in range(100):
        metrics.pop_latency(0.03)
        metrics.lookup_latency(0.01)
    return metrics


#: What Prometheus 2.x sends with a scrape.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}


def median_ms(run: Callable[[], object], times: int = 20) -> float:
    runs = []
    for _ in range(times):
        started = time.perf_counter()
        run()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs) * 1000


def http_scrape_ms(
    registry: CollectorRegistry, times: int = 20, app: ASGIApp | None = None
) -> tuple[float, int]:
    """Median of GET /metrics through the exporter's ASGI app, as Prometheus asks, and the bytes sent."""
    app = app or make_metrics_app(registry)

    async def scrape() -> tuple[float, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as client:
            runs, size = [], 0
            for _ in range(times):
                started = time.perf_counter()
                response = await client.get("/metrics", headers=PROMETHEUS_HEADERS)
                runs.append(time.perf_counter() - started)
                size = int(response.headers.get("content-length", len(response.content)))
        return statistics.median(runs) * 1000, size

    return asyncio.run(scrape())


def scrape_and_memory() -> None:
    has_render = render is not None
    print(
        "reps   series   body KiB   GET /metrics ms (gzip KiB)   format ms: ours  prometheus_client"
        "   exporter memory KiB"
    )
    for reps in (1, 50, 1000):
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        metrics = populated(reps)
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        memory = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        body = generate_latest(metrics.registry)
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        registry = metrics.registry
        ours = median_ms(functools.partial(render, registry)) if has_render else float("nan")
        theirs = median_ms(functools.partial(generate_latest, registry))
        http_ms, sent = http_scrape_ms(metrics.registry)
        print(
            f"{reps:>4}  {series:>7}  {len(body) / 1024:>9.1f}  {http_ms:>15.2f} ({sent / 1024:>7.1f})"
            f"  {ours:>15.2f}  {theirs:>17.2f}  {memory / 1024:>20.0f}"
        )


async def traffic(calls_per_second: int, seconds: int, reps: int) -> tuple[float, int, int]:
    """CPU seconds spent in the metrics observer for ``seconds`` of traffic, scraped every 15 s."""
    metrics = Metrics(CollectorRegistry(), seat="bench", effective_call_seconds=60, targets=TARGETS)
    messages: list[CallEvent | LineStatus] = []
    for n in range(calls_per_second * seconds):
        rep = f"rep{n % reps:04d}"
        at = BASE + timedelta(seconds=n / calls_per_second)
        call = make_call(n, rep, at)
        team = call.team
        messages.append(LineStatus("bench", call.line, "sim", rep, team, LineState.RINGING, at))
        for kind in (CallEventKind.STARTED, CallEventKind.IDENTIFIED, CallEventKind.ANSWERED):
            messages.append(CallEvent(kind, call, at))
        messages.append(LineStatus("bench", call.line, "sim", rep, team, LineState.TALKING, at))
        messages.append(CallEvent(CallEventKind.ENDED, call, at))
        messages.append(LineStatus("bench", call.line, "sim", rep, team, LineState.IDLE, at))
    per_scrape = calls_per_second * 15 * 7
    scrapes = 0
    started = time.process_time()
    for index, message in enumerate(messages):
        await metrics.notify(message)
        if index % per_scrape == per_scrape - 1:
            generate_latest(metrics.registry)
            scrapes += 1
    metrics.pop_latency(0.02)
    return time.process_time() - started, len(messages), scrapes


def cpu_under_traffic() -> None:
    rate, seconds = 100, 60
    for reps in (4, 50):
        cpu, messages, scrapes = asyncio.run(traffic(rate, seconds, reps))
        print(
            f"{rate} calls/s for {seconds} s ({messages} messages, {scrapes} scrapes, {reps} reps): "
            f"{cpu:.3f} CPU s = {100 * cpu / seconds:.2f}% of one core, "
            f"{1e6 * cpu / messages:.1f} us per message"
        )


def centre_scrape(reps: int = 1000, calls_per_rep: int = 60) -> None:
    """GET /metrics of a centre whose floor has ``reps`` reps with a day of calls each (SQLite file)."""
    import tempfile
    from pathlib import Path

    from sqlalchemy import insert

    from agent.centre.metrics import TeamCollector
    from agent.web import MetricsEndpoint
    from storage.db import make_engine, upgrade
    from storage.models import CallRecord, Seat

    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'centre.db'}")
        upgrade(engine)
        rows = []
        for r in range(reps):
            for n in range(calls_per_rep):
                call = make_call(n, f"rep{r:04d}", now.replace(hour=0, minute=0) + timedelta(seconds=n * 60))
                rows.append(
                    {
                        "uuid": f"{r}-{n}",
                        "seat": f"seat{r:04d}",
                        "device_id": "sim",
                        "line": "L1",
                        "rep": call.rep,
                        "team": call.team,
                        "direction": call.direction.value,
                        "started_at": call.started_at,
                        "answered_at": call.answered_at,
                        "ended_at": call.ended_at,
                        "ring_seconds": call.ring_seconds,
                        "talk_seconds": call.talk_seconds,
                        "disposition": call.disposition.value if call.disposition else None,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
        seats = [
            {"name": f"seat{r:04d}", "team": f"team-{r % 8}", "token_hash": f"{r:064x}", "last_seen_at": now}
            for r in range(reps)
        ]
        with engine.begin() as connection:
            connection.execute(insert(CallRecord), rows)
            connection.execute(insert(Seat), seats)
            connection.exec_driver_sql("ANALYZE")
        for label, max_age in (("database read every scrape", 0.0), ("cached (5 s)", 5.0)):
            registry = CollectorRegistry()
            registry.register(TeamCollector(engine, UTC, 60.0, max_age=max_age))
            app = Starlette(routes=[Route("/metrics", MetricsEndpoint(registry), methods=["GET"])])
            ms, sent = http_scrape_ms(registry, app=app)
            body = render(registry) if render is not None else generate_latest(registry)
            series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
            print(
                f"centre, {reps} reps x {calls_per_rep} calls today, {label}: {series} series, "
                f"GET /metrics {ms:.2f} ms ({sent / 1024:.1f} KiB sent)"
            )
        engine.dispose()


def main() -> None:
    scrape_and_memory()
    print()
    centre_scrape()
    print()
    cpu_under_traffic()


if __name__ == "__main__":
    main()
