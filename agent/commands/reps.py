"""``cti-agent reps``: the reps the centre knows (add, list), to whom leads are handed."""

from __future__ import annotations

import json
from pathlib import Path

import click

from agent.commands.common import centre_options, load_centre, transaction

__all__ = ["reps"]


@click.group()
def reps() -> None:
    """The centre's reps: add (or move to a team), list."""


@reps.command("add")
@click.argument("name")
@click.option("--team", default=None, help="The rep's team (made when new).")
@click.option("--name", "display_name", default=None, help="The name the wallboard and pages show.")
@centre_options
def add(
    name: str, team: str | None, display_name: str | None, config_path: Path | None, data_dir: Path | None
) -> None:
    """Add rep NAME (what their seat writes as [agent] rep); an existing rep moves to --team."""
    from storage.leads import LeadError, add_rep

    config = load_centre(config_path, data_dir)
    try:
        with transaction(config, None, "adding a rep") as session:
            record = add_rep(session, name, team, display_name)
    except LeadError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"rep {record.name} in team {record.team or '-'}")


@reps.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per rep.")
@centre_options
def list_command(as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Every rep the centre knows, with their team and whether they are active."""
    from storage.leads import list_reps

    config = load_centre(config_path, data_dir)
    with transaction(config, None, "listing reps") as session:
        records = list_reps(session)
    if as_json:
        for record in records:
            click.echo(
                json.dumps(
                    {
                        "name": record.name,
                        "display_name": record.display_name,
                        "team": record.team,
                        "active": record.active,
                    },
                    ensure_ascii=False,
                )
            )
        return
    rows = [("REP", "TEAM", "NAME", "STATE")]
    rows += [
        (r.name, r.team or "-", r.display_name or "-", "active" if r.active else "disabled") for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[3]
        )
