"""Team-mode sync: throughput from many seats to the centre, and catch-up after a central outage.

Seats reach the floor's PostgreSQL the one way they can: over HTTP to a real ``cti-agent
centre`` process (its own process; the seat API, one request per batch). The direct-SQL
transport measured beside it before (189 calls/s; 6,000 calls caught up in 49 s) is gone.

Each simulated seat is its own SQLite database with the outbox on; its calls are
written the way the agent writes them (three snapshots per call: started,
answered, ended; a note on every third call), so the outbox holds what a real
seat's would. Two figures:

1. throughput: every seat holds ``--calls`` calls; all seats sync at once
   (``--workers`` threads, each draining seats one batch at a time, interleaved
   as the seats' loops would be) and the rate the centre absorbs is reported in
   calls/s and outbox entries/s.
2. catch-up: the centre is "down" for an hour while each seat makes
   ``--calls-per-hour`` calls; then it comes back and the time until every
   seat's backlog is empty is reported.

All seats share this machine's cores, so the figures are a lower bound for a
real floor where each seat has its own PC. The centre is ``--url`` (a
PostgreSQL SQLAlchemy URL) or a throwaway server started here (needs the
PostgreSQL server binaries; started with ``max_connections=300``).

Run: .venv/bin/python tests/bench/bench_sync.py [--seats 100] [--calls 100] [--calls-per-hour 60]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from centre_process import centre_process
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from agent.events import Call, Direction, Disposition, EndReason
from agent.seat.centre_client import CentreClient
from agent.seat.transport import HttpTransport
from storage.db import make_engine, upgrade
from storage.models import CallRecord
from storage.outbox import CentralSync, enable
from storage.repository import save_note, upsert_call
from storage.seats import add_seat

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@contextmanager
def throwaway_server() -> Iterator[str]:
    """A PostgreSQL server in a temporary directory; yields its URL."""
    bindirs = sorted(Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bindirs:
        raise SystemExit("no PostgreSQL server binaries: give --url or install postgresql")
    bindir = bindirs[-1]
    as_postgres = os.geteuid() == 0
    workdir = Path(tempfile.mkdtemp(prefix="cti-bench-pg-"))
    workdir.chmod(0o755)
    if as_postgres:
        shutil.chown(workdir, "postgres", "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])

    def run(*argv: str) -> None:
        command = [str(bindir / argv[0]), *argv[1:]]
        if as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    data = workdir / "data"
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c max_connections=300"
    try:
        run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        run("pg_ctl", "-D", str(data), "-l", str(workdir / "pg.log"), "-w", "-o", options, "start")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(workdir, ignore_errors=True)


def snapshots(seat: int, n: int, start: datetime) -> list[Call]:
    """The three snapshots the tracker writes for one answered call."""
    call = Call(
        uuid=f"{seat:08d}-0000-4000-8000-{n:012d}",
        seat=f"seat-{seat:03d}",
        device_id="sim",
        line="L1",
        rep=f"rep-{seat:03d}",
        team=f"team-{seat // 12}",
        direction=Direction.OUT if n % 3 else Direction.IN,
        started_at=start,
        number_raw=f"138{seat:04d}{n:04d}",
        number_e164=f"+86138{seat:04d}{n:04d}",
    )
    answered = dataclasses.replace(call, answered_at=start + timedelta(seconds=5), ring_seconds=5.0)
    ended = dataclasses.replace(
        answered,
        ended_at=start + timedelta(seconds=95),
        talk_seconds=90.0,
        disposition=Disposition.ANSWERED,
        end_reason=EndReason.HANGUP,
    )
    return [call, answered, ended]


def make_seats(root: Path, seats: int) -> list[Engine]:
    """``seats`` migrated SQLite databases with the outbox on (copies of one template)."""
    template = root / "template.db"
    engine = make_engine(f"sqlite:///{template}")
    upgrade(engine)
    with Session(engine) as session, session.begin():
        enable(session)
    engine.dispose()
    engines = []
    for seat in range(seats):
        path = root / f"seat-{seat:03d}.db"
        shutil.copyfile(template, path)
        engines.append(make_engine(f"sqlite:///{path}"))
    return engines


def write_calls(
    engine: Engine, seat: int, first: int, count: int, start: datetime, spacing: timedelta
) -> None:
    """Write ``count`` calls as the agent would: one transaction per snapshot, a note on every third."""
    for n in range(first, first + count):
        for call in snapshots(seat, n, start + (n - first) * spacing):
            with Session(engine) as session, session.begin():
                upsert_call(session, call)
        if n % 3 == 0:
            with Session(engine) as session, session.begin():
                save_note(session, snapshots(seat, n, start)[0].uuid, f"note {n}", None)


def fill(engines: list[Engine], first: int, count: int, spacing: timedelta, workers: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda i: write_calls(engines[i], i, first, count, T0, spacing), range(len(engines))))
    return time.perf_counter() - started


def drain_all(syncers: list[CentralSync], workers: int) -> tuple[float, int]:
    """Sync every seat until its outbox is empty; returns (seconds, outbox entries sent)."""
    pending = list(range(len(syncers)))
    lock = threading.Lock()
    sent = 0

    def worker() -> None:
        nonlocal sent
        while True:
            with lock:
                if not pending:
                    return
                seat = pending.pop(0)
            result = syncers[seat].run_batch()
            with lock:
                sent += result.entries
                if result.entries:
                    pending.append(seat)  # round-robin: each seat's loop sends a batch, then the next

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, sent


def central_calls(url: str) -> int:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return int(session.scalar(select(func.count(CallRecord.id))) or 0)
    finally:
        engine.dispose()


def http_syncers(url: str, address: str, engines: list[Engine], root: Path, batch: int) -> list[CentralSync]:
    """One HTTP transport per seat, each with its own token from the centre's database."""
    central = make_engine(url)
    try:
        with Session(central) as session, session.begin():
            session.execute(text("DELETE FROM seats"))
            tokens = [add_seat(session, f"seat-{i:03d}", "north")[1] for i in range(len(engines))]
    finally:
        central.dispose()
    return [
        CentralSync(
            engine,
            transport=HttpTransport(CentreClient(address, token), f"seat-{i:03d}"),
            data_dir=root,
            batch_size=batch,
        )
        for i, (engine, token) in enumerate(zip(engines, tokens, strict=True))
    ]


def bench(url: str, args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="cti-bench-sync-"))
    try:
        central = make_engine(url)
        upgrade(central)
        with central.connect() as connection:
            connection.execute(text("TRUNCATE calls CASCADE"))
            connection.commit()
        central.dispose()
        engines = make_seats(root, args.seats)
        with centre_process(root, root / "centre", f'[storage]\nurl = "{url}"\n') as address:
            syncers = http_syncers(url, address, engines, root, args.batch)
            run(url, args, "http", engines, syncers)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(
    url: str, args: argparse.Namespace, via: str, engines: list[Engine], syncers: list[CentralSync]
) -> None:
    took = fill(engines, 0, args.calls, timedelta(minutes=2), args.workers)
    calls = args.seats * args.calls
    print(f"[{via}] seats: {args.seats}, workers: {args.workers}, batch: {args.batch}")
    print(
        f"[{via}] filled {calls} calls locally in {took:.1f} s ({calls / took:.0f} calls/s of local writes)"
    )
    seconds, entries = drain_all(syncers, args.workers)
    print(
        f"[{via}] throughput: {calls} calls ({entries} outbox entries) synced in {seconds:.1f} s: "
        f"{calls / seconds:.0f} calls/s, {entries / seconds:.0f} entries/s"
    )
    hour = args.calls_per_hour
    took = fill(engines, args.calls, hour, timedelta(seconds=3600 / hour), args.workers)
    backlog = args.seats * hour
    print(
        f"[{via}] outage: one hour at {hour} calls/h per seat queued {backlog} calls ({took:.1f} s to write)"
    )
    seconds, entries = drain_all(syncers, args.workers)
    print(f"[{via}] catch-up after the outage: {backlog} calls ({entries} entries) in {seconds:.1f} s")
    expected = args.seats * (args.calls + hour)
    got = central_calls(url)
    print(
        f"[{via}] central holds {got} calls, expected {expected}: {'ok' if got == expected else 'MISMATCH'}"
    )
    for syncer in syncers:
        syncer.close()
    for engine in engines:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="central PostgreSQL URL (default: a throwaway server)")
    parser.add_argument("--seats", type=int, default=100)
    parser.add_argument("--calls", type=int, default=100, help="calls per seat for the throughput run")
    parser.add_argument("--calls-per-hour", type=int, default=60, help="calls per seat in the outage hour")
    parser.add_argument("--batch", type=int, default=200, help="[central] batch_size")
    parser.add_argument("--workers", type=int, default=8, help="threads syncing seats at once")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(throwaway_server())
        bench(url, args)


if __name__ == "__main__":
    main()
