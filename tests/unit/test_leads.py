"""Leads on the centre: reps, lead lists, hand-overs to teams and reps, the transfer log, coverage."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent.commands.leads import leads
from agent.commands.reps import reps
from agent.events import Call, Direction, Disposition
from storage.coverage import coverage
from storage.db import make_engine, upgrade
from storage.leads import LeadError, LeadTaken, assign_to_rep, claim_lead, transfers_of
from storage.models import CustomerPhone, CustomerRecord, Lead, Transfer, utcnow
from storage.repository import upsert_call


def run(command: object, *args: str, data_dir: Path) -> Result:
    return CliRunner().invoke(command, [*args, "--data-dir", str(data_dir)])  # type: ignore[arg-type]


@pytest.fixture
def centre(tmp_path: Path) -> Path:
    data = tmp_path / "centre"
    for rep, team in (("amy", "north"), ("bob", "north"), ("cai", "south")):
        assert run(reps, "add", rep, "--team", team, data_dir=data).exit_code == 0
    return data


def session_of(data: Path) -> Session:
    engine = make_engine(f"sqlite:///{data / 'cti-agent.db'}")
    upgrade(engine)
    return Session(engine)


def leads_file(path: Path, count: int, *extra: list[str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["客户名称", "联系人", "手机"])
        for n in range(count):
            writer.writerow([f"公司{n}", f"联系人{n}", f"1390000{n:04d}"])
        writer.writerows(extra)
    return path


def test_reps_are_added_moved_and_listed(centre: Path) -> None:
    moved = run(reps, "add", "bob", "--team", "south", "--name", "Bob Li", data_dir=centre)
    assert moved.exit_code == 0, moved.output
    listed = run(reps, "list", "--json", data_dir=centre)
    assert [json.loads(line) for line in listed.output.splitlines()] == [
        {"name": "amy", "display_name": None, "team": "north", "active": True},
        {"name": "bob", "display_name": "Bob Li", "team": "south", "active": True},
        {"name": "cai", "display_name": None, "team": "south", "active": True},
    ]


def test_an_import_reports_bad_rows_and_puts_the_rest_on_the_list(centre: Path, tmp_path: Path) -> None:
    source = leads_file(
        tmp_path / "leads.csv",
        5,
        ["全角公司", "张三", "１３８００１３８０００"],  # full-width digits
        ["空格公司", "李四", "+86 137 0013 7000"],  # spaces and +86
        ["重复公司", "王五", "13900000001"],  # the number of row 3 again
        ["坏号码", "赵六", "12345"],
    )
    result = run(leads, "import", str(source), "--list", "spring", "--team", "north", data_dir=centre)
    assert result.exit_code == 1, result.output  # rows were rejected
    assert "imported: 7 customer(s)" in result.output
    assert "list spring: 7 lead(s) added, given to team north" in result.output
    rejects = list(
        csv.reader((tmp_path / "leads.csv.rejects.csv").read_text(encoding="utf-8-sig").splitlines())
    )
    assert sorted((r[0], r[1]) for r in rejects[1:]) == [
        ("10", "not a valid phone number: '12345'"),
        ("9", "13900000001 is also on row 3"),
    ]
    with session_of(centre) as session:
        numbers = set(session.scalars(select(CustomerPhone.number_e164)))
        assert {"+8613800138000", "+8613700137000"} <= numbers
        assert session.scalar(select(func.count()).select_from(Lead).where(Lead.team == "north")) == 7
        company = session.scalar(select(CustomerRecord).where(CustomerRecord.company == "公司0"))
        assert company is not None
        assert company.name == "联系人0"  # 客户名称 and 联系人 mapped without --mapping
        assert [t.action for t in transfers_of(session, company.id)] == ["import"]
    again = run(leads, "import", str(source), "--list", "spring", data_dir=centre)
    assert again.exit_code == 1
    assert "imported: 0 customer(s)" in again.output  # every number is a customer now: none merged


def test_leads_go_to_a_team_then_to_its_reps_and_every_move_is_logged(centre: Path, tmp_path: Path) -> None:
    assert (
        run(
            leads, "import", str(leads_file(tmp_path / "l.csv", 30)), "--list", "may", data_dir=centre
        ).exit_code
        == 0
    )
    to_team = run(leads, "assign", "--list", "may", "--to-team", "north", "--count", "20", data_dir=centre)
    assert to_team.exit_code == 0, to_team.output
    assert "20 lead(s) given to team north" in to_team.output
    to_amy = run(
        leads,
        "assign",
        "--list",
        "may",
        "--to-rep",
        "amy",
        "--count",
        "12",
        "--reason",
        "top-up",
        data_dir=centre,
    )
    assert to_amy.exit_code == 0, to_amy.output
    # bob gets north's other 8 first, then 2 no team has yet (now north's)
    to_bob = run(leads, "assign", "--list", "may", "--to-rep", "bob", "--count", "10", data_dir=centre)
    assert to_bob.exit_code == 0, to_bob.output
    with session_of(centre) as session:
        held = {rep: n for rep, n in session.execute(select(Lead.rep, func.count()).group_by(Lead.rep))}
        assert held == {"amy": 12, "bob": 10, None: 8}
        by_owner = select(CustomerRecord.owner_rep, func.count()).group_by(CustomerRecord.owner_rep)
        owners = {owner: n for owner, n in session.execute(by_owner)}
        assert owners == {"amy": 12, "bob": 10, None: 8}  # the holder is the customer's one owner
        assert session.scalar(select(func.count()).select_from(Lead).where(Lead.team == "north")) == 22
        amy_lead = session.scalar(select(Lead).where(Lead.rep == "amy").limit(1))
        assert amy_lead is not None
        log = [
            (t.action, t.from_team, t.to_team, t.to_rep, t.reason)
            for t in transfers_of(session, amy_lead.customer_id)
        ]
        assert log == [
            ("import", None, None, None, None),
            ("to_team", None, "north", None, None),
            ("to_rep", "north", "north", "amy", "top-up"),
        ]
        actor = session.scalar(select(Transfer.actor).order_by(Transfer.id.desc()).limit(1))
        assert actor is not None
        assert actor.startswith("cli")


def test_asking_for_more_leads_than_are_free_assigns_none(centre: Path, tmp_path: Path) -> None:
    assert (
        run(
            leads, "import", str(leads_file(tmp_path / "l.csv", 5)), "--list", "small", data_dir=centre
        ).exit_code
        == 0
    )
    too_many = run(leads, "assign", "--list", "small", "--to-rep", "cai", "--count", "6", data_dir=centre)
    assert too_many.exit_code == 1
    assert "has 5 free lead(s) for rep 'cai', not 6; nothing was assigned" in too_many.output
    with session_of(centre) as session:
        assert session.scalar(select(func.count()).select_from(Lead).where(Lead.rep.is_not(None))) == 0
    unknown = run(leads, "assign", "--list", "small", "--to-rep", "dan", "--count", "1", data_dir=centre)
    assert unknown.exit_code == 1
    assert "the centre knows no rep 'dan'" in unknown.output
    no_list = run(leads, "assign", "--list", "big", "--to-team", "north", "--count", "1", data_dir=centre)
    assert "no lead list 'big'" in no_list.output
    both = run(
        leads,
        "assign",
        "--list",
        "small",
        "--to-team",
        "north",
        "--to-rep",
        "amy",
        "--count",
        "1",
        data_dir=centre,
    )
    assert both.exit_code == 2


def test_a_claimed_lead_cannot_be_claimed_again(centre: Path, tmp_path: Path) -> None:
    assert (
        run(
            leads, "import", str(leads_file(tmp_path / "l.csv", 2)), "--list", "pool", data_dir=centre
        ).exit_code
        == 0
    )
    with session_of(centre) as session, session.begin():
        lead_id = session.scalar(select(Lead.id).order_by(Lead.id).limit(1))
        assert lead_id is not None
        claim_lead(session, lead_id, "amy", actor="seat:s1")
        claim_lead(session, lead_id, "amy", actor="seat:s1")  # her own already: no error
        with pytest.raises(LeadTaken, match="already 'amy'"):
            claim_lead(session, lead_id, "cai", actor="seat:s3")
        with pytest.raises(LeadError, match="no lead 999"):
            claim_lead(session, 999, "cai", actor="seat:s3")


def call_to(uuid: str, number: str, rep: str, minutes_ago: float, disposition: Disposition) -> Call:
    started = utcnow() - timedelta(minutes=minutes_ago)
    answered = disposition is Disposition.ANSWERED
    return Call(
        uuid=uuid,
        seat="s1",
        device_id="sim",
        line="L1",
        rep=rep,
        team="north",
        direction=Direction.OUT,
        started_at=started,
        number_raw=number,
        number_e164="+86" + number,
        answered_at=started + timedelta(seconds=8) if answered else None,
        ended_at=started + timedelta(seconds=60),
        ring_seconds=8.0,
        talk_seconds=52.0 if answered else None,
        disposition=disposition,
    )


def test_coverage_counts_the_holders_dials_since_the_hand_over(centre: Path, tmp_path: Path) -> None:
    assert (
        run(
            leads, "import", str(leads_file(tmp_path / "l.csv", 6)), "--list", "june", data_dir=centre
        ).exit_code
        == 0
    )
    with session_of(centre) as session, session.begin():
        assign_to_rep(session, "june", "amy", 4, actor="tl")
        assign_to_rep(session, "june", "bob", 2, actor="tl")
        amy = [
            n.removeprefix("+86")
            for n in session.scalars(
                select(CustomerPhone.number_e164)
                .join(Lead, Lead.customer_id == CustomerPhone.customer_id)
                .where(Lead.rep == "amy")
                .order_by(CustomerPhone.number_e164)
            )
        ]
        upsert_call(session, call_to("c1", amy[0], "amy", 0, Disposition.MISSED))
        upsert_call(session, call_to("c2", amy[0], "amy", 0, Disposition.ANSWERED))
        upsert_call(session, call_to("c3", amy[1], "amy", 0, Disposition.MISSED))
        upsert_call(session, call_to("c4", amy[2], "bob", 0, Disposition.ANSWERED))  # not amy's dial
        upsert_call(session, call_to("c5", amy[3], "amy", 90, Disposition.ANSWERED))  # before the hand-over
    with session_of(centre) as session:
        rows = {row.rep: row.to_dict() for row in coverage(session, "june", untouched_days=0)}
    original = ("rep", "assigned", "dialed", "reached", "attempts", "untouched")
    rows = {rep: {key: row[key] for key in original} for rep, row in rows.items()}  # more keys follow them
    assert rows == {
        "amy": {"rep": "amy", "assigned": 4, "dialed": 2, "reached": 1, "attempts": 3, "untouched": 2},
        "bob": {"rep": "bob", "assigned": 2, "dialed": 0, "reached": 0, "attempts": 0, "untouched": 2},
    }
    printed = run(leads, "coverage", "--list", "june", "--json", data_dir=centre)
    assert printed.exit_code == 0, printed.output
    assert [json.loads(line)["rep"] for line in printed.output.splitlines()] == ["amy", "bob"]
    assert json.loads(printed.output.splitlines()[0])["untouched"] == 0  # held under 3 days
