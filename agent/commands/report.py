"""``cti-agent report``: call history from the database, by half-hour, hour, day, rep or team."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from sqlalchemy.orm import Session

from agent.commands.progress import Progress
from agent.config import TargetsSection, load_config
from storage.kpis import Kpis, kpis
from storage.report import (
    CLOCK_STEPS,
    FORMATS,
    GROUPINGS,
    Report,
    call_report,
    days_worked,
    format_report,
    local_zone,
    parse_when,
    start_of_day,
    window_days,
)
from storage.sheets import LANGUAGES
from storage.teams import rep_directory, team_targets

__all__ = ["report"]


def _zone(name: str | None) -> tzinfo:
    if not name:
        return local_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"unknown time zone {name!r} (an IANA name such as Asia/Shanghai)") from None


def _when(text: str, zone: tzinfo, option: str) -> datetime:
    try:
        return parse_when(text, zone)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@click.command()
@click.option(
    "--by",
    type=click.Choice(GROUPINGS),
    default="day",
    show_default=True,
    help="Group the calls by half-hour, hour, day, rep or team (half-hours and hours on the --tz clock).",
)
@click.option(
    "--from",
    "start_text",
    default=None,
    help="First day or time counted (2026-03-02 or 2026-03-02 09:00). Default: today 00:00.",
)
@click.option(
    "--to",
    "end_text",
    default=None,
    help="End of the report, not included (a date means its 00:00). Default: now.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option(
    "--lang",
    type=click.Choice(LANGUAGES),
    default="en",
    show_default=True,
    help="Language of the CSV's header line.",
)
@click.option(
    "--tz", "tz_name", default=None, help="Time zone of the hours and days (default: this machine's)."
)
@click.option("--team", default=None, help="Only this team's calls.")
@click.option("--rep", default=None, help="Only this rep's calls.")
@click.option(
    "--effective-seconds",
    type=click.FloatRange(min=0),
    default=None,
    help="Talk time from which a call is effective (default: the config's [metrics] effective_call_seconds).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Read the database URL and the effective-call threshold from this config.",
)
@click.option("--url", default=None, help="A SQLAlchemy database URL (overrides the config).")
@click.option(
    "--targets/--no-targets",
    default=True,
    show_default=True,
    help="By rep (or by day for one --rep): add connects and each figure against its daily target "
    "([targets] and the teams' targets in the database), where one is set.",
)
def report(
    by: str,
    start_text: str | None,
    end_text: str | None,
    fmt: str,
    lang: str,
    tz_name: str | None,
    team: str | None,
    rep: str | None,
    effective_seconds: float | None,
    config_path: Path | None,
    url: str | None,
    targets: bool,
) -> None:
    """Calls, answered, missed, talk time and effective calls from the database.

    A call counts once it has ended, in the half-hour, hour or day it started. The database
    keeps every call; Prometheus only weeks of them. By rep, or by day for one rep, each
    figure is also shown against its daily target where one is set: the config's [targets]
    with the teams' own targets from the database, times the days the rep worked.
    """
    from storage.db import make_engine, storage_errors

    zone = _zone(tz_name)
    now = datetime.now(zone)
    start = _when(start_text, zone, "--from") if start_text else start_of_day(now.date(), zone)
    end = _when(end_text, zone, "--to") if end_text else now
    if end.astimezone(UTC) <= start.astimezone(UTC):
        raise click.BadParameter(f"{end.isoformat()} is not after {start.isoformat()}", param_hint="--to")
    if (end.astimezone(UTC) - start.astimezone(UTC)) > timedelta(days=3660) and by in CLOCK_STEPS:
        raise click.BadParameter(f"a report by {by} of more than ten years is too long", param_hint="--from")
    config = load_config(config_path)
    threshold = config.metrics.effective_call_seconds if effective_seconds is None else effective_seconds
    engine = make_engine(url or config.database_url)
    try:
        days = window_days(start, end)
        with (
            storage_errors(engine, "reading calls"),
            Session(engine) as session,
            # A week or less reads at once; longer shows its progress (on standard error).
            Progress("reading calls", days, unit="days") if days > 7 else contextlib.nullcontext() as bar,
        ):
            result = call_report(
                session,
                by=by,  # type: ignore[arg-type]
                start=start,
                end=end,
                zone=zone,
                effective_seconds=threshold,
                team=team,
                rep=rep,
                progress=bar.update if bar is not None else None,
            )
            row_kpis = (
                report_kpis(session, result, config.targets, zone=zone, team=team, rep=rep)
                if targets and (by == "rep" or (by == "day" and rep is not None))
                else None
            )
    finally:
        engine.dispose()
    click.echo(format_report(result, fmt, lang, row_kpis), nl=False)


def report_kpis(
    session: Session,
    result: Report,
    book: TargetsSection,
    *,
    zone: tzinfo,
    team: str | None,
    rep: str | None,
) -> dict[str, Kpis]:
    """Each row's KPIs against its daily targets: by rep (times the days each worked) or by day for ``rep``.

    The targets are ``book`` (the config's ``[targets]``) with the teams' own from the database.
    """
    book = book.with_teams(team_targets(session))
    if result.by == "rep":
        worked = days_worked(session, start=result.start, end=result.end, zone=zone, team=team, rep=rep)
        names = [row.key for row in result.rows]
        directory = rep_directory(session, names, result.start, result.end)
        return {
            row.key: kpis(
                row,
                book.for_rep(row.key, directory[row.key].team),
                days=max(worked.get(row.key, 0), 1),
            )
            for row in result.rows
        }
    assert rep is not None  # by day: only for one rep
    quota = book.for_rep(rep, rep_directory(session, [rep], result.start, result.end)[rep].team)
    return {row.key: kpis(row, quota) for row in result.rows}
