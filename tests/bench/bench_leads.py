"""Leads on the centre: handing 100 k leads to 100 reps, and a seat's worklist fetch over real HTTP.

Run::

    .venv/bin/python tests/bench/bench_leads.py [--leads 100000] [--reps 100] [--fetches 300]
        [--sqlite-only | --pg-only] [--pg-url postgresql+psycopg://...]

The floor: ``--leads`` customers with Chinese names and mainland mobiles on one list, reps in
teams of twelve. Hand-over: the list to the teams (``assign_to_team``, a team's share each), then
each team's leads to its reps (``assign_to_rep``, equal shares), every move in the transfer log,
as ``cti-agent leads assign`` does it; leads per second. Worklist: a real ``cti-agent centre``
process over the same database, and this process as the seats (its own process), each asking
``GET /api/v1/worklist`` for its rep (some leads already dispositioned, follow-ups due); p50/p99
in milliseconds over a kept-alive connection. Without ``--pg-url`` a throwaway PostgreSQL server
is started (as the sync benchmark does).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from bench_sync import throwaway_server
from centre_process import centre_process
from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.orm import Session

from storage.db import make_engine, upgrade
from storage.leads import add_rep, assign_to_rep, assign_to_team, open_list
from storage.models import CustomerPhone, CustomerRecord, Lead, Transfer
from storage.seats import add_seat

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国志文斌浩宇欣怡子涵梓轩"
PREFIXES = (
    "130",
    "131",
    "132",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "158",
    "159",
    "186",
    "188",
)


def build(engine: Engine, leads: int, reps: int) -> list[str]:
    """The list ``spring`` with ``leads`` customers, and the reps in teams of twelve; their names."""
    rng = random.Random(16)
    upgrade(engine)
    names = [f"rep{n:03d}" for n in range(reps)]
    with Session(engine) as session, session.begin():
        for n, rep in enumerate(names):
            add_rep(session, rep, f"team{n // 12:02d}")
        lead_list = open_list(session, "spring", actor="manager")
        list_id = lead_list.id
    numbers = rng.sample(range(10**8), leads)
    step = 10_000
    for start in range(0, leads, step):
        with Session(engine) as session, session.begin():
            first = (session.scalar(select(func.max(CustomerRecord.id))) or 0) + 1
            ids = range(first, first + min(step, leads - start))
            session.execute(
                insert(CustomerRecord),
                [
                    {
                        "id": i,
                        "name": rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=rng.choice((1, 2)))),
                    }
                    for i in ids
                ],
            )
            session.execute(
                insert(CustomerPhone),
                [
                    {
                        "customer_id": i,
                        "number_e164": f"+86{rng.choice(PREFIXES)}{numbers[start + k]:08d}",
                    }
                    for k, i in enumerate(ids)
                ],
            )
            session.execute(insert(Lead), [{"list_id": list_id, "customer_id": i} for i in ids])
    return names


def hand_over(engine: Engine, names: list[str], leads: int) -> float:
    """Seconds to give the list to the teams and each team's leads to its reps."""
    teams: dict[str, list[str]] = {}
    for n, rep in enumerate(names):
        teams.setdefault(f"team{n // 12:02d}", []).append(rep)
    per_rep = leads // len(names)
    started = time.perf_counter()
    for team, members in teams.items():
        with Session(engine) as session, session.begin():
            assign_to_team(session, "spring", team, per_rep * len(members), actor="manager")
        for rep in members:
            with Session(engine) as session, session.begin():
                assign_to_rep(session, "spring", rep, per_rep, actor=f"lead-{team}")
    return time.perf_counter() - started


def disposition_some(engine: Engine, names: list[str]) -> None:
    """A day's work: a third of each rep's leads dialed, some due back today, some closed."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        for rep in names:
            ids = list(session.scalars(select(Lead.id).where(Lead.rep == rep)))
            for lead_id in rng.sample(ids, len(ids) // 3):
                roll = rng.random()
                values: dict[str, object] = {"last_code": "no_answer", "last_at": now - timedelta(hours=2)}
                if roll < 0.2:
                    values.update(last_code="call_back", next_at=now + timedelta(hours=rng.uniform(-3, 20)))
                elif roll < 0.35:
                    values.update(last_code="not_interested", closed_at=now - timedelta(hours=1))
                session.execute(update(Lead).where(Lead.id == lead_id).values(**values))


def fetches(address: str, tokens: list[str], count: int) -> list[float]:
    """Milliseconds per ``GET /api/v1/worklist``, the seats taking turns, one kept-alive client each."""
    until = (datetime.now(UTC) + timedelta(hours=8)).isoformat()
    clients = [httpx.Client(base_url=address, headers={"authorization": f"Bearer {t}"}) for t in tokens]
    times: list[float] = []
    try:
        for client in clients:  # connect and warm up
            client.get("/api/v1/worklist", params={"until": until}).raise_for_status()
        for n in range(count):
            client = clients[n % len(clients)]
            started = time.perf_counter()
            answer = client.get("/api/v1/worklist", params={"until": until})
            times.append((time.perf_counter() - started) * 1000)
            answer.raise_for_status()
            assert answer.json()["items"], "an empty worklist measures nothing"
    finally:
        for client in clients:
            client.close()
    return times


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(label: str, url: str, root: Path, tables: str, args: argparse.Namespace) -> None:
    """Build, hand over, measure the worklist on one database; print one block of figures."""
    engine = make_engine(url)
    try:
        started = time.perf_counter()
        names = build(engine, args.leads, args.reps)
        built = time.perf_counter() - started
        seconds = hand_over(engine, names, args.leads)
        with Session(engine) as session:
            moved = session.scalar(select(func.count(Transfer.id)).where(Transfer.action == "to_rep")) or 0
        disposition_some(engine, names)
        with Session(engine) as session, session.begin():
            tokens = [add_seat(session, f"seat-{rep}", None, rep)[1] for rep in names[: args.seats]]
        held = args.leads // args.reps
    finally:
        engine.dispose()
    with centre_process(root, root, tables) as address:
        times = fetches(address, tokens, args.fetches)
    print(f"{label}: {args.leads:,} leads, {args.reps} reps ({held} each), built in {built:.1f} s")
    print(
        f"  hand-over to teams and reps: {seconds:.1f} s, {args.leads / seconds:,.0f} leads/s, "
        f"{moved:,} log rows"
    )
    print(
        f"  worklist over HTTP ({args.seats} seats, {len(times)} fetches, ~{held} leads each): "
        f"p50 {statistics.median(times):.1f} ms, p99 {quantile(times, 0.99):.1f} ms, max {max(times):.1f} ms"
    )


def main() -> None:
    """Parse the options, run on SQLite and PostgreSQL."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--seats", type=int, default=10, help="seats asking for their worklists")
    parser.add_argument("--fetches", type=int, default=300)
    parser.add_argument("--pg-url", default=None)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--sqlite-only", action="store_true")
    only.add_argument("--pg-only", action="store_true")
    args = parser.parse_args()
    if not args.pg_only:
        with tempfile.TemporaryDirectory(prefix="cti-bench-leads-") as tmp:
            root = Path(tmp)
            run("SQLite", f"sqlite:///{root / 'cti-agent.db'}", root, "", args)
    if not args.sqlite_only:
        with tempfile.TemporaryDirectory(prefix="cti-bench-leads-") as tmp:
            root = Path(tmp)
            if args.pg_url:
                run("PostgreSQL", args.pg_url, root, f'[storage]\nurl = "{args.pg_url}"\n', args)
            else:
                with throwaway_server() as url:
                    run("PostgreSQL", url, root, f'[storage]\nurl = "{url}"\n', args)


if __name__ == "__main__":
    main()
