"""Re-importing with ``update``: existing customers get the file's fields, never a new owner."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from agent.commands.customers import import_customers_command
from agent.commands.leads import leads
from agent.commands.reps import reps
from storage.customers import Change, ChangeWriter, import_customers
from storage.db import make_engine, upgrade
from storage.models import CustomerPhone, CustomerRecord, Lead

HEADER = ["姓名", "公司", "手机", "负责人", "备注", "标签"]


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    upgrade(eng)
    with Session(eng) as session, session.begin():
        import_customers(
            session,
            rows(
                ["王伟", "华为", "13800000001", "amy", "老客户", "vip"],
                ["李娜", "", "13800000002", "", "", ""],
                ["张三", "中兴", "13800000003; 02212345678", "bob", "", ""],
            ),
        )
    yield eng
    eng.dispose()


def rows(*body: list[str], header: list[str] = HEADER) -> Iterator[tuple[int, list[str] | str]]:
    yield 1, header
    yield from enumerate(body, start=2)


def customer(engine: Engine, e164: str) -> CustomerRecord:
    with Session(engine) as session:
        found = session.scalars(
            select(CustomerRecord)
            .join(CustomerPhone, CustomerPhone.customer_id == CustomerRecord.id)
            .where(CustomerPhone.number_e164 == e164)
        ).one()
        session.expunge(found)
        return found


def test_an_update_import_changes_the_fields_the_file_gives_and_never_the_owner(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        report = import_customers(
            session,
            rows(
                [
                    "王伟",
                    "华为技术",
                    "+86 138 0000 0001",
                    "bob",
                    "老客户",
                    "vip",
                ],  # company; owner column ignored
                ["李娜", "", "13800000002", "", "", ""],  # the same as before
                ["赵六", "", "13900000009", "", "", ""],  # a new customer
            ),
            update=True,
        )
    assert report.issues == []
    assert (report.imported, report.updated, report.unchanged) == (1, 1, 1)
    wang = customer(engine, "+8613800000001")
    assert report.changes == [Change(2, wang.id, "+8613800000001", "company", "华为", "华为技术")]
    assert wang.company == "华为技术"
    assert wang.owner_rep == "amy"  # the file said bob: owners are never changed by an import
    assert wang.notes == "老客户"


def test_without_update_existing_customers_stay_duplicates(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        report = import_customers(session, rows(["李娜", "新公司", "13800000002", "", "", ""]))
    assert [issue.kind for issue in report.issues] == ["duplicate_in_db"]
    assert report.updated == 0
    assert customer(engine, "+8613800000002").company is None


def test_an_empty_cell_or_a_missing_column_clears_nothing(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        report = import_customers(
            session,
            rows(["", "13800000001", ""], header=["姓名", "电话", "备注"]),
            update=True,
        )
    assert report.changes == []
    assert report.unchanged == 1
    wang = customer(engine, "+8613800000001")
    assert (wang.name, wang.company, wang.notes, wang.tags) == ("王伟", "华为", "老客户", "vip")


def test_notes_and_tags_are_replaced_and_a_new_number_is_added(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        report = import_customers(
            session,
            rows(["张三丰", "中兴", "13800000003 / 13700000007", "", "回访", "a, b"]),
            update=True,
        )
    zhang = customer(engine, "+8613700000007")
    assert [(c.field, c.old, c.new) for c in report.changes] == [
        ("name", "张三", "张三丰"),
        ("notes", None, "回访"),
        ("tags", None, "a,b"),
        ("phone", None, "+8613700000007"),
    ]
    assert {c.number for c in report.changes} == {"+8613800000003"}
    assert (zhang.name, zhang.notes, zhang.tags, zhang.owner_rep) == ("张三丰", "回访", "a,b", "bob")
    assert customer(engine, "+862212345678").id == zhang.id  # its other number stays


def test_a_row_of_two_customers_and_a_number_twice_in_the_file_are_rejected(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        report = import_customers(
            session,
            rows(
                ["合并", "", "13800000001; 13800000002", "", "", ""],
                ["王伟", "华为二", "13800000001", "", "", ""],
                ["王伟", "华为三", "13800000001", "", "", ""],
            ),
            update=True,
        )
    assert [(i.row, i.kind) for i in report.issues] == [(2, "several_customers"), (4, "duplicate_in_file")]
    assert report.issues[0].reason.text("zh-CN").startswith("13800000001 是客户")  # type: ignore[attr-defined]
    assert [c.new for c in report.changes] == ["华为二"]


def test_a_dry_run_reports_the_changes_and_writes_none(engine: Engine) -> None:
    told: list[Change] = []
    with Session(engine) as session:
        report = import_customers(
            session,
            rows(["王伟", "华为云", "13800000001", "", "", ""]),
            update=True,
            dry_run=True,
            changes=told.append,
        )
        session.rollback()
    assert told == report.changes
    assert [c.new for c in told] == ["华为云"]
    assert customer(engine, "+8613800000001").company == "华为"


@pytest.mark.parametrize(
    ("lang", "header", "field"),
    [("en", ["row", "number", "customer", "field", "old", "new"], "company"),
     ("zh-CN", ["行号", "号码", "客户编号", "字段", "原值", "新值"], "公司")],
)  # fmt: skip
def test_the_changes_file_is_in_the_readers_language(
    tmp_path: Path, lang: str, header: list[str], field: str
) -> None:
    path = tmp_path / "changes.csv"
    writer = ChangeWriter(path, lang=lang)
    writer(Change(7, 3, "+8613800000001", "company", "=华为", "华为技术"))
    assert not path.exists()  # written under a temporary name until closed
    writer.close()
    with path.open(encoding="utf-8-sig", newline="") as handle:
        assert list(csv.reader(handle)) == [header, ["7", "+8613800000001", "3", field, "'=华为", "华为技术"]]


def test_nothing_changed_writes_no_changes_file(tmp_path: Path) -> None:
    writer = ChangeWriter(tmp_path / "changes.csv")
    writer.close()
    assert not (tmp_path / "changes.csv").exists()


# -- the commands ---------------------------------------------------------------------------


def write_csv(path: Path, *body: list[str], encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as out:
        csv.writer(out).writerows([HEADER, *body])
    return path


def test_import_customers_update_writes_the_changes_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cti.db'}"
    first = write_csv(tmp_path / "a.csv", ["王伟", "华为", "13800000001", "amy", "", ""])
    assert CliRunner().invoke(import_customers_command, [str(first), "--url", url]).exit_code == 0
    again = write_csv(tmp_path / "b.csv", ["王伟", "华为技术", "13800000001", "", "", ""])
    plain = CliRunner().invoke(import_customers_command, [str(again), "--url", url])
    assert plain.exit_code == 1  # a duplicate, as ever
    result = CliRunner().invoke(import_customers_command, [str(again), "--url", url, "--update"])
    assert result.exit_code == 0, result.output
    assert "updated: 1 customer(s), 1 field(s); unchanged: 0" in result.output
    assert "row 2: +8613800000001: company: '华为' -> '华为技术'" in result.output
    with (tmp_path / "b.csv.changes.csv").open(encoding="utf-8-sig") as handle:
        assert list(csv.reader(handle))[1] == ["2", "+8613800000001", "1", "company", "华为", "华为技术"]


def test_leads_import_update_keeps_owners_and_lists_and_speaks_chinese(tmp_path: Path) -> None:
    data = tmp_path / "centre"

    def run(command: object, *args: str) -> str:
        result = CliRunner().invoke(command, [*args, "--data-dir", str(data)])  # type: ignore[arg-type]
        assert result.exit_code == 0, result.output
        return result.output

    run(reps, "add", "amy", "--team", "north")
    first = write_csv(tmp_path / "spring.csv", ["王伟", "华为", "13800000001", "", "", ""])
    run(leads, "import", str(first), "--list", "spring")
    run(leads, "assign", "--list", "spring", "--to-rep", "amy", "--count", "1")
    again = write_csv(
        tmp_path / "again.csv",
        ["王伟", "华为技术", "13800000001", "", "", ""],
        ["李四", "", "13800000004", "", "", ""],
        encoding="gb18030",
    )
    changes = tmp_path / "changes.csv"
    output = run(
        leads, "import", str(again), "--list", "spring", "--update", "--lang", "zh-CN",
        "--changes-file", str(changes),
    )  # fmt: skip
    assert "list spring: 1 lead(s) added" in output  # the new customer; the updated one is a lead already
    with changes.open(encoding="utf-8-sig") as handle:
        assert list(csv.reader(handle)) == [
            ["行号", "号码", "客户编号", "字段", "原值", "新值"],
            ["2", "+8613800000001", "1", "公司", "华为", "华为技术"],
        ]
    engine = make_engine(f"sqlite:///{data / 'cti-agent.db'}")
    with Session(engine) as session:
        owners = dict(session.execute(select(CustomerRecord.company, CustomerRecord.owner_rep)).all())
        leads_held = session.scalars(select(Lead.rep).order_by(Lead.id)).all()
    engine.dispose()
    assert owners == {"华为技术": "amy", None: None}
    assert leads_held == ["amy", None]
