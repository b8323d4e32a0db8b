"""The one spreadsheet writer: rows in, CSV or XLSX bytes out, safe to open in Excel.

Every CSV and XLSX the project writes goes through here (the console's call
exports, ``export-customers``, the import reject files, ``report --format csv``),
so every one of them follows the same rules:

**Formulas never run.** A text cell that starts with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return is what Excel, LibreOffice and Google Sheets read as
a formula (OWASP, "CSV Injection"). In a CSV such a cell gets a leading
apostrophe (``'=HYPERLINK(...)``), the only marker every spreadsheet honours; a
text that already starts with apostrophes before one of those characters gets
one more, so :func:`unescape_text` undoes the escape exactly and an export
imports back unchanged. An XLSX cell keeps its text as it is: it is written as a
string cell (never a formula, nor an error value such as ``#N/A``) with the
"quote prefix" flag, which is what Excel itself stores when a user types ``'=``.

**Numbers stay numbers, phone numbers stay readable.** Values that are Python
numbers (``int``, ``float``, ``Decimal``) are written as numbers and never
escaped: a negative talk time is ``-5``, not ``'-5``. Phone numbers are text.
A text that is only E.164 numbers, the way this project writes them
(``+8613800138000``, masked ``+86138****5678``, ``+861065529988 ext. 12``,
several joined by ``"; "``), is left without the apostrophe in a CSV: it holds
no letters but ``ext``, no reference, no function and no operator between
digits, so no spreadsheet can compute or call anything from it, and an
apostrophe would become part of the number for every program that is not a
spreadsheet (scripts, CRMs, the importer). Excel may show a bare ``+86...`` from
a CSV in a narrow column as ``8.6138E+12`` (the digits are kept); the XLSX has
it as text. Any other text starting with ``+`` or ``-`` is escaped, because
``+1-555-123-4567`` would otherwise show as ``-4680``.

**Every character is writable.** Characters XML 1.0 forbids (C0 controls but
tab, newline and carriage return; lone surrogates; U+FFFE, U+FFFF) are replaced
by U+FFFD in both formats, so a caller name with a stray control byte is an
export with a visible mark, not an error. An XLSX cell holds at most 32,767
characters (Excel's limit): a longer text is cut and ends in ``…``; the CSV has
it whole.

**Headers in the reader's language.** :func:`headers` translates the column keys
into English (the keys themselves, which scripts rely on) or Simplified Chinese
(names the customer importer recognises, so a Chinese export imports back).

**Bounded.** Rows are consumed lazily and written in chunks: a CSV is streamed
as it is produced; an XLSX is openpyxl's write-only workbook whose sheet rows are
written here to a temporary file, zipped into a spooled file (in memory up to
:data:`SPOOL_BYTES`, then on disk) and streamed from there (see :func:`iter_xlsx`).
With a ``limit``, at most that many rows are written, and if there
were more, a last row says so (:func:`truncation_text`); an XLSX is always
limited to what one sheet can hold. :class:`ExportOutcome` tells the caller how
many rows were written and whether the marker row was.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import io
import math
import os
import re
import secrets
import shutil
import tempfile
import threading
import zipfile
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal

__all__ = [
    "CHUNK_BYTES",
    "CsvWriter",
    "FORMATS",
    "HEADERS",
    "LANGUAGES",
    "MEDIA_TYPES",
    "XLSX_MAX_ROWS",
    "ExportGate",
    "ExportOutcome",
    "ExportSlot",
    "SheetFormat",
    "aiter_sheet",
    "csv_cell",
    "csv_text",
    "escape_text",
    "headers",
    "iter_csv",
    "iter_sheet",
    "iter_xlsx",
    "temporary_beside",
    "truncation_text",
    "unescape_text",
    "write_sheet",
]

SheetFormat = Literal["csv", "xlsx"]
FORMATS: tuple[SheetFormat, ...] = ("csv", "xlsx")
MEDIA_TYPES: dict[SheetFormat, str] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
LANGUAGES: tuple[str, ...] = ("en", "zh-CN")

#: Size of the byte chunks the iterators yield.
CHUNK_BYTES = 64 * 1024
#: How much of an XLSX is kept in memory before its temporary file goes to disk.
SPOOL_BYTES = 4 * 1024 * 1024
#: Data rows one XLSX sheet holds: Excel's 1,048,576 rows less the header and the marker row.
XLSX_MAX_ROWS = 1_048_574
#: Characters Excel keeps in one cell.
XLSX_MAX_CELL = 32_767

#: The characters that make a spreadsheet read a text cell as a formula (OWASP CSV injection).
FORMULA_PREFIXES = frozenset("=+-@\t\r")
#: An escaped (or to be escaped) text: apostrophes, then a formula prefix.
_ESCAPED = re.compile(r"'+[=+\-@\t\r]")
#: Phone numbers as the project writes them: E.164 digits (``*`` where masked), possibly grouped
#: by single spaces as the console shows them (``+86 138****5678``), an optional extension, several
#: joined by "; ". No letters, so no function can be called. See the module docstring.
_ONE_NUMBER = r"\+[0-9*]{1,20}(?: [0-9*]{1,20}){0,5}(?: ext\. [0-9]{1,6}|;ext=[0-9]{1,6})?"
_PHONE_TEXT = re.compile(rf"{_ONE_NUMBER}(?:; {_ONE_NUMBER})*")
#: Characters XML 1.0 cannot hold (openpyxl refuses the first group; the rest break the file).
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
#: Text openpyxl would store as an error cell rather than a string.
_ERROR_CODES = frozenset(("#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A"))

#: Column headers by key and language. English is the key itself (stable for scripts); the Chinese
#: customer headers are ones :mod:`storage.customers` recognises on import.
HEADERS: dict[str, dict[str, str]] = {
    # calls (the console's export)
    "uuid": {"zh-CN": "通话ID"},
    "started_at": {"zh-CN": "开始时间"},
    "seat": {"zh-CN": "工位"},
    "line": {"zh-CN": "线路"},
    "rep": {"zh-CN": "业务员"},
    "team": {"zh-CN": "团队"},
    "direction": {"zh-CN": "方向"},
    "number": {"zh-CN": "号码"},
    "cid_name": {"zh-CN": "来电显示名称"},
    "disposition": {"zh-CN": "结果"},
    "ring_seconds": {"zh-CN": "振铃秒数"},
    "talk_seconds": {"zh-CN": "通话秒数"},
    "has_recording": {"zh-CN": "有录音"},
    "notes": {"zh-CN": "备注"},
    # customers (export-customers)
    "name": {"zh-CN": "姓名"},
    "phone": {"zh-CN": "电话"},
    "company": {"zh-CN": "公司"},
    "owner": {"zh-CN": "负责人"},
    "tags": {"zh-CN": "标签"},
    # reject files
    "row": {"zh-CN": "行号"},
    "reason": {"zh-CN": "原因"},
    # changes files (an import with --update)
    "customer": {"zh-CN": "客户编号"},
    "field": {"zh-CN": "字段"},
    "old": {"zh-CN": "原值"},
    "new": {"zh-CN": "新值"},
    # reports
    "half-hour": {"zh-CN": "半小时"},
    "hour": {"zh-CN": "小时"},
    "day": {"zh-CN": "日期"},
    "calls": {"zh-CN": "通话数"},
    "answered": {"zh-CN": "接通"},
    "missed": {"zh-CN": "未接"},
    "effective": {"zh-CN": "有效通话"},
    "avg_talk_seconds": {"zh-CN": "平均通话秒数"},
    "inbound": {"zh-CN": "呼入"},
    "outbound": {"zh-CN": "呼出"},
    "outbound_connected": {"zh-CN": "呼出接通"},
    "connect_rate": {"zh-CN": "接通率"},
    # lead coverage (the console's coverage export)
    "assigned": {"zh-CN": "已分配"},
    "dialed": {"zh-CN": "已拨打"},
    "reached": {"zh-CN": "已接通"},
    "attempts": {"zh-CN": "拨打次数"},
    "attempts_per_lead": {"zh-CN": "每条拨打次数"},
    "untouched": {"zh-CN": "未动"},
    "closed": {"zh-CN": "已结束"},
    "passed_undialed": {"zh-CN": "未拨即转出"},
    # reports against targets
    "days_worked": {"zh-CN": "出勤天数"},
    "target_calls": {"zh-CN": "通话目标"},
    "calls_progress": {"zh-CN": "通话完成率"},
    "target_talk_seconds": {"zh-CN": "通时目标秒数"},
    "talk_progress": {"zh-CN": "通时完成率"},
    "target_effective": {"zh-CN": "有效通话目标"},
    "effective_progress": {"zh-CN": "有效通话完成率"},
}

_TRUNCATED: dict[str, str] = {
    "en": "[truncated] only the first {limit} rows are in this file; there are more: "
    "narrow the search, or export as CSV",
    "zh-CN": "[已截断] 本文件只含前 {limit} 行，还有更多：请缩小搜索范围，或导出为 CSV",
}


def _language(lang: str) -> str:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; one of {', '.join(LANGUAGES)}")
    return lang


def headers(keys: Iterable[str], lang: str = "en") -> list[str]:
    """The header texts of column ``keys`` in ``lang`` (``en`` or ``zh-CN``).

    A key without a translation is its own header (an import file's own header, say).

    :raises ValueError: an unknown language.
    """
    _language(lang)
    return [HEADERS.get(key, {}).get(lang, key) for key in keys]


def truncation_text(limit: int, lang: str = "en") -> str:
    """The text of the row that ends an export cut at ``limit`` rows."""
    return _TRUNCATED[_language(lang)].format(limit=limit)


def clean_text(text: str) -> str:
    """``text`` with every character XML 1.0 cannot hold replaced by U+FFFD."""
    return _ILLEGAL.sub("\ufffd", text) if _ILLEGAL.search(text) else text


def needs_escape(text: str) -> bool:
    """Whether a text cell would start a formula (or looks like an escaped one) and must be escaped."""
    if not text:
        return False
    first = text[0]
    if first in FORMULA_PREFIXES:
        return not (first == "+" and _PHONE_TEXT.fullmatch(text))
    return first == "'" and _ESCAPED.match(text) is not None


def escape_text(text: str) -> str:
    """The CSV form of a text cell: cleaned, with an apostrophe first when it would start a formula."""
    text = clean_text(text)
    return "'" + text if needs_escape(text) else text


def unescape_text(text: str) -> str:
    """Undo :func:`escape_text`'s apostrophe (for a CSV read back): ``'=x`` → ``=x``, ``''=x`` → ``'=x``."""
    return text[1:] if _ESCAPED.match(text) else text


def _plain(value: Any) -> str | int | float | Decimal:
    """A value as a number or a text (before escaping)."""
    kind = type(value)
    if kind is str or kind is int or kind is float:  # nearly every cell: skip the checks below
        return value  # type: ignore[no-any-return]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return value
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def csv_cell(value: Any) -> str | int | float | Decimal:
    """One value as a CSV writes it: numbers as they are, anything else as escaped text."""
    if type(value) is str:
        return escape_text(value)
    plain = _plain(value)
    return escape_text(plain) if isinstance(plain, str) else plain


@dataclass
class ExportOutcome:
    """What a writer did, filled in as it goes: data rows written, and whether it cut the rows short."""

    rows: int = 0
    truncated: bool = False
    limit: int | None = None


def _limited(
    rows: Iterable[Sequence[Any]], limit: int | None, outcome: ExportOutcome
) -> Iterator[Sequence[Any]]:
    """The rows up to ``limit``; one more is read (never written) to know whether there were more."""
    outcome.limit = limit
    for row in rows:
        if limit is not None and outcome.rows >= limit:
            outcome.truncated = True
            return
        outcome.rows += 1
        yield row


class CsvWriter:
    """Writes rows to a text stream by this module's rules (for a writer fed one row at a time).

    The stream is opened by the caller (``newline=""``, UTF-8, ``utf-8-sig`` for a byte order mark).
    """

    def __init__(self, stream: IO[str], *, lineterminator: str = "\r\n") -> None:
        self._writer = csv.writer(stream, lineterminator=lineterminator)

    def header(self, texts: Sequence[str]) -> None:
        """Write a header row (texts escaped like any text)."""
        self._writer.writerow([escape_text(t) for t in texts])

    def row(self, values: Sequence[Any]) -> None:
        """Write one row of values (see :func:`csv_cell`)."""
        self._writer.writerow([csv_cell(v) for v in values])


def iter_csv(
    rows: Iterable[Sequence[Any]],
    *,
    header: Sequence[str] | None = None,
    lang: str = "en",
    limit: int | None = None,
    bom: bool = True,
    lineterminator: str = "\r\n",
    outcome: ExportOutcome | None = None,
) -> Iterator[bytes]:
    """A CSV in UTF-8 as byte chunks of about :data:`CHUNK_BYTES`, rows read as they are needed.

    :param header: the header texts (see :func:`headers`), written first and escaped like any text.
    :param lang: the language of the truncation row.
    :param limit: write at most this many rows, then a truncation row if there were more.
    :param bom: start with a byte order mark, so Excel reads Chinese text as UTF-8.
    :param outcome: filled in with the rows written and whether they were cut short.
    """
    outcome = outcome if outcome is not None else ExportOutcome()
    _language(lang)
    buffer = io.StringIO()
    writer = CsvWriter(buffer, lineterminator=lineterminator)
    if bom:
        buffer.write("\ufeff")
    if header is not None:
        writer.header(header)
    for row in _limited(rows, limit, outcome):
        writer.row(row)
        if buffer.tell() >= CHUNK_BYTES:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    if outcome.truncated and limit is not None:
        writer.row([truncation_text(limit, lang)])
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


def csv_text(
    rows: Iterable[Sequence[Any]],
    *,
    header: Sequence[str] | None = None,
    lang: str = "en",
    lineterminator: str = "\n",
) -> str:
    """A whole CSV as text without a byte order mark (for a terminal or a pipe)."""
    chunks = iter_csv(rows, header=header, lang=lang, bom=False, lineterminator=lineterminator)
    return b"".join(chunks).decode("utf-8")


_XML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_EDGE_SPACE = frozenset(" \t\n\r")
#: The style openpyxl gives the quote-prefixed cell of the template (see :func:`_template`).
_QUOTED_STYLE = 1
_SHEET_PART = "xl/worksheets/sheet1.xml"


@functools.lru_cache(maxsize=8)
def _template(title: str) -> tuple[tuple[tuple[zipfile.ZipInfo, bytes], ...], bytes, bytes]:
    """Openpyxl's write-only workbook of one sheet: its other parts, and its sheet's XML around the rows.

    Saved once per sheet title, with one quote-prefixed cell so that ``styles.xml`` holds that
    style as :data:`_QUOTED_STYLE`.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title)
    cell = WriteOnlyCell(sheet, value="x")
    cell.quotePrefix = True
    sheet.append([cell])
    out = io.BytesIO()
    book.save(out)
    with zipfile.ZipFile(out) as package:
        parts = tuple(
            (info, package.read(info)) for info in package.infolist() if info.filename != _SHEET_PART
        )
        sheet_xml = package.read(_SHEET_PART)
    head, _, rest = sheet_xml.partition(b"<sheetData>")
    _, _, tail = rest.partition(b"</sheetData>")
    if not tail or b's="1"' not in rest:
        raise RuntimeError("unexpected openpyxl workbook layout")  # an openpyxl upgrade changed it
    return parts, head + b"<sheetData>", b"</sheetData>" + tail


def _xlsx_text(text: str, ref: str) -> str:
    """One text cell of the sheet's XML (an inline string, never a formula or an error value)."""
    text = clean_text(text)
    if not text:
        return f'<c r="{ref}" t="inlineStr"/>'  # written, so rows read back keep their width
    if len(text) > XLSX_MAX_CELL:
        text = text[: XLSX_MAX_CELL - 1] + "…"
    # A formula prefix gets the quote prefix style: shown as typed, kept as text when edited.
    style = f' s="{_QUOTED_STYLE}"' if text[0] in FORMULA_PREFIXES else ""
    space = ' xml:space="preserve"' if text[0] in _EDGE_SPACE or text[-1] in _EDGE_SPACE else ""
    return f'<c r="{ref}"{style} t="inlineStr"><is><t{space}>{text.translate(_XML_ESCAPES)}</t></is></c>'


def _xlsx_row(values: Sequence[Any], number: int, letters: list[str]) -> str:
    """One ``<row>`` of the sheet's XML."""
    while len(letters) < len(values):
        letters.append(_column_letter(len(letters) + 1))
    cells = []
    for value, letter in zip(values, letters, strict=False):
        plain = value if type(value) is str else _plain(value)
        ref = f"{letter}{number}"
        if type(plain) is str:
            cells.append(_xlsx_text(plain, ref))
        elif isinstance(plain, float) and not math.isfinite(plain):
            cells.append(_xlsx_text(str(plain), ref))  # NaN and infinities are not cell numbers
        else:
            number_text = repr(plain) if isinstance(plain, float) else str(plain)
            cells.append(f'<c r="{ref}" t="n"><v>{number_text}</v></c>')
    return f'<row r="{number}">{"".join(cells)}</row>'


def _column_letter(index: int) -> str:
    letters = ""
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def _file_chunks(handle: Any) -> Iterator[bytes]:
    handle.seek(0)
    while chunk := handle.read(CHUNK_BYTES):
        yield chunk


def iter_xlsx(
    rows: Iterable[Sequence[Any]],
    *,
    header: Sequence[str] | None = None,
    lang: str = "en",
    limit: int | None = None,
    sheet_title: str = "Sheet1",
    outcome: ExportOutcome | None = None,
) -> Iterator[bytes]:
    """An XLSX workbook of one sheet as byte chunks; memory stays bounded whatever the row count.

    The package is openpyxl's write-only workbook (:func:`_template`); the rows of its sheet
    are written here, the same XML openpyxl writes (inline strings, no shared-string table in
    memory) at a tenth of its cost per cell. The sheet goes to a temporary file as the rows
    come, then is zipped with the other parts into a spooled file (:data:`SPOOL_BYTES` in
    memory, then disk) read back in chunks, so the first chunk comes once every row is
    written. ``limit`` is capped at :data:`XLSX_MAX_ROWS`. The other parameters are those of
    :func:`iter_csv`.
    """
    outcome = outcome if outcome is not None else ExportOutcome()
    _language(lang)
    limit = XLSX_MAX_ROWS if limit is None else min(limit, XLSX_MAX_ROWS)
    parts, head, tail = _template(clean_text(sheet_title)[:31].strip() or "Sheet1")
    letters: list[str] = []
    with (
        tempfile.TemporaryFile(buffering=CHUNK_BYTES) as sheet,
        tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool,
    ):
        out = sheet
        out.write(head)
        number = 0
        if header is not None:
            number += 1
            out.write(_xlsx_row(list(header), number, letters).encode("utf-8"))
        for row in _limited(rows, limit, outcome):
            number += 1
            out.write(_xlsx_row(row, number, letters).encode("utf-8"))
        if outcome.truncated:
            number += 1
            out.write(_xlsx_row([truncation_text(limit, lang)], number, letters).encode("utf-8"))
        out.write(tail)
        size = sheet.tell()
        with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED) as package:
            for info, data in parts:
                package.writestr(info, data)
            info = zipfile.ZipInfo(_SHEET_PART, date_time=parts[0][0].date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            sheet.seek(0)
            with package.open(info, "w", force_zip64=size >= zipfile.ZIP64_LIMIT) as target:
                shutil.copyfileobj(sheet, target, CHUNK_BYTES)
        yield from _file_chunks(spool)


def iter_sheet(
    fmt: SheetFormat,
    rows: Iterable[Sequence[Any]],
    *,
    header: Sequence[str] | None = None,
    lang: str = "en",
    limit: int | None = None,
    sheet_title: str = "Sheet1",
    outcome: ExportOutcome | None = None,
) -> Iterator[bytes]:
    """:func:`iter_csv` (UTF-8 with BOM, CRLF) or :func:`iter_xlsx` by ``fmt``."""
    if fmt == "csv":
        return iter_csv(rows, header=header, lang=lang, limit=limit, outcome=outcome)
    if fmt == "xlsx":
        return iter_xlsx(
            rows, header=header, lang=lang, limit=limit, sheet_title=sheet_title, outcome=outcome
        )
    raise ValueError(f"unknown spreadsheet format {fmt!r}; one of {', '.join(FORMATS)}")


async def aiter_sheet(
    fmt: SheetFormat,
    rows: Iterable[Sequence[Any]],
    *,
    header: Sequence[str] | None = None,
    lang: str = "en",
    limit: int | None = None,
    sheet_title: str = "Sheet1",
    outcome: ExportOutcome | None = None,
    on_done: Callable[[], None] | None = None,
) -> AsyncIterator[bytes]:
    """:func:`iter_sheet` for an event loop: each chunk is produced in a worker thread.

    ``rows`` may read a database lazily (open its session inside the generator): it is only
    ever advanced from worker threads, one step at a time. ``on_done`` runs in a worker thread
    once the stream ends, fails or is abandoned (a client gone): release an
    :class:`ExportSlot` there and write the audit row with ``outcome.rows``. It may block.
    """
    chunks = iter_sheet(
        fmt, rows, header=header, lang=lang, limit=limit, sheet_title=sheet_title, outcome=outcome
    )
    # A cancelled await leaves its thread running next(): closing waits for it, never overlaps it.
    lock = threading.Lock()
    done = object()

    def step() -> object:
        with lock:
            return next(chunks, done)

    def finish() -> None:
        try:
            with lock:
                chunks.close()  # type: ignore[attr-defined]
        finally:
            if on_done is not None:
                on_done()

    try:
        while True:
            chunk = await asyncio.to_thread(step)
            if chunk is done:
                return
            assert isinstance(chunk, bytes)
            yield chunk
    finally:
        # The thread runs to its end even if this await is cancelled: the slot is always released.
        await asyncio.to_thread(finish)


def temporary_beside(path: Path) -> Path:
    """A new name in ``path``'s folder to write ``path`` under until it is complete.

    Opened with ``"x"``, the file gets the user's usual permissions (``mkstemp`` would make it
    readable by its owner only, which a shared export should not be).
    """
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def write_sheet(
    path: Path,
    rows: Iterable[Sequence[Any]],
    *,
    fmt: SheetFormat | None = None,
    header: Sequence[str] | None = None,
    lang: str = "en",
    limit: int | None = None,
    sheet_title: str = "Sheet1",
) -> ExportOutcome:
    """Write a sheet to ``path`` through a temporary name in its folder, renamed when complete.

    :param fmt: ``csv`` or ``xlsx``; by default ``xlsx`` for a ``.xlsx`` path, else ``csv``.
    :raises OSError: the file cannot be written (nothing is left at ``path`` then).
    """
    chosen: SheetFormat = fmt or ("xlsx" if path.suffix.lower() == ".xlsx" else "csv")
    outcome = ExportOutcome()
    temporary = temporary_beside(path)
    try:
        with temporary.open("xb") as out:
            chunks = iter_sheet(
                chosen, rows, header=header, lang=lang, limit=limit, sheet_title=sheet_title, outcome=outcome
            )
            for chunk in chunks:
                out.write(chunk)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    return outcome


class ExportSlot:
    """One export running for one user; :meth:`release` (idempotent) when it ends."""

    def __init__(self, gate: ExportGate, user: str) -> None:
        self._gate = gate
        self.user = user
        self._released = False

    def release(self) -> None:
        """Give the slot back (a second call does nothing)."""
        if not self._released:
            self._released = True
            self._gate._release(self.user)


class ExportGate:
    """How many exports each user may run at once (an export holds a thread and a temporary file).

    Thread-safe: slots are taken on the event loop and given back from worker threads.
    """

    def __init__(self, per_user: int = 1) -> None:
        if per_user < 1:
            raise ValueError("per_user must be at least 1")
        self.per_user = per_user
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    def try_acquire(self, user: str) -> ExportSlot | None:
        """A slot for ``user``, or None when they already run ``per_user`` exports (answer 429)."""
        with self._lock:
            if self._running.get(user, 0) >= self.per_user:
                return None
            self._running[user] = self._running.get(user, 0) + 1
        return ExportSlot(self, user)

    def running(self, user: str) -> int:
        """How many exports ``user`` runs now."""
        with self._lock:
            return self._running.get(user, 0)

    def _release(self, user: str) -> None:
        with self._lock:
            left = self._running.get(user, 0) - 1
            if left > 0:
                self._running[user] = left
            else:
                self._running.pop(user, None)
