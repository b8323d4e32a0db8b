"""``cti-agent dnc``: the floor's do-not-call list at the centre (add, import, list, remove)."""

from __future__ import annotations

import csv
import getpass
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from agent.commands.common import centre_options, load_centre, transaction

__all__ = ["dnc"]


@click.group()
def dnc() -> None:
    """The do-not-call list: add, import, list, remove."""


def _number(value: str, region: str) -> str:
    from agent.numbers import to_e164

    e164 = to_e164(value, region)
    if e164 is None:
        raise click.BadParameter(f"{value!r} is not a phone number in region {region}")
    return e164


def _expiry(days: int | None) -> datetime | None:
    return datetime.now(UTC) + timedelta(days=days) if days else None


@dnc.command("add")
@click.argument("numbers", nargs=-1, required=True)
@click.option("--reason", default=None, help="Why (the customer asked, a complaint ...).")
@click.option(
    "--days", type=click.IntRange(min=1), default=None, help="Only for this many days (default: for good)."
)
@centre_options
def add(
    numbers: tuple[str, ...],
    reason: str | None,
    days: int | None,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Put NUMBERS on the list (national or +E.164; an invalid one is refused and nothing is added)."""
    from storage.dnc import add_numbers

    config = load_centre(config_path, data_dir)
    e164 = [_number(n, config.agent.region.upper()) for n in numbers]
    with transaction(config, None, "adding to the do-not-call list") as session:
        new = add_numbers(
            session,
            e164,
            source="manual",
            added_by=getpass.getuser(),
            reason=reason,
            expires_at=_expiry(days),
        )
    click.echo(f"{new} number(s) added, {len(set(e164)) - new} already listed (updated)")


@dnc.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--reason", default=None, help="Why, for every number of the file.")
@click.option(
    "--days", type=click.IntRange(min=1), default=None, help="Only for this many days (default: for good)."
)
@centre_options
def import_command(
    file: Path, reason: str | None, days: int | None, config_path: Path | None, data_dir: Path | None
) -> None:
    """Put every number of FILE on the list: the first column of a CSV (UTF-8 or GBK), a header allowed.

    A cell that is not a number is reported with its line and skipped; the rest are added.
    """
    from agent.numbers import to_e164
    from storage.dnc import add_numbers

    config = load_centre(config_path, data_dir)
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("gb18030", errors="replace")
    good: list[str] = []
    bad = 0
    for line, row in enumerate(csv.reader(text.splitlines()), start=1):
        cell = row[0].strip() if row else ""
        if not cell:
            continue
        e164 = to_e164(cell, config.agent.region.upper())
        if e164 is None:
            if line > 1:  # the first line may be a header
                click.echo(f"line {line}: {cell[:40]!r} is not a phone number; skipped", err=True)
                bad += 1
            continue
        good.append(e164)
    with transaction(config, None, "importing the do-not-call list") as session:
        new = add_numbers(
            session,
            good,
            source="import",
            added_by=getpass.getuser(),
            reason=reason,
            expires_at=_expiry(days),
        )
    click.echo(f"{new} number(s) added, {len(set(good)) - new} already listed (updated), {bad} skipped")
    if bad:
        raise SystemExit(1)


@dnc.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per number.")
@centre_options
def list_command(as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """The numbers on the list now (expired ones left out)."""
    from storage.dnc import listed

    config = load_centre(config_path, data_dir)
    with transaction(config, None, "listing the do-not-call list") as session:
        entries = listed(session)
    for entry in entries:
        if as_json:
            click.echo(json.dumps(entry.to_dict(), ensure_ascii=False))
        else:
            until = f"{entry.expires_at:%Y-%m-%d}" if entry.expires_at else "-"
            click.echo(f"{entry.number_e164}\t{entry.source}\t{until}\t{entry.reason or ''}")


@dnc.command("remove")
@click.argument("number")
@centre_options
def remove(number: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Take NUMBER off the list."""
    from storage.dnc import remove_number

    config = load_centre(config_path, data_dir)
    e164 = _number(number, config.agent.region.upper())
    with transaction(config, None, "removing from the do-not-call list") as session:
        found = remove_number(session, e164)
    if not found:
        raise click.ClickException(f"{e164} is not on the list")
    click.echo(f"{e164} removed")
