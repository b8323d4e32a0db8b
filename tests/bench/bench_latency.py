"""End-to-end latency: a caller-ID event entering the runtime → its SSE message reaching a client.

The device is an in-process injector (a real Device class, registered the way a
plugin's would be), so the path measured is the production one: runtime →
tracker → per-line enrichment (customer lookup in SQLite) → observer queue →
seat bus → HTTP server → a client in another thread reading the stream.

Run: .venv/bin/python tests/bench/bench_latency.py [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx

from agent.config import load_config
from agent.events import CallerId, LineEvent, OffHook, OnHook
from agent.plugins import make_plugin_manager
from agent.seat.devices import Device, DeviceRegistry
from agent.seat.runner import Agent


class Injector(Device):
    """Emits whatever the benchmark puts in its queue."""

    type = "bench-injector"
    reports_hook = True
    queue: asyncio.Queue[LineEvent]

    async def __aenter__(self) -> Injector:
        self.queue = asyncio.Queue()
        Injector.current = self
        return self

    async def events(self) -> AsyncIterator[LineEvent]:  # type: ignore[override]
        while True:
            yield await self.queue.get()


def client(port: int, received: dict[str, float], ready: threading.Event, done: threading.Event) -> None:
    with (
        httpx.Client(timeout=None) as http,
        http.stream("GET", f"http://127.0.0.1:{port}/events") as response,
    ):
        ready.set()
        event = ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "call":
                data = json.loads(line[5:])
                if data["kind"] == "identified" and data["call"]["number_raw"]:
                    received.setdefault(data["call"]["number_raw"], time.perf_counter())
            if done.is_set():
                return


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def main(calls: int) -> None:
    with tempfile.TemporaryDirectory() as data:
        pm = make_plugin_manager(load_entrypoints=False)
        registry = DeviceRegistry.from_plugins(pm)
        registry.add(Injector, "bench")
        config = load_config(
            None,
            registry,
            overrides={
                "agent": {"seat": "bench", "data_dir": data},
                "web": {"listen": "127.0.0.1:0"},
                "metrics": {"listen": "127.0.0.1:0"},
                "devices": [{"id": "inj", "type": "bench-injector"}],
            },
        )
        agent = Agent(config, pm, devices=registry)
        stop = asyncio.Event()
        run = asyncio.create_task(agent.run(stop))
        await agent.started.wait()
        while not hasattr(Injector, "current"):
            await asyncio.sleep(0.01)
        received: dict[str, float] = {}
        ready, done = threading.Event(), threading.Event()
        thread = threading.Thread(target=client, args=(agent.web_port, received, ready, done), daemon=True)
        thread.start()
        await asyncio.to_thread(ready.wait)
        await asyncio.sleep(0.3)
        sent: dict[str, float] = {}
        device = Injector.current
        for n in range(calls):
            number = f"1390000{n:04d}"
            now = datetime.now(UTC)
            sent[number] = time.perf_counter()
            device.queue.put_nowait(CallerId(device_id="inj", line="1", at=now, number=number, name="Bench"))
            await asyncio.sleep(0.01)
            device.queue.put_nowait(OffHook(device_id="inj", line="1", at=datetime.now(UTC)))
            device.queue.put_nowait(OnHook(device_id="inj", line="1", at=datetime.now(UTC)))
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + 10
        while len(received) < calls and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        done.set()
        stop.set()
        await run
    latencies = [(received[n] - t) * 1000 for n, t in sent.items() if n in received]
    print(f"caller ID → SSE client: {len(latencies)}/{calls} calls received")
    print(
        f"  p50 {statistics.median(latencies):.2f} ms, p99 {pct(latencies, 99):.2f} ms, "
        f"max {max(latencies):.2f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    asyncio.run(main(parser.parse_args().calls))
