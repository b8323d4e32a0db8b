"""Team mode against a real PostgreSQL under the centre, which the test stops and restarts mid-stream.

The seat reaches the centre's seat API (the real app in process, tests/centre_fixture.py, over
this PostgreSQL and a directory store) through its real HTTP transport; while PostgreSQL is down
the centre answers 503 and the seat backs off. Each test here starts its own throwaway server
(the session's shared one must not be stopped under other tests), the same way
``conftest.pg_url`` does; the running agent's test talks to a real ``cti-agent centre`` process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import glob
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from centre_fixture import BASE_URL, Centre
from click.testing import CliRunner
from factories import add_recording
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session
from test_centre_process import cli, start_centre, stop

from agent.commands.sync import sync as sync_command
from agent.events import Call, Direction, Disposition, EndReason
from agent.seat.centre_client import CentreClient
from agent.seat.sync import SyncLoop
from storage.blobstore import recording_key
from storage.db import make_engine, upgrade
from storage.models import CallRecord, Recording
from storage.outbox import purge_allowed
from storage.repository import save_note, upsert_call

pytestmark = pytest.mark.postgres

T0 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


PG_MISSING = "PostgreSQL server binaries not found: run `make test` (it installs postgresql)"


def _pg_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl (as conftest.pg_url finds it)."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found = [d for d in found if (d / "pg_ctl").is_file() and d.parent.name.split(".")[0].isdigit()]
    if not found:
        return None
    return max(found, key=lambda d: tuple(int(x) for x in d.parent.name.split(".") if x.isdigit()))


class Server:
    """A PostgreSQL server of this test alone: it can be stopped (as by a crash) and started again."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_postgres = os.geteuid() == 0
        self.workdir = Path(tempfile.mkdtemp(prefix="cti-sync-pg-"))
        self.workdir.chmod(0o755)
        if self.as_postgres:
            shutil.chown(self.workdir, "postgres", "postgres")
        self.data = self.workdir / "data"
        self.log = self.workdir / "pg.log"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            pytest.fail(f"{argv[0]} {argv[-1]} failed: {done.stderr or done.stdout}\n{log}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options, "start"
        )
        self.running = True

    def crash(self) -> None:
        """Stop at once, cutting every connection (``immediate``: no clean shutdown)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self.running = False

    def remove(self) -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture
def server() -> Iterator[Server]:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.fail(PG_MISSING)
    own = Server(bindir)
    try:
        own.init()
        own.start()
        yield own
    finally:
        own.remove()


@pytest.fixture
def seat(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'seat' / 'cti-agent.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def make_call(n: int, stage: str) -> Call:
    call = Call(
        uuid=f"00000000-0000-4000-8000-{n:012d}",
        seat="seat-7",
        device_id="sim",
        line="L1",
        rep="alice",
        team="north",
        direction=Direction.OUT if n % 2 else Direction.IN,
        started_at=T0 + timedelta(minutes=n),
        number_raw=f"1380000{n:04d}",
        number_e164=f"+861380000{n:04d}",
    )
    if stage in ("answered", "ended"):
        call = dataclasses.replace(call, answered_at=call.started_at + timedelta(seconds=4), ring_seconds=4.0)
    if stage == "ended":
        call = dataclasses.replace(
            call,
            ended_at=call.started_at + timedelta(seconds=64 + n),
            talk_seconds=float(60 + n),
            disposition=Disposition.ANSWERED,
            end_reason=EndReason.HANGUP,
        )
    return call


def write_call(engine: Engine, data_dir: Path, n: int) -> None:
    """One call's life as the agent writes it: three snapshots, sometimes a note and a recording."""
    for stage in ("started", "answered", "ended"):
        with Session(engine) as session, session.begin():
            upsert_call(session, make_call(n, stage))
    if n % 3 == 0:
        with Session(engine) as session, session.begin():
            save_note(session, make_call(n, "ended").uuid, f"note {n}", T0 + timedelta(days=1, minutes=n))
    if n % 5 == 0:
        add_recording(
            engine, data_dir, make_call(n, "ended"), f"audio of call {n}".encode() * 50, seconds=1.0
        )


def snapshot(engine: Engine) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The calls' final state and each recording by call UUID and SHA-256.

    Not by path: the seat's path and the centre's store key differ by design.
    """
    with Session(engine) as session:
        calls = session.execute(
            select(
                CallRecord.uuid,
                CallRecord.ended_at,
                CallRecord.talk_seconds,
                CallRecord.disposition,
                CallRecord.notes,
                CallRecord.follow_up_at,
            ).order_by(CallRecord.uuid)
        ).all()
        recordings = session.execute(
            select(Recording.call_uuid, Recording.sha256).order_by(Recording.call_uuid)
        ).all()
    return [tuple(r) for r in calls], [tuple(r) for r in recordings]


def stored_bytes(centre: Centre, key: str) -> bytes:
    return b"".join(centre.store.open_range(key))


class Counting:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.backlog: list[int] = []
        self.parked: list[int] = []
        self.successes = 0

    def sync_backlog(self, rows: int) -> None:
        self.backlog.append(rows)

    def sync_parked(self, entries: int) -> None:
        self.parked.append(entries)

    def sync_error(self, kind: str) -> None:
        self.errors.append(kind)

    def sync_succeeded(self, timestamp: float) -> None:
        self.successes += 1


async def test_a_central_crash_mid_stream_loses_nothing_and_doubles_nothing(
    server: Server, seat: Engine, tmp_path: Path
) -> None:
    data_dir = tmp_path / "seat"
    central = make_engine(server.url)
    centre = Centre(central, tmp_path / "central-store")
    syncer = centre.sync(seat, data_dir, seat="seat-7", batch_size=25)
    metrics = Counting()
    loop = SyncLoop(syncer, interval=0.05, backoff_start=0.05, backoff_max=0.4, metrics=metrics)
    total = 120
    crash_at, restart_at = 40, 90
    written = threading.Event()

    def writer() -> None:
        # The seat's own writes never wait for the centre: they run straight through the outage.
        for n in range(total):
            write_call(seat, data_dir, n)
            if n == crash_at:
                server.crash()
            if n == restart_at:
                server.start()
        written.set()

    loop.start()
    try:
        await asyncio.to_thread(writer)
        for _ in range(600):
            if (
                written.is_set()
                and syncer.status().pending == 0
                and metrics.backlog
                and metrics.backlog[-1] == 0
            ):
                break
            await asyncio.sleep(0.05)
    finally:
        await loop.aclose()
    assert syncer.status().pending == 0
    # The crash was seen: as the centre's 503 (the seat no longer sees PostgreSQL itself)...
    assert "centre" in metrics.errors
    local_calls, local_recordings = snapshot(seat)
    central_check = make_engine(server.url)
    try:
        central_calls, central_recordings = snapshot(central_check)
        with Session(central_check) as session:
            assert session.scalar(select(func.count(CallRecord.id))) == total
            assert session.scalar(select(func.count(Recording.id))) == total // 5
            keys = dict(session.execute(select(Recording.call_uuid, Recording.path_or_uri)).tuples().all())
    finally:
        central_check.dispose()
        central.dispose()
    # ...and afterwards the centre holds exactly what the seat holds (customer ids aside).
    assert len(local_calls) == total
    assert central_calls == local_calls
    assert central_recordings == local_recordings
    for call_uuid, digest in central_recordings:
        info = centre.store.stat(keys[str(call_uuid)])
        assert info is not None
        assert info.sha256 == digest
        assert hashlib.sha256(stored_bytes(centre, keys[str(call_uuid)])).hexdigest() == digest


def test_a_corrupted_central_copy_is_found_by_the_purge_guard_and_copied_again(
    server: Server, seat: Engine, tmp_path: Path
) -> None:
    data_dir = tmp_path / "seat"
    central = make_engine(server.url)
    centre = Centre(central, tmp_path / "central-store")
    syncer = centre.sync(seat, data_dir, seat="seat-7")
    try:
        call = make_call(1, "ended")
        source = add_recording(seat, data_dir, call, b"the real audio" * 100, seconds=1.0)
        assert syncer.run_batch().recordings == 1
        key = recording_key(call.uuid, call.started_at, "flac")
        with Session(seat) as session:
            assert purge_allowed(session, session.scalars(select(Recording)).one(), syncer.transport)
        # The centre's copy replaced by other bytes (a bad restore of its store): the seat is told
        # by the centre's GET, keeps its file and uploads it again, which replaces the copy.
        fake = b"the real audio" * 99 + b"the fake audio"
        centre.store.delete(key)
        centre.store.put_stream(key, [fake], hashlib.sha256(fake).hexdigest(), len(fake))
        with Session(seat) as session, session.begin():
            row = session.scalars(select(Recording)).one()
            assert not purge_allowed(session, row, syncer.transport)
        assert syncer.status().pending_recordings == 1
        assert syncer.run_batch().recordings == 1
        assert stored_bytes(centre, key) == source.read_bytes()
        with Session(seat) as session:
            assert purge_allowed(session, session.scalars(select(Recording)).one(), syncer.transport)
        with Session(central) as session:
            assert session.scalar(select(func.count(Recording.id))) == 1
    finally:
        syncer.close()
        central.dispose()


def test_sync_status_and_once_through_an_outage(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    central = make_engine(server.url)
    centre = Centre(central, tmp_path / "store")
    token_file = tmp_path / "seat.token"
    token_file.write_text(centre.token("seat-7") + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\nseat = "seat-7"\ndata_dir = "{data_dir}"\n\n'
        f'[central]\nurl = "{BASE_URL}"\ntoken_file = "{token_file}"\n',
        encoding="utf-8",
    )
    # The command builds its client from the config; only the connection is the in-process centre's.
    monkeypatch.setattr(
        "agent.seat.transport.CentreClient",
        lambda url, token, *, verify=True: CentreClient(url, token, client=centre.client),
    )
    seat = make_engine(f"sqlite:///{data_dir / 'cti-agent.db'}")
    upgrade(seat)
    runner = CliRunner()
    try:
        assert runner.invoke(sync_command, ["--config", str(config), "--once"]).exit_code == 0
        for n in range(7):
            write_call(seat, data_dir, n)
        server.crash()
        failed = runner.invoke(sync_command, ["--config", str(config), "--once"])
        assert failed.exit_code == 1
        assert "failed" in failed.output
        shown = runner.invoke(sync_command, ["--config", str(config), "--status"])
        assert shown.exit_code == 0, shown.output
        assert "backlog:            7 call(s), 2 recording(s)" in shown.output
        assert "last error:" in shown.output
        # The error is the centre's answer (503: its database is down), not the driver's URL.
        assert "database is unavailable" in shown.output
        server.start()
        done = runner.invoke(sync_command, ["--config", str(config), "--once"])
        assert done.exit_code == 0, done.output
        assert "sent 7 call(s) and 2 recording(s)" in done.output
        shown = runner.invoke(sync_command, ["--config", str(config), "--status"])
        assert "backlog:            0 call(s), 0 recording(s)" in shown.output
        assert "last error:" not in shown.output
    finally:
        seat.dispose()
        central.dispose()


@pytest.mark.slow
async def test_the_running_agent_syncs_as_it_goes_and_flushes_at_shutdown(
    pg_database_url: str, tmp_path: Path
) -> None:
    # A real centre process on this PostgreSQL; the agent knows only its URL and its token.
    centre_config = tmp_path / "centre.toml"
    centre_config.write_text(
        f'[agent]\ndata_dir = "{tmp_path / "centre"}"\n\n[storage]\nurl = "{pg_database_url}"\n',
        encoding="utf-8",
    )
    process, address = start_centre(tmp_path / "centre", "--config", str(centre_config))
    try:
        added = cli("seats", "add", "seat-sync", "--team", "team-a", "--config", str(centre_config))
        assert added.returncode == 0, added.stderr
        token_file = tmp_path / "seat.token"
        token_file.write_text(added.stdout.strip() + "\n", encoding="utf-8")
        token_file.chmod(0o600)
        await _run_the_agent(pg_database_url, tmp_path / "seat", address, token_file)
    finally:
        assert stop(process) == 0


async def _run_the_agent(pg_database_url: str, data_dir: Path, address: str, token_file: Path) -> None:
    from agent.config import load_config
    from agent.plugins import make_plugin_manager
    from agent.seat.devices import DeviceRegistry
    from agent.seat.runner import Agent

    speed = 60.0
    pm = make_plugin_manager(load_entrypoints=False)
    overrides = {
        "agent": {"seat": "seat-sync", "team": "team-a", "rep": "rep01", "data_dir": str(data_dir)},
        "web": {"enabled": False},
        "metrics": {"enabled": False},
        "tracker": {"ring_timeout": 8.0 / speed, "dial_timeout": 4.0 / speed},
        "devices": [{"id": "sim", "type": "simulator", "lines": 2, "rate": 40, "seed": 3, "speed": speed}],
        "central": {"url": address, "token_file": str(token_file), "interval": 0.2},
    }
    config = load_config(None, DeviceRegistry.from_plugins(pm), overrides=overrides)
    agent = Agent(config, pm)
    stop_agent = asyncio.Event()
    run = asyncio.create_task(agent.run(stop_agent))
    await asyncio.wait_for(agent.started.wait(), 20)
    central = make_engine(pg_database_url)
    try:
        upstream_while_running = 0
        try:
            for _ in range(100):
                await asyncio.sleep(0.1)
                with contextlib.suppress(ProgrammingError), Session(central) as session:
                    # ProgrammingError: the centre has not created its schema yet.
                    upstream_while_running = int(session.scalar(select(func.count(CallRecord.id))) or 0)
                if upstream_while_running >= 3:
                    break
        finally:
            stop_agent.set()
            await asyncio.wait_for(run, 40)
        assert upstream_while_running >= 3, "calls should reach the centre while the agent runs"
        seat = make_engine(f"sqlite:///{data_dir / 'cti-agent.db'}")
        try:
            local_calls, _ = snapshot(seat)
        finally:
            seat.dispose()
        central_calls, _ = snapshot(central)
    finally:
        central.dispose()
    assert local_calls
    assert all(row[1] is not None for row in local_calls)  # shutdown ended every call...
    assert central_calls == local_calls  # ...and the last batch carried those ends upstream
