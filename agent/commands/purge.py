"""``cti-agent purge``: delete call recordings past their retention (files and rows), with an audit row."""

from __future__ import annotations

import getpass
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from sqlalchemy.orm import Session

from agent.config import load_config
from agent.errors import AgentError
from storage.db import make_engine, upgrade
from storage.outbox import purge_allowed
from storage.recordings import RecordingStore, audit

logger = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
#: Rows deleted per transaction: progress survives an interrupted run.
BATCH = 200


def parse_age(text: str) -> timedelta:
    """``180d``, ``12w``, ``36h``, ``90m``, ``30s`` (a bare number is days) as a timedelta."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not match:
        raise ValueError(f"not an age: {text!r} (use 180d, 12w, 36h)")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2] or "d"])


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


@click.command("purge")
@click.option(
    "--older-than",
    "older_than",
    default=None,
    help="Delete recordings older than this (180d, 12w, 36h). Default: [recording] retention_days.",
)
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="The agent's config file (default: the embedded defaults).",
)
def purge(older_than: str | None, dry_run: bool, config_path: Path | None) -> None:
    """Delete call recordings (and only them) older than an age; the calls themselves stay."""
    try:
        config = load_config(config_path)
    except AgentError as exc:
        raise click.UsageError(str(exc)) from None
    if older_than is None:
        if config.recording.retention_days is None:
            raise click.UsageError("give --older-than or set [recording] retention_days")
        age = timedelta(days=config.recording.retention_days)
    else:
        try:
            age = parse_age(older_than)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--older-than") from None
    cutoff = datetime.now(UTC) - age
    try:
        engine = make_engine(config.database_url)
        upgrade(engine)
    except AgentError as exc:
        raise click.ClickException(str(exc)) from None
    store = RecordingStore(config.agent.data_dir, engine)
    try:
        with Session(engine) as session:
            rows = store.older_than(session, cutoff)
            ids = [row.id for row in rows]
            total = sum(row.bytes or 0 for row in rows)
        if dry_run:
            click.echo(
                f"would delete {len(ids)} recording(s) older than {cutoff:%Y-%m-%d %H:%M} UTC, {_size(total)}"
            )
            return
        freed = 0
        deleted = 0
        # Team mode: a local recording goes only once its central copy is verified (storage.outbox).
        team_mode = config.central_url is not None
        kept = 0
        with click.progressbar(length=len(ids), label="deleting recordings", file=None) as bar:
            for start in range(0, len(ids), BATCH):
                with Session(engine) as session, session.begin():
                    for row in store.by_ids(session, ids[start : start + BATCH]):
                        if team_mode and not purge_allowed(session, row, config.central.recordings_dir):
                            kept += 1
                            continue
                        freed += store.delete(session, row)
                        deleted += 1
                bar.update(min(BATCH, len(ids) - start))
        with Session(engine) as session, session.begin():
            audit(
                session,
                "recordings.purge",
                f"older than {cutoff.isoformat()}",
                {"recordings": deleted, "bytes": freed, "older_than": str(age)},
                _user(),
            )
    finally:
        engine.dispose()
    click.echo(f"deleted {deleted} recording(s) older than {cutoff:%Y-%m-%d %H:%M} UTC, freed {_size(freed)}")
    if kept:
        click.echo(f"kept {kept} recording(s) not yet verified upstream (see cti-agent sync --status)")


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


__all__ = ["parse_age", "purge"]
