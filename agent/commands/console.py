"""``cti-agent console``: the supervisor web app over the calls database."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from agent.config import load_config, parse_listen
from agent.errors import AgentError
from storage.models import ROLES
from storage.report import local_zone

__all__ = ["console"]


def _roles(text: str) -> frozenset[str]:
    roles = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = roles - set(ROLES)
    if unknown:
        raise click.BadParameter(
            f"unknown role(s) {', '.join(sorted(unknown))}; roles are {', '.join(ROLES)}",
            param_hint="--mask-roles",
        )
    return roles


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Read the database URL, data directory, targets and effective-call threshold from this config.",
)
@click.option("--url", default=None, help="A SQLAlchemy database URL (overrides the config).")
@click.option(
    "--listen", default="127.0.0.1:8340", show_default=True, help="HOST:PORT to serve the console on."
)
@click.option(
    "--recordings-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where recording paths are resolved (default: the config's data directory).",
)
@click.option(
    "--mask-roles",
    default="rep",
    show_default=True,
    help="Comma-separated roles that see numbers masked (138****5678); empty for none.",
)
@click.option("--tz", "tz_name", default=None, help="The floor's time zone (default: this machine's).")
@click.option(
    "--secret-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The session key file, created 0600 when missing (default: console-secret in the data directory).",
)
@click.option(
    "--secure-cookies/--no-secure-cookies",
    default=False,
    show_default=True,
    help="Mark the session cookie Secure (when a TLS proxy serves the console).",
)
@click.option("--language", type=click.Choice(["en", "zh-CN"]), default=None, help="Fix the page language.")
@click.option(
    "--seat",
    "seat_urls",
    multiple=True,
    metavar="NAME=URL",
    help="A seat's page for live listen-in, e.g. seat-07=http://10.0.0.7:8330 (repeat per seat). "
    "Default: this machine's own seat when its config sets [web] listen_token.",
)
@click.option(
    "--listen-token-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="A file holding the seats' [web] listen_token (default: the config's own token).",
)
def console(
    config_path: Path | None,
    url: str | None,
    listen: str,
    recordings_dir: Path | None,
    mask_roles: str,
    tz_name: str | None,
    secret_file: Path | None,
    secure_cookies: bool,
    language: str | None,
    seat_urls: tuple[str, ...],
    listen_token_file: Path | None,
) -> None:
    """Serve the supervisor console: search calls, play recordings, statistics, wallboard, listen-in.

    Log-ins are made with `cti-agent users add`. Until SIGINT/SIGTERM.
    """
    from agent.centre.app import make_console_app
    from agent.centre.context import ConsoleSettings, load_or_create_secret
    from agent.centre.listen import parse_seats
    from agent.web.serve import make_server
    from storage.db import make_engine, upgrade

    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    try:
        zone = ZoneInfo(tz_name) if tz_name else local_zone()
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"unknown time zone {tz_name!r}", param_hint="--tz") from None
    config = load_config(config_path)
    data_dir = config.agent.data_dir
    try:
        seats = parse_seats(seat_urls)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--seat") from None
    listen_token = config.web.listen_token
    if listen_token_file is not None:
        listen_token = listen_token_file.read_text(encoding="utf-8").strip() or None
    if not seats and config.web.listen_token:
        # Single-machine mode: listen in on this machine's own seat page.
        web_host, web_port = parse_listen(config.web.listen)
        # A wildcard listen address is reached over loopback from the same machine.
        web_host = "127.0.0.1" if web_host in ("0.0.0.0", "::") else web_host  # noqa: S104
        web_host = f"[{web_host}]" if ":" in web_host else web_host
        seats = {config.agent.seat: f"http://{web_host}:{web_port}"}
    settings = ConsoleSettings(
        secret=load_or_create_secret(secret_file or data_dir / "console-secret"),
        recordings_dir=recordings_dir or data_dir,
        zone=zone,
        mask_roles=_roles(mask_roles),
        secure_cookies=secure_cookies,
        language=language,
        region=config.agent.region,
        effective_seconds=config.metrics.effective_call_seconds,
        targets=config.targets,
        seats=seats,
        listen_token=listen_token,
    )
    engine = make_engine(url or config.database_url)
    try:
        upgrade(engine)
        server = make_server(make_console_app(engine, settings), host, port)

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, setattr, server, "should_exit", True)
            task = asyncio.create_task(server.serve())
            try:
                await server.wait_started()
            except BaseException:
                await asyncio.gather(task, return_exceptions=True)
                raise
            click.echo(f"console: http://{server.address}/", err=True)
            await task

        asyncio.run(main())
    except AgentError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
