"""Park, don't block, against a real PostgreSQL.

A call the database refuses for what it is is parked; the calls after it are written, and the
outbox flows on.

A device can no longer hand storage a NUL byte (line events drop control characters at the
boundary), so the seat's own refusal comes from a constraint the test adds: any value a future
schema refuses parks the same way. The outbox test still sends a NUL-named row, which a seat's
SQLite stores and the centre (the real seat API in process over this PostgreSQL,
tests/centre_fixture.py) refuses.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from centre_fixture import Centre
from click.testing import CliRunner
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from agent.commands.sync import sync as sync_command
from agent.config import load_config
from agent.events import Call, CallerId, Direction, LineEvent, OffHook, OnHook
from agent.plugins import make_plugin_manager
from agent.seat.devices import Device, DeviceRegistry
from agent.seat.runner import Agent
from storage.db import make_engine, upgrade
from storage.faults import PARK_AFTER
from storage.models import CallRecord
from storage.observer import PARKED_NAME, ParkedCalls
from storage.repository import upsert_call

pytestmark = pytest.mark.postgres

NUL_NAME = "Zhang\x00San"
#: A caller-ID name the test's constraint makes the seat's database refuse.
POISON = "Poison Caller"
T0 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


class Calls(Device):
    """Plays one answered inbound call per (number, name) in ``script``, then stays quiet."""

    type = "parking-script"
    reports_hook = True
    script: ClassVar[list[tuple[str, str]]] = []

    async def events(self) -> AsyncIterator[LineEvent]:
        for number, name in Calls.script:
            for make in (
                lambda at, number=number, name=name: CallerId(
                    device_id=self.device_id, line="1", at=at, number=number, name=name
                ),
                lambda at: OffHook(device_id=self.device_id, line="1", at=at),
                lambda at: OnHook(device_id=self.device_id, line="1", at=at),
            ):
                await asyncio.sleep(0.01)
                yield make(datetime.now(UTC))
        Calls.script = []
        await asyncio.Event().wait()


def central_names(engine: Engine, *, ended: bool = False) -> list[str | None]:
    query = select(CallRecord.cid_name).order_by(CallRecord.number_raw)
    if ended:
        query = query.where(CallRecord.ended_at.is_not(None))
    with Session(engine) as session:
        return list(session.scalars(query))


async def test_a_nul_name_call_is_parked_and_the_five_after_it_are_stored(
    pg_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.seat.pipe.BACKOFF_START", 0.02)
    Calls.script = [("13800000000", POISON)] + [(f"1380000000{n}", f"Customer {n}") for n in range(1, 6)]
    pm = make_plugin_manager(load_entrypoints=False)
    registry = DeviceRegistry.from_plugins(pm)
    registry.add(Calls, "test")
    config = load_config(
        None,
        registry,
        overrides={
            "agent": {"seat": "s1", "rep": "rep01", "team": "t1", "data_dir": str(tmp_path)},
            "storage": {"url": pg_database_url},
            "web": {"enabled": False},
            "metrics": {"enabled": False},
            "devices": [{"id": "dev", "type": "parking-script"}],
        },
    )
    engine = make_engine(pg_database_url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"ALTER TABLE calls ADD CONSTRAINT no_poison CHECK (cid_name IS DISTINCT FROM '{POISON}')"
        )
    agent = Agent(config, pm, devices=registry, registry=CollectorRegistry())
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))

    def written() -> int:
        try:
            with Session(engine) as session:
                return int(
                    session.scalar(select(func.count(CallRecord.id)).where(CallRecord.ended_at.is_not(None)))
                    or 0
                )
        except Exception:
            return 0  # not migrated yet

    try:
        async with asyncio.timeout(30):
            while written() < 5 or agent.registry.get_sample_value("cti_storage_parked") != 1:
                await asyncio.sleep(0.05)
        assert agent.health()["storage_parked"] == 1
    finally:
        stop.set()
        await asyncio.wait_for(run, 30)
    try:
        assert central_names(engine, ended=True) == [f"Customer {n}" for n in range(1, 6)]
        # The refused call's first snapshot (ringing, before its caller ID) went in; nothing wrong did.
        with Session(engine) as session:
            early = session.execute(
                select(CallRecord.number_raw, CallRecord.cid_name).where(CallRecord.ended_at.is_(None))
            ).all()
        assert all(name is None and number in (None, "13800000000") for number, name in early)
    finally:
        engine.dispose()
    # The refused call is kept, with its name exactly as the line gave it, and survives the restart.
    entries = ParkedCalls(tmp_path / PARKED_NAME).load()
    assert [e.event.call.cid_name for e in entries] == [POISON]
    assert entries[0].event.call.ended_at is not None
    assert "no_poison" in entries[0].reason
    assert not (tmp_path / "unwritten-calls.jsonl").exists()
    line = (tmp_path / PARKED_NAME).read_text(encoding="utf-8")
    assert json.loads(line)["event"]["call"]["number_raw"] == "13800000000"

    config_file = tmp_path / "agent.toml"
    config_file.write_text(
        f'[agent]\ndata_dir = "{tmp_path}"\n\n[storage]\nurl = "{pg_database_url}"\n', encoding="utf-8"
    )
    shown = CliRunner().invoke(sync_command, ["--config", str(config_file), "--status"])
    assert shown.exit_code == 0, shown.output
    assert "parked calls:       1 the local database refused" in shown.output
    retried = CliRunner().invoke(sync_command, ["--config", str(config_file), "--retry-parked"])
    assert retried.exit_code == 0, retried.output
    assert "0 written, 1 still refused" in retried.output  # nothing was fixed: it stays parked


def seat_call(n: int, name: str) -> Call:
    return Call(
        uuid=f"00000000-0000-4000-8000-{n:012d}",
        seat="seat-7",
        device_id="sim",
        line="L1",
        rep="alice",
        team="north",
        direction=Direction.IN,
        started_at=T0 + timedelta(minutes=n),
        number_raw=f"1380000{n:04d}",
        number_e164=f"+861380000{n:04d}",
        cid_name=name,
        ended_at=T0 + timedelta(minutes=n, seconds=30),
    )


def test_a_parked_outbox_row_does_not_block_the_sync(pg_database_url: str, tmp_path: Path) -> None:
    seat = make_engine(f"sqlite:///{tmp_path / 'seat' / 'cti-agent.db'}")
    upgrade(seat)
    central = make_engine(pg_database_url)
    centre = Centre(central, tmp_path / "centre-recordings")
    syncer = centre.sync(seat, tmp_path / "seat", seat="seat-7", batch_size=10)
    try:
        calls = [seat_call(0, NUL_NAME)] + [seat_call(n, f"Customer {n}") for n in range(1, 6)]
        for call in calls:  # SQLite stores the NUL; the centre cannot
            with Session(seat) as session, session.begin():
                upsert_call(session, call)
        first = syncer.run_batch()
        assert first.calls == 5
        assert central_names(central) == [f"Customer {n}" for n in range(1, 6)]
        for _ in range(PARK_AFTER - 1):
            syncer.run_batch()
        state = syncer.status()
        assert (state.pending, state.parked) == (0, 1)
        with Session(seat) as session, session.begin():
            upsert_call(session, seat_call(6, "Customer 6"))
        assert syncer.run_batch().calls == 1
        assert central_names(central)[-1] == "Customer 6"
        assert syncer.status().parked == 1
    finally:
        syncer.close()
        central.dispose()
        seat.dispose()
