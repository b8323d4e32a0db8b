"""``cti-agent leads``: lead lists at the centre (import, assign to a team or a rep, coverage)."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path

import click
from sqlalchemy.orm import Session

from agent.commands.common import centre_options, load_centre, open_engine, transaction
from agent.commands.customers import changes_file_option, update_option

__all__ = ["leads"]

_LANGUAGES = ("en", "zh-CN")


def _actor() -> str:
    """Who ran the command, for the transfer log (the centre's CLI runs as the IT person or manager)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"


@click.group()
def leads() -> None:
    """Lead lists at the centre: import, assign to a team or a rep, coverage (打透)."""


@leads.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--list", "list_name", required=True, help="The lead list (made when new).")
@click.option("--premium", is_flag=True, help="A premium list (only for reps the team lead picks).")
@click.option("--team", default=None, help="Give every imported lead to this team at once.")
@click.option("--dry-run", is_flag=True, help="Check the file and report, write nothing.")
@click.option(
    "--mapping",
    "mappings",
    multiple=True,
    metavar="FIELD=HEADER",
    help="Map a column to a field, as import-customers' --mapping.",
)
@click.option(
    "--reject-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where rows that were not imported go [default: FILE.rejects.csv].",
)
@click.option(
    "--encoding", default=None, help="CSV encoding [default: UTF-8, else GB18030, for the whole file]."
)
@click.option(
    "--lang",
    type=click.Choice(_LANGUAGES),
    default="en",
    show_default=True,
    help="Language of the reject and changes files (headers, reasons, field names).",
)
@update_option
@changes_file_option
@centre_options
def import_command(
    file: Path,
    list_name: str,
    premium: bool,
    team: str | None,
    dry_run: bool,
    mappings: tuple[str, ...],
    reject_file: Path | None,
    encoding: str | None,
    lang: str,
    update: bool,
    changes_file: Path | None,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Import FILE's customers into the team's customer base, as leads of --list.

    As import-customers (CSV/XLSX, UTF-8 or GBK, English or Chinese headers): a number that is
    already a customer's, or twice in the file, is reported per row and written to the reject
    file with the reason, never merged. Exits 1 when any row was not imported. With --update, a
    row of an existing customer updates its name, company, notes and tags (never its owner, and
    it is not added to the list); each change goes to the changes file (row, number, field, old, new).
    """
    from agent.commands.customers import run_import
    from storage.leads import LeadError, add_leads, open_list, require_team

    config = load_centre(config_path, data_dir)
    actor = _actor()
    added = [0]

    def prepare(session: Session) -> object:
        try:
            lead_list = open_list(session, list_name, premium=premium, actor=actor)
        except LeadError as exc:
            raise click.ClickException(str(exc)) from None

        def put(ids: list[int]) -> None:
            added[0] += add_leads(session, lead_list, ids, actor=actor, team=team)

        return put

    with open_engine(config) as engine:
        if team:
            with Session(engine) as session:
                try:
                    require_team(session, team)
                except LeadError as exc:
                    raise click.BadParameter(str(exc), param_hint="--team") from None
        run_import(
            engine,
            file,
            owner=None,
            dry_run=dry_run,
            mappings=mappings,
            reject_file=reject_file,
            encoding=encoding,
            region=config.agent.region.upper(),
            lang=lang,
            update=update,
            changes_file=changes_file,
            prepare=prepare,  # type: ignore[arg-type]
            summary=lambda: (
                f"list {list_name}: {added[0]} lead(s) added" + (f", given to team {team}" if team else "")
            ),
        )


@leads.command("assign")
@click.option("--list", "list_name", required=True, help="The lead list.")
@click.option("--to-team", "team", default=None, help="Give leads no team has yet to this team.")
@click.option("--to-rep", "rep", default=None, help="Give free leads (their team's first) to this rep.")
@click.option("--count", type=click.IntRange(min=1), required=True, help="How many leads (all or none).")
@click.option("--reason", default=None, help="Why, for the transfer log.")
@centre_options
def assign(
    list_name: str,
    team: str | None,
    rep: str | None,
    count: int,
    reason: str | None,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Hand COUNT leads of a list to a team (--to-team) or a rep (--to-rep); every one is logged.

    All or none: a list with fewer free leads assigns nothing and says how many there are (exit 1).
    """
    from storage.leads import LeadError, assign_to_rep, assign_to_team

    if (team is None) == (rep is None):
        raise click.UsageError("give either --to-team TEAM or --to-rep REP")
    config = load_centre(config_path, data_dir)
    try:
        with transaction(config, None, "assigning leads") as session:
            if team is not None:
                done = assign_to_team(session, list_name, team, count, actor=_actor(), reason=reason)
                whom = f"team {team}"
            else:
                assert rep is not None
                done = assign_to_rep(session, list_name, rep, count, actor=_actor(), reason=reason)
                whom = f"rep {rep}"
    except LeadError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"list {list_name}: {done} lead(s) given to {whom}")


@leads.command("coverage")
@click.option("--list", "list_name", required=True, help="The lead list.")
@click.option(
    "--untouched-days",
    type=click.FloatRange(min=0),
    default=3.0,
    show_default=True,
    help="A lead held this long without a dial is untouched.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per rep.")
@centre_options
def coverage_command(
    list_name: str, untouched_days: float, as_json: bool, config_path: Path | None, data_dir: Path | None
) -> None:
    """Per rep: leads assigned, dialed, reached, attempts, untouched, passed on undialed (打透)."""
    from storage.coverage import coverage
    from storage.leads import LeadError

    config = load_centre(config_path, data_dir)
    try:
        with transaction(config, None, "reading coverage") as session:
            rows = coverage(session, list_name, untouched_days=untouched_days)
    except LeadError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        for row in rows:
            click.echo(json.dumps(row.to_dict(), ensure_ascii=False))
        return
    table: list[tuple[str, ...]] = [
        ("REP", "ASSIGNED", "DIALED", "REACHED", "ATTEMPTS", "UNTOUCHED", "PER_LEAD", "PASSED_UNDIALED")
    ]
    table += [
        (
            r.rep,
            str(r.assigned),
            str(r.dialed),
            str(r.reached),
            str(r.attempts),
            str(r.untouched),
            f"{r.attempts_per_lead:.2f}" if r.attempts_per_lead is not None else "-",
            str(r.passed_undialed),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for line in table:
        click.echo(
            "  ".join(
                cell.rjust(w) if i else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            )
        )
    if not rows:
        click.echo(f"no lead of list {list_name} is held by a rep yet", err=True)
    sys.stdout.flush()
