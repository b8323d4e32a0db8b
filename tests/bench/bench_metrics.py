"""Metrics exporter cost: scrape time and memory with 1, 50 and 1000 reps; CPU at 100 calls/s.

Run: .venv/bin/python tests/bench/bench_metrics.py

Prints numbers, not pass/fail. A seat has one to a few reps; 1000 reps on one exporter is
the worst case (a gateway exporting a whole floor), not the normal one.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest

from agent.config import TargetsSection
from agent.events import Call, CallEvent, CallEventKind, Direction, Disposition, LineState, LineStatus
from agent.seat.metrics import Metrics

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


def scrape_and_memory() -> None:
    print("reps   series   body KiB   scrape ms (median of 20)   exporter memory KiB")
    for reps in (1, 50, 1000):
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        metrics = populated(reps)
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        memory = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        body = generate_latest(metrics.registry)
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        runs = []
        for _ in range(20):
            started = time.perf_counter()
            generate_latest(metrics.registry)
            runs.append(time.perf_counter() - started)
        print(
            f"{reps:>4}  {series:>7}  {len(body) / 1024:>9.1f}  {statistics.median(runs) * 1000:>25.2f}"
            f"  {memory / 1024:>20.0f}"
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


def main() -> None:
    scrape_and_memory()
    print()
    cpu_under_traffic()


if __name__ == "__main__":
    main()
