"""The screen-pop, stage by stage: a caller ID entering the runtime → its SSE frame in a client process.

The agent runs as in production (SQLite, customers imported, storage, metrics, plugin hooks,
the seat page's HTTP server); caller IDs come from an in-process device (a real Device
class, registered the way a plugin's is), one line at a time or eight at once. The SSE
client is a separate Python process reading ``/events`` over a socket, so it does not
share the agent's GIL; it stamps each ``identified`` frame with the monotonic clock,
which the agent's process shares (``time.perf_counter`` is CLOCK_MONOTONIC on Linux).

Stages (each a share of the whole, p50 and p99 in ms):

- ``device → tracker``: the event handed by the device task to the runtime's ``feed``;
- ``tracker → line task``: the line's task taking the event, enriching it, fanning it out;
- ``line task → bus``: the screen-pop bus publishing the frame to subscribers;
- ``bus → SSE write``: the event stream handing the frame to the server's transport;
- ``SSE write → client``: the client process reading it from its socket.

Run: .venv/bin/python tests/bench/bench_pop.py [--calls 200] [--lines 1 8]

Prints figures, not pass/fail. A browser adds its event dispatch and render after the
last stage (bench_screenpop.py measures through Chromium).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session

from agent.config import load_config
from agent.events import CallerId, CallEvent, CallEventKind, LineEvent, Message, OnHook
from agent.plugins import make_plugin_manager
from agent.seat.devices import Device, DeviceRegistry
from agent.seat.runner import Agent
from agent.seat.web import app as seat_app
from storage.customers import import_customers, read_rows
from storage.db import make_engine, upgrade

STAGES = (
    "device → tracker",
    "tracker → line task",
    "line task → bus",
    "bus → SSE write",
    "SSE write → client",
)

CLIENT = textwrap.dedent(
    """
    import json, socket, sys, time
    port = int(sys.argv[1])
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /events HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nAccept: text/event-stream\\r\\n\\r\\n")
    out = sys.stdout
    buffer = b""
    event = b""
    print("ready", flush=True)
    while True:
        data = sock.recv(65536)
        now = time.perf_counter()
        if not data:
            break
        buffer += data
        *lines, buffer = buffer.split(b"\\n")
        for line in lines:
            if line.startswith(b"event:"):
                event = line[6:].strip()
            elif line.startswith(b"data:") and event == b"call":
                frame = json.loads(line[5:])
                call = frame["call"]
                if frame["kind"] == "identified" and call["number_raw"] and not call.get("customer_id"):
                    out.write(f"{call['number_raw']} {now}\\n")
                    out.flush()
    """
)


class PopInjector(Device):
    """Emits whatever the benchmark puts in its queue, on any line label."""

    type = "pop-bench-injector"
    reports_hook = True
    queue: ClassVar[asyncio.Queue[LineEvent]]

    async def events(self) -> AsyncIterator[LineEvent]:  # type: ignore[override]
        while True:
            yield await PopInjector.queue.get()


def number_of(message: Message) -> str | None:
    if isinstance(message, CallEvent) and message.kind is CallEventKind.IDENTIFIED:
        call = message.call
        if call.customer_id is None:
            return call.number_raw
    return None


def instrument(agent: Agent, stamps: dict[str, dict[str, float]]) -> None:
    """Stamp each caller ID's first passage through feed, fan-out, bus publish and the SSE write."""
    feed, fan_out, publish = agent.feed, agent._fan_out, agent.bus.publish

    def timed_feed(event: LineEvent) -> None:
        if isinstance(event, CallerId) and event.number:
            stamps.setdefault(event.number, {}).setdefault("tracker", time.perf_counter())
        feed(event)

    def timed_fan_out(message: Message) -> None:
        number = number_of(message)
        if number is not None:
            stamps.setdefault(number, {}).setdefault("line", time.perf_counter())
        fan_out(message)

    def timed_publish(message: Message) -> int:
        number = number_of(message)
        if number is not None:
            stamps.setdefault(number, {}).setdefault("bus", time.perf_counter())
        return publish(message)

    agent.feed = timed_feed  # type: ignore[method-assign]
    agent._fan_out = timed_fan_out  # type: ignore[method-assign]
    agent.bus.publish = timed_publish  # type: ignore[method-assign]
    stream = seat_app.EventStreamResponse._stream

    async def timed_stream(self: Any, send: Any) -> None:
        async def timed_send(message: dict[str, Any]) -> None:
            # Stamped as the frame is handed to the server (after the await, the client
            # process may already have read it).
            body = message.get("body", b"")
            if b'"identified"' in body:
                now = time.perf_counter()
                for chunk in body.split(b'"number_raw":"')[1:]:
                    stamps.setdefault(chunk.split(b'"')[0].decode(), {}).setdefault("write", now)
            await send(message)

        await stream(self, timed_send)

    seat_app.EventStreamResponse._stream = timed_stream  # type: ignore[method-assign]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def report(
    lines: int, sent: dict[str, float], stamps: dict[str, dict[str, float]], seen: dict[str, float]
) -> None:
    keys = ("sent", "tracker", "line", "bus", "write", "client")
    spans: list[list[float]] = [[] for _ in STAGES]
    totals: list[float] = []
    for number, at in sent.items():
        marks = {"sent": at, **stamps.get(number, {})}
        if number in seen:
            marks["client"] = seen[number]
        if not all(k in marks for k in keys):
            continue
        times = [marks[k] for k in keys]
        for index in range(len(STAGES)):
            spans[index].append((times[index + 1] - times[index]) * 1000)
        totals.append((times[-1] - times[0]) * 1000)
    if not totals:
        print(f"{lines} line(s): no call went all the way")
        return
    whole = sum(totals)
    print(
        f"{lines} line(s) ringing at once, {len(totals)} pops: total p50 {statistics.median(totals):.2f} ms, "
        f"p99 {pct(totals, 99):.2f} ms, max {max(totals):.2f} ms"
    )
    for name, values in zip(STAGES, spans, strict=True):
        print(
            f"  {name:<22} {100 * sum(values) / whole:5.1f} %   p50 {statistics.median(values):6.2f} ms"
            f"   p99 {pct(values, 99):6.2f} ms"
        )


async def run(calls: int, line_counts: list[int]) -> None:
    PopInjector.queue = asyncio.Queue()
    with tempfile.TemporaryDirectory() as data:
        engine = make_engine(f"sqlite:///{Path(data) / 'cti-agent.db'}")
        upgrade(engine)
        source = Path(data) / "callers.csv"
        with source.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["name", "phone"])
            writer.writerows([f"caller {n}", f"1390{n:07d}"] for n in range(calls * max(line_counts) + 50))
        _, rows = read_rows(source)
        with Session(engine) as session, session.begin():
            import_customers(session, rows)
        engine.dispose()
        pm = make_plugin_manager(load_entrypoints=False)
        registry = DeviceRegistry.from_plugins(pm)
        registry.add(PopInjector, "bench")
        config = load_config(
            None,
            registry,
            overrides={
                "agent": {"seat": "bench", "rep": "rep01", "data_dir": data},
                "web": {"listen": "127.0.0.1:0"},
                "metrics": {"listen": "127.0.0.1:0"},
                "devices": [{"id": "inj", "type": PopInjector.type}],
            },
        )
        agent = Agent(config, pm, devices=registry, registry=CollectorRegistry())
        stamps: dict[str, dict[str, float]] = {}
        instrument(agent, stamps)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        await agent.started.wait()
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CLIENT, str(agent.web_port), stdout=subprocess.PIPE
        )
        assert client.stdout is not None
        assert (await client.stdout.readline()).strip() == b"ready"
        seen: dict[str, float] = {}

        async def read_client() -> None:
            assert client.stdout is not None
            async for line in client.stdout:
                number, at = line.decode().split()
                seen.setdefault(number, float(at))

        reader = asyncio.create_task(read_client())
        await asyncio.sleep(0.5)
        serial = 0
        try:
            for lines in line_counts:
                sent: dict[str, float] = {}
                for _ in range(calls):
                    batch = []
                    for line in range(1, lines + 1):
                        number = f"1390{serial:07d}"
                        serial += 1
                        batch.append(number)
                        sent[number] = time.perf_counter()
                        PopInjector.queue.put_nowait(
                            CallerId(device_id="inj", line=str(line), at=datetime.now(UTC), number=number)
                        )
                    deadline = time.monotonic() + 5
                    while not all(n in seen for n in batch) and time.monotonic() < deadline:
                        await asyncio.sleep(0.005)
                    await asyncio.sleep(0.03)  # the customer's late frame and the storage writes
                    for line in range(1, lines + 1):
                        PopInjector.queue.put_nowait(
                            OnHook(device_id="inj", line=str(line), at=datetime.now(UTC))
                        )
                    await asyncio.sleep(0.05)
                report(lines, sent, stamps, seen)
        finally:
            client.terminate()
            await client.wait()
            reader.cancel()
            stop.set()
            await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200, help="rounds per line count")
    parser.add_argument("--lines", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.lines))


if __name__ == "__main__":
    main()
