"""One small floor's lead list, dialed, disposed, moved and recalled: the coverage tests' data (打透).

The same list is read by the storage tests (``tests/unit/test_coverage.py``), the console's
(``tests/unit/test_console_coverage.py``), PostgreSQL (``tests/integration/test_coverage_pg.py``)
and Chromium (``tests/integration/test_coverage_browser.py``), so a difference between them is the
database's or the browser's, not the data's.

List ``spring``, six customers (``c0``..``c5``, numbers ``+861390000000N``), at :data:`NOW`:

- amy (north) holds c0, c1, c2 since 5 days: two calls to c0 (one answered), one to c1, one to c2
  before she had it (not hers to count); c0 closed by a ``deal``; c2 untouched;
- bob (north) holds c3 since a day (moved to him from amy, who had dialed it): not dialed yet;
- cai (south) holds c4 since 10 days, untouched; he had c1 before amy and never dialed it (过数据);
- c5 was amy's and was recalled to the pool two days ago without a dial of hers (过数据); a call
  she made to it before she received it does not count.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from storage.leads import add_rep
from storage.models import (
    CallRecord,
    CustomerPhone,
    CustomerRecord,
    DispositionRecord,
    Lead,
    LeadList,
    Transfer,
)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)

#: The per-rep figures of ``coverage(..., untouched_days=3, now=NOW)`` (``to_dict()``, team and all).
EXPECTED: dict[str, dict[str, object]] = {
    "amy": {"rep": "amy", "assigned": 3, "dialed": 2, "reached": 1, "attempts": 3, "untouched": 1,
            "team": "north", "attempts_per_lead": 1.0, "closed": 1, "passed_undialed": 1,
            "dispositions": {"deal": 1, "no_answer": 2}},
    "bob": {"rep": "bob", "assigned": 1, "dialed": 0, "reached": 0, "attempts": 0, "untouched": 0,
            "team": "north", "attempts_per_lead": 0.0, "closed": 0, "passed_undialed": 0,
            "dispositions": {}},
    "cai": {"rep": "cai", "assigned": 1, "dialed": 0, "reached": 0, "attempts": 0, "untouched": 1,
            "team": "south", "attempts_per_lead": 0.0, "closed": 0, "passed_undialed": 1,
            "dispositions": {}},
}  # fmt: skip


def number(n: int) -> str:
    """Customer ``c<n>``'s number (E.164)."""
    return f"+86139000000{n:02d}"


def seed_coverage(engine: Engine) -> dict[str, int]:
    """Write the list of the module docstring; customer ids by name (``c0``..``c5``)."""
    with Session(engine) as session, session.begin():
        for rep, team in (("amy", "north"), ("bob", "north"), ("cai", "south")):
            add_rep(session, rep, team)
        spring = LeadList(name="spring", created_by="boss")
        session.add(spring)
        customers = {}
        for n in range(6):
            customer = CustomerRecord(name=f"客户{n}", company=f"公司{n}")
            customer.phones.append(CustomerPhone(number_e164=number(n), number_raw=number(n)[3:]))
            session.add(customer)
            session.flush()
            customers[f"c{n}"] = customer.id
        holders = {
            "c0": ("amy", "north", 5),
            "c1": ("amy", "north", 5),
            "c2": ("amy", "north", 5),
            "c3": ("bob", "north", 1),
            "c4": ("cai", "south", 10),
            "c5": (None, "north", None),
        }
        leads = {}
        for name, (rep, team, days) in holders.items():
            lead = Lead(
                list_id=spring.id,
                customer_id=customers[name],
                team=team,
                team_at=NOW - 20 * DAY,
                rep=rep,
                rep_at=NOW - days * DAY if days is not None else None,
                closed_at=NOW - DAY if name == "c0" else None,
                last_code="deal" if name == "c0" else None,
            )
            session.add(lead)
            session.flush()
            leads[name] = lead.id
            if rep is not None:
                session.query(CustomerRecord).filter_by(id=customers[name]).update({"owner_rep": rep})

        def move(name: str, days_ago: float, action: str, src: str | None, dst: str | None) -> None:
            teams = {"amy": "north", "bob": "north", "cai": "south", None: None}
            session.add(
                Transfer(
                    at=NOW - days_ago * DAY, actor="nina", action=action, customer_id=customers[name],
                    list_id=spring.id, from_team=teams[src], from_rep=src, to_team=teams[dst] or "north",
                    to_rep=dst, reason="test",
                )
            )  # fmt: skip
            session.flush()

        move("c1", 8, "to_rep", None, "cai")
        move("c4", 10, "to_rep", None, "cai")
        move("c5", 6, "to_rep", None, "amy")
        move("c0", 5, "to_rep", None, "amy")
        move("c1", 5, "move", "cai", "amy")  # cai never dialed it: 过数据
        move("c2", 5, "to_rep", None, "amy")
        move("c3", 4, "to_rep", None, "amy")
        move("c5", 2, "recall", "amy", None)  # amy never dialed it since she got it: 过数据
        move("c3", 1, "move", "amy", "bob")  # amy dialed it first: fine

        def call(uuid: str, rep: str, name: str, days_ago: float, answered: bool) -> None:
            started = NOW - days_ago * DAY
            session.add(
                CallRecord(
                    uuid=uuid, seat="s1", device_id="sim", line="L1", rep=rep,
                    team="north" if rep != "cai" else "south", direction="out",
                    number_e164=number(int(name[1:])), number_raw=number(int(name[1:]))[3:],
                    started_at=started, answered_at=started if answered else None,
                    ended_at=started + timedelta(seconds=60), talk_seconds=50.0 if answered else None,
                    disposition="answered" if answered else "missed",
                )
            )  # fmt: skip

        call("k1", "amy", "c0", 4, False)
        call("k2", "amy", "c0", 3, True)
        call("k3", "amy", "c1", 2, False)
        call("k4", "amy", "c2", 6, True)  # before amy had c2
        call("k5", "bob", "c0", 2, True)  # not the holder's
        call("k6", "amy", "c3", 3, False)  # amy's dial while c3 was hers (bob's count is 0)
        call("k7", "amy", "c5", 7, False)  # before amy received c5

        def disposed(
            uuid: str, rep: str, name: str, code: str, days_ago: float, conflict: str | None
        ) -> None:
            session.add(
                DispositionRecord(
                    uuid=uuid, seat="s1", rep=rep, lead_id=leads[name], customer_id=customers[name],
                    code=code, at=NOW - days_ago * DAY, received_at=NOW, conflict=conflict,
                )
            )  # fmt: skip

        disposed("d1", "amy", "c0", "no_answer", 4, None)
        disposed("d2", "amy", "c0", "deal", 3, None)
        disposed("d3", "amy", "c1", "no_answer", 2, None)
        disposed("d4", "bob", "c0", "deal", 2, "lead is held by amy now, not bob")
    return customers
