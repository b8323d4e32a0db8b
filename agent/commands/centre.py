"""``cti-agent centre``: the team server — the supervisor console and the seat API on one port.

``cti-agent centre purge`` deletes the recordings past their retention from its recording store.
"""

from __future__ import annotations

import asyncio
import getpass
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from agent.commands.common import load_centre
from agent.commands.progress import Progress
from agent.config import Config, parse_listen
from agent.errors import AgentError, ConfigError

if TYPE_CHECKING:
    from storage.blobstore import RecordingBlobStore

__all__ = ["CENTRE_OPTIONS", "centre", "recording_store", "serve_centre"]


def _roles(text: str) -> frozenset[str]:
    from storage.models import ROLES

    roles = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = roles - set(ROLES)
    if unknown:
        raise click.BadParameter(
            f"unknown role(s) {', '.join(sorted(unknown))}; roles are {', '.join(ROLES)}",
            param_hint="--mask-roles",
        )
    return roles


#: The centre's options; ``cti-agent console`` (the old name) takes the same ones.
CENTRE_OPTIONS: tuple[Callable[[Any], Any], ...] = (
    click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help="The centre's config ([storage] url, [centre] listen and TLS, [agent] data_dir, targets).",
    ),
    click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Run the embedded centre kept in this directory (SQLite database, recordings).",
    ),
    click.option("--url", default=None, help="A SQLAlchemy database URL (overrides the config)."),
    click.option(
        "--listen", default=None, help="HOST:PORT to serve on (default: [centre] listen, 127.0.0.1:8340)."
    ),
    click.option(
        "--recordings-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Where recording paths are resolved (default: the data directory).",
    ),
    click.option(
        "--mask-roles",
        default="rep",
        show_default=True,
        help="Comma-separated roles that see numbers masked (138****5678); empty for none.",
    ),
    click.option("--tz", "tz_name", default=None, help="The floor's time zone (default: this machine's)."),
    click.option(
        "--secret-file",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="The session key file, created 0600 when missing (default: console-secret in the data dir).",
    ),
    click.option(
        "--secure-cookies/--no-secure-cookies",
        default=None,
        help="Mark the session cookie Secure (default: on when the centre serves TLS itself).",
    ),
    click.option(
        "--language", type=click.Choice(["en", "zh-CN"]), default=None, help="Fix the page language."
    ),
    click.option(
        "--seat",
        "seat_urls",
        multiple=True,
        metavar="NAME=URL",
        help="A seat's page for live listen-in, e.g. seat-07=http://10.0.0.7:8330 (repeat per seat). "
        "Default: this machine's own seat when its config sets [web] listen_token.",
    ),
    click.option(
        "--listen-token-file",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help="A file holding the seats' [web] listen_token (default: the config's own token).",
    ),
)


def with_centre_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Apply :data:`CENTRE_OPTIONS` to a click command function."""
    for option in reversed(CENTRE_OPTIONS):
        command = option(command)
    return command


@click.group(invoke_without_command=True)
@with_centre_options
@click.pass_context
def centre(ctx: click.Context, /, **options: Any) -> None:
    """Serve the centre: the supervisor console and the seat API, until SIGINT/SIGTERM.

    Seats are given credentials with `cti-agent seats add`, console log-ins with
    `cti-agent users add`. HTTPS when [centre] tls_cert and tls_key are set.
    Recordings go to [centre.recordings] (a directory, or an S3 bucket);
    `cti-agent centre purge` deletes those past their retention.
    """
    if ctx.invoked_subcommand is None:
        serve_centre(**options)


def recording_store(config: Config) -> RecordingBlobStore:
    """The recording store ``[centre.recordings]`` names (default: ``recordings/`` in the data directory).

    :raises ConfigError: the table is not valid, or the S3 keys are missing or unreadable.
    """
    from pydantic import ValidationError

    from storage.blobconfig import RecordingStoreSettings, make_blob_store

    try:
        settings = RecordingStoreSettings.model_validate(config.centre.recordings)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"[centre.recordings] {where + ': ' if where else ''}{first['msg']}") from None
    return make_blob_store(settings, config.agent.data_dir)


def serve_centre(
    *,
    config_path: Path | None,
    data_dir: Path | None,
    url: str | None,
    listen: str | None,
    recordings_dir: Path | None,
    mask_roles: str,
    tz_name: str | None,
    secret_file: Path | None,
    secure_cookies: bool | None,
    language: str | None,
    seat_urls: tuple[str, ...],
    listen_token_file: Path | None,
    legacy_data_dir: bool = False,
) -> None:
    """Run the centre with these options (the body of ``centre`` and of its old name ``console``).

    ``legacy_data_dir``: with neither ``--config`` nor ``--data-dir``, use the platform data
    directory itself (the seat's own database), as ``cti-agent console`` did, rather than the
    embedded centre's ``centre/`` in it.
    """
    from prometheus_client import CollectorRegistry

    from agent.centre.context import ConsoleSettings, load_or_create_secret
    from agent.centre.listen import parse_seats
    from agent.centre.server import make_centre_app
    from agent.commands.common import open_engine
    from agent.web.guard import allowed_hosts
    from agent.web.serve import make_server
    from storage.report import local_zone

    if legacy_data_dir and config_path is None and data_dir is None:
        from agent.config import default_data_dir

        data_dir = default_data_dir()
    config = load_centre(config_path, data_dir)
    try:
        store = recording_store(config)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        host, port = parse_listen(listen or config.centre.listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    try:
        zone = ZoneInfo(tz_name) if tz_name else local_zone()
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"unknown time zone {tz_name!r}", param_hint="--tz") from None
    try:
        seats = parse_seats(seat_urls)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--seat") from None
    tls = config.centre.tls_cert is not None
    settings = ConsoleSettings(
        secret=load_or_create_secret(secret_file or config.agent.data_dir / "console-secret"),
        recordings_dir=recordings_dir or config.agent.data_dir,
        zone=zone,
        mask_roles=_roles(mask_roles),
        secure_cookies=tls if secure_cookies is None else secure_cookies,
        language=language,
        region=config.agent.region,
        effective_seconds=config.metrics.effective_call_seconds,
        targets=config.targets,
        reps_see_team_ranking=config.centre.reps_see_team_ranking,
        rank_by=config.centre.rank_by,
        dispositions=config.centre.dispositions,
        protection_days=config.leads.protection_days,
        seats=seats or _own_seat(config),
        listen_token=_listen_token(config, listen_token_file),
        recordings_store=store,
    )
    hosts = allowed_hosts(host, config.centre.hosts)
    with open_engine(config, url) as engine:
        app = make_centre_app(engine, settings, registry=CollectorRegistry(), hosts=hosts)
        try:
            server = make_server(
                app, host, port, tls_cert=config.centre.tls_cert, tls_key=config.centre.tls_key
            )
            asyncio.run(_serve(server, "console" if legacy_data_dir else "centre", app))
        except AgentError as exc:
            raise click.ClickException(str(exc)) from None


async def _serve(server: Any, label: str, app: Any) -> None:
    from agent.centre.server import start_centre, stop_centre

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, setattr, server, "should_exit", True)
    await start_centre(app)
    try:
        task = asyncio.create_task(server.serve())
        try:
            await server.wait_started()
        except BaseException:
            await asyncio.gather(task, return_exceptions=True)
            raise
        click.echo(f"{label}: {server.scheme}://{server.address}/", err=True)
        await task
    finally:
        await stop_centre(app)


def _own_seat(config: Config) -> dict[str, str]:
    """Single-machine mode: listen in on this machine's own seat page, when it has a listen token."""
    if not config.web.listen_token:
        return {}
    web_host, web_port = parse_listen(config.web.listen)
    # A wildcard listen address is reached over loopback from the same machine.
    web_host = "127.0.0.1" if web_host in ("0.0.0.0", "::") else web_host  # noqa: S104
    web_host = f"[{web_host}]" if ":" in web_host else web_host
    return {config.agent.seat: f"http://{web_host}:{web_port}"}


def _listen_token(config: Config, path: Path | None) -> str | None:
    if path is None:
        return config.web.listen_token
    return path.read_text(encoding="utf-8").strip() or None


@centre.command("purge")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="The centre's config ([storage] url, [centre.recordings], [recording] retention_days).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The embedded centre kept in this directory.",
)
@click.option("--url", default=None, help="A SQLAlchemy database URL (overrides the config).")
@click.option(
    "--older-than",
    "older_than",
    default=None,
    help="Delete recordings of calls older than this (180d, 12w, 36h; a bare number is days), whatever "
    "their team. Default: each call's team's [recording] team_retention_days, else retention_days.",
)
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
def centre_purge(
    config_path: Path | None, data_dir: Path | None, url: str | None, older_than: str | None, dry_run: bool
) -> None:
    """Delete the recordings past their retention from the centre's store, and their rows (audited).

    A recording's age is judged by its call's team: ``[recording] team_retention_days`` for the
    teams listed there, ``retention_days`` for the others (not set: theirs are kept);
    ``--older-than`` overrides both. The calls themselves stay.
    """
    from agent.commands.common import open_engine
    from agent.commands.purge import parse_age, retention_rule
    from storage.blobstore import BlobStoreError
    from storage.centre_recordings import purge_recordings
    from storage.recordings import audit

    config = load_centre(config_path, data_dir)
    recording = config.recording
    age: timedelta | None = None
    if older_than is not None:
        try:
            age = parse_age(older_than)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--older-than") from None
    elif recording.retention_days is None and not recording.team_retention_days:
        raise click.UsageError("give --older-than or set [recording] retention_days (or team_retention_days)")
    try:
        store = recording_store(config)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    cutoff, team_cutoffs, rule = retention_rule(
        age, recording.retention_days, recording.team_retention_days, datetime.now(UTC)
    )
    with open_engine(config, url) as engine:
        try:
            with Progress("deleting recordings", 0, unit="recordings") as bar:
                done = purge_recordings(
                    engine, store, cutoff, team_cutoffs=team_cutoffs, dry_run=dry_run, progress=bar.at
                )
        except BlobStoreError as exc:
            raise click.ClickException(f"the recording store failed: {exc} (run the purge again)") from None
        if dry_run:
            click.echo(
                f"would delete {done.objects} recording(s) {rule} ({done.rows} row(s), {done.bytes} bytes)"
            )
            return
        from sqlalchemy.orm import Session

        with Session(engine) as session, session.begin():
            detail: dict[str, object] = {
                "recordings": done.rows,
                "objects": done.objects,
                "bytes": done.bytes,
                "older_than": str(age) if age is not None else None,
                "retention_days": recording.retention_days if age is None else None,
                "team_retention_days": dict(recording.team_retention_days) if age is None else None,
                "store": getattr(store, "backend", type(store).__name__),
            }
            audit(session, "recordings.purge", rule, detail, _user())
    click.echo(f"deleted {done.objects} recording(s) {rule} ({done.rows} row(s), {done.bytes} bytes freed)")


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None
