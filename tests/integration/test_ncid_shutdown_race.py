"""Shutdown while the NCID server dies: the agent stops every time, promptly, 50 times over.

A SIGTERM hang was seen once, probably the device's reconnect back-off sleeping while the stop
came in. Here the server goes away at moments around the stop (before it, with it, after it),
and each run must end within a few seconds and leave no call open.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from ncid_emulator import NcidEmulator
from sqlalchemy import create_engine, text

import plugins.ncid as ncid
from agent.config import load_config
from agent.plugins import make_plugin_manager
from agent.seat.devices import DeviceRegistry
from agent.seat.runner import Agent

RUNS = 50
#: Seconds between the server's death and the stop: negative, the stop comes first.
OFFSETS = (-0.05, -0.01, 0.0, 0.0, 0.005, 0.02, 0.05, 0.1, 0.3, 0.6)


async def _one_run(data_dir: Path, offset: float) -> float:
    registry = DeviceRegistry()
    ncid.register_devices(register=lambda cls: registry.add(cls, "ncid"))
    async with NcidEmulator() as emulator:
        overrides: dict[str, Any] = {
            "agent": {"seat": "seat-race", "data_dir": str(data_dir)},
            "web": {"enabled": False},
            "metrics": {"enabled": False},
            "devices": [{"id": "ncid", "type": "ncid", "port": emulator.port, "lines": {"POTS": "1"}}],
        }
        config = load_config(None, registry, overrides=overrides)
        agent = Agent(config, make_plugin_manager(load_entrypoints=False), devices=registry)
        stop = asyncio.Event()
        run = asyncio.create_task(agent.run(stop))
        await asyncio.wait_for(agent.started.wait(), 20)
        await emulator.wait_clients(1, timeout=10)
        await emulator.send_cid("13812345678", "WANG WEI", line="POTS")  # a call in progress

        async def die() -> None:
            await asyncio.sleep(max(offset, 0.0))
            await emulator.stop()

        async def terminate() -> None:
            await asyncio.sleep(max(-offset, 0.0))
            stop.set()

        began = time.monotonic()
        await asyncio.gather(die(), terminate())
        await asyncio.wait_for(run, 15)
        return time.monotonic() - began


async def test_shutdown_while_the_ncid_server_dies_never_hangs(tmp_path: Path) -> None:
    longest = 0.0
    for n in range(RUNS):
        took = await _one_run(tmp_path, OFFSETS[n % len(OFFSETS)])
        longest = max(longest, took)
    # Every run ended (wait_for above); none left a call open behind it.
    engine = create_engine(f"sqlite:///{tmp_path / 'cti-agent.db'}")
    try:
        with engine.connect() as connection:
            open_calls = connection.execute(
                text("SELECT count(*) FROM calls WHERE ended_at IS NULL")
            ).scalar()
            calls = connection.execute(text("SELECT count(*) FROM calls")).scalar()
    finally:
        engine.dispose()
    assert open_calls == 0
    assert calls == RUNS
    assert longest < 15
