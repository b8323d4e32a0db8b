"""``cti-agent purge``: delete call recordings past their retention (files and rows), with an audit row."""

from __future__ import annotations

import getpass
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from agent.commands.common import config_option, load, open_engine
from agent.commands.progress import Progress
from agent.config import Config
from agent.errors import AgentError
from agent.seat.transport import make_transport
from storage.central import Transport
from storage.outbox import purge_allowed
from storage.recordings import RecordingStore, audit
from storage.repository import recordings_past_retention

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


def retention_rule(
    older_than: timedelta | None,
    retention_days: int | None,
    team_retention_days: dict[str, int],
    now: datetime,
) -> tuple[datetime | None, dict[str, datetime], str]:
    """The default cutoff, the per-team cutoffs and the rule in words, counting back from ``now``.

    ``older_than`` (``--older-than``) applies to every team; without it each
    team in ``team_retention_days`` keeps its own number of days and the others
    ``retention_days`` (None: recordings of teams not listed are kept).
    """
    if older_than is not None:
        cutoff = now - older_than
        return cutoff, {}, f"older than {cutoff:%Y-%m-%d %H:%M} UTC"
    default = now - timedelta(days=retention_days) if retention_days is not None else None
    teams = {team: now - timedelta(days=days) for team, days in sorted(team_retention_days.items())}
    listed = [f"team {team}: {days}d" for team, days in sorted(team_retention_days.items())]
    if retention_days is None:
        others = "other teams kept"
    else:
        others = f"other teams: {retention_days}d" if listed else f"{retention_days}d"
    parts = [*listed, others]
    return default, teams, f"past retention ({'; '.join(parts)})"


@click.command("purge")
@click.option(
    "--older-than",
    "older_than",
    default=None,
    help=(
        "Delete recordings older than this (180d, 12w, 36h), whatever their team. Default: each "
        "recording's team's [recording] team_retention_days, else retention_days."
    ),
)
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@config_option()
def purge(older_than: str | None, dry_run: bool, config_path: Path | None) -> None:
    """Delete call recordings (and only them) past their retention; the calls themselves stay.

    A recording's age is judged by its call's team: ``[recording]
    team_retention_days`` for the teams listed there, ``retention_days`` for the
    others. ``--older-than`` overrides both for every team.
    """
    config = load(config_path)
    recording = config.recording
    age: timedelta | None = None
    if older_than is None:
        if recording.retention_days is None and not recording.team_retention_days:
            raise click.UsageError(
                "give --older-than or set [recording] retention_days (or team_retention_days)"
            )
    else:
        try:
            age = parse_age(older_than)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--older-than") from None
    default_cutoff, team_cutoffs, rule = retention_rule(
        age, recording.retention_days, recording.team_retention_days, datetime.now(UTC)
    )
    with open_engine(config) as engine:
        _purge(engine, config, age, default_cutoff, team_cutoffs, rule, dry_run=dry_run)


def _purge(
    engine: Engine,
    config: Config,
    age: timedelta | None,
    default_cutoff: datetime | None,
    team_cutoffs: dict[str, datetime],
    rule: str,
    *,
    dry_run: bool,
) -> None:
    store = RecordingStore(config.agent.data_dir, engine)
    recording = config.recording
    with Session(engine) as session:
        rows = recordings_past_retention(session, default_cutoff=default_cutoff, team_cutoffs=team_cutoffs)
        ids = [row.id for row in rows]
        total = sum(row.bytes or 0 for row in rows)
    if dry_run:
        click.echo(f"would delete {len(ids)} recording(s) {rule}, {_size(total)}")
        return
    freed = 0
    deleted = 0
    # Team mode: a local recording goes only once the centre confirms its copy (storage.outbox).
    team_mode = config.central_url is not None
    transport = _transport(config) if team_mode else None
    kept = 0
    try:
        with Progress("deleting recordings", len(ids), unit="recordings") as bar:
            for start in range(0, len(ids), BATCH):
                with Session(engine) as session, session.begin():
                    for row in store.by_ids(session, ids[start : start + BATCH]):
                        if team_mode and not purge_allowed(session, row, transport):
                            kept += 1
                            continue
                        freed += store.delete(session, row)
                        deleted += 1
                bar.update(min(BATCH, len(ids) - start))
    finally:
        if transport is not None:
            transport.close()
    with Session(engine) as session, session.begin():
        detail: dict[str, object] = {"recordings": deleted, "bytes": freed}
        if age is not None:
            detail["older_than"] = str(age)
        else:
            detail["retention_days"] = recording.retention_days
            detail["team_retention_days"] = dict(recording.team_retention_days)
        audit(session, "recordings.purge", rule, detail, _user())
    click.echo(f"deleted {deleted} recording(s) {rule}, freed {_size(freed)}")
    if kept:
        click.echo(f"kept {kept} recording(s) not yet verified upstream (see cti-agent sync --status)")


def _transport(config: Config) -> Transport | None:
    """The centre to confirm copies with; None (so every recording is kept) when it cannot be built."""
    try:
        return make_transport(config)
    except AgentError as exc:
        click.echo(f"cannot ask the centre ({exc}); team mode keeps every local recording", err=True)
        return None


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


__all__ = ["parse_age", "purge", "retention_rule"]
