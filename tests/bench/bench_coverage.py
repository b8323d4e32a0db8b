"""Coverage (打透) on PostgreSQL at a floor's size: the coverage page's query and the metrics' query.

Run::

    .venv/bin/python tests/bench/bench_coverage.py --leads 1000000 --calls 10000000 \
        [--lists 10] [--repeat 20] [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/bench]

Without ``--pg-url`` a throwaway server is started (as in ``tests/integration/conftest.py``) and
stopped. The data is built server-side with ``INSERT ... SELECT generate_series`` (the fastest way
here; the schema is the migrated one, every index in place): ``--leads`` customers with one Chinese
mobile number each (``+861[3-9]...``), each a lead of one of ``--lists`` equal lists, held by one of
100 reps in 9 teams; ``--calls`` outbound calls in time order over 90 days, 70 % to a lead's number by
the rep holding it, the rest to numbers that are nobody's; a thousand dispositions a list and one
recall in a hundred leads (half of them undialed: 过数据). Then ``coverage_report`` of one list (the
page's whole read) and ``coverage_by_list`` (the metrics' read) are timed ``--repeat`` times:
p50/p95 in milliseconds, and the page query's plan is printed.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from storage.coverage import coverage_by_list, coverage_report
from storage.db import make_engine, upgrade

START = datetime(2026, 1, 1, tzinfo=UTC)
REPS = 100
TEAMS = 9


@contextmanager
def throwaway_server() -> Iterator[str]:
    """A PostgreSQL server in a temporary directory (fsync off: a benchmark's data); yields its URL."""
    bindirs = sorted(Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bindirs:
        raise SystemExit("no PostgreSQL server binaries: give --pg-url or install postgresql")
    as_postgres = os.geteuid() == 0
    workdir = Path(tempfile.mkdtemp(prefix="cti-bench-cov-"))
    workdir.chmod(0o755)
    if as_postgres:
        shutil.chown(workdir, "postgres", "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])

    def pg(*argv: str) -> None:
        command = [str(bindirs[-1] / argv[0]), *argv[1:]]
        if as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=300)

    data = workdir / "data"
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_wal_size=4GB"
    try:
        pg("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        pg("pg_ctl", "-D", str(data), "-l", str(workdir / "pg.log"), "-w", "-o", options, "start")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(workdir, ignore_errors=True)


def build(engine: Engine, leads: int, calls: int, lists: int) -> None:
    """The floor of the module docstring."""
    steps = [
        ("teams", f"INSERT INTO teams (name) SELECT 'team' || t FROM generate_series(0, {TEAMS - 1}) t"),
        (
            "reps",
            f"INSERT INTO reps (name, team_id, active) SELECT 'rep' || r, "
            f"(SELECT id FROM teams WHERE name = 'team' || (r % {TEAMS})), true "
            f"FROM generate_series(0, {REPS - 1}) r",
        ),
        (
            "lists",
            "INSERT INTO lead_lists (name, premium) "
            f"SELECT 'list' || l, false FROM generate_series(0, {lists - 1}) l",
        ),
        (
            "customers",
            f"INSERT INTO customers (id, name, owner_rep) SELECT i, '客户' || i, 'rep' || (i % {REPS}) "
            f"FROM generate_series(1, {leads}) i",
        ),
        (
            "phones",
            "INSERT INTO customer_phones (customer_id, number_e164, number_raw) "
            "SELECT i, '+861' || (3 + i % 7) || lpad((i::bigint * 7919 % 1000000000)::text, 9, '0'), "
            "'1' || (3 + i % 7) || lpad((i::bigint * 7919 % 1000000000)::text, 9, '0') "
            f"FROM generate_series(1, {leads}) i",
        ),
        (
            "leads",
            "INSERT INTO leads (list_id, customer_id, team, rep, team_at, rep_at) "
            f"SELECT (SELECT id FROM lead_lists WHERE name = 'list' || (i % {lists})), i, "
            f"'team' || ((i % {REPS}) % {TEAMS}), 'rep' || (i % {REPS}), "
            "timestamptz '2026-01-01', timestamptz '2026-01-01' + (i % 30) * interval '1 day' "
            f"FROM generate_series(1, {leads}) i",
        ),
        (
            "calls",
            # call n: in time order; 7 in 10 to lead j = a hash of n, by j's holder; the rest elsewhere.
            "INSERT INTO calls (uuid, seat, device_id, line, rep, team, direction, number_e164, number_raw, "
            "started_at, answered_at, ended_at, ring_seconds, talk_seconds, disposition, rings, waiting, "
            "created_at, updated_at) "
            "SELECT lpad(n::text, 12, '0') || '-bench', 'seat' || (j % 100), 'sim', 'L1', "
            "'rep' || (j % 100), "
            f"'team' || ((j % 100) % {TEAMS}), 'out', "
            "CASE WHEN n % 10 < 7 THEN '+861' || (3 + j % 7) || lpad((j * 7919 % 1000000000)::text, 9, '0') "
            "ELSE '+8617' || lpad((n % 1000000000)::text, 9, '0') END, NULL, at, "
            "CASE WHEN n % 5 < 2 THEN at + interval '8 s' END, at + interval '60 s', 8, "
            "CASE WHEN n % 5 < 2 THEN 52 END, CASE WHEN n % 5 < 2 THEN 'answered' ELSE 'missed' END, "
            "1, false, at, at "
            f"FROM (SELECT n, 1 + (n * 2654435761) % {leads} AS j, "
            f"timestamptz '2026-01-01' + n * (interval '90 days' / {calls}) AS at "
            f"FROM generate_series(1, {calls}) n) s",
        ),
        (
            "dispositions",
            "INSERT INTO dispositions (uuid, seat, rep, lead_id, customer_id, code, at, received_at) "
            "SELECT 'd' || l.id, 's', l.rep, l.id, l.customer_id, "
            "(ARRAY['no_answer','busy','call_back','deal','not_interested'])[1 + l.id % 5], "
            "l.rep_at + interval '1 day', l.rep_at + interval '1 day' "
            f"FROM leads l WHERE l.id % {max(leads // (1000 * lists), 1)} = 0",
        ),
        (
            "transfers",
            "INSERT INTO transfers (at, actor, action, customer_id, list_id, from_team, from_rep, to_rep) "
            "SELECT timestamptz '2026-03-15', 'tl', 'recall', l.customer_id, l.list_id, l.team, l.rep, NULL "
            "FROM leads l WHERE l.id % 100 = 0",
        ),
    ]
    for name, sql in steps:
        began = time.perf_counter()
        with engine.begin() as connection:
            connection.execute(text(sql))
        print(f"  {name:<13} {time.perf_counter() - began:7.1f} s", flush=True)
    began = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
    print(f"  {'vacuum':<13} {time.perf_counter() - began:7.1f} s", flush=True)


def timed(run: object, repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        run()  # type: ignore[operator]
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=10_000_000)
    parser.add_argument("--lists", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--pg-url")
    args = parser.parse_args()
    if args.pg_url:
        run(args, args.pg_url)
        return
    with throwaway_server() as url:
        run(args, url)


def run(args: argparse.Namespace, url: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    print(f"building {args.leads:,} leads in {args.lists} lists, {args.calls:,} calls", flush=True)
    build(engine, args.leads, args.calls, args.lists)
    now = datetime(2026, 4, 1, tzinfo=UTC)
    with Session(engine) as session:
        report = coverage_report(session, "list1", now=now)
        print(
            f"list1: {report.total.assigned:,} leads, {report.total.dialed:,} dialed, "
            f"{report.total.attempts:,} calls, {report.total.passed_undialed:,} passed undialed, "
            f"{len(report.rows)} reps"
        )
        page = timed(lambda: coverage_report(session, "list1", now=now), args.repeat)
        team = timed(lambda: coverage_report(session, "list1", now=now, team="team3"), args.repeat)
        floor = timed(lambda: coverage_by_list(session, now=now), max(args.repeat // 4, 3))
        plan = session.execute(
            text(
                "EXPLAIN (ANALYZE, BUFFERS) SELECT l.rep, count(*), count(c.id) FROM leads l "
                "JOIN customer_phones p ON p.customer_id = l.customer_id LEFT JOIN calls c ON "
                "c.number_e164 = p.number_e164 AND c.direction = 'out' AND c.rep = l.rep AND "
                "c.started_at >= l.rep_at WHERE l.list_id = (SELECT id FROM lead_lists WHERE name = 'list1') "
                "AND l.rep IS NOT NULL GROUP BY l.rep"
            )
        ).scalars()
        print("\n".join(plan))
    leads_per_list = args.leads // args.lists
    print(f"\nsize: {args.leads:,} leads ({leads_per_list:,} a list), {args.calls:,} calls")
    print(f"coverage page, one list, manager   p50 {page[0]:8.1f} ms  p95 {page[1]:8.1f} ms")
    print(f"coverage page, one list, team lead p50 {team[0]:8.1f} ms  p95 {team[1]:8.1f} ms")
    print(f"metrics, every list and team       p50 {floor[0]:8.1f} ms  p95 {floor[1]:8.1f} ms")
    engine.dispose()


if __name__ == "__main__":
    main()
