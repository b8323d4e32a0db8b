"""Customer import and export: CSV (UTF-8, UTF-8 with BOM, GBK/GB18030) and XLSX.

A CSV file is decoded as a whole, strictly: UTF-8 (with or without a byte order
mark) or GB18030 (which GBK and GB2312 files are), never with replacement
characters. A file that is neither stops the import with the line and the byte
offset of its first bad byte (see :func:`decode_csv_bytes`).

An import never merges or drops anything silently. Every row ends in exactly one
of three places, and the :class:`ImportReport` says which:

- imported: a new customer with all of its numbers;
- reported and rejected: a number already in the file (``duplicate_in_file``),
  already in the database (``duplicate_in_db``), or owned by another rep
  (``conflict``: the guard against two reps working one lead);
- rejected as unreadable: no number, a number that is not valid in the
  numbering plan, too many cells, an unreadable line.

Rejected rows are written to a reject file (CSV, UTF-8 with BOM so Excel opens
Chinese text) with the row number and the reason first, then the row's cells
as read, so nothing is lost: fix them and import the reject file again. Reject
files and exports are written by :mod:`storage.sheets` (formula cells escaped,
control characters replaced); a CSV's escape apostrophe is taken off again on
import, so an export imports back unchanged.

A row is taken whole or not at all: a customer is never half imported, so an
import of the fixed reject file cannot create a second copy of the first half.

With ``update=True`` (``--update``) a row whose numbers are an existing customer's is not a
duplicate but that customer's new data: the fields the row gives (name, company, notes, tags:
:data:`UPDATABLE`) replace the customer's, numbers the row adds are added to it, and the
owner is never changed (an owner column is not read for such a row). Every field that changed
is a :class:`Change` (row, number, field, old, new), told to a :class:`ChangeSink` and written
by :class:`ChangeWriter` in the reader's language. An empty cell clears nothing. A row whose
numbers belong to two customers is rejected (``several_customers``); a number twice in the
file is still ``duplicate_in_file``.

Numbers are stored as E.164 (``+8613812345678``). An extension is kept in the
RFC 3966 form ``+862212345678;ext=8001`` (unique per extension, so two people
behind one switchboard are two numbers), the number as written beside it.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar, cast

from sqlalchemy import Connection, Table, bindparam, column, func, insert, select, table
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session

from agent.numbers import DEFAULT_REGION, display_key, to_e164
from storage.models import CustomerPhone, CustomerRecord, utcnow
from storage.sheets import CsvWriter, headers, temporary_beside, unescape_text, write_sheet

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The fields a column can map to. ``phone`` may be mapped from several columns.
FIELDS: tuple[str, ...] = ("name", "phone", "company", "owner_rep", "notes", "tags")
#: The fields an ``update`` import changes on an existing customer (never ``owner_rep``).
UPDATABLE: tuple[str, ...] = ("name", "company", "notes", "tags")

#: Header names (after :func:`_header_key`) that map to a field; digits at the end are ignored
#: (``电话2``, ``phone 3``).
HEADER_ALIASES: dict[str, str] = {
    **dict.fromkeys(
        ["name", "fullname", "customer", "customername", "contact", "contactname", "client"], "name"
    ),
    **dict.fromkeys(
        ["姓名", "名字", "客户", "客户名", "客户名称", "客户姓名", "联系人", "联系人姓名"], "name"
    ),
    **dict.fromkeys(
        [
            "phone",
            "phones",
            "phonenumber",
            "mobile",
            "mobilephone",
            "cell",
            "cellphone",
            "tel",
            "telephone",
            "landline",
            "number",
            "workphone",
            "homephone",
        ],
        "phone",
    ),
    **dict.fromkeys(
        [
            "电话",
            "手机",
            "手机号",
            "手机号码",
            "电话号码",
            "联系电话",
            "联系方式",
            "座机",
            "固话",
            "固定电话",
            "办公电话",
            "号码",
            "移动电话",
        ],
        "phone",
    ),
    **dict.fromkeys(["company", "companyname", "organization", "organisation", "org", "account"], "company"),
    **dict.fromkeys(["公司", "公司名称", "单位", "单位名称", "企业", "企业名称"], "company"),
    **dict.fromkeys(["owner", "ownerrep", "rep", "salesrep", "salesperson", "accountowner"], "owner_rep"),
    **dict.fromkeys(
        ["负责人", "业务员", "销售", "所属销售", "归属", "归属人", "跟进人", "坐席"], "owner_rep"
    ),
    **dict.fromkeys(["notes", "note", "remark", "remarks", "comment", "comments", "memo"], "notes"),
    **dict.fromkeys(["备注", "说明", "附注", "描述"], "notes"),
    **dict.fromkeys(["tags", "tag", "labels", "label", "category", "categories"], "tags"),
    **dict.fromkeys(["标签", "分类", "类别", "客户标签"], "tags"),
}

#: How numbers are separated inside one cell (a space is not one: ``022 1234 5678`` is one number).
_NUMBER_SEPARATORS = re.compile(r"[;,/、|\n\r；，／｜]+")
_TAG_SEPARATORS = re.compile(r"[;,|、\s]+")
#: An extension at the end of a number: ``转 8001``, ``ext. 8001``, ``x8001``, ``分机8001``, ``#8001``.
_EXTENSION = re.compile(r"^(?P<main>.*?\d.*?)\s*(?:ext\.?|extn\.?|x|转|分机|#)\s*(?P<ext>\d{1,6})$", re.I)
#: A number written with ASCII digits and the usual separators only (no extension, nothing to fold).
_PLAIN_NUMBER = re.compile(r"[0-9+() .\-]*")
_MAX_NAME = 200
_MAX_COMPANY = 200
_MAX_OWNER = 100
#: Rows per database round trip. SQLite allows 32766 bound parameters per statement.
BATCH_ROWS = 2000


class RejectSink(Protocol):
    """Where rejected rows go: told the header once, then called once per row not imported."""

    def begin(self, header: Sequence[str]) -> None:
        """The import file's header row (before any reject)."""

    def __call__(self, row: int, reason: str, cells: list[str]) -> None:
        """One row that was not imported, with the reason."""


#: What a reject says, by code and language (English is also what the CLI and the report's JSON say).
REASONS: dict[str, dict[str, str]] = {
    "unreadable": {"en": "unreadable line: {detail}", "zh-CN": "无法读取的行：{detail}"},
    "too_many_cells": {
        "en": "row has {cells} cells, the header has {header}",
        "zh-CN": "该行有 {cells} 个单元格，表头只有 {header} 列",
    },
    "bad_number": {"en": "not a valid phone number: {written!r}", "zh-CN": "不是有效的电话号码：“{written}”"},
    "no_phone": {"en": "no phone number", "zh-CN": "没有电话号码"},
    "conflict_in_file": {
        "en": "{raw} is also on row {first_row}, for rep {first_owner!r}, not {owner!r}",
        "zh-CN": "{raw} 也在第 {first_row} 行，负责人是 {first_owner}，不是 {owner}",
    },
    "duplicate_in_file": {"en": "{raw} is also on row {first_row}", "zh-CN": "{raw} 与第 {first_row} 行重复"},
    "owned": {
        "en": "{raw} belongs to customer {customer}, owned by rep {owner!r}",
        "zh-CN": "{raw} 属于客户 {customer}，负责人是 {owner}",
    },
    "duplicate_in_db": {"en": "{raw} is already customer {customer}", "zh-CN": "{raw} 已是客户 {customer}"},
    "several_customers": {
        "en": "{raw} is customer {customer}, {other_raw} is customer {other}: one row cannot update both",
        "zh-CN": "{raw} 是客户 {customer}，{other_raw} 是客户 {other}：一行不能同时更新两个客户",
    },
}


class Reason(str):
    """Why a row was not imported: its English text, with the code and values to say it in another language.

    A ``str`` (the English text) so the report, the CLI and scripts reading ``Issue.reason``
    see what they always saw; :meth:`text` gives a reject file its reader's language.
    """

    code: str
    params: dict[str, Any]

    def __new__(cls, code: str, **params: Any) -> Reason:
        """The reason ``code`` (a key of :data:`REASONS`) with the values its texts name."""
        made = super().__new__(cls, REASONS[code]["en"].format(**params))
        made.code = code
        made.params = params
        return made

    def text(self, lang: str = "en") -> str:
        """The reason in ``lang`` (English where there is no translation)."""
        said = REASONS[self.code]
        return said.get(lang, said["en"]).format(**self.params)


class ChangeSink(Protocol):
    """Where an ``update`` import reports what it changed: called once per changed field."""

    def __call__(self, change: Change) -> None:
        """One field of one existing customer that the import changed (or would, in a dry run)."""


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (unreadable, no header, no phone column)."""


@dataclass(frozen=True, slots=True)
class Issue:
    """One thing the report lists: which row (1-based, the header is row 1), what, and about which number."""

    row: int
    kind: str
    reason: str
    number: str | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """One field an ``update`` import changed: the row, the customer, its number, old and new value.

    ``number`` is the customer's number the row was matched by (E.164, as :func:`display_key`
    shows it); ``field`` is one of :data:`UPDATABLE` or ``phone`` (a number added: ``old`` None).
    """

    row: int
    customer: int
    number: str
    field: str
    old: str | None
    new: str | None


@dataclass
class ImportReport:
    """What an import did. ``issues`` lists every row that was not imported, and why.

    ``updated``: existing customers an ``update`` import changed (``changes`` says how);
    ``unchanged``: rows that matched an existing customer and changed nothing.
    """

    rows: int = 0
    imported: int = 0
    phones: int = 0
    dry_run: bool = False
    columns: dict[str, str] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    updated: int = 0
    unchanged: int = 0
    changes: list[Change] = field(default_factory=list)

    def count(self, kind: str) -> int:
        """How many issues of a kind (``rejected``, ``duplicate_in_file``, ``duplicate_in_db``, ...)."""
        return sum(1 for issue in self.issues if issue.kind == kind)

    @property
    def not_imported(self) -> int:
        """Rows that were not imported (every one of them is in the reject file)."""
        return len(self.issues)


class _Phone(NamedTuple):
    key: str  # what goes into number_e164 (E.164, plus ;ext= when there is one)
    raw: str
    label: str | None


@dataclass(slots=True)
class _Row:
    row: int
    cells: list[str]
    name: str
    company: str | None
    owner_rep: str | None
    notes: str | None
    tags: str | None
    phones: list[_Phone]
    #: The fields the row gives a value for (an update changes only these).
    given: frozenset[str] = frozenset()


def _header_key(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).strip().lower()
    folded = re.sub(r"[\s_\-.:：()（）\[\]【】*]+", "", folded)
    return folded.rstrip("0123456789")


def parse_mapping(items: Iterable[str]) -> dict[str, str]:
    """Parse ``FIELD=HEADER`` options (``phone=主叫号码``) into ``{header: field}``.

    ``HEADER`` is a header's text or a 1-based column number (``phone=#3``).

    :raises ValueError: an item has no ``=`` or names an unknown field.
    """
    mapping: dict[str, str] = {}
    for item in items:
        target, sep, header = item.partition("=")
        target, header = target.strip().lower(), header.strip()
        if target == "owner":
            target = "owner_rep"
        if not sep or not header:
            raise ValueError(f"mapping {item!r}: expected FIELD=HEADER")
        if target not in (*FIELDS, "ignore"):
            raise ValueError(
                f"mapping {item!r}: unknown field {target!r} (one of {', '.join(FIELDS)}, ignore)"
            )
        mapping[header] = target
    return mapping


#: Header words that name a company's contact person, and ones that name the customer (a company
#: in a B2B sheet): a sheet with both, and no company column, has a company and a contact.
_CONTACT_HEADERS = frozenset(("联系人", "联系人姓名", "contact", "contactname"))
_CUSTOMER_HEADERS = frozenset(("客户", "客户名", "客户名称", "customer", "customername", "client"))


def _explicit_indexes(header: Sequence[str], mapping: dict[str, str] | None) -> set[int]:
    named = set(mapping or {})
    return {i for i, text in enumerate(header) if text.strip() in named or f"#{i + 1}" in named}


def _b2b_names(header: Sequence[str], columns: dict[int, str], *, recognised: set[int]) -> None:
    """A B2B sheet (客户名称 and 联系人, no company column): the customer column is the company."""
    names = [i for i, target in columns.items() if target == "name" and i in recognised]
    if len(names) != 2 or "company" in columns.values():
        return
    keys = {i: _header_key(header[i]) for i in names}
    contact = [i for i in names if keys[i] in _CONTACT_HEADERS]
    customer = [i for i in names if keys[i] in _CUSTOMER_HEADERS]
    if len(contact) == 1 and len(customer) == 1:
        columns[customer[0]] = "company"


def recognised_field(header_text: str) -> str | None:
    """The field an English or Chinese header names (``手机号码`` → ``phone``), None for no field."""
    return HEADER_ALIASES.get(_header_key(header_text)) or HEADER_ALIASES.get(
        unicodedata.normalize("NFKC", header_text).strip().lower()
    )


def map_columns(header: Sequence[str], mapping: dict[str, str] | None = None) -> dict[int, str]:
    """Which field each column holds: ``{column index: field}``.

    Explicit ``mapping`` entries (``{header text or "#N": field}``, see
    :func:`parse_mapping`) win; the other columns are recognised by their
    English or Chinese header name. Columns mapped to nothing are ignored and
    listed in the report. A B2B sheet with both 客户名称 and 联系人 (and no company
    column) reads the first as the company and the second as the contact's name.

    :raises ImportFileError: no column holds phone numbers, or a mapping names a missing column.
    """
    columns: dict[int, str] = {}
    explicit = dict(mapping or {})
    for header_text, target in list(explicit.items()):
        if header_text.startswith("#") and header_text[1:].isdigit():
            index = int(header_text[1:]) - 1
            if not 0 <= index < len(header):
                raise ImportFileError(f"mapping names column {header_text}, the file has {len(header)}")
            columns[index] = target
            del explicit[header_text]
    for index, text in enumerate(header):
        if index in columns:
            continue
        if text.strip() in explicit:
            columns[index] = explicit.pop(text.strip())
            continue
        found = recognised_field(text)
        if found is not None:
            columns[index] = found
    if explicit:
        raise ImportFileError(f"mapping names column(s) not in the header: {', '.join(sorted(explicit))}")
    columns = {index: target for index, target in columns.items() if target != "ignore"}
    _b2b_names(header, columns, recognised=set(range(len(header))) - _explicit_indexes(header, mapping))
    used = set(columns.values())
    if "phone" not in used:
        raise ImportFileError(
            "no column of phone numbers found (headers: "
            + ", ".join(repr(h) for h in header)
            + "); name one with --mapping phone=HEADER"
        )
    for single in ("name", "company", "owner_rep"):
        holders = [i for i, target in columns.items() if target == single]
        if len(holders) > 1:
            names = ", ".join(repr(header[i]) for i in holders)
            raise ImportFileError(f"several columns map to {single}: {names}; choose one with --mapping")
    return columns


def normalise_number(text: str, region: str = DEFAULT_REGION) -> str | None:
    """The stored form of one written number: E.164, ``;ext=N`` appended for an extension; None if invalid.

    Full-width digits, spaces, dashes, brackets, ``+86``/``0086`` and national
    forms with area codes (``022-1234 5678``) are all understood.
    """
    extension = None
    if _PLAIN_NUMBER.fullmatch(text):
        # Most cells: ASCII digits and separators, nothing NFKC changes, no extension.
        folded = text.strip()
    else:
        folded = unicodedata.normalize("NFKC", text).strip()
        match = _EXTENSION.match(folded)
        if match:
            folded, extension = match.group("main"), match.group("ext")
    if not folded:
        return None
    if folded.startswith("00"):
        folded = "+" + folded[2:]
    e164 = to_e164(folded, region)
    if e164 is None:
        return None
    return f"{e164};ext={extension}" if extension else e164


def split_numbers(cell: str) -> list[str]:
    """The numbers written in one cell (``138 1234 5678 / 022-12345678``)."""
    return [part.strip() for part in _NUMBER_SEPARATORS.split(cell) if part.strip()]


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        # Excel keeps a number typed into a cell as a float: 13812345678.0.
        return str(int(value))
    return str(value).strip()


# -- reading files -------------------------------------------------------------------


#: A lone surrogate in text decoded with ``surrogateescape``: one byte that was not UTF-8.
_UNDECODED = re.compile("[\udc80-\udcff]")


def _where(data: bytes, offset: int) -> str:
    """Where a byte is, for people: line, byte of the line and offset in the file (both 1-based/0-based)."""
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return f"line {line}, byte {column} of the line (byte offset {offset} in the file): 0x{data[offset]:02X}"


def _looks_like_utf8(data: bytes) -> bool:
    """Whether a file that is not valid UTF-8 is still mostly UTF-8 (a damaged UTF-8 file).

    In GBK/GB18030 text nearly every non-ASCII byte is invalid as UTF-8 (a Chinese character
    is two bytes that seldom form a UTF-8 sequence); in a UTF-8 file with a stray byte nearly
    every non-ASCII character is valid. More valid non-ASCII characters than invalid bytes
    means the latter, so the file is not re-read as GB18030 into mojibake.
    """
    text = data.decode("utf-8", errors="surrogateescape")
    invalid = len(_UNDECODED.findall(text))
    non_ascii = len(text) - len(text.encode("ascii", errors="ignore"))
    return non_ascii - invalid > invalid


def decode_csv_bytes(data: bytes, encoding: str | None = None) -> str:
    """The text of a CSV file, decoded as a whole without replacement characters.

    Without ``encoding``: a file starting with a UTF-8 byte order mark is UTF-8; else UTF-8 if it
    decodes as UTF-8; else, unless it is mostly UTF-8 (see :func:`_looks_like_utf8`), GB18030,
    the superset of GBK and GB2312 that Excel on a Chinese Windows saves as "CSV".

    :param encoding: decode with this codec only (``utf-8`` also takes off a byte order mark).
    :raises ImportFileError: the file does not decode; the message names the line and the byte
        offset of the first bad byte, so the file can be fixed and imported again.
    """
    if encoding:
        try:
            codec = codecs.lookup(encoding).name
        except LookupError:
            raise ImportFileError(f"unknown encoding {encoding!r}") from None
        if codec == "utf-8":
            codec = "utf-8-sig"
        try:
            return data.decode(codec)
        except UnicodeDecodeError as exc:
            raise ImportFileError(f"the file is not {encoding}: {_where(data, exc.start)}") from None
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8) :].decode("utf-8")
        except UnicodeDecodeError as exc:
            where = _where(data, exc.start + len(codecs.BOM_UTF8))
            raise ImportFileError(
                f"the file starts as UTF-8 (byte order mark) but is not UTF-8 at {where}"
            ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        utf8_error = exc
    if _looks_like_utf8(data):
        raise ImportFileError(
            f"the file is UTF-8 but for {_where(data, utf8_error.start)}; "
            "fix that byte or save the file again as UTF-8"
        ) from None
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            f"the file is neither UTF-8 (first bad byte at {_where(data, utf8_error.start)}) "
            f"nor GB18030/GBK (first bad byte at {_where(data, exc.start)}); "
            "save it again as UTF-8, or name its encoding"
        ) from None


def _csv_rows(path: Path, encoding: str | None) -> tuple[int, Iterator[tuple[int, list[str] | str]]]:
    text = decode_csv_bytes(path.read_bytes(), encoding)
    sample = text[:8192]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    total = text.count("\n") + (0 if text.endswith("\n") else 1)

    def rows() -> Iterator[tuple[int, list[str] | str]]:
        lines = io.StringIO(text, newline="")
        reader = csv.reader(lines, dialect)
        while True:
            line_before = reader.line_num
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield line_before + 1, Reason("unreadable", detail=exc)
                continue
            # Our own exports escape formula cells with an apostrophe (storage.sheets): undo it.
            yield reader.line_num, [unescape_text(cell) for cell in row]

    return total, rows()


def _xlsx_rows(path: Path) -> tuple[int, Iterator[tuple[int, list[str] | str]]]:
    from openpyxl import load_workbook  # imported here: only XLSX imports pay for it

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a damaged file
        raise ImportFileError(f"cannot read {path.name} as XLSX: {exc}") from None
    sheet = workbook.worksheets[0]
    total = sheet.max_row or 0

    def rows() -> Iterator[tuple[int, list[str] | str]]:
        try:
            for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                yield number, [_cell_text(v) for v in values]
        finally:
            workbook.close()

    return total, rows()


def read_rows(path: Path, encoding: str | None = None) -> tuple[int, Iterator[tuple[int, list[str] | str]]]:
    """Open a customer file: (about how many rows, an iterator of (row number, cells or an error)).

    ``.xlsx`` / ``.xlsm`` are read with openpyxl (first sheet), anything else as CSV.

    :raises ImportFileError: the file cannot be opened or decoded.
    """
    try:
        if path.suffix.lower() in (".xlsx", ".xlsm"):
            return _xlsx_rows(path)
        return _csv_rows(path, encoding)
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from None


# -- importing -----------------------------------------------------------------------


def _text(value: str, limit: int) -> str | None:
    value = value.strip()
    return value[:limit] if value else None


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where a file's fields are, worked out once from its header and column map (not per row).

    Phone, notes and tag columns keep the column map's order (it decides which number is
    first and which bad number is named).
    """

    width: int
    phones: tuple[tuple[int, str | None], ...]  # (column, label)
    name: int | None
    company: int | None
    owner_rep: int | None
    notes: tuple[int, ...]
    tags: tuple[int, ...]

    @classmethod
    def of(cls, header: Sequence[str], columns: dict[int, str]) -> _Layout:
        """The layout of a file with this header and column map (one column per single field)."""

        def single(target: str) -> int | None:
            return next((i for i, t in columns.items() if t == target), None)

        return cls(
            width=len(header),
            phones=tuple((i, header[i].strip()[:50] or None) for i, t in columns.items() if t == "phone"),
            name=single("name"),
            company=single("company"),
            owner_rep=single("owner_rep"),
            notes=tuple(i for i, t in columns.items() if t == "notes"),
            tags=tuple(i for i, t in columns.items() if t == "tags"),
        )


def _parse_row(
    number: int,
    cells: list[str],
    layout: _Layout,
    *,
    owner: str | None,
    region: str,
) -> _Row | str:
    """A row's customer, or the reason it cannot be read."""
    width, present = layout.width, len(cells)
    if present > width and any(c.strip() for c in cells[width:]):
        return Reason("too_many_cells", cells=present, header=width)

    def cell(index: int | None) -> str:
        return cells[index].strip() if index is not None and index < present else ""

    phones: list[_Phone] = []
    keys: set[str] = set()
    for index, label in layout.phones:
        text = cell(index)
        if not text:
            continue
        for written in split_numbers(text) if _NUMBER_SEPARATORS.search(text) else (text,):
            key = normalise_number(written, region)
            if key is None:
                return Reason("bad_number", written=written)
            if key not in keys:
                keys.add(key)
                phones.append(_Phone(key, written[:64], label))
    if not phones:
        return Reason("no_phone")
    notes = "\n".join(text for text in map(cell, layout.notes) if text) or None
    tag_list: list[str] = []
    for text in map(cell, layout.tags):
        if text:
            tag_list.extend(t for t in _TAG_SEPARATORS.split(unicodedata.normalize("NFKC", text)) if t)
    company = _text(cell(layout.company), _MAX_COMPANY)
    return _Row(
        row=number,
        cells=cells,
        name=_text(cell(layout.name), _MAX_NAME) or company or phones[0].raw,
        company=company,
        owner_rep=owner if owner is not None else _text(cell(layout.owner_rep), _MAX_OWNER),
        notes=notes,
        tags=",".join(dict.fromkeys(tag_list)) or None,
        phones=phones,
        given=frozenset(
            field
            for field, present in (
                ("name", bool(cell(layout.name))),
                ("company", company is not None),
                ("notes", notes is not None),
                ("tags", bool(tag_list)),
            )
            if present
        ),
    )


def _chunks(items: Sequence[T], size: int = 500) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# The import's statements, built once (SQLAlchemy caches their compiled form too).
_CUSTOMERS = cast(Table, CustomerRecord.__table__)
#: Core inserts executed with lists of dicts: no ORM objects, no identity map, no events.
#: The same insert on an untyped copy of the table, for SQLite: the batch's one timestamp goes
#: through the column type's bind processor once (``_batch_time``), not once per row and column.
_INSERT_CUSTOMERS = insert(
    table("customers", *(column(c.name) for c in _CUSTOMERS.columns if c.name != "id"))
)
_INSERT_CUSTOMERS_RETURNING = insert(_CUSTOMERS).returning(_CUSTOMERS.c.id, sort_by_parameter_order=True)
_INSERT_PHONES = insert(cast(Table, CustomerPhone.__table__))
_COUNT_CUSTOMER_IDS = select(func.count()).where(
    _CUSTOMERS.c.id.between(bindparam("first"), bindparam("last"))
)
#: Who already has each of a batch's numbers.
_OWNERS_OF = (
    select(CustomerPhone.number_e164, CustomerRecord.id, CustomerRecord.owner_rep)
    .join(CustomerRecord, CustomerPhone.customer_id == CustomerRecord.id)
    .where(CustomerPhone.number_e164.in_(bindparam("keys", expanding=True)))
)


def _batch_time(connection: Connection, at: datetime) -> Any:
    """``at`` as the ``created_at`` column's type sends it to this database."""
    process = _CUSTOMERS.c.created_at.type.bind_processor(connection.dialect)
    return process(at) if process is not None else at


class _Importer:
    def __init__(
        self,
        session: Session,
        report: ImportReport,
        reject: RejectSink | None,
        *,
        dry_run: bool,
        imported: Callable[[list[int]], None] | None = None,
        update: bool = False,
        changes: ChangeSink | None = None,
    ) -> None:
        self.session = session
        self.report = report
        self.reject = reject
        self.dry_run = dry_run
        self.imported = imported
        self.update = update
        self.changes = changes
        #: number key -> row, and -> owner, of every number taken from the file so far. Two
        #: dicts of strings and ints, not one of tuples: the garbage collector does not track
        #: them, so a million numbers do not make every full collection walk a million tuples.
        self.seen: dict[str, int] = {}
        self.seen_owner: dict[str, str | None] = {}

    def issue(self, row: _Row | int, kind: str, reason: str, cells: list[str], number: str | None) -> None:
        row_number = row if isinstance(row, int) else row.row
        self.report.issues.append(Issue(row_number, kind, reason, number))
        if self.reject is not None:
            self.reject(row_number, reason, cells)

    def flush(self, batch: list[_Row]) -> None:
        if not batch:
            return
        keys = sorted({phone.key for row in batch for phone in row.phones})
        existing: dict[str, tuple[int, str | None]] = {}
        for chunk in _chunks(keys):
            for key, customer_id, owner_rep in self.session.execute(_OWNERS_OF, {"keys": list(chunk)}):
                existing[key] = (customer_id, owner_rep)
        accepted: list[_Row] = []
        matched: list[tuple[_Row, int, str]] = []
        for row in batch:
            target = self._check(row, existing)
            if target is False:
                continue
            for phone in row.phones:
                self.seen[phone.key] = row.row
                self.seen_owner[phone.key] = row.owner_rep
            if target is True:
                accepted.append(row)
            else:
                matched.append((row, *target))
        if matched:
            self._update(matched, existing)
        self.report.imported += len(accepted)
        self.report.phones += sum(len(row.phones) for row in accepted)
        if self.dry_run or not accepted:
            return
        now = utcnow()
        customer_rows = [
            {
                "name": row.name,
                "company": row.company,
                "owner_rep": row.owner_rep,
                "notes": row.notes,
                "tags": row.tags,
                "created_at": now,
                "updated_at": now,
            }
            for row in accepted
        ]
        ids = self._insert_customers(customer_rows)
        phone_rows = [
            {
                "customer_id": customer_id,
                "number_e164": phone.key,
                "number_raw": phone.raw,
                "label": phone.label,
            }
            for customer_id, row in zip(ids, accepted, strict=True)
            for phone in row.phones
        ]
        self.session.connection().execute(_INSERT_PHONES, phone_rows)
        if self.imported is not None:
            self.imported(list(ids))

    def _update(
        self, matched: list[tuple[_Row, int, str]], existing: dict[str, tuple[int, str | None]]
    ) -> None:
        """Give existing customers the fields their rows bring (never the owner); report each change."""
        ids = sorted({customer_id for _, customer_id, _ in matched})
        current: dict[int, dict[str, str | None]] = {}
        for chunk in _chunks(ids):
            query = select(
                CustomerRecord.id,
                CustomerRecord.name,
                CustomerRecord.company,
                CustomerRecord.notes,
                CustomerRecord.tags,
            ).where(CustomerRecord.id.in_(chunk))
            for customer_id, *stored in self.session.execute(query):
                current[customer_id] = dict(zip(UPDATABLE, stored, strict=True))
        now = utcnow()
        rewritten: list[dict[str, Any]] = []
        added: list[dict[str, Any]] = []
        for row, customer_id, number in matched:
            values = current[customer_id]
            found: list[Change] = []
            for name in UPDATABLE:
                new = getattr(row, name)
                if name in row.given and new != values[name]:
                    found.append(Change(row.row, customer_id, display_key(number), name, values[name], new))
                    values[name] = new  # a later row for this customer compares with this one
            for phone in row.phones:
                if phone.key not in existing:
                    found.append(
                        Change(
                            row.row, customer_id, display_key(number), "phone", None, display_key(phone.key)
                        )
                    )
                    added.append(
                        {
                            "customer_id": customer_id,
                            "number_e164": phone.key,
                            "number_raw": phone.raw,
                            "label": phone.label,
                        }
                    )
            if not found:
                self.report.unchanged += 1
                continue
            self.report.updated += 1
            self.report.changes.extend(found)
            if self.changes is not None:
                for change in found:
                    self.changes(change)
            if any(change.field != "phone" for change in found):
                rewritten.append(
                    {"b_id": customer_id, **{f"b_{k}": v for k, v in values.items()}, "b_at": now}
                )
        if self.dry_run:
            return
        customers = cast(Table, CustomerRecord.__table__)
        if rewritten:
            # One executemany; the owner is not among the columns, so it cannot change.
            statement = (
                sql_update(customers)
                .where(customers.c.id == bindparam("b_id"))
                .values(
                    {name: bindparam(f"b_{name}") for name in UPDATABLE} | {"updated_at": bindparam("b_at")}
                )
            )
            self.session.connection().execute(statement, rewritten)
        if added:
            self.session.connection().execute(insert(cast(Table, CustomerPhone.__table__)), added)

    def _insert_customers(self, rows: list[dict[str, Any]]) -> Sequence[int]:
        """Insert a batch of customers; their new ids, in the rows' order.

        On PostgreSQL one batched INSERT ... RETURNING in parameter order. SQLite cannot
        promise the order of a multi-row RETURNING, so SQLAlchemy would send one INSERT per
        row (a third of the import's time); instead the batch goes as one executemany and
        the ids are read back: the transaction holds SQLite's write lock from the first row
        to the commit and a rowid key takes the next integer, so the batch's ids are the
        ``len(rows)`` integers ending at ``last_insert_rowid()``. A count checks that.
        """
        connection = self.session.connection()
        if connection.dialect.name != "sqlite":
            return connection.execute(_INSERT_CUSTOMERS_RETURNING, rows).scalars().all()
        now = _batch_time(connection, rows[0]["created_at"])
        connection.execute(_INSERT_CUSTOMERS, [{**row, "created_at": now, "updated_at": now} for row in rows])
        last = int(connection.exec_driver_sql("SELECT last_insert_rowid()").scalar_one())
        first = last - len(rows) + 1
        found = connection.execute(_COUNT_CUSTOMER_IDS, {"first": first, "last": last}).scalar_one()
        if found != len(rows):  # never seen; the caller's transaction rolls the import back
            raise RuntimeError(f"customer ids {first}..{last} are not this batch's {len(rows)} rows")
        return range(first, last + 1)

    def _in_file(self, row: _Row, phone: _Phone) -> bool:
        """True (and the row reported and rejected) when ``phone`` was on an earlier row of the file."""
        if phone.key not in self.seen:
            return False
        first_row, first_owner = self.seen[phone.key], self.seen_owner[phone.key]
        if first_owner and row.owner_rep and first_owner != row.owner_rep:
            kind = "conflict"
            reason = Reason(
                "conflict_in_file",
                raw=phone.raw,
                first_row=first_row,
                first_owner=first_owner,
                owner=row.owner_rep,
            )
        else:
            kind, reason = (
                "duplicate_in_file",
                Reason("duplicate_in_file", raw=phone.raw, first_row=first_row),
            )
        self.issue(row, kind, reason, row.cells, phone.key)
        return True

    def _check(self, row: _Row, existing: dict[str, tuple[int, str | None]]) -> bool | tuple[int, str]:
        """Whether the row is new (True) or taken (False: reported and rejected).

        An ``update`` import answers ``(customer id, number)`` for a row whose numbers are one
        existing customer's (and perhaps new ones): that customer gets the row's fields.
        """
        if self.update:
            return self._check_update(row, existing)
        for phone in row.phones:
            if self._in_file(row, phone):
                return False
            if phone.key in existing:
                customer_id, owner_rep = existing[phone.key]
                if owner_rep and owner_rep != row.owner_rep:
                    kind = "conflict"
                    reason = Reason("owned", raw=phone.raw, customer=customer_id, owner=owner_rep)
                else:
                    kind, reason = (
                        "duplicate_in_db",
                        Reason("duplicate_in_db", raw=phone.raw, customer=customer_id),
                    )
                self.issue(row, kind, reason, row.cells, phone.key)
                return False
        return True

    def _check_update(self, row: _Row, existing: dict[str, tuple[int, str | None]]) -> bool | tuple[int, str]:
        """:meth:`_check` of an ``update`` import: whoever owns the customer, its fields are updated."""
        if any(self._in_file(row, phone) for phone in row.phones):
            return False
        known = [phone for phone in row.phones if phone.key in existing]
        if not known:
            return True
        first = known[0]
        customer_id = existing[first.key][0]
        for phone in known[1:]:
            other = existing[phone.key][0]
            if other != customer_id:
                reason = Reason(
                    "several_customers", raw=first.raw, customer=customer_id, other_raw=phone.raw, other=other
                )
                self.issue(row, "several_customers", reason, row.cells, phone.key)
                return False
        return customer_id, first.key


def import_customers(
    session: Session,
    rows: Iterable[tuple[int, list[str] | str]],
    *,
    owner: str | None = None,
    region: str = DEFAULT_REGION,
    mapping: dict[str, str] | None = None,
    dry_run: bool = False,
    reject: RejectSink | None = None,
    progress: Callable[[int], None] | None = None,
    batch_rows: int = BATCH_ROWS,
    imported: Callable[[list[int]], None] | None = None,
    update: bool = False,
    changes: ChangeSink | None = None,
) -> ImportReport:
    """Import customers from rows (as :func:`read_rows` gives them); the first row is the header.

    :param owner: the owner rep of every imported customer (overrides an owner column).
    :param region: default region for national-form numbers.
    :param mapping: explicit ``{header or "#N": field}`` (see :func:`parse_mapping`).
    :param dry_run: check everything, including against the database, but write nothing.
    :param reject: told the header, then called as ``reject(row, reason, cells)`` for every row not imported.
    :param progress: called with the number of rows handled since its last call.
    :param imported: called with the ids of each batch's new customers, in the same
        transaction (the centre's lead import puts them on a list).
    :param update: a row whose numbers are an existing customer's updates that customer's
        :data:`UPDATABLE` fields (never its owner) instead of being a ``duplicate_in_db``.
    :param changes: told every field an update changed (also in a dry run), as a :class:`Change`.

    The caller owns the transaction (commit it to keep the import). Rows are
    inserted in batches; a whole import in one transaction is all or nothing.

    :raises ImportFileError: no header, or the columns cannot be mapped.
    """
    report = ImportReport(dry_run=dry_run)
    iterator = iter(rows)
    for first_number, first in iterator:
        if isinstance(first, str):
            raise ImportFileError(f"row {first_number}: the header cannot be read: {first}")
        if any(cell.strip() for cell in first):
            header = [cell.strip() for cell in first]
            break
    else:
        raise ImportFileError("the file is empty: no header row")
    columns = map_columns(header, mapping)
    report.columns = {header[i] or f"#{i + 1}": target for i, target in sorted(columns.items())}
    report.ignored_columns = [h or f"#{i + 1}" for i, h in enumerate(header) if i not in columns]
    if reject is not None:
        reject.begin(header)
    importer = _Importer(
        session, report, reject, dry_run=dry_run, imported=imported, update=update, changes=changes
    )
    layout = _Layout.of(header, columns)
    batch: list[_Row] = []
    handled = 0
    for number, cells in iterator:
        handled += 1
        if isinstance(cells, str):
            report.rows += 1
            importer.issue(number, "rejected", cells, [], None)
        elif any(cell.strip() for cell in cells):
            report.rows += 1
            parsed = _parse_row(number, cells, layout, owner=owner, region=region)
            if isinstance(parsed, str):
                importer.issue(number, "rejected", parsed, cells, None)
            else:
                batch.append(parsed)
        if len(batch) >= batch_rows:
            importer.flush(batch)
            batch = []
        if progress is not None and handled >= 1000:
            progress(handled)
            handled = 0
    importer.flush(batch)
    if progress is not None and handled:
        progress(handled)
    report.issues.sort(key=lambda issue: issue.row)
    logger.info(
        "customer import: %d row(s), %d imported, %d updated, %d not imported%s",
        report.rows,
        report.imported,
        report.updated,
        report.not_imported,
        " (dry run)" if dry_run else "",
    )
    return report


class RejectWriter:
    """Writes rejected rows to a CSV file (UTF-8 with BOM), opened on the first reject.

    The columns are ``row``, ``reason`` (in ``lang``) and then the import file's header, so
    the file can be fixed and imported again as it is. Cells are written by
    :mod:`storage.sheets`' rules. The file is written under a temporary name beside ``path``
    and renamed to ``path`` by :meth:`close`.
    """

    def __init__(self, path: Path, *, lang: str = "en") -> None:
        self.path = path
        self.lang = lang
        self.header: list[str] = []
        self.count = 0
        self._file: io.TextIOWrapper | None = None
        self._temporary: Path | None = None
        self._writer: CsvWriter | None = None
        headers((), lang)  # an unknown language fails here, not at the first reject

    def begin(self, header: Sequence[str]) -> None:
        """Remember the header for the file's first line."""
        self.header = list(header)

    def __call__(self, row: int, reason: str, cells: list[str]) -> None:
        """Write one rejected row, a :class:`Reason` in the file's language."""
        if self._writer is None:
            self._temporary = temporary_beside(self.path)
            self._file = self._temporary.open("x", encoding="utf-8-sig", newline="")
            self._writer = CsvWriter(self._file)
            self._writer.header([*headers(("row", "reason"), self.lang), *self.header])
        self._writer.row([row, reason.text(self.lang) if isinstance(reason, Reason) else reason, *cells])
        self.count += 1

    def close(self) -> None:
        """Close the file (if one was opened) and give it its name."""
        if self._file is not None and self._temporary is not None:
            self._file.close()
            self._file = None
            os.replace(self._temporary, self.path)
            self._temporary = None


#: The columns of a changes file (:class:`ChangeWriter`), translated by :func:`storage.sheets.headers`.
CHANGES_HEADER: tuple[str, ...] = ("row", "number", "customer", "field", "old", "new")


class ChangeWriter:
    """Writes what an ``update`` import changed to a CSV file (UTF-8 with BOM), opened on the first change.

    One line per changed field: the row, the number the customer was found by, the customer's
    id, the field (in ``lang``: 姓名, 公司 ...), the old and the new value. Written by
    :mod:`storage.sheets`' rules under a temporary name, renamed to ``path`` by :meth:`close`.
    """

    def __init__(self, path: Path, *, lang: str = "en") -> None:
        self.path = path
        self.lang = lang
        self.count = 0
        self._file: io.TextIOWrapper | None = None
        self._temporary: Path | None = None
        self._writer: CsvWriter | None = None
        headers((), lang)  # an unknown language fails here, not at the first change

    def __call__(self, change: Change) -> None:
        """Write one changed field."""
        if self._writer is None:
            self._temporary = temporary_beside(self.path)
            self._file = self._temporary.open("x", encoding="utf-8-sig", newline="")
            self._writer = CsvWriter(self._file)
            self._writer.header(headers(CHANGES_HEADER, self.lang))
        (field_name,) = headers((change.field,), self.lang)  # the export's names: 姓名, 公司 ...
        self._writer.row(
            [change.row, change.number, change.customer, field_name, change.old or "", change.new or ""]
        )
        self.count += 1

    def close(self) -> None:
        """Close the file (if one was opened) and give it its name."""
        if self._file is not None and self._temporary is not None:
            self._file.close()
            self._file = None
            os.replace(self._temporary, self.path)
            self._temporary = None


# -- exporting -----------------------------------------------------------------------

EXPORT_HEADER: tuple[str, ...] = ("name", "phone", "company", "owner", "tags", "notes")


def iter_export_rows(session: Session, *, batch: int = 5000) -> Iterator[list[str]]:
    """Every customer as an export row (``EXPORT_HEADER`` order), numbers joined by ``"; "``.

    Reads in id order, ``batch`` customers at a time, so a million customers
    never sit in memory at once. The rows import back unchanged.
    """
    last_id = 0
    while True:
        customers = session.execute(
            select(
                CustomerRecord.id,
                CustomerRecord.name,
                CustomerRecord.company,
                CustomerRecord.owner_rep,
                CustomerRecord.tags,
                CustomerRecord.notes,
            )
            .where(CustomerRecord.id > last_id)
            .order_by(CustomerRecord.id)
            .limit(batch)
        ).all()
        if not customers:
            return
        first, last_id = customers[0].id, customers[-1].id
        phones: dict[int, list[str]] = {}
        for customer_id, key in session.execute(
            select(CustomerPhone.customer_id, CustomerPhone.number_e164)
            .where(CustomerPhone.customer_id.between(first, last_id))
            .order_by(CustomerPhone.id)
        ):
            phones.setdefault(customer_id, []).append(display_key(key))
        for c in customers:
            yield [
                c.name,
                "; ".join(phones.get(c.id, [])),
                c.company or "",
                c.owner_rep or "",
                c.tags or "",
                c.notes or "",
            ]


def export_customers(
    session: Session,
    path: Path,
    *,
    progress: Callable[[int], None] | None = None,
    lang: str = "en",
) -> int:
    """Write every customer to ``path`` (``.xlsx``, else CSV in UTF-8 with BOM); return how many.

    Written by :func:`storage.sheets.write_sheet` (temporary name, then renamed), headers in
    ``lang`` (``en`` or ``zh-CN``; both import back).

    :raises ValueError: an unknown language.
    """
    step = 1000

    def counted() -> Iterator[list[str]]:
        for count, row in enumerate(iter_export_rows(session), start=1):
            yield row
            if progress is not None and count % step == 0:
                progress(step)

    outcome = write_sheet(path, counted(), header=headers(EXPORT_HEADER, lang), sheet_title="customers")
    if progress is not None:
        progress(outcome.rows % step)
    return outcome.rows
