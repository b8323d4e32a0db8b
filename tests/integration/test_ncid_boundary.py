"""The agent behind a real NCID server emulator: odd labels, quick callers, blocked callers, END times.

Each test runs the whole agent (device task, tracker, storage in SQLite) and reads
the calls table, as the issue's reports did.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ncid_emulator import NcidEmulator
from prometheus_client import CollectorRegistry

from agent.config import derived_line_id, load_config
from agent.plugins import make_plugin_manager
from agent.seat.devices import DeviceRegistry
from agent.seat.runner import Agent
from plugins import ncid


@pytest.fixture
async def emulator() -> AsyncIterator[NcidEmulator]:
    async with NcidEmulator(call_log=()) as emu:
        yield emu


def rows(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / "cti-agent.db"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM calls ORDER BY started_at, id")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


async def with_agent(
    data_dir: Path,
    emu: NcidEmulator,
    body: Callable[[Agent], Awaitable[None]],
    *,
    ring_timeout: float = 0.6,
    lines: dict[str, str] | None = None,
) -> None:
    registry = DeviceRegistry()
    ncid.register_devices(register=lambda cls: registry.add(cls, "ncid"))
    config = load_config(
        None,
        registry,
        overrides={
            "agent": {"seat": "seat-ncid", "rep": "rep01", "data_dir": str(data_dir)},
            "web": {"enabled": False},
            "metrics": {"enabled": False},
            "tracker": {"ring_timeout": ring_timeout},
            "devices": [{"id": "ncid", "type": "ncid", "port": emu.port, "lines": lines or {}}],
        },
    )
    runner = Agent(
        config, make_plugin_manager(load_entrypoints=False), devices=registry, registry=CollectorRegistry()
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await asyncio.wait_for(runner.started.wait(), 20)
        await emu.wait_clients(1)
        await body(runner)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def test_a_label_with_a_space_is_a_derived_line_and_loses_no_call(
    tmp_path: Path, emulator: NcidEmulator
) -> None:
    async def body(runner: Agent) -> None:
        # Both lines in one read, as the issue saw them: the label's call and the next.
        await emulator.send_raw(
            "CID: *DATE*05062024*TIME*0900*LINE*Home Line*NMBR*13812345678*MESG*NONE*NAME*LEAD ONE*\r\n"
            "CID: *DATE*05062024*TIME*0900*LINE*POTS*NMBR*02223456789*MESG*NONE*NAME*-*"
        )
        await until(lambda: sum(r["ended_at"] is not None for r in rows(tmp_path)) == 2)
        # The device stayed up: a later call on the odd line is recorded too.
        await emulator.send_cid("13912345678", line="Home Line")
        await until(lambda: sum(r["ended_at"] is not None for r in rows(tmp_path)) == 3)
        assert emulator.connections == 1

    await with_agent(tmp_path, emulator, body)
    calls = rows(tmp_path)
    home = derived_line_id("ncid", "Home Line")
    assert [(c["line"], c["number_raw"]) for c in calls] == [
        (home, "13812345678"),
        ("ncid:POTS", "02223456789"),
        (home, "13912345678"),
    ]
    assert calls[0]["cid_name"] == "LEAD ONE"


async def test_two_callers_seconds_apart_on_a_hook_blind_line_are_two_rows(
    tmp_path: Path, emulator: NcidEmulator
) -> None:
    async def body(runner: Agent) -> None:
        await emulator.send_cid("13812345678", "FIRST LEAD", line="POTS")
        await emulator.send_cidinfo(1, line="POTS")
        await asyncio.sleep(0.3)
        await emulator.send_cid("02223456789", "SECOND", line="POTS")
        # A server that repeats its line within a second: still one call.
        await emulator.send_cid("02223456789", "SECOND", line="POTS")
        await until(lambda: sum(r["ended_at"] is not None for r in rows(tmp_path)) == 2)
        await asyncio.sleep(0.8)

    await with_agent(tmp_path, emulator, body, ring_timeout=1.5)
    first, second = rows(tmp_path)
    assert (first["number_raw"], first["cid_name"], first["disposition"], first["end_reason"]) == (
        "13812345678",
        "FIRST LEAD",
        "missed",
        "next_caller",
    )
    assert (second["number_raw"], second["end_reason"]) == ("02223456789", "ring_timeout")


async def test_a_blocked_caller_ends_at_once_and_an_end_line_gives_the_talk_time(
    tmp_path: Path, emulator: NcidEmulator
) -> None:
    async def body(runner: Agent) -> None:
        await emulator.send_hup("4005551111", "JUNK", line="POTS")
        await until(lambda: any(r["ended_at"] is not None for r in rows(tmp_path)), timeout=3)
        # A gateway's call: caller ID, rings, then END: BYE with the server's start and end.
        await emulator.send_cid("13812345678", "CUSTOMER", line="SIP")
        await emulator.send_cidinfo(1, line="SIP")
        await asyncio.sleep(2.2)
        end = datetime.now()
        await emulator.send_end(
            "BYE", number="13812345678", line="SIP", start=end - timedelta(seconds=2.2), end=end
        )
        await until(lambda: sum(r["ended_at"] is not None for r in rows(tmp_path)) == 2)

    # A long ring time-out: the blocked call must not wait for it.
    await with_agent(tmp_path, emulator, body, ring_timeout=30)
    blocked, answered = rows(tmp_path)
    assert (blocked["number_raw"], blocked["disposition"], blocked["end_reason"]) == (
        "4005551111",
        "missed",
        "blocked",
    )
    assert (answered["disposition"], answered["end_reason"]) == ("answered", "hangup")
    # By arrival the off-hook came with the END: line, talk 0. The server's SCALL..ECALL (whole
    # seconds: 2 or 3) less the rings we saw is the talk time, within the call's length.
    assert 1.5 <= answered["talk_seconds"] <= 2.5
    assert answered["ring_seconds"] < 0.5
