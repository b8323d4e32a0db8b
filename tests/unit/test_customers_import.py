"""Customer import/export with messy real-world files: every row imported, reported or rejected."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import Workbook, load_workbook
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from agent.commands.customers import export_customers_command, import_customers_command
from storage.customers import (
    ImportFileError,
    RejectWriter,
    decode_csv_bytes,
    export_customers,
    import_customers,
    map_columns,
    normalise_number,
    parse_mapping,
    read_rows,
    split_numbers,
)
from storage.db import make_engine, upgrade
from storage.models import CustomerPhone, CustomerRecord
from storage.repository import find_customer


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cti.db'}"
    upgrade(make_engine(url))
    return url


class Rejects:
    """A reject sink that keeps what it is given."""

    def __init__(self) -> None:
        self.header: list[str] = []
        self.rows: list[tuple[int, str, list[str]]] = []

    def begin(self, header: list[str]) -> None:
        self.header = list(header)

    def __call__(self, row: int, reason: str, cells: list[str]) -> None:
        self.rows.append((row, reason, cells))


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as out:
        csv.writer(out).writerows(rows)
    return path


def run_import(engine: Engine, path: Path, **options: object) -> tuple[object, Rejects]:
    rejects = Rejects()
    _, rows = read_rows(path)
    with Session(engine) as session, session.begin():
        report = import_customers(session, rows, reject=rejects, **options)  # type: ignore[arg-type]
    return report, rejects


def phones(engine: Engine) -> dict[str, tuple[str, str | None]]:
    with Session(engine) as session:
        query = select(CustomerPhone.number_e164, CustomerRecord.name, CustomerRecord.owner_rep).join(
            CustomerRecord
        )
        return {number: (name, owner) for number, name, owner in session.execute(query)}


# -- numbers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("13812345678", "+8613812345678"),
        ("１３８ １２３４ ５６７８", "+8613812345678"),
        ("138-1234-5678", "+8613812345678"),
        ("+86 138 1234 5678", "+8613812345678"),
        ("0086 13812345678", "+8613812345678"),
        ("(022) 2345-6789", "+862223456789"),
        ("022-23456789 转 8001", "+862223456789;ext=8001"),
        ("010 6552 9988 ext. 12", "+861065529988;ext=12"),
        ("＋８６ ０２２ ２３４５ ６７８９", "+862223456789"),
        ("12345", None),
        ("not a number", None),
        ("", None),
    ],
)
def test_normalise_number(written: str, stored: str | None) -> None:
    assert normalise_number(written) == stored


def test_normalise_number_uses_the_region() -> None:
    assert normalise_number("(415) 555-2671", "US") == "+14155552671"
    assert normalise_number("(415) 555-2671", "CN") != "+14155552671"


def test_split_numbers_keeps_spaced_numbers_whole() -> None:
    assert split_numbers("138 1234 5678 / 022-23456789；13900001111、137 0000 2222\n") == [
        "138 1234 5678",
        "022-23456789",
        "13900001111",
        "137 0000 2222",
    ]


# -- header mapping ------------------------------------------------------------------


def test_chinese_and_english_headers_are_recognised() -> None:
    header = ["姓名", "手机", "电话2", "公司名称", "负责人", "备注", "标签", "生日"]
    assert map_columns(header) == {
        0: "name",
        1: "phone",
        2: "phone",
        3: "company",
        4: "owner_rep",
        5: "notes",
        6: "tags",
    }
    assert map_columns(["Full Name", "Mobile Phone", "Phone 2", "Company", "Owner"]) == {
        0: "name",
        1: "phone",
        2: "phone",
        3: "company",
        4: "owner_rep",
    }


def test_explicit_mapping_wins_and_may_name_a_column_number() -> None:
    mapping = parse_mapping(["phone=主叫", "notes=#3", "ignore=电话"])
    assert map_columns(["主叫", "电话", "随便", "姓名"], mapping) == {0: "phone", 2: "notes", 3: "name"}


def test_mapping_errors() -> None:
    with pytest.raises(ValueError, match="unknown field"):
        parse_mapping(["birthday=生日"])
    with pytest.raises(ValueError, match="FIELD=HEADER"):
        parse_mapping(["phone"])
    with pytest.raises(ImportFileError, match="no column of phone numbers"):
        map_columns(["姓名", "公司"])
    with pytest.raises(ImportFileError, match="not in the header"):
        map_columns(["姓名", "电话"], parse_mapping(["phone=手机号"]))
    with pytest.raises(ImportFileError, match="several columns map to name"):
        map_columns(["姓名", "客户名称", "电话"])


# -- importing ----------------------------------------------------------------------


MESSY_ROWS = [
    ["姓名", "手机", "电话", "公司", "负责人", "备注", "标签"],
    ["张伟", "１３８ １２３４ ５６７８", "022-23456789", "天津贸易", "alice", "老客户", "VIP, 天津"],
    ["", "", "", "", "", "", ""],  # an empty line
    ["李娜", "139-0000-1111", "", "", "", "", ""],  # empty cells
    ["王芳", "+86 139 0000 1111", "", "北京科技", "bob", "", ""],  # the same number as 李娜's
    ["赵强", "12345", "", "", "", "", ""],  # not a valid number
    ["刘洋", "", "", "无号码公司", "", "", ""],  # no number at all
    ["陈静", "13700002222", "", "", "", "", "", "extra", "cells"],  # a broken row
    ["孙磊", "0086 136 0000 3333", "010 6552 9988 ext. 12", "", "", "", ""],
    ["张伟", "１３８ １２３４ ５６７８", "022-23456789", "天津贸易", "alice", "老客户", "VIP, 天津"],  # again
]


def test_messy_utf8_file(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "leads.csv", MESSY_ROWS, encoding="utf-8-sig")
    report, rejects = run_import(engine, path)
    assert report.rows == 8  # the empty line is not a row
    assert report.imported == 3
    assert report.phones == 5
    assert [(i.row, i.kind) for i in report.issues] == [
        (5, "duplicate_in_file"),
        (6, "rejected"),
        (7, "rejected"),
        (8, "rejected"),
        (10, "duplicate_in_file"),
    ]
    reasons = {row: reason for row, reason, _ in rejects.rows}
    assert "row 4" in reasons[5]
    assert "not a valid phone number: '12345'" in reasons[6]
    assert reasons[7] == "no phone number"
    assert "9 cells" in reasons[8]
    assert "row 2" in reasons[10]
    assert rejects.header == MESSY_ROWS[0]
    assert [cells[0] for _, _, cells in sorted(rejects.rows)] == ["王芳", "赵强", "刘洋", "陈静", "张伟"]
    stored = phones(engine)
    assert stored == {
        "+8613812345678": ("张伟", "alice"),
        "+862223456789": ("张伟", "alice"),
        "+8613900001111": ("李娜", None),
        "+8613600003333": ("孙磊", None),
        "+861065529988;ext=12": ("孙磊", None),
    }
    with Session(engine) as session:
        zhang = session.scalars(select(CustomerRecord).where(CustomerRecord.name == "张伟")).one()
        assert (zhang.company, zhang.notes, zhang.tags) == ("天津贸易", "老客户", "VIP,天津")
        assert [(p.number_raw, p.label) for p in zhang.phones] == [
            ("１３８ １２３４ ５６７８", "手机"),
            ("022-23456789", "电话"),
        ]


def test_gbk_encoded_csv(engine: Engine, tmp_path: Path) -> None:
    rows = [["姓名", "电话", "公司"], ["黄磊", "021-5555 6666", "上海商贸"], ["周杰", "13512345678", ""]]
    path = write_csv(tmp_path / "gbk.csv", rows, encoding="gbk")
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    report, rejects = run_import(engine, path)
    assert (report.imported, rejects.rows) == (2, [])
    assert phones(engine) == {"+862155556666": ("黄磊", None), "+8613512345678": ("周杰", None)}


# -- decoding ----------------------------------------------------------------------

CHINESE_ROWS = [
    ["姓名", "电话", "公司"],
    ["黄磊", "021-5555 6666", "上海商贸"],
    ["周杰", "13512345678", "€ 贸易"],  # GB18030 has the euro sign, GBK has not
]
GBK_ROWS = [*CHINESE_ROWS[:2], ["周杰", "13512345678", "贸易"]]


def csv_bytes(rows: list[list[str]], encoding: str) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out).writerows(rows)
    return out.getvalue().encode(encoding)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "gbk"])
def test_whole_file_decodes_in_its_encoding(encoding: str, engine: Engine, tmp_path: Path) -> None:
    rows = GBK_ROWS if encoding == "gbk" else CHINESE_ROWS
    data = csv_bytes(rows, encoding)
    text = decode_csv_bytes(data)
    assert "\ufffd" not in text
    assert not text.startswith("\ufeff")
    assert list(csv.reader(io.StringIO(text))) == rows
    path = tmp_path / "leads.csv"
    path.write_bytes(data)
    report, rejects = run_import(engine, path)
    assert (report.imported, rejects.rows) == (2, [])
    assert {name for name, _ in phones(engine).values()} == {"黄磊", "周杰"}


def test_four_byte_gb18030_characters_decode() -> None:
    text = "姓名,电话\n𠀀先生,13512345678\n"  # U+20000 is four bytes in GB18030
    assert decode_csv_bytes(text.encode("gb18030")) == text


def test_utf8_file_with_a_stray_byte_stops_with_line_and_offset(engine: Engine, tmp_path: Path) -> None:
    good = csv_bytes(CHINESE_ROWS, "utf-8")
    stray = good.index("€".encode())
    data = good[:stray] + b"\xe9" + good[stray:]  # a Latin-1 é pasted into a UTF-8 file
    # This is the file that was imported as mojibake: as GB18030 it decodes, every name wrong.
    assert "周杰" not in data.decode("gb18030")
    with pytest.raises(ImportFileError) as caught:
        decode_csv_bytes(data)
    message = str(caught.value)
    assert message.startswith("the file is UTF-8 but for line 3, ")
    column = stray - good.rindex(b"\n", 0, stray)
    assert f"line 3, byte {column} of the line (byte offset {stray} in the file): 0xE9" in message
    # The same file through the command: a usage error naming the byte, nothing imported.
    path = tmp_path / "damaged.csv"
    path.write_bytes(data)
    with pytest.raises(ImportFileError, match="line 3"):
        run_import(engine, path)
    assert phones(engine) == {}


def test_utf8_with_bom_and_a_bad_byte_counts_the_bom() -> None:
    good = b"\xef\xbb\xbf" + csv_bytes(CHINESE_ROWS, "utf-8")
    offset = good.index("上海".encode()) + 1  # inside a character: a broken sequence
    data = good[:offset] + b"\x41" + good[offset + 1 :]
    with pytest.raises(ImportFileError, match="byte order mark") as caught:
        decode_csv_bytes(data)
    line_start = data.rindex(b"\n", 0, offset) + 1
    assert f"line 2, byte {offset - line_start} of the line (byte offset {offset - 1} in the file)" in str(
        caught.value
    )


def test_a_file_that_is_neither_names_both_positions() -> None:
    data = csv_bytes(GBK_ROWS[:2], "gbk") + b"\x80\x80\n"  # 0x80 is no GB18030 byte
    with pytest.raises(ImportFileError, match="neither UTF-8") as caught:
        decode_csv_bytes(data)
    message = str(caught.value)
    assert "nor GB18030" in message
    assert "line 1, byte 1 of the line (byte offset 0 in the file)" in message  # 姓 is not UTF-8
    assert f"line 3, byte 1 of the line (byte offset {len(data) - 3} in the file): 0x80" in message


def test_an_explicit_encoding_is_strict() -> None:
    data = csv_bytes(GBK_ROWS, "gbk")
    assert decode_csv_bytes(data, "gbk").startswith("姓名")
    with pytest.raises(ImportFileError, match="the file is not utf-8: line 1, byte 1"):
        decode_csv_bytes(data, "utf-8")
    assert decode_csv_bytes(b"\xef\xbb\xbfname\n", "utf-8") == "name\n"
    with pytest.raises(ImportFileError, match="unknown encoding"):
        decode_csv_bytes(data, "klingon")


def test_import_command_stops_on_an_undecodable_file(db_url: str, tmp_path: Path) -> None:
    good = csv_bytes(CHINESE_ROWS, "utf-8")
    path = tmp_path / "damaged.csv"
    path.write_bytes(good + b"\xe5\xbc\n")  # a character cut short on the last line
    result = CliRunner().invoke(import_customers_command, [str(path), "--url", db_url])
    assert result.exit_code == 2, result.output
    assert "line 4" in result.output
    assert f"byte offset {len(good)}" in result.output


def test_semicolon_separated_csv_is_sniffed(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("Name;Phone;Company\nAnn;138 0000 1234;Acme\n", encoding="utf-8")
    report, _ = run_import(engine, path)
    assert report.imported == 1
    assert phones(engine) == {"+8613800001234": ("Ann", None)}


def test_duplicates_and_conflicts_against_the_database(engine: Engine, tmp_path: Path) -> None:
    first = write_csv(
        tmp_path / "a.csv",
        [["name", "phone", "owner"], ["Ann", "13800000001", "alice"], ["Bo", "13800000002", ""]],
    )
    run_import(engine, first)
    second = write_csv(
        tmp_path / "b.csv",
        [
            ["name", "phone"],
            ["Ann again", "+86 138 0000 0001"],  # alice's lead, claimed by bob: a conflict
            ["Bo again", "13800000002"],  # unowned, already there: a duplicate
            ["Cy", "13800000003"],
        ],
    )
    report, rejects = run_import(engine, second, owner="bob")
    assert [(i.row, i.kind, i.number) for i in report.issues] == [
        (2, "conflict", "+8613800000001"),
        (3, "duplicate_in_db", "+8613800000002"),
    ]
    assert "owned by rep 'alice'" in report.issues[0].reason
    assert report.imported == 1
    assert len(rejects.rows) == 2
    assert phones(engine)["+8613800000001"] == ("Ann", "alice")  # untouched
    assert phones(engine)["+8613800000003"] == ("Cy", "bob")


def test_conflict_inside_the_file(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "c.csv",
        [["姓名", "电话", "负责人"], ["甲", "13800000001", "alice"], ["乙", "13800000001", "bob"]],
    )
    report, _ = run_import(engine, path)
    assert [(i.row, i.kind) for i in report.issues] == [(3, "conflict")]


def test_dry_run_writes_nothing_but_reports_the_same(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "leads.csv", MESSY_ROWS)
    report, _ = run_import(engine, path, dry_run=True)
    assert (report.imported, len(report.issues)) == (3, 5)
    assert phones(engine) == {}


def test_xlsx_with_numeric_cells(engine: Engine, tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["客户名称", "手机号码", "座机", "标签"])
    sheet.append(["吴昊", 13912345678, "0755-8888 9999", "新客户；深圳"])
    sheet.append(["郑爽", 13912345678.0, None, None])  # Excel's float, and a duplicate
    sheet.append([None, None, None, None])
    path = tmp_path / "leads.xlsx"
    workbook.save(path)
    report, rejects = run_import(engine, path)
    assert report.imported == 1
    assert [(i.row, i.kind) for i in report.issues] == [(3, "duplicate_in_file")]
    assert phones(engine) == {"+8613912345678": ("吴昊", None), "+8675588889999": ("吴昊", None)}
    assert rejects.rows[0][2][:2] == ["郑爽", "13912345678"]


def test_imported_customers_are_found_by_national_and_international_forms(
    engine: Engine, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "a.csv", [["name", "phone"], ["Ann", "022 2345 6789"]])
    run_import(engine, path)
    with Session(engine) as session:
        for e164, raw in [("+862223456789", "02223456789"), (None, "02223456789"), (None, "+862223456789")]:
            found = find_customer(session, e164, raw)
            assert found is not None
            assert found.name == "Ann"


def test_large_import_in_batches_reports_progress(engine: Engine, tmp_path: Path) -> None:
    rows = [["name", "phone"]] + [[f"c{i}", f"1380000{i:04d}"] for i in range(2500)]
    rows.append(["dup", "13800000007"])
    path = write_csv(tmp_path / "big.csv", rows)
    steps: list[int] = []
    rejects = Rejects()
    total, reader = read_rows(path)
    with Session(engine) as session, session.begin():
        report = import_customers(session, reader, reject=rejects, progress=steps.append, batch_rows=300)
    assert total == 2502
    assert sum(steps) == 2501
    assert report.imported == 2500
    assert [(i.row, i.kind) for i in report.issues] == [(2502, "duplicate_in_file")]
    assert len(phones(engine)) == 2500


def test_empty_and_headerless_files(engine: Engine, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="empty"):
        run_import(engine, empty)


def test_reject_writer_writes_an_importable_file(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "leads.csv", MESSY_ROWS)
    writer = RejectWriter(tmp_path / "rejects.csv")
    _, rows = read_rows(path)
    with Session(engine) as session, session.begin():
        import_customers(session, rows, reject=writer)
    writer.close()
    text = (tmp_path / "rejects.csv").read_bytes()
    assert text.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(text.decode("utf-8-sig").splitlines()))
    assert lines[0] == ["row", "reason", *MESSY_ROWS[0]]
    # Unreadable rows are written at once, duplicates when their batch is checked.
    assert sorted(int(line[0]) for line in lines[1:]) == [5, 6, 7, 8, 10]
    assert ["7", "no phone number", "刘洋", "", "", "无号码公司", "", "", ""] in lines


# -- the commands ---------------------------------------------------------------------


def test_import_and_export_commands_round_trip(db_url: str, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "leads.csv", MESSY_ROWS, encoding="gbk")
    runner = CliRunner()
    result = runner.invoke(import_customers_command, [str(source), "--url", db_url, "--owner", "carol"])
    assert result.exit_code == 1, result.output  # some rows were not imported
    assert "imported: 3 customer(s), 5 number(s)" in result.output
    assert "duplicate in file: 2" in result.output
    assert "rejected: 3" in result.output
    reject_path = tmp_path / "leads.csv.rejects.csv"
    assert f"written with the reason to {reject_path}" in result.output
    assert len(reject_path.read_text(encoding="utf-8-sig").splitlines()) == 6

    for name in ("out.csv", "out.xlsx"):
        out = tmp_path / name
        result = runner.invoke(export_customers_command, [str(out), "--url", db_url])
        assert result.exit_code == 0, result.output
        assert "3 customer(s) exported" in result.output
        if name.endswith(".xlsx"):
            sheet = load_workbook(out, read_only=True).worksheets[0]
            exported = [[c or "" for c in row] for row in sheet.iter_rows(values_only=True)]
        else:
            exported = list(csv.reader(out.read_text(encoding="utf-8-sig").splitlines()))
        assert exported[0] == ["name", "phone", "company", "owner", "tags", "notes"]
        assert [
            "张伟",
            "+8613812345678; +862223456789",
            "天津贸易",
            "carol",
            "VIP,天津",
            "老客户",
        ] in exported
        assert ["孙磊", "+8613600003333; +861065529988 ext. 12", "", "carol", "", ""] in exported

    # Importing the export into a fresh database gives the same numbers back.
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = runner.invoke(import_customers_command, [str(tmp_path / "out.xlsx"), "--url", fresh])
    assert result.exit_code == 0, result.output
    assert "imported: 3 customer(s), 5 number(s)" in result.output
    # And again into the first: every row is a duplicate, nothing changes.
    result = runner.invoke(
        import_customers_command, [str(tmp_path / "out.csv"), "--url", db_url, "--dry-run"]
    )
    assert result.exit_code == 1
    assert "would import: 0 customer(s)" in result.output
    assert "duplicate in db: 3" in result.output


FORMULA_NAMES = ['=HYPERLINK("http://x.example","点我")', "@SUM(1)", "-1+2", "+cmd|'/C calc'!A0", "'=x"]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_export_escapes_formulas_and_imports_back_unchanged(
    engine: Engine, tmp_path: Path, suffix: str
) -> None:
    with Session(engine) as session, session.begin():
        for n, name in enumerate(FORMULA_NAMES):
            customer = CustomerRecord(name=name, notes="=1+1")
            customer.phones.append(CustomerPhone(number_e164=f"+86138000{n:05d}", number_raw="x"))
            session.add(customer)
    out = tmp_path / f"out{suffix}"
    with Session(engine) as session:
        assert export_customers(session, out) == len(FORMULA_NAMES)
    if suffix == ".csv":
        exported = list(csv.reader(out.read_text(encoding="utf-8-sig").splitlines()))
        assert [row[0] for row in exported[1:]] == ["'" + name for name in FORMULA_NAMES]
        assert {row[5] for row in exported[1:]} == {"'=1+1"}
    else:
        sheet = load_workbook(out).worksheets[0]
        cells = [row[0] for row in sheet.iter_rows(min_row=2)]
        assert [(c.value, c.data_type, c.quotePrefix) for c in cells[:4]] == [
            (name, "s", True) for name in FORMULA_NAMES[:4]
        ]
    fresh = make_engine("sqlite://")
    upgrade(fresh)
    report, rejects = run_import(fresh, out)
    assert (report.imported, rejects.rows) == (len(FORMULA_NAMES), [])
    with Session(fresh) as session:
        names = session.scalars(select(CustomerRecord.name).order_by(CustomerRecord.id)).all()
        notes = set(session.scalars(select(CustomerRecord.notes)).all())
    fresh.dispose()
    assert names == FORMULA_NAMES
    assert notes == {"=1+1"}


def test_export_replaces_control_characters(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session, session.begin():
        customer = CustomerRecord(name="张\x07伟\x00", notes="a\x1bb")
        customer.phones.append(CustomerPhone(number_e164="+8613800138000", number_raw="13800138000"))
        session.add(customer)
    for suffix in (".csv", ".xlsx"):
        out = tmp_path / f"out{suffix}"
        with Session(engine) as session:
            assert export_customers(session, out) == 1
        if suffix == ".csv":
            row = list(csv.reader(out.read_text(encoding="utf-8-sig").splitlines()))[1]
        else:
            row = [c.value or "" for c in next(load_workbook(out).worksheets[0].iter_rows(min_row=2))]
        assert row == ["张\ufffd伟\ufffd", "+8613800138000", "", "", "", "a\ufffdb"]


def test_chinese_headers_export_and_import_back(db_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    source = write_csv(tmp_path / "leads.csv", MESSY_ROWS[:2])
    assert runner.invoke(import_customers_command, [str(source), "--url", db_url]).exit_code == 0
    for name in ("zh.csv", "zh.xlsx"):
        out = tmp_path / name
        result = runner.invoke(export_customers_command, [str(out), "--url", db_url, "--lang", "zh-CN"])
        assert result.exit_code == 0, result.output
        if name.endswith(".csv"):
            header = next(csv.reader(out.read_text(encoding="utf-8-sig").splitlines()))
        else:
            header = [c.value for c in next(load_workbook(out).worksheets[0].iter_rows())]
        assert header == ["姓名", "电话", "公司", "负责人", "标签", "备注"]
        fresh = f"sqlite:///{tmp_path / (name + '.db')}"
        result = runner.invoke(import_customers_command, [str(out), "--url", fresh])
        assert result.exit_code == 0, result.output
        assert "imported: 1 customer(s), 2 number(s)" in result.output
        assert "ignored columns" not in result.output  # every Chinese header was recognised


def test_reject_file_headers_in_chinese(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "leads.csv", [["姓名", "电话"], ["=坏", "12345"]])
    writer = RejectWriter(tmp_path / "rejects.csv", lang="zh-CN")
    _, rows = read_rows(path)
    with Session(engine) as session, session.begin():
        import_customers(session, rows, reject=writer)
    assert not (tmp_path / "rejects.csv").exists()  # written under a temporary name until closed
    writer.close()
    lines = list(csv.reader((tmp_path / "rejects.csv").read_text(encoding="utf-8-sig").splitlines()))
    assert lines[0] == ["行号", "原因", "姓名", "电话"]
    assert lines[1][:2] == ["2", "不是有效的电话号码：“12345”"]
    assert lines[1][2:] == ["'=坏", "12345"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    with pytest.raises(ValueError, match="unknown language"):
        RejectWriter(tmp_path / "x.csv", lang="fr")


def test_every_reject_reason_is_said_in_the_files_language(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session, session.begin():
        import_customers(session, iter([(1, ["name", "phone", "owner"]), (2, ["Old", "13800138000", "amy"])]))
    path = write_csv(
        tmp_path / "leads.csv",
        [
            ["name", "phone", "owner"],
            ["A", "13900139000", "bob"],
            ["B", "13900139000", "bob"],  # again in the file
            ["C", "13900139000", "cat"],  # again, for another rep
            ["D", "13800138000", "bob"],  # someone else's customer
            ["E", "13800138000", "amy"],  # already a customer (amy's own)
            ["F", ""],
            ["G", "12345"],
            ["H", "13700137000", "bob", "extra"],
        ],
    )
    said = {}
    for lang in ("en", "zh-CN"):
        writer = RejectWriter(tmp_path / f"rejects-{lang}.csv", lang=lang)
        _, rows = read_rows(path)
        with Session(engine) as session:
            report = import_customers(session, rows, reject=writer, dry_run=False)
            session.rollback()
        writer.close()
        lines = list(
            csv.reader((tmp_path / f"rejects-{lang}.csv").read_text(encoding="utf-8-sig").splitlines())
        )
        said[lang] = {int(line[0]): line[1] for line in lines[1:]}
    assert said["en"] == {issue.row: issue.reason for issue in report.issues}  # the report stays English
    assert said["en"] == {
        3: "13900139000 is also on row 2",
        4: "13900139000 is also on row 2, for rep 'bob', not 'cat'",
        5: "13800138000 belongs to customer 1, owned by rep 'amy'",
        6: "13800138000 is already customer 1",
        7: "no phone number",
        8: "not a valid phone number: '12345'",
        9: "row has 4 cells, the header has 3",
    }
    assert said["zh-CN"] == {
        3: "13900139000 与第 2 行重复",
        4: "13900139000 也在第 2 行，负责人是 bob，不是 cat",
        5: "13800138000 属于客户 1，负责人是 amy",
        6: "13800138000 已是客户 1",
        7: "没有电话号码",
        8: "不是有效的电话号码：“12345”",
        9: "该行有 4 个单元格，表头只有 3 列",
    }


def test_every_reason_has_chinese_with_the_same_values() -> None:
    import string

    from storage.customers import REASONS

    def fields(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    for code, texts in REASONS.items():
        assert set(texts) == {"en", "zh-CN"}, code
        assert fields(texts["zh-CN"]) == fields(texts["en"]), code


def test_cli_languages_are_the_writers() -> None:
    from agent.commands import customers as command
    from storage.sheets import LANGUAGES

    assert command._LANGUAGES == LANGUAGES


def test_import_command_usage_errors(db_url: str, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "x.csv", [["姓名", "公司"], ["a", "b"]])
    runner = CliRunner()
    result = runner.invoke(import_customers_command, [str(source), "--url", db_url])
    assert result.exit_code == 2
    assert "no column of phone numbers" in result.output
    result = runner.invoke(import_customers_command, [str(source), "--url", db_url, "--mapping", "phone"])
    assert result.exit_code == 2
    assert "FIELD=HEADER" in result.output
    result = runner.invoke(
        import_customers_command, [str(source), "--url", db_url, "--mapping", "phone=公司"]
    )
    assert result.exit_code == 1  # "b" is not a number: rejected
    assert "not a valid phone number: 'b'" in result.output
