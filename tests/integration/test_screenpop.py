"""The two-phase pop in the runtime: the number at once, the customer when the lookup answers; dialing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session

from agent import hookimpl
from agent.config import load_config
from agent.errors import DeviceError
from agent.events import Call, CallerId, Customer, LineEvent, OffHook, OnHook
from agent.plugins import make_plugin_manager
from agent.seat.devices import Device, DeviceRegistry
from agent.seat.runner import Agent
from agent.seat.web.bus import Subscription
from storage.models import AuditEntry
from storage.repository import get_call


class Feeder(Device):
    """A device the test feeds through a class-level queue; it can dial."""

    type = "feeder"
    reports_hook = True
    can_dial = True
    queue: ClassVar[asyncio.Queue[LineEvent]]
    dialed: ClassVar[list[tuple[str, str]]] = []
    fail_dial: ClassVar[bool] = False

    async def events(self) -> AsyncIterator[LineEvent]:
        while True:
            yield await Feeder.queue.get()

    async def dial(self, line: str, number: str) -> None:
        if Feeder.fail_dial:
            raise DeviceError(f"{self.device_id}: NO DIALTONE")
        Feeder.dialed.append((line, number))


class Listener(Device):
    """A device that cannot dial."""

    type = "listener"

    async def events(self) -> AsyncIterator[LineEvent]:
        await asyncio.Event().wait()
        yield  # pragma: no cover


class SlowDirectory:
    """A lookup plugin that takes ``delay`` seconds to answer."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    @hookimpl
    def lookup_customer(self, number_e164: str | None, number_raw: str) -> Customer | None:
        time.sleep(self.delay)
        return Customer(name="陈<b>老板</b>", company="Acme", owner_rep="rep02", source="crm_http", id=77)


@pytest.fixture(autouse=True)
def _reset() -> None:
    Feeder.queue = asyncio.Queue()
    Feeder.dialed = []
    Feeder.fail_dial = False


def make_agent(tmp_path: Path, delay: float, timeout: float = 5.0, wrap_up: float = 30.0) -> Agent:
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(SlowDirectory(delay), name="slow-directory")
    registry = DeviceRegistry.from_plugins(pm)
    registry.add(Feeder, "test")
    registry.add(Listener, "test")
    config = load_config(
        None,
        registry,
        overrides={
            "agent": {"seat": "s1", "rep": "rep01", "data_dir": str(tmp_path), "lookup_timeout": timeout},
            "web": {"enabled": False},
            "metrics": {"enabled": False},
            "devices": [{"id": "dev", "type": "feeder"}, {"id": "mute", "type": "listener"}],
            "rep_state": {"wrap_up_seconds": wrap_up},
        },
    )
    return Agent(config, pm, devices=registry, registry=CollectorRegistry())


def now() -> datetime:
    return datetime.now(UTC)


async def collect(sub: Subscription, until: Any, timeout: float = 10) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        async for _, event, payload in sub:
            if event == "call":
                out.append({**payload, "received": time.monotonic()})
                if until(payload):
                    return out
    return out


async def test_number_pops_at_once_and_the_customer_follows(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, delay=0.6)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await asyncio.wait_for(agent.started.wait(), 10)
        with agent.bus.subscribe() as sub:
            sent = time.monotonic()
            Feeder.queue.put_nowait(CallerId(device_id="dev", line="1", at=now(), number="13812345678"))
            events = await collect(sub, lambda p: p["call"].get("customer_name") is not None)
            first = next(e for e in events if e["kind"] == "identified")
            assert first["call"]["number_raw"] == "13812345678"
            assert first["call"]["customer_name"] is None
            assert first["received"] - sent < 0.3  # not held up by the 0.6 s lookup
            late = events[-1]
            assert late["kind"] == "identified"
            assert late["received"] - sent >= 0.6
            assert late["call"]["customer_name"] == "陈<b>老板</b>"
            assert late["call"]["customer_id"] is None  # a CRM's id is not one of ours
            assert late["call"]["customer"] == {
                "id": None,
                "name": "陈<b>老板</b>",
                "company": "Acme",
                "owner_rep": "rep02",
                "source": "crm_http",
            }
            Feeder.queue.put_nowait(OffHook(device_id="dev", line="1", at=now()))
            Feeder.queue.put_nowait(OnHook(device_id="dev", line="1", at=now()))
            rest = await collect(sub, lambda p: p["kind"] == "ended")
            assert [e["kind"] for e in rest] == ["answered", "ended"]
            assert all(e["call"]["customer_name"] == "陈<b>老板</b>" for e in rest)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_ended_waits_for_the_lookup_and_is_never_overtaken(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, delay=0.5)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await asyncio.wait_for(agent.started.wait(), 10)
        with agent.bus.subscribe() as sub:
            Feeder.queue.put_nowait(CallerId(device_id="dev", line="1", at=now(), number="13812345678"))
            Feeder.queue.put_nowait(OffHook(device_id="dev", line="1", at=now()))
            Feeder.queue.put_nowait(OnHook(device_id="dev", line="1", at=now()))
            events = await collect(sub, lambda p: p["kind"] == "ended")
            assert events[-1]["call"]["customer_name"] == "陈<b>老板</b>"
            assert [e["kind"] for e in events].count("ended") == 1
            # Nothing about this call comes after its end (the lookup finished before it).
            later: list[str] = []
            while (item := await sub.get(timeout=0.8)) is not None:
                if item[1] == "call":
                    later.append(item[2]["kind"])
            assert later == []
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_a_lookup_slower_than_the_timeout_leaves_the_number(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, delay=1.0, timeout=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await asyncio.wait_for(agent.started.wait(), 10)
        with agent.bus.subscribe() as sub:
            Feeder.queue.put_nowait(CallerId(device_id="dev", line="1", at=now(), number="13812345678"))
            Feeder.queue.put_nowait(OffHook(device_id="dev", line="1", at=now()))
            Feeder.queue.put_nowait(OnHook(device_id="dev", line="1", at=now()))
            events = await collect(sub, lambda p: p["kind"] == "ended")
            assert [e["kind"] for e in events] == ["started", "identified", "answered", "ended"]
            assert all(e["call"]["customer_name"] is None for e in events)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_every_observer_sees_the_customer_and_the_reps_state(tmp_path: Path) -> None:
    """The runtime's one fan-out: the call with its customer, then the rep's state it moved."""
    agent = make_agent(tmp_path, delay=0, wrap_up=0.3)
    hooked: list[Call] = []

    class Recorder:
        @hookimpl
        def call_ended(self, call: Call) -> None:
            hooked.append(call)

    agent.pm.register(Recorder(), name="test-recorder")
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await asyncio.wait_for(agent.started.wait(), 10)
        with agent.bus.subscribe() as sub:
            Feeder.queue.put_nowait(CallerId(device_id="dev", line="1", at=now(), number="13812345678"))
            Feeder.queue.put_nowait(OffHook(device_id="dev", line="1", at=now()))
            Feeder.queue.put_nowait(OnHook(device_id="dev", line="1", at=now()))
            seen: list[tuple[str, dict[str, Any]]] = []
            async with asyncio.timeout(10):
                async for _, event, payload in sub:
                    seen.append((event, payload))
                    if event == "rep" and payload["previous"] == "wrap_up":
                        break
        reps = [(p["previous"], p["state"]) for e, p in seen if e == "rep"]
        assert reps == [("available", "on_call"), ("on_call", "wrap_up"), ("wrap_up", "available")]
        kinds = [e if e == "rep" else p["kind"] for e, p in seen if e in ("call", "rep")]
        # Each change follows the call event that caused it; the end of wrap-up is the ticker's.
        assert kinds.index("answered") < kinds.index("rep")
        assert kinds[-3:] == ["ended", "rep", "rep"]
        ended = next(p for e, p in seen if e == "call" and p["kind"] == "ended")
        assert ended["call"]["customer"]["name"] == "陈<b>老板</b>"
        assert agent.bus.snapshot()["rep_state"]["state"] == "available"
        # The page is told first (from the line task); the metrics observer follows a step later.
        async with asyncio.timeout(5):
            while True:
                samples = {
                    (s.labels["state"], s.name): s.value
                    for family in agent.registry.collect()
                    for s in family.samples
                    if s.name.startswith("cti_rep_state")
                }
                if samples[("available", "cti_rep_state")] == 1:
                    break
                await asyncio.sleep(0.01)
        assert samples[("wrap_up", "cti_rep_state_seconds_total")] == pytest.approx(0.3, abs=0.05)
        assert agent.engine is not None
        # Storage writes in a worker thread behind the page: wait for it to catch up.
        deadline = time.monotonic() + 10
        while True:
            with Session(agent.engine) as session:
                stored = get_call(session, ended["call"]["uuid"])
                changes = session.scalars(
                    select(AuditEntry.target).where(AuditEntry.action == "rep_state").order_by(AuditEntry.id)
                ).all()
            if len(changes) >= 3 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert stored is not None
        assert stored.disposition == "answered"
        assert changes == ["on_call", "wrap_up", "available"]
        # The hooks got the same call as the page, customer included.
        assert [c.customer for c in hooked] == [Customer(**ended["call"]["customer"])]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_dial_goes_to_the_lines_device(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, delay=0)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await asyncio.wait_for(agent.started.wait(), 10)
        assert agent.dialable_lines() == ["dev"]
        await agent.dial("dev", "13812345678")
        assert Feeder.dialed == [("1", "13812345678")]
        with pytest.raises(DeviceError, match="cannot dial"):
            await agent.dial("mute", "13812345678")
        with pytest.raises(LookupError, match="no line"):
            await agent.dial("nope", "13812345678")
        Feeder.fail_dial = True
        with pytest.raises(DeviceError, match="NO DIALTONE"):
            await agent.dial("dev", "13812345678")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
