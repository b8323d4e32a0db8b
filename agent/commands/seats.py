"""``cti-agent seats``: the seats a centre accepts, each with its own credential (add, list, revoke)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from agent.commands.common import centre_options, load_centre, transaction, write_secret

__all__ = ["seats"]


@click.group()
def seats() -> None:
    """Seat credentials at the centre: add (prints the token once), list, set-rep, revoke."""


@seats.command("add")
@click.argument("name")
@click.option("--team", default=None, help="The seat's team (its calls' default team at the centre).")
@click.option("--rep", default=None, help="The rep working at this seat: whose worklist the seat gets.")
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the token to this file (mode 0600), to copy to the seat's [central] token_file.",
)
@centre_options
def add(
    name: str,
    team: str | None,
    rep: str | None,
    token_file: Path | None,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Register seat NAME and print its token; the centre keeps only the token's hash."""
    from storage.seats import SeatError, add_seat

    config = load_centre(config_path, data_dir)
    try:
        with transaction(config, None, "adding a seat") as session:
            info, token = add_seat(session, name, team, rep)
    except SeatError as exc:
        raise click.ClickException(str(exc)) from None
    if token_file is not None:
        write_secret(token_file, token)
        click.echo(f"seat {info.name}: token written to {token_file} (mode 0600)", err=True)
    click.echo(token)
    click.echo(
        f"seat {info.name} added; put the token in the seat's [central] token_file (mode 0600). "
        "It is not shown again.",
        err=True,
    )


@seats.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per seat.")
@centre_options
def list_command(as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Every seat the centre knows: team, state, when it last called in, its backlog."""
    from storage.seats import list_seats

    config = load_centre(config_path, data_dir)
    with transaction(config, None, "listing seats") as session:
        infos = list_seats(session)
    if as_json:
        for info in infos:
            record = {
                "name": info.name,
                "team": info.team,
                "active": info.active,
                "created_at": info.created_at.isoformat(),
                "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
                "last_seen_at": info.last_seen_at.isoformat() if info.last_seen_at else None,
                "backlog": info.backlog,
                "rep": info.rep,
            }
            click.echo(json.dumps(record, ensure_ascii=False))
        return
    rows = [("SEAT", "TEAM", "REP", "STATE", "LAST SEEN", "BACKLOG")]
    for info in infos:
        seen = f"{info.last_seen_at:%Y-%m-%d %H:%M:%S} UTC" if info.last_seen_at else "never"
        backlog = "-" if info.backlog is None else str(info.backlog)
        state = "active" if info.active else "revoked"
        rows.append((info.name, info.team or "-", info.rep or "-", state, seen, backlog))
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(widths[n]) for n, cell in enumerate(row)).rstrip())


@seats.command("set-rep")
@click.argument("name")
@click.argument("rep", required=False)
@centre_options
def set_rep(name: str, rep: str | None, config_path: Path | None, data_dir: Path | None) -> None:
    """Say which REP works at seat NAME (no REP: nobody); the seat gets that rep's worklist."""
    from storage.seats import SeatError, set_seat_rep

    config = load_centre(config_path, data_dir)
    try:
        with transaction(config, None, "setting a seat's rep") as session:
            info = set_seat_rep(session, name, rep)
    except SeatError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"seat {info.name}: rep {info.rep or '(none)'}")


@seats.command("revoke")
@click.argument("name")
@centre_options
def revoke(name: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Stop accepting seat NAME's token at once; its calls and recordings stay."""
    from storage.seats import SeatError, revoke_seat

    config = load_centre(config_path, data_dir)
    try:
        with transaction(config, None, "revoking a seat") as session:
            revoke_seat(session, name)
    except SeatError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"seat {name}: revoked")
