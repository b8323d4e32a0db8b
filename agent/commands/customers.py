"""``cti-agent import-customers`` and ``export-customers``: the customer list in and out of the database."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from agent.commands.progress import Progress
from agent.config import Config, load_config
from agent.errors import AgentError

if TYPE_CHECKING:
    from storage.customers import ImportReport

__all__ = ["export_customers_command", "import_customers_command", "run_import"]

#: How many report lines are printed before the rest is left to the reject file.
SHOWN_ISSUES = 20

_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Config file (for the database and the default region).",
)
_url_option = click.option("--url", default=None, help="A SQLAlchemy database URL (overrides the config).")
#: ``--update`` and ``--changes-file``, shared with ``leads import``.
update_option = click.option(
    "--update",
    is_flag=True,
    help="Rows of existing customers update their name, company, notes and tags (never the owner) "
    "instead of being rejected as duplicates; every change goes to the changes file.",
)
changes_file_option = click.option(
    "--changes-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where --update writes what it changed [default: FILE.changes.csv].",
)
#: The languages of storage.sheets' headers (not imported from there: storage loads lazily here).
_LANGUAGES = ("en", "zh-CN")


def _engine(config: Config, url: str | None) -> Engine:
    from storage.db import make_engine, upgrade

    target = url or config.database_url
    if url is None and target.startswith("sqlite:///"):
        config.agent.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(target)
    upgrade(engine)
    return engine


def _load(config_path: Path | None) -> Config:
    try:
        return load_config(config_path)
    except AgentError as exc:
        raise click.UsageError(str(exc)) from None


@click.command("import-customers")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--owner", default=None, help="Owner rep of every imported customer (overrides an owner column)."
)
@click.option("--dry-run", is_flag=True, help="Check the file and report, write nothing.")
@click.option(
    "--mapping",
    "mappings",
    multiple=True,
    metavar="FIELD=HEADER",
    help="Map a column to a field (name, phone, company, owner, notes, tags, ignore); HEADER may be #N. "
    "Repeatable: --mapping phone=主叫 --mapping phone=#5.",
)
@click.option(
    "--reject-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where rows that were not imported go [default: FILE.rejects.csv].",
)
@click.option(
    "--encoding",
    default=None,
    help="CSV encoding [default: UTF-8 with or without BOM, else GB18030/GBK, decided for the whole file].",
)
@click.option("--region", default=None, help="Region for national numbers [default: the config's, CN].")
@click.option(
    "--lang",
    type=click.Choice(_LANGUAGES),
    default="en",
    show_default=True,
    help="Language of the reject and changes files (headers, reasons, field names).",
)
@update_option
@changes_file_option
@_config_option
@_url_option
def import_customers_command(
    file: Path,
    owner: str | None,
    dry_run: bool,
    mappings: tuple[str, ...],
    reject_file: Path | None,
    encoding: str | None,
    region: str | None,
    lang: str,
    update: bool,
    changes_file: Path | None,
    config_path: Path | None,
    url: str | None,
) -> None:
    """Import customers from a CSV or XLSX FILE.

    Columns are recognised by English or Chinese headers (姓名, 电话, 手机, 公司,
    负责人, 备注, 标签 ...). Duplicates and numbers owned by another rep are
    reported, never merged; every row not imported goes to the reject file with
    its reason. Exits 1 when any row was not imported. A CSV is UTF-8 or GB18030
    as a whole: one that is neither stops with the line and byte offset of its
    first bad byte (exit 2), nothing imported. With --update, a row of an existing
    customer updates that customer (never its owner) and each change is written
    to the changes file (row, number, field, old, new).
    """
    config = _load(config_path)
    engine = _engine(config, url)
    try:
        run_import(
            engine,
            file,
            owner=owner,
            dry_run=dry_run,
            mappings=mappings,
            reject_file=reject_file,
            encoding=encoding,
            region=(region or config.agent.region).upper(),
            lang=lang,
            update=update,
            changes_file=changes_file,
        )
    finally:
        engine.dispose()


def run_import(
    engine: Engine,
    file: Path,
    *,
    owner: str | None,
    dry_run: bool,
    mappings: tuple[str, ...],
    reject_file: Path | None,
    encoding: str | None,
    region: str,
    lang: str,
    prepare: Callable[[Session], Callable[[list[int]], None]] | None = None,
    summary: Callable[[], str] | None = None,
    update: bool = False,
    changes_file: Path | None = None,
) -> None:
    """Import FILE as ``import-customers`` does, print the report, exit 1 when a row was not imported.

    ``prepare`` (the centre's lead import): called with the import's session before the first
    row; what it returns is told the ids of each batch of new customers, in that transaction;
    ``summary`` gives a line printed after the import's own. ``update``: existing customers'
    rows update them, each change written to ``changes_file`` (default ``FILE.changes.csv``).
    """
    from storage.customers import (
        ChangeWriter,
        ImportFileError,
        RejectWriter,
        import_customers,
        parse_mapping,
        read_rows,
    )

    try:
        mapping = parse_mapping(mappings)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--mapping") from None
    rejects_path = reject_file or file.with_name(file.name + ".rejects.csv")
    rejects = RejectWriter(rejects_path, lang=lang)
    changes_path = changes_file or file.with_name(file.name + ".changes.csv")
    changes = ChangeWriter(changes_path, lang=lang)
    try:
        total, rows = read_rows(file, encoding)
        with (
            Session(engine) as session,
            Progress(f"importing {file.name}", total - 1) as bar,
        ):
            imported = prepare(session) if prepare is not None else None
            report = import_customers(
                session,
                rows,
                owner=owner,
                region=region,
                mapping=mapping,
                dry_run=dry_run,
                reject=None if dry_run else rejects,
                progress=bar.update,
                imported=imported,
                update=update,
                changes=None if dry_run else changes,
            )
            if dry_run:
                session.rollback()
            else:
                session.commit()
    except ImportFileError as exc:
        raise click.UsageError(f"{file}: {exc}") from None
    except AgentError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        rejects.close()
        changes.close()
    click.echo(f"{file}: {report.rows} row(s) read")
    click.echo("columns: " + ", ".join(f"{h} -> {f}" for h, f in report.columns.items()))
    if report.ignored_columns:
        click.echo("ignored columns: " + ", ".join(report.ignored_columns))
    verb = "would import" if dry_run else "imported"
    click.echo(f"{verb}: {report.imported} customer(s), {report.phones} number(s)")
    if update:
        click.echo(
            f"{'would update' if dry_run else 'updated'}: {report.updated} customer(s), "
            f"{len(report.changes)} field(s); unchanged: {report.unchanged}"
        )
    if summary is not None:
        click.echo(summary())
    _print_lines(report)
    if changes.count:
        click.echo(f"changes: {changes.count} field(s), written to {changes_path}")
    if rejects.count:
        click.echo(f"not imported: {rejects.count} row(s), written with the reason to {rejects_path}")
    if report.issues:
        sys.exit(1)


def _print_lines(report: ImportReport) -> None:
    """The report's counts per kind, then its first issues and changes, one line each."""
    kinds = Counter(issue.kind for issue in report.issues)
    for kind in ("conflict", "duplicate_in_file", "duplicate_in_db", "several_customers", "rejected"):
        if kinds[kind]:
            click.echo(f"{kind.replace('_', ' ')}: {kinds[kind]}")
    for issue in report.issues[:SHOWN_ISSUES]:
        click.echo(f"  row {issue.row}: {issue.kind}: {issue.reason}")
    if len(report.issues) > SHOWN_ISSUES:
        click.echo(f"  ... and {len(report.issues) - SHOWN_ISSUES} more")
    for change in report.changes[:SHOWN_ISSUES]:
        click.echo(f"  row {change.row}: {change.number}: {change.field}: {change.old!r} -> {change.new!r}")
    if len(report.changes) > SHOWN_ISSUES:
        click.echo(f"  ... and {len(report.changes) - SHOWN_ISSUES} more change(s)")


@click.command("export-customers")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--lang",
    type=click.Choice(_LANGUAGES),
    default="en",
    show_default=True,
    help="Language of the header line (both import back).",
)
@_config_option
@_url_option
def export_customers_command(file: Path, lang: str, config_path: Path | None, url: str | None) -> None:
    """Export every customer to FILE (.xlsx, or CSV in UTF-8 with BOM); it imports back unchanged.

    Cells that a spreadsheet would run as a formula are escaped, control characters replaced.
    """
    from storage.customers import export_customers
    from storage.models import CustomerRecord

    config = _load(config_path)
    engine = _engine(config, url)
    try:
        with Session(engine) as session:
            total = session.scalar(select(func.count()).select_from(CustomerRecord)) or 0
            with Progress(f"exporting {file.name}", total, unit="customers") as bar:
                count = export_customers(session, file, progress=bar.update, lang=lang)
    except OSError as exc:
        raise click.ClickException(f"cannot write {file}: {exc.strerror or exc}") from None
    except AgentError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(f"{file}: {count} customer(s) exported")
