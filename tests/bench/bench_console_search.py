"""Console search latency on generated calls: each search kind, indexed as shipped vs a forced full scan.

Run::

    .venv/bin/python tests/bench/bench_console_search.py --calls 1000000 \
        [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/bench] [--sqlite-only | --pg-only]

Every search goes through :func:`agent.centre.search.search` as a manager (one
count-and-sum query plus one page of 50), ``--repeat`` times with varying
values; p50/p95 in milliseconds. The "naive" column runs the same SQL with the
indexes out of play in the same run: SQLite's ``NOT INDEXED`` on ``calls``,
PostgreSQL's ``enable_indexscan``/``enable_bitmapscan``/``enable_indexonlyscan``
off. On PostgreSQL the calls are loaded at revision ``0003_outbox`` and the
database is then upgraded to the head, so the pg_trgm GIN indexes of
``0004_search_indexes`` are built the way an upgrade of a full central database
builds them (the time is printed); the searches then run as migrated.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, insert, text
from sqlalchemy.orm import Session

from agent.centre.auth import Principal
from agent.centre.search import SearchQuery, search
from storage.db import make_engine, upgrade
from storage.models import CallRecord

START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 90
REPS = [f"rep{n:03d}" for n in range(200)]
TEAMS = {rep: f"team{n // 12:02d}" for n, rep in enumerate(REPS)}
NOTE_WORDS = ["报价", "回访", "quote", "call back", "VIP", "not interested", "发合同", "价格太高", "demo"]
MANAGER = Principal(1, "bench", "manager", None, None, "en")
BATCH = 20_000


def generate(count: int, seed: int = 7) -> Iterator[list[dict[str, Any]]]:
    """Batches of call rows: 200 reps in 17 teams, 90 days, random mobile numbers, notes on a third."""
    rng = random.Random(seed)
    batch: list[dict[str, Any]] = []
    for n in range(count):
        rep = rng.choice(REPS)
        started = START + timedelta(seconds=rng.randrange(DAYS * 86400))
        number = f"1{rng.choice('3578')}{rng.randrange(10)}{rng.randrange(10**8):08d}"
        answered = rng.random() < 0.6
        talk = round(rng.lognormvariate(4.0, 1.0), 1) if answered else None
        notes = " ".join(rng.sample(NOTE_WORDS, 2)) if rng.random() < 0.33 else None
        batch.append(
            {
                "uuid": f"{n:012d}-bench",
                "seat": f"seat{REPS.index(rep):03d}",
                "device_id": "sim",
                "line": "L1",
                "rep": rep,
                "team": TEAMS[rep],
                "direction": rng.choice(("in", "out")),
                "number_e164": f"+86{number}",
                "number_raw": number,
                "started_at": started,
                "answered_at": started + timedelta(seconds=5) if answered else None,
                "ended_at": started + timedelta(seconds=(talk or 0) + 10),
                "ring_seconds": 5.0,
                "talk_seconds": talk,
                "disposition": "answered" if answered else rng.choice(("missed", "abandoned")),
                "notes": notes,
                "created_at": started,
                "updated_at": started,
            }
        )
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def load(engine: Engine, count: int) -> float:
    began = time.perf_counter()
    if engine.dialect.name == "postgresql":
        columns = list(next(generate(1))[0])
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            with cursor.copy(f"COPY calls ({', '.join(columns)}) FROM STDIN") as copy:
                for batch in generate(count):
                    for row in batch:
                        copy.write_row([row[c] for c in columns])
            raw.commit()
        finally:
            raw.close()
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE calls")
    else:
        with engine.begin() as connection:
            for batch in generate(count):
                connection.execute(insert(CallRecord), batch)
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    return time.perf_counter() - began


def kinds(rng: random.Random) -> dict[str, Callable[[], dict[str, str]]]:
    def day() -> str:
        return (START + timedelta(days=rng.randrange(DAYS))).strftime("%Y-%m-%d")

    def next_day(d: str) -> str:
        return (datetime.fromisoformat(d) + timedelta(days=1)).strftime("%Y-%m-%d")

    def date_range() -> dict[str, str]:
        d = day()
        return {"from": d, "to": next_day(d)}

    def rep_day() -> dict[str, str]:
        d = day()
        return {"rep": rng.choice(REPS), "from": d, "to": next_day(d)}

    def combined() -> dict[str, str]:
        d = day()
        end = (datetime.fromisoformat(d) + timedelta(days=7)).strftime("%Y-%m-%d")
        return {
            "team": rng.choice(sorted(set(TEAMS.values()))),
            "direction": "in",
            "disposition": "answered",
            "talk_min": "60",
            "from": d,
            "to": end,
            "number": f"{rng.randrange(100):02d}",
        }

    return {
        "date range (1 day)": date_range,
        "rep and day": rep_day,
        "number suffix (*NNNN)": lambda: {"number": f"*{rng.randrange(10**4):04d}"},
        "number infix (NNNN)": lambda: {"number": f"{rng.randrange(10**4):04d}"},
        "number prefix (138NNNN*)": lambda: {"number": f"138{rng.randrange(10**4):04d}*"},
        "notes text": lambda: {"notes": rng.choice(NOTE_WORDS)},
        "combined filters": combined,
    }


@contextmanager
def naive(engine: Engine, session: Session) -> Iterator[None]:
    """The indexes out of play for the session's statements (the same SQL, a full scan)."""
    if engine.dialect.name == "postgresql":
        for name in ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan"):
            session.execute(text(f"SET {name} = off"))
        try:
            yield
        finally:
            for name in ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan"):
                session.execute(text(f"SET {name} = on"))
        return

    def rewrite(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> Any:
        return statement.replace("FROM calls\n", "FROM calls NOT INDEXED\n").replace(
            "FROM calls ", "FROM calls NOT INDEXED "
        ), params

    event.listen(engine, "before_cursor_execute", rewrite, retval=True)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", rewrite)


def timings(engine: Engine, repeat: int, *, indexed: bool) -> dict[str, tuple[float, float, float]]:
    rng = random.Random(3)
    out = {}
    for name, make in kinds(rng).items():
        samples, hits = [], []
        with Session(engine) as session:
            for _ in range(repeat):
                query = SearchQuery.from_params(make(), UTC)
                began = time.perf_counter()
                if indexed:
                    result = search(session, query, MANAGER, masked=False)
                else:
                    with naive(engine, session):
                        result = search(session, query, MANAGER, masked=False)
                samples.append((time.perf_counter() - began) * 1000)
                hits.append(result.total_calls)
        samples.sort()
        p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
        out[name] = (statistics.median(samples), p95, statistics.median(hits))
    return out


def report(label: str, engine: Engine, count: int, repeat: int, naive_repeat: int) -> None:
    indexed = timings(engine, repeat, indexed=True)
    scanned = timings(engine, naive_repeat, indexed=False)
    print(f"\n{label}: {count:,} calls")
    print(f"{'search':<26} {'hits p50':>9} {'p50 ms':>8} {'p95 ms':>8} {'naive p50':>10} {'naive p95':>10}")
    for name, (p50, p95, hits) in indexed.items():
        n50, n95, _ = scanned[name]
        print(f"{name:<26} {hits:>9.0f} {p50:>8.1f} {p95:>8.1f} {n50:>10.1f} {n95:>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--naive-repeat", type=int, default=5)
    parser.add_argument("--pg-url", default=None, help="An empty PostgreSQL database to fill.")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--sqlite-only", action="store_true")
    only.add_argument("--pg-only", action="store_true", help="Skip SQLite (needs --pg-url).")
    args = parser.parse_args()
    if args.pg_only and not args.pg_url:
        parser.error("--pg-only needs --pg-url")

    if not args.pg_only:
        with tempfile.TemporaryDirectory(prefix="cti-bench-") as tmp:
            lite = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
            upgrade(lite)
            seconds = load(lite, args.calls)
            print(f"SQLite: loaded {args.calls:,} calls in {seconds:.0f} s")
            report("SQLite", lite, args.calls, args.repeat, args.naive_repeat)
            lite.dispose()
    if args.sqlite_only or not args.pg_url:
        return
    pg = make_engine(args.pg_url)
    upgrade(pg, "0003_outbox")
    seconds = load(pg, args.calls)
    print(f"\nPostgreSQL: loaded {args.calls:,} calls in {seconds:.0f} s")
    began = time.perf_counter()
    upgrade(pg)
    with pg.begin() as connection:
        connection.exec_driver_sql("ANALYZE calls")
    print(f"upgraded to the head (pg_trgm GIN indexes built) in {time.perf_counter() - began:.0f} s")
    report("PostgreSQL (as migrated)", pg, args.calls, args.repeat, args.naive_repeat)
    pg.dispose()


if __name__ == "__main__":
    main()
