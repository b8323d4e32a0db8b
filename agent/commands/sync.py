"""``cti-agent sync``: team mode by hand: the backlog (``--status``), one catch-up (``--once``), or a loop.

The running agent syncs by itself when ``[central] url`` is set; this command
is for looking at the backlog and for catching up without the agent. It also
shows what was parked (park, don't block: see :mod:`storage.faults`), both the
calls the seat's own database refused and the outbox entries the centre
refused, and ``--retry-parked`` tries them again after a fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from agent.commands.progress import Progress
from agent.config import Config, is_centre_url, load_config
from agent.errors import AgentError, ConfigError
from agent.seat.sync import SyncLoop
from agent.seat.transport import make_transport
from storage.db import make_engine, safe_url, storage_errors, upgrade
from storage.observer import PARKED_NAME, ParkedCall, ParkedCalls, StorageObserver
from storage.outbox import CentralSync, SyncError, SyncStatus, parked_entries, retry_parked, status

logger = logging.getLogger(__name__)


def _age(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    seconds = max((now - when).total_seconds(), 0)
    if seconds < 120:
        ago = f"{seconds:.0f} s"
    elif seconds < 7200:
        ago = f"{seconds / 60:.0f} min"
    elif seconds < 172_800:
        ago = f"{seconds / 3600:.1f} h"
    else:
        ago = f"{seconds / 86_400:.1f} days"
    return f"{when:%Y-%m-%d %H:%M:%S} UTC ({ago} ago)"


def format_status(
    state: SyncStatus, config: Config, now: datetime, parked_calls: list[ParkedCall] | None = None
) -> str:
    """The text ``sync --status`` prints (``parked_calls``: calls the seat's own database refused)."""
    url = config.central_url
    if not url:
        upstream = ["centre:             not configured (single-machine mode)"]
    elif is_centre_url(url):
        upstream = [f"centre:             {url}", "recording store:    the centre's"]
    else:
        # A database URL: the direct-database team mode is gone; the sync says how to move.
        upstream = [
            f"centre:             none: [central] url is a database ({safe_url(url)}); "
            "the direct-database team mode is gone (README: Moving from the direct-database team mode)"
        ]
    lines = [
        *upstream,
        f"outbox:             {'on' if state.enabled else 'off'}",
        f"backlog:            {state.pending_calls} call(s), {state.pending_recordings} recording(s)",
        f"oldest waiting:     {_age(state.oldest_pending_at, now) if state.pending else '-'}",
        f"parked:             {state.parked}",
        f"last in sync:       {_age(state.last_success_at, now)}",
        f"last attempt:       {_age(state.last_attempt_at, now)}",
    ]
    if state.last_error:
        lines.append(f"last error:         {_age(state.last_error_at, now)}: {state.last_error}")
    if parked_calls:
        lines.append(
            f"parked calls:       {len(parked_calls)} the local database refused "
            f"(kept in {config.agent.data_dir / PARKED_NAME}; sync --retry-parked after a fix)"
        )
        for entry in parked_calls[:20]:
            lines.append(
                f"  parked call {entry.event.call.uuid} since {_age(entry.parked_at, now)}: {entry.reason}"
            )
    return "\n".join(lines)


def _open_local(config: Config) -> Engine:
    engine = make_engine(config.database_url)
    upgrade(engine)
    return engine


@click.command("sync")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="The agent's config file (default: the embedded defaults).",
)
@click.option(
    "--status", "show_status", is_flag=True, help="Show the backlog and the last outcomes; send nothing."
)
@click.option("--once", is_flag=True, help="Send everything waiting, then exit (1 if the centre failed).")
@click.option(
    "--retry-parked",
    is_flag=True,
    help="After a fix: write the parked calls again and queue the parked outbox entries again.",
)
def sync(config_path: Path | None, show_status: bool, once: bool, retry_parked: bool) -> None:
    """Replay this seat's calls, notes and recordings to the centre ([central] url)."""
    try:
        config = load_config(config_path)
    except AgentError as exc:
        raise click.UsageError(str(exc)) from None
    if show_status and (once or retry_parked):
        raise click.UsageError("--status only shows; give it alone")
    try:
        local = _open_local(config)
    except AgentError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        if show_status:
            _show_status(local, config)
            return
        if retry_parked:
            _retry_parked(local, config)
            if not once:
                return
        try:
            transport = make_transport(config)
            if transport is None:
                raise click.UsageError(
                    "no centre: set [central] url to the centre (https://…) and token_file "
                    "(there is no central database mode any more)"
                )
            syncer = CentralSync(
                local,
                transport=transport,
                data_dir=config.agent.data_dir,
                batch_size=config.central.batch_size,
            )
        except ConfigError as exc:  # a database URL, a token file missing or too open: exit 2
            raise click.UsageError(str(exc)) from None
        except AgentError as exc:
            raise click.ClickException(str(exc)) from None
        if once:
            _once(syncer)
        else:
            _forever(syncer, config)
    finally:
        local.dispose()


def _show_status(local: Engine, config: Config) -> None:
    try:
        with storage_errors(local, "reading the outbox"), Session(local) as session:
            state = status(session)
            parked = [(e.id, e.kind, e.ref, e.last_error) for e in parked_entries(session)]
    except AgentError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        calls = ParkedCalls(config.agent.data_dir / PARKED_NAME).load()
    except OSError as exc:
        raise click.ClickException(f"cannot read the parked calls: {exc}") from None
    click.echo(format_status(state, config, datetime.now(UTC), calls))
    for entry_id, kind, ref, error in parked:
        click.echo(f"  parked #{entry_id} {kind} {ref}: {error}")


def _retry_parked(local: Engine, config: Config) -> None:
    """Write each parked call again (those still refused stay parked), then unpark the outbox."""
    parked = ParkedCalls(config.agent.data_dir / PARKED_NAME)
    observer = StorageObserver(local, parked=parked)
    written = refused = 0
    try:
        for entry in parked.load():
            try:
                observer.write(entry.event.call)  # clears it from the file when it goes in
                written += 1
            except AgentError as exc:
                refused += 1
                click.echo(f"  call {entry.event.call.uuid} still refused: {exc}")
        with (
            storage_errors(local, "queuing parked outbox entries"),
            Session(local) as session,
            session.begin(),
        ):
            requeued = retry_parked(session)
    except (AgentError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"parked calls: {written} written, {refused} still refused; "
        f"outbox: {requeued} parked entr(ies) queued again"
    )


def _once(syncer: CentralSync) -> None:
    calls = recordings = parked = 0
    try:
        syncer.enable()
        waiting = syncer.status().pending
        with Progress("catching up", waiting, unit="rows") as bar:
            while True:
                result = syncer.run_batch()
                calls += result.calls
                recordings += result.recordings
                parked += result.parked
                # What is left says what was done (rows that arrive meanwhile are not in the total).
                bar.update(max(waiting - result.remaining, 0) - bar.done)
                if result.entries == 0 or (result.remaining == 0 and not result.full):
                    break
    except SyncError as exc:
        raise click.ClickException(
            f"sent {calls} call(s) and {recordings} recording(s), then failed: {exc}"
        ) from None
    except AgentError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        syncer.close()
    message = f"sent {calls} call(s) and {recordings} recording(s); nothing waiting"
    if parked:
        message += f"; {parked} entry(ies) parked (see sync --status)"
    click.echo(message)


def _forever(syncer: CentralSync, config: Config) -> None:
    loop = SyncLoop(syncer, interval=config.central.interval, backoff_max=config.central.backoff_max)

    async def main() -> None:
        task = loop.start()
        try:
            await task
        finally:
            await loop.aclose()

    click.echo(f"syncing to {config.central_url or ''}; Ctrl-C stops")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


__all__ = ["format_status", "sync"]
