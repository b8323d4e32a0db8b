"""A lead file on the centre: a preview of its columns and first rows, and its import onto a list.

The console's upload (:mod:`agent.centre.views.leads`) shows :func:`preview_file` before it
imports with :func:`import_file`; both read the file as ``cti-agent leads import`` does
(:func:`storage.customers.read_rows`: CSV in UTF-8 or GBK, or XLSX, English or Chinese headers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from storage.customers import (
    FIELDS,
    ChangeSink,
    ImportFileError,
    ImportReport,
    Reason,
    RejectSink,
    import_customers,
    map_columns,
    read_rows,
    recognised_field,
)
from storage.leads import add_leads, open_list

__all__ = ["LeadImport", "Preview", "PreviewRow", "import_file", "mapping_of", "preview_file"]

#: Data rows a preview shows.
PREVIEW_ROWS = 10
#: Characters of one cell a preview shows.
PREVIEW_CELL = 80


@dataclass(frozen=True, slots=True)
class PreviewRow:
    """One row of a preview: its number in the file, its cells, or why it cannot be read."""

    row: int
    cells: list[str]
    problem: Reason | str | None = None


@dataclass(frozen=True, slots=True)
class Preview:
    """The file's header, the field each column maps to, its first rows and about how many rows it has.

    ``problem``: why the detected columns cannot be imported as they are (no phone column, two
    name columns); the mapping shown is then what could be recognised, to be corrected.
    """

    header: list[str]
    columns: dict[int, str]
    rows: list[PreviewRow]
    total: int
    problem: str | None = None


def preview_file(path: Path, *, limit: int = PREVIEW_ROWS) -> Preview:
    """The :class:`Preview` of a lead file.

    :raises ImportFileError: the file cannot be read or decoded, or has no header row.
    """
    total, rows = read_rows(path)
    header: list[str] | None = None
    shown: list[PreviewRow] = []
    try:
        for number, cells in rows:
            if header is None:
                if isinstance(cells, str):
                    raise ImportFileError(f"row {number}: the header cannot be read: {cells}")
                if any(cell.strip() for cell in cells):
                    header = [cell.strip() for cell in cells]
                continue
            if isinstance(cells, str):
                shown.append(PreviewRow(number, [], cells))
            elif any(cell.strip() for cell in cells):
                shown.append(PreviewRow(number, [cell[:PREVIEW_CELL] for cell in cells]))
            if len(shown) >= limit:
                break
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()  # an XLSX's workbook
    if header is None:
        raise ImportFileError("the file is empty: no header row")
    try:
        columns, problem = map_columns(header), None
    except ImportFileError as exc:
        columns = {i: found for i, text in enumerate(header) if (found := recognised_field(text))}
        problem = str(exc)
    return Preview(header, columns, shown, max(total - 1, 0), problem)


def mapping_of(choices: dict[int, str], width: int) -> dict[str, str]:
    """A mapping for :func:`storage.customers.import_customers` from one choice per column.

    ``choices``: column index → a field of :data:`storage.customers.FIELDS` or ``ignore``; a
    column without a choice is ignored, so what the manager saw is exactly what is imported.

    :raises ImportFileError: a choice names an unknown field or a column the file does not have.
    """
    mapping: dict[str, str] = {}
    for index in range(width):
        target = choices.get(index, "ignore")
        if target not in (*FIELDS, "ignore"):
            raise ImportFileError(f"column {index + 1}: unknown field {target!r}")
        mapping[f"#{index + 1}"] = target
    extra = sorted(set(choices) - set(range(width)))
    if extra:
        raise ImportFileError(f"the file has {width} column(s), not {extra[-1] + 1}")
    return mapping


@dataclass
class LeadImport:
    """What :func:`import_file` did: the import's report and how many leads it put on the list."""

    report: ImportReport
    list_name: str
    added: int = 0
    premium: bool = False
    columns: dict[str, str] = field(default_factory=dict)


def import_file(
    session: Session,
    path: Path,
    *,
    list_name: str,
    actor: str,
    premium: bool = False,
    mapping: dict[str, str] | None = None,
    update: bool = False,
    region: str = "CN",
    reject: RejectSink | None = None,
    changes: ChangeSink | None = None,
) -> LeadImport:
    """Import a lead file's customers as leads of ``list_name`` (made when new), in the caller's transaction.

    New customers go onto the list; with ``update``, existing customers' rows update them
    (never their owner) and are not added to it. See :func:`storage.customers.import_customers`.

    :raises ImportFileError: the file cannot be read or its columns mapped.
    :raises storage.leads.LeadError: the list name is empty, or an existing list is not premium.
    """
    lead_list = open_list(session, list_name, premium=premium, actor=actor)
    done = LeadImport(ImportReport(), lead_list.name, premium=lead_list.premium)

    def put(ids: list[int]) -> None:
        done.added += add_leads(session, lead_list, ids, actor=actor)

    _, rows = read_rows(path)
    done.report = import_customers(
        session,
        rows,
        region=region,
        mapping=mapping,
        reject=reject,
        changes=changes,
        update=update,
        imported=put,
    )
    done.columns = done.report.columns
    return done
