"""Leads on the centre's PostgreSQL: two team leads or two seats reaching for the same leads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from storage.customers import import_customers
from storage.db import make_engine, upgrade
from storage.leads import LeadError, LeadTaken, add_leads, add_rep, assign_to_rep, claim_lead, open_list
from storage.models import CustomerPhone, CustomerRecord, Lead, Transfer


@pytest.fixture
def engine(pg_database_url: str) -> Iterator[Engine]:
    eng = make_engine(pg_database_url)
    upgrade(eng)
    with Session(eng) as session, session.begin():
        for rep in ("amy", "bob", "cai"):
            add_rep(session, rep, "north")
        lead_list = open_list(session, "spring", actor="test")
        rows = [(1, ["公司", "联系人", "手机"])] + [
            (n + 2, [f"公司{n}", f"联系人{n}", f"1390000{n:04d}"]) for n in range(150)
        ]
        import_customers(
            session, iter(rows), imported=lambda ids: add_leads(session, lead_list, ids, actor="test")
        )
    yield eng
    eng.dispose()


def at_once(*work: Callable[[Session], Any], engine: Engine) -> list[Any]:
    """Run each piece of work in its own thread and transaction, all released together; their results."""
    gate = threading.Barrier(len(work))
    results: list[Any] = [None] * len(work)

    def one(index: int) -> None:
        with Session(engine) as session:
            gate.wait()
            try:
                with session.begin():
                    results[index] = work[index](session)
            except LeadError as exc:
                results[index] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_two_seats_claiming_one_lead_at_once_one_wins(engine: Engine) -> None:
    with Session(engine) as session:
        lead_ids = list(session.scalars(select(Lead.id).order_by(Lead.id).limit(5)))
    for lead_id in lead_ids:  # the race is real: repeat it on fresh leads
        results = at_once(
            lambda s, lead=lead_id: claim_lead(s, lead, "amy", actor="seat:s1"),
            lambda s, lead=lead_id: claim_lead(s, lead, "bob", actor="seat:s2"),
            engine=engine,
        )
        won = [r for r in results if not isinstance(r, LeadError)]
        lost = [r for r in results if isinstance(r, LeadTaken)]
        assert len(won) == 1, results
        assert len(lost) == 1, results
        with Session(engine) as session:
            holder = session.scalar(select(Lead.rep).where(Lead.id == lead_id))
            lead = session.get(Lead, lead_id)
            assert lead is not None
            owner = session.scalar(
                select(CustomerRecord.owner_rep).where(CustomerRecord.id == lead.customer_id)
            )
            moves = session.scalar(
                select(func.count())
                .select_from(Transfer)
                .where(Transfer.customer_id == lead.customer_id, Transfer.action == "to_rep")
            )
        assert holder == owner  # one holder, and it is the customer's owner
        assert lost[0].owner == holder  # the loser is told who has it
        assert moves == 1  # only the winner's move is logged


def test_two_team_leads_handing_out_at_once_take_different_leads(engine: Engine) -> None:
    results = at_once(
        lambda s: assign_to_rep(s, "spring", "amy", 60, actor="tl-1"),
        lambda s: assign_to_rep(s, "spring", "bob", 60, actor="tl-2"),
        lambda s: assign_to_rep(s, "spring", "cai", 60, actor="tl-3"),
        engine=engine,
    )
    done = sorted(r for r in results if isinstance(r, int))
    refused = [r for r in results if isinstance(r, LeadError)]
    # 150 leads: two hand-overs of 60 get theirs; the third finds 30 and assigns none (all or none).
    assert done == [60, 60], results
    assert len(refused) == 1
    assert "not 60; nothing was assigned" in str(refused[0])
    with Session(engine) as session:
        held = {rep: n for rep, n in session.execute(select(Lead.rep, func.count()).group_by(Lead.rep))}
        owners = {
            o: n
            for o, n in session.execute(
                select(CustomerRecord.owner_rep, func.count()).group_by(CustomerRecord.owner_rep)
            )
        }
        moves = session.scalar(select(func.count()).select_from(Transfer).where(Transfer.action == "to_rep"))
    assert sorted(held.values()) == [30, 60, 60]
    assert held == owners
    assert held[None] == 30
    assert moves == 120


def test_an_update_reimport_changes_fields_and_never_owners(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        assign_to_rep(session, "spring", "amy", 2, actor="tl")
    rows = [
        (1, ["公司", "联系人", "手机", "负责人"]),
        (2, ["公司0 有限", "联系人0", "13900000000", "bob"]),  # amy's: new company, the owner stays amy
        (3, ["公司1", "联系人1", "13900000001 / 13700000001", ""]),  # a new number for amy's customer
        (4, ["公司2", "新联系人", "13900000002", ""]),  # nobody's yet: a new contact name
        (5, ["公司3", "联系人3", "13900000003; 13900000004", ""]),  # two customers: rejected
        (6, ["新公司", "新人", "13600000000", ""]),  # new
    ]
    with Session(engine) as session, session.begin():
        report = import_customers(session, iter(rows), update=True)
    assert [(i.row, i.kind) for i in report.issues] == [(5, "several_customers")]
    assert (report.imported, report.updated, report.unchanged) == (1, 3, 0)
    assert [(c.row, c.field, c.old, c.new) for c in report.changes] == [
        (2, "company", "公司0", "公司0 有限"),
        (3, "phone", None, "+8613700000001"),
        (4, "name", "联系人2", "新联系人"),
    ]
    with Session(engine) as session:
        found = {
            number: (company, name, owner)
            for number, company, name, owner in session.execute(
                select(
                    CustomerPhone.number_e164,
                    CustomerRecord.company,
                    CustomerRecord.name,
                    CustomerRecord.owner_rep,
                )
                .join(CustomerRecord, CustomerRecord.id == CustomerPhone.customer_id)
                .where(CustomerPhone.number_e164.in_(["+8613900000000", "+8613700000001", "+8613900000002"]))
            )
        }
    assert found == {
        "+8613900000000": ("公司0 有限", "联系人0", "amy"),
        "+8613700000001": ("公司1", "联系人1", "amy"),
        "+8613900000002": ("公司2", "新联系人", None),
    }
