"""Customer lookup latency through the centre, beside the seat's own SQL lookup, in one run.

A real ``cti-agent centre`` process (embedded SQLite in a temporary directory, or ``--url`` a
PostgreSQL database) holds a floor's data: ``--customers`` customers owned by the reps of two
teams (a tenth in the pool) and ``--calls`` calls written in time order by seats of both teams,
most of them to customers' numbers. A seat's own SQLite holds the same customers.

The client runs in its own process (as a seat would) and measures, per lookup of a random
number (a customer's, or now and then an unknown one):

- ``centre (HTTP)``: :meth:`CentreClient.lookup` over loopback, the centre's two queries
  included: what a seat's first pop of a number costs;
- ``plugin, miss``: the ``centre`` plugin with an empty cache (the above, plus parsing and
  keeping the card);
- ``plugin, hit``: the same plugin once the card is cached: what every later pop costs;
- ``local SQL``: the seat's ``sql`` plugin on its own SQLite, the pop's lookup without a centre.

The pop shows the number before any lookup (the two-phase pop); these figures are how long
the customer's name then takes. Nothing passes or fails: it prints p50, p99 and max.

Run: .venv/bin/python tests/bench/bench_lookup.py [--customers 5000] [--calls 50000] [--lookups 2000]
     [--url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from centre_process import centre_process
from sqlalchemy import Engine, Table, insert
from sqlalchemy.orm import Session

from agent.seat.centre_client import CentreClient
from agent.seat.centre_lookup import CardCache, CentreLookup
from storage.db import make_engine, upgrade
from storage.models import CallRecord, CustomerPhone, CustomerRecord, Rep, Team
from storage.plugin import SqlStore
from storage.seats import add_seat

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
PREFIXES = ("135", "136", "137", "138", "139", "150", "151", "152", "186", "187", "188", "189")
TEAMS = {"north": [f"rep-n{i:02d}" for i in range(12)], "south": [f"rep-s{i:02d}" for i in range(12)]}


def numbers(count: int, rng: random.Random) -> list[str]:
    """``count`` distinct valid mainland mobile numbers in E.164."""
    seen: set[str] = set()
    while len(seen) < count:
        seen.add(f"+86{rng.choice(PREFIXES)}{rng.randrange(10**8):08d}")
    return sorted(seen, key=lambda _: rng.random())


def fill_customers(engine: Engine, phones: list[str], rng: random.Random, *, teams: bool) -> None:
    """One customer per number; owners from both teams, a tenth in the pool (and reps/teams if ``teams``)."""
    reps = [rep for members in TEAMS.values() for rep in members]
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        if teams:
            for name, members in TEAMS.items():
                team = Team(name=name)
                session.add(team)
                session.flush()
                session.add_all(Rep(name=rep, team_id=team.id) for rep in members)
        customers = cast(Table, CustomerRecord.__table__)
        rows = [
            {
                "id": n + 1,
                "name": f"客户 {n:05d}",
                "company": f"公司 {n % 700:03d}",
                "owner_rep": None if rng.random() < 0.1 else rng.choice(reps),
                "created_at": now,
                "updated_at": now,
            }
            for n in range(len(phones))
        ]
        session.execute(insert(customers), rows)
        session.execute(
            insert(cast(Table, CustomerPhone.__table__)),
            [{"customer_id": n + 1, "number_e164": p, "number_raw": p[3:]} for n, p in enumerate(phones)],
        )


def fill_calls(engine: Engine, phones: list[str], count: int, rng: random.Random) -> None:
    """``count`` ended calls in time order, from seats of both teams, 90 % to customers' numbers."""
    seats = [
        (f"seat-{team[0]}{i:02d}", team, rep)
        for team, members in TEAMS.items()
        for i, rep in enumerate(members)
    ]
    table = cast(Table, CallRecord.__table__)
    started = T0
    rows: list[dict[str, Any]] = []
    with Session(engine) as session, session.begin():
        for n in range(count):
            seat, team, rep = rng.choice(seats)
            number = rng.choice(phones) if rng.random() < 0.9 else f"+86139{rng.randrange(10**8):08d}"
            started += timedelta(seconds=rng.randrange(5, 120))
            talk = float(rng.randrange(0, 600))
            rows.append(
                {
                    "uuid": f"00000000-0000-4000-8000-{n:012d}",
                    "seat": seat,
                    "device_id": "modem0",
                    "line": "L1",
                    "rep": rep,
                    "team": team,
                    "direction": rng.choice(("in", "out")),
                    "number_e164": number,
                    "number_raw": number[3:],
                    "started_at": started,
                    "answered_at": started + timedelta(seconds=5) if talk else None,
                    "ended_at": started + timedelta(seconds=5 + talk),
                    "talk_seconds": talk or None,
                    "disposition": "answered" if talk else "missed",
                    "notes": "回电 下周" if n % 7 == 0 else None,
                    "created_at": started,
                    "updated_at": started,
                }
            )
            if len(rows) == 5000:
                session.execute(insert(table), rows)
                rows = []
        if rows:
            session.execute(insert(table), rows)


def timed(fn: Callable[[str], object], numbers: list[str], warmup: int = 50) -> list[float]:
    """Milliseconds of ``fn(number)`` for each number (the first ``warmup`` calls not counted)."""
    for number in numbers[:warmup]:
        fn(number)
    out = []
    for number in numbers:
        started = time.perf_counter()
        fn(number)
        out.append((time.perf_counter() - started) * 1000)
    return out


def client_main(args: argparse.Namespace) -> None:
    """The seat's side, in its own process: prints one JSON object of timings (ms)."""
    lookups = json.loads(Path(args.numbers).read_text(encoding="utf-8"))
    client = CentreClient(args.address, args.token)
    seat = make_engine(f"sqlite:///{args.seat_db}")
    sql = SqlStore(seat)
    results: dict[str, list[float]] = {}
    try:
        results["centre (HTTP)"] = timed(lambda n: client.lookup(n, timeout=5.0), lookups)
        plugin = CentreLookup(client, CardCache(None, max_entries=len(lookups) + 100), timeout=5.0)
        try:
            # Cards of the warm-up numbers get cached; the measured ones are new to the cache.
            fresh = lookups[50:] + [f"+86137{n:08d}" for n in range(50)]
            results["plugin, miss"] = timed(lambda n: plugin.lookup_customer(n, n[3:]), fresh)
            results["plugin, hit"] = timed(lambda n: plugin.lookup_customer(n, n[3:]), fresh)
        finally:
            plugin.close()
        results["local SQL"] = timed(lambda n: sql.lookup_customer(n, n[3:]), lookups)
    finally:
        client.close()
        seat.dispose()
    print(json.dumps(results))


def report(results: dict[str, list[float]]) -> None:
    print(f"{'lookup':<16} {'n':>6} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    for name, values in results.items():
        cuts = statistics.quantiles(values, n=100)
        print(f"{name:<16} {len(values):>6} {cuts[49]:>9.3f} {cuts[98]:>9.3f} {max(values):>9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role")
    client = sub.add_parser("client")
    for name in ("address", "token", "numbers", "seat_db"):
        client.add_argument(name)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--url", default=None, help="the centre's PostgreSQL (default: SQLite in a temp dir)")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    if args.role == "client":
        client_main(args)
        return

    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="cti-bench-lookup-"))
    try:
        phones = numbers(args.customers, rng)
        centre_url = args.url or f"sqlite:///{root / 'cti-agent.db'}"
        started = time.monotonic()
        centre = make_engine(centre_url)
        upgrade(centre)
        fill_customers(centre, phones, rng, teams=True)
        fill_calls(centre, phones, args.calls, rng)
        with Session(centre) as session, session.begin():
            token = add_seat(session, "seat-n00", "north")[1]
        centre.dispose()
        seat = make_engine(f"sqlite:///{root / 'seat.db'}")
        upgrade(seat)
        fill_customers(seat, phones, random.Random(args.seed), teams=False)
        seat.dispose()
        print(
            f"data: {args.customers} customers, {args.calls} calls on the centre "
            f"({'PostgreSQL' if args.url else 'SQLite'}), the same customers on the seat; "
            f"written in {time.monotonic() - started:.1f} s"
        )
        unknown = [f"+86139{rng.randrange(10**8):08d}" for _ in range(args.lookups // 10)]
        lookups = [rng.choice(phones) for _ in range(args.lookups - len(unknown))] + unknown
        rng.shuffle(lookups)
        (root / "numbers.json").write_text(json.dumps(lookups), encoding="utf-8")
        storage = f'[storage]\nurl = "{args.url}"\n' if args.url else ""
        with centre_process(root, root, storage) as address:
            client = [sys.executable, __file__, "client", address, token]
            done = subprocess.run(
                [*client, str(root / "numbers.json"), str(root / "seat.db")],
                capture_output=True, text=True, timeout=1800, check=False,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"the client failed:\n{done.stderr[-3000:]}")
        print(f"{args.lookups} lookups ({len(unknown)} of unknown numbers), the client in its own process:")
        report(json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
