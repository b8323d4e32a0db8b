"""crm_http against a real local HTTP server: it answers, it is slow, it is down; the pop never waits."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from prometheus_client import CollectorRegistry
from test_screenpop import Feeder, collect

from agent.config import load_config
from agent.events import CallerId, OffHook, OnHook
from agent.plugins import make_plugin_manager
from agent.seat.devices import DeviceRegistry
from agent.seat.runner import Agent
from plugins import crm_http
from plugins.crm_http.client import CrmHttp, urllib_fetch
from plugins.crm_http.config import CrmHttpConfig


class Crm(BaseHTTPRequestHandler):
    delay: ClassVar[float] = 0.0
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Crm.hits.append(self.path)
        time.sleep(Crm.delay)
        if "13812345678" not in self.path:
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps({"contact": {"name": "王<script>alert(1)</script>", "company": "CRM Co"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Crm.delay = 0.0
    Crm.hits = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Crm)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client(base: str, **options: Any) -> CrmHttp:
    config = CrmHttpConfig.model_validate(
        {"url": base + "/contacts?phone={e164}", "result": "contact", **options}
    )
    return CrmHttp(config, fetch=urllib_fetch)


def test_real_server_found_and_not_found(server: str) -> None:
    crm = client(server)
    found = crm.lookup_customer(number_e164="+8613812345678", number_raw="13812345678")
    assert found is not None
    assert (found.name, found.company, found.source) == ("王<script>alert(1)</script>", "CRM Co", "crm_http")
    assert crm.lookup_customer(number_e164="+8613900000000", number_raw="13900000000") is None
    assert Crm.hits == ["/contacts?phone=%2B8613812345678", "/contacts?phone=%2B8613900000000"]


def test_slow_server_times_out(server: str) -> None:
    Crm.delay = 1.0
    crm = client(server, timeout=0.2, retry_after=60)
    started = time.monotonic()
    assert crm.lookup_customer(number_e164="+8613812345678", number_raw="13812345678") is None
    assert time.monotonic() - started < 0.9
    started = time.monotonic()
    assert crm.lookup_customer(number_e164="+8613812345678", number_raw="13812345678") is None
    assert time.monotonic() - started < 0.05  # not asked again while it is failing


def test_server_down_fails_fast() -> None:
    crm = client(f"http://127.0.0.1:{free_port()}", timeout=2)
    started = time.monotonic()
    assert crm.lookup_customer(number_e164="+8613812345678", number_raw="13812345678") is None
    assert time.monotonic() - started < 1.0


def make_agent(tmp_path: Path, base: str, timeout: float) -> Agent:
    pm = make_plugin_manager(load_entrypoints=False)
    if pm.get_plugin("crm_http") is None:
        pm.register(crm_http, name="crm_http")
    registry = DeviceRegistry.from_plugins(pm)
    registry.add(Feeder, "test")
    config = load_config(
        None,
        registry,
        overrides={
            "agent": {"seat": "s1", "rep": "rep01", "data_dir": str(tmp_path), "lookup_timeout": 5},
            "web": {"enabled": False},
            "metrics": {"enabled": False},
            "devices": [{"id": "dev", "type": "feeder"}],
            "plugins": {
                "crm_http": {"url": base + "/contacts?phone={e164}", "result": "contact", "timeout": timeout}
            },
        },
    )
    return Agent(config, pm, devices=registry, registry=CollectorRegistry())


@pytest.mark.parametrize(
    ("delay", "timeout", "expected"), [(0.0, 2.0, "王<script>alert(1)</script>"), (1.5, 0.5, None)]
)
async def test_the_pop_never_waits_for_the_crm(
    tmp_path: Path, server: str, delay: float, timeout: float, expected: str | None
) -> None:
    Feeder.queue = asyncio.Queue()
    Crm.delay = delay
    agent = make_agent(tmp_path, server, timeout)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await asyncio.wait_for(agent.started.wait(), 10)
        with agent.bus.subscribe() as sub:
            sent = time.monotonic()
            Feeder.queue.put_nowait(
                CallerId(device_id="dev", line="1", at=datetime.now(UTC), number="13812345678")
            )
            first = await collect(sub, lambda p: p["kind"] == "identified")
            assert time.monotonic() - sent < 0.3
            assert first[-1]["call"]["number_raw"] == "13812345678"
            await asyncio.sleep(delay + 0.3)
            Feeder.queue.put_nowait(OffHook(device_id="dev", line="1", at=datetime.now(UTC)))
            Feeder.queue.put_nowait(OnHook(device_id="dev", line="1", at=datetime.now(UTC)))
            rest = await collect(sub, lambda p: p["kind"] == "ended")
            assert rest[-1]["call"]["customer_name"] == expected
            assert rest[-1]["call"]["customer_id"] is None
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
