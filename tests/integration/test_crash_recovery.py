"""Crash recovery with the real thing: kill -9 of the agent mid-recording, and a disk that fills up.

- The demo agent (``cti-agent demo``, simulated lines that record real FLAC files)
  is killed with SIGKILL while calls are being recorded; the next start must leave
  no call open and give each recording the length ``flac -d -F`` decodes from the
  torn file, within 0.1 s.
- The data directory is a 4 MiB tmpfs (mounted by the test as root, as CI runs):
  the disk fills while calls are in progress, the database refuses the shutdown's
  writes, and the spool must still hold every call, so the next start ends them all.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import soundfile as sf
from prometheus_client import CollectorRegistry

from agent.config import load_config
from agent.errors import AgentError
from agent.events import CallerId, LineEvent, OffHook
from agent.plugins import make_plugin_manager
from agent.seat.devices import Device, DeviceRegistry
from agent.seat.runner import Agent
from agent.seat.spool import Spool

CLI = [sys.executable, "-m", "agent.cli"]


def free_port() -> int:
    """A free loopback port in this suite's range (61000-61999)."""
    for port in range(61000 + os.getpid() % 500, 62000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 61000-61999")


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the agent's database, read-only; [] until it exists and is migrated."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def flac_decodable_seconds(part: Path, workdir: Path) -> float:
    """What the reference decoder gets out of a torn FLAC: ``flac -d -F`` (decode through errors)."""
    flac = shutil.which("flac")
    assert flac, "flac is not installed: run tests/system-deps.sh"
    copy = workdir / (part.name + ".flac")
    shutil.copyfile(part, copy)
    wav = copy.with_suffix(".wav")
    subprocess.run(
        [flac, "-d", "-F", "-f", "-s", "-o", str(wav), str(copy)], check=False, capture_output=True
    )
    info = sf.info(str(wav))
    return info.frames / info.samplerate


def _utc(stored: str) -> datetime:
    """A time as SQLite holds it (ISO 8601, UTC, with or without its offset)."""
    value = datetime.fromisoformat(stored)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def test_kill_9_mid_recording_then_a_start_closes_every_call(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log = (tmp_path / "demo.log").open("w")
    demo = subprocess.Popen(
        [
            *CLI,
            "demo",
            "--data-dir",
            str(data),
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--metrics-listen",
            f"127.0.0.1:{free_port() + 1}",
            "--rate",
            "20",
            "--speed",
            "2",
            "--seed",
            "3",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    db = data / "cti-agent.db"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            parts = [p for p in data.glob("recordings/*/*/*/*.part") if p.stat().st_size > 8000]
            open_answered = query(
                db, "SELECT uuid FROM calls WHERE answered_at IS NOT NULL AND ended_at IS NULL"
            )
            if parts and open_answered:
                break
            assert demo.poll() is None, (tmp_path / "demo.log").read_text()
            time.sleep(0.2)
        else:
            pytest.fail("no recording in progress within 60 s:\n" + (tmp_path / "demo.log").read_text())
        time.sleep(1.0)  # mid-recording, well into the file
    finally:
        demo.send_signal(signal.SIGKILL)
        demo.wait(10)
        log.close()
    killed_at = datetime.now(UTC)
    open_before = {row[0] for row in query(db, "SELECT uuid FROM calls WHERE ended_at IS NULL")}
    assert open_before
    parts = list(data.glob("recordings/*/*/*/*.part"))
    last_write = {p.name.split(".")[0]: datetime.fromtimestamp(p.stat().st_mtime, UTC) for p in parts}
    decodable = {p.name.split(".")[0]: flac_decodable_seconds(p, tmp_path) for p in parts}
    assert decodable

    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\nseat = "demo-seat"\ndata_dir = "{data}"\n'
        "[web]\nenabled = false\n[metrics]\nenabled = false\n[recording]\nenabled = true\n",
        encoding="utf-8",
    )
    started = subprocess.run(
        [*CLI, "run", "--config", str(config), "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert started.returncode == 0, started.stderr

    assert query(db, "SELECT uuid FROM calls WHERE ended_at IS NULL") == []
    reasons = dict(query(db, "SELECT uuid, end_reason FROM calls"))
    assert {reasons[uuid] for uuid in open_before} == {"agent_crash"}
    recordings = {
        uuid: (seconds, status)
        for uuid, seconds, status in query(db, "SELECT call_uuid, seconds, status FROM recordings")
    }
    for uuid, seconds in decodable.items():
        got, status = recordings[uuid]
        assert status == "recovered"
        assert abs(got - seconds) <= 0.1, (uuid, got, seconds)
    # The call lasted until its recording's last write, and not past the kill: the recording's
    # length from the answer would overstate it (the file holds pre-roll, and an outbound
    # call's recording begins when the rep dials).
    for uuid, answered, ended, talk in query(
        db, "SELECT uuid, answered_at, ended_at, talk_seconds FROM calls WHERE answered_at IS NOT NULL"
    ):
        if uuid in decodable and uuid in open_before:
            assert last_write[uuid] - timedelta(seconds=0.01) <= _utc(ended) <= killed_at, uuid
            assert talk == pytest.approx((_utc(ended) - _utc(answered)).total_seconds(), abs=0.002)


# -- a full disk ------------------------------------------------------------------------------

LINES = 28


class Busy(Device):
    """Every line rings and is answered at once; then all stay in their calls."""

    type = "busy"
    reports_hook = True
    opened: ClassVar[int] = 0

    def lines(self) -> list[str]:
        return [str(n) for n in range(1, LINES + 1)]

    async def events(self) -> AsyncIterator[LineEvent]:
        Busy.opened += 1
        if Busy.opened == 1:
            for n in range(1, LINES + 1):
                now = datetime.now(UTC)
                yield CallerId(device_id=self.device_id, line=str(n), at=now, number=f"1381234{n:04d}")
                yield OffHook(device_id=self.device_id, line=str(n), at=now)
        await asyncio.Event().wait()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs: run it as root (CI does)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def make_agent(data: Path) -> Agent:
    pm = make_plugin_manager(load_entrypoints=False)
    registry = DeviceRegistry.from_plugins(pm)
    registry.add(Busy, "test")
    config = load_config(
        None,
        registry,
        overrides={
            "agent": {"seat": "s1", "rep": "rep01", "team": "t1", "data_dir": str(data)},
            "web": {"enabled": False},
            "metrics": {"enabled": False},
            "devices": [{"id": "dev", "type": "busy"}],
        },
    )
    return Agent(config, pm, devices=registry, registry=CollectorRegistry())


def fill(directory: Path) -> Path:
    """Write a file until the disk is full; return it."""
    filler = directory / "filler"
    block = b"\xff" * 65536
    with filler.open("wb") as f:
        try:
            while True:
                f.write(block)
                f.flush()
        except OSError:
            pass
    return filler


async def test_a_full_disk_cannot_take_the_shutdown_spool(small_disk: Path) -> None:
    Busy.opened = 0
    db = small_disk / "cti-agent.db"
    agent = make_agent(small_disk)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        async with asyncio.timeout(30):
            while len(query(db, "SELECT uuid FROM calls WHERE answered_at IS NOT NULL")) < LINES:
                await asyncio.sleep(0.05)
        assert Spool(small_disk).reserve_path.exists()
        filler = await asyncio.to_thread(fill, small_disk)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    # The database could not take the 28 ends: they are in the spool, whole, in the reserved space.
    spool = Spool(small_disk)
    lines = spool.lines()
    assert len(lines) == LINES, f"{len(lines)} spooled"
    assert query(db, "SELECT count(*) FROM calls WHERE ended_at IS NULL") == [(LINES,)]

    filler.unlink()
    again = make_agent(small_disk)
    stop2 = asyncio.Event()
    task2 = asyncio.create_task(again.run(stop2))
    try:
        await asyncio.wait_for(again.started.wait(), 30)
    finally:
        stop2.set()
        await asyncio.wait_for(task2, 60)
    assert query(db, "SELECT count(*) FROM calls WHERE ended_at IS NULL") == [(0,)]
    reasons = query(db, "SELECT end_reason, count(*) FROM calls GROUP BY end_reason")
    assert reasons == [("shutdown", LINES)]
    assert not spool.path.exists()


async def test_a_spool_that_cannot_be_written_fails_the_run_with_the_count(small_disk: Path) -> None:
    Busy.opened = 0
    db = small_disk / "cti-agent.db"
    agent = make_agent(small_disk)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        async with asyncio.timeout(30):
            while len(query(db, "SELECT uuid FROM calls WHERE answered_at IS NOT NULL")) < LINES:
                await asyncio.sleep(0.05)
        # No reservation (another program took the space first): nothing can hold the spool.
        Spool(small_disk).reserve_path.unlink()
        await asyncio.to_thread(fill, small_disk)
    finally:
        stop.set()
        with pytest.raises(AgentError, match=f"^{LINES} call"):
            await asyncio.wait_for(task, 60)
    assert not Spool(small_disk).path.exists()
