"""The runtime under failure: plugins that raise, a database that refuses writes, a device that dies."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from prometheus_client import CollectorRegistry

from agent import hookimpl
from agent.config import load_config
from agent.errors import DeviceError, StorageError
from agent.events import Call, CallerId, LineEvent, OffHook, OnHook
from agent.plugins import make_plugin_manager
from agent.seat.devices import Device, DeviceRegistry
from agent.seat.runner import SPOOL_NAME, Agent
from agent.seat.unwritten import REP_SPOOL_NAME
from storage.observer import StorageObserver


class Scripted(Device):
    """A device fed by the test: each item of ``script`` is a LineEvent or an exception to raise."""

    type = "scripted"
    reports_hook = True
    scripts: ClassVar[list[list[Any]]] = []
    opened: ClassVar[int] = 0

    async def events(self) -> AsyncIterator[LineEvent]:
        Scripted.opened += 1
        script = Scripted.scripts.pop(0) if Scripted.scripts else []
        for item in script:
            await asyncio.sleep(0.01)
            if isinstance(item, BaseException):
                raise item
            yield item(self.device_id)
        await asyncio.Event().wait()  # then stay open and quiet


def call(number: str) -> list[Any]:
    """One answered inbound call."""

    def at() -> datetime:
        return datetime.now(UTC)

    return [
        lambda d: CallerId(device_id=d, line="1", at=at(), number=number, name="测试"),
        lambda d: OffHook(device_id=d, line="1", at=at()),
        lambda d: OnHook(device_id=d, line="1", at=at()),
    ]


def make_agent(tmp_path: Path, pm: Any = None) -> Agent:
    pm = pm or make_plugin_manager(load_entrypoints=False)
    registry = DeviceRegistry.from_plugins(pm)
    registry.add(Scripted, "test")
    config = load_config(
        None,
        registry,
        overrides={
            "agent": {"seat": "s1", "rep": "rep01", "team": "t1", "data_dir": str(tmp_path)},
            "web": {"enabled": False},
            "metrics": {"enabled": False},
            "devices": [{"id": "dev", "type": "scripted"}],
        },
    )
    return Agent(config, pm, devices=registry, registry=CollectorRegistry())


async def run_until(agent: Agent, condition: Any, timeout: float = 15) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def db_calls(tmp_path: Path) -> list[Any]:
    """The calls table, read-only (never creating the file before the agent does); [] until it exists."""
    path = tmp_path / "cti-agent.db"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT uuid, number_raw, disposition, end_reason FROM calls").fetchall()
    except sqlite3.OperationalError:
        return []  # not migrated yet
    finally:
        conn.close()


def sample(agent: Agent, name: str, **labels: str) -> float:
    return agent.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture(autouse=True)
def _reset_scripted() -> None:
    Scripted.scripts = []
    Scripted.opened = 0


async def test_a_raising_plugin_silences_no_other_and_is_counted(tmp_path: Path) -> None:
    seen: list[Call] = []

    class Broken:
        @hookimpl
        def call_ended(self, call: Call) -> None:
            raise RuntimeError("plugin bug")

    class Good:
        @hookimpl
        def call_ended(self, call: Call) -> None:
            seen.append(call)

    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(Good(), name="good")
    pm.register(Broken(), name="broken")
    Scripted.scripts = [call("13800000001") + call("13800000002")]
    agent = make_agent(tmp_path, pm)
    await run_until(agent, lambda: len(seen) == 2)
    assert [c.number_raw for c in seen] == ["13800000001", "13800000002"]
    assert sample(agent, "cti_plugin_errors_total", plugin="broken", hook="call_ended") == 2
    assert len(db_calls(tmp_path)) == 2


async def test_storage_failures_are_retried_until_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = StorageObserver.notify
    failures = {"left": 3}

    async def flaky(self: StorageObserver, message: Any) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise StorageError("database is locked (simulated)")
        await real(self, message)

    monkeypatch.setattr(StorageObserver, "notify", flaky)
    monkeypatch.setattr("agent.seat.pipe.BACKOFF_START", 0.05)
    Scripted.scripts = [call("13800000003")]
    agent = make_agent(tmp_path)
    await run_until(agent, lambda: bool(db_calls(tmp_path)) and db_calls(tmp_path)[0][2] == "answered")
    rows = db_calls(tmp_path)
    assert [(r[1], r[2]) for r in rows] == [("13800000003", "answered")]
    assert sample(agent, "cti_observer_errors_total", observer="storage") == 3


async def test_calls_the_database_refuses_at_shutdown_are_spooled_and_written_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(self: StorageObserver, message: Any) -> None:
        raise StorageError("database unreachable (simulated)")

    with monkeypatch.context() as patch:
        patch.setattr(StorageObserver, "notify", down)
        patch.setattr("agent.seat.pipe.BACKOFF_START", 0.05)
        patch.setattr("agent.seat.runner.SHUTDOWN_DRAIN_SECONDS", 0.5)
        Scripted.scripts = [call("13800000004") + call("13800000005")]
        agent = make_agent(tmp_path)
        await run_until(agent, lambda: sample(agent, "cti_observer_errors_total", observer="storage") >= 6)
    spool = tmp_path / SPOOL_NAME
    spooled = [json.loads(line) for line in spool.read_text(encoding="utf-8").splitlines()]
    assert {s["call"]["number_raw"] for s in spooled} == {"13800000004", "13800000005"}
    assert all(s["kind"] == "ended" for s in spooled)
    assert db_calls(tmp_path) == []
    # The rep's state moved by those calls is kept too, every change in order.
    rep_spool = tmp_path / REP_SPOOL_NAME
    spooled_reps = [json.loads(line)["state"] for line in rep_spool.read_text(encoding="utf-8").splitlines()]
    assert spooled_reps == ["on_call", "wrap_up", "on_call", "wrap_up"]

    # A broken line in the spool is kept aside, not lost, and does not stop the rest.
    with spool.open("a", encoding="utf-8") as f:
        f.write("{not json\n")
    agent = make_agent(tmp_path)
    await run_until(agent, lambda: True)
    rows = db_calls(tmp_path)
    assert sorted((r[1], r[2]) for r in rows) == [
        ("13800000004", "answered"),
        ("13800000005", "answered"),
    ]
    assert spool.read_text(encoding="utf-8") == "{not json\n"
    assert not rep_spool.exists()
    conn = sqlite3.connect(f"file:{tmp_path / 'cti-agent.db'}?mode=ro", uri=True)
    try:
        query = "SELECT target FROM audit_log WHERE action = 'rep_state' ORDER BY id"
        stored = [row[0] for row in conn.execute(query)]
    finally:
        conn.close()
    assert stored[:4] == ["on_call", "wrap_up", "on_call", "wrap_up"]


async def test_a_device_that_dies_mid_call_ends_the_call_and_is_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.seat.device_loop.BACKOFF_START", 0.05)
    first = call("13800000006")[:2] + [DeviceError("port vanished")]  # answered, then the port goes
    Scripted.scripts = [first, call("13800000007")]
    agent = make_agent(tmp_path)
    await run_until(agent, lambda: len(db_calls(tmp_path)) == 2 and all(r[3] for r in db_calls(tmp_path)))
    rows = {r[1]: r for r in db_calls(tmp_path)}
    assert rows["13800000006"][2:] == ("answered", "device_down")
    assert rows["13800000007"][2:] == ("answered", "hangup")
    assert Scripted.opened == 2
    assert sample(agent, "cti_device_reconnects_total", device="dev") == 1
