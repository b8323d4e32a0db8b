"""What the database commands share: ``--config`` and ``--url``, loading the config, opening the database.

Every command that reads or writes the database takes ``--config FILE`` (the database URL and
the other settings come from it; without it the embedded defaults) and ``--url URL`` (a
SQLAlchemy URL that overrides the config's). Both are spelled, parsed and applied here once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from agent.errors import AgentError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from agent.config import Config

_F = TypeVar("_F", bound=Callable[..., Any])


def config_option(
    help_text: str = "The agent's config file (default: the embedded defaults).",
) -> Callable[[_F], _F]:
    """The ``--config FILE`` option, passed to the command as ``config_path``."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help=help_text,
    )


def centre_options(command: _F) -> _F:
    """``--config FILE`` or ``--data-dir DIR`` for a command run at the centre.

    ``--data-dir`` means the embedded centre (SQLite and recordings) kept in DIR; with neither,
    the embedded centre in the platform data directory's ``centre/`` (apart from a seat's own
    database on the same machine). The command gets ``config_path`` and ``data_dir``.
    """
    command = click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="The embedded centre kept in this directory (SQLite database, recordings).",
    )(command)
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help="The centre's config file ([storage] url, [centre], [agent] data_dir).",
    )(command)


def load_centre(config_path: Path | None, data_dir: Path | None) -> Config:
    """The centre's configuration from ``--config`` or ``--data-dir`` (see :func:`centre_options`)."""
    from agent.config import default_data_dir, load_config

    if config_path is not None and data_dir is not None:
        raise click.UsageError("give --config or --data-dir, not both (a config names its data_dir)")
    overrides = None
    if config_path is None:
        overrides = {"agent": {"data_dir": str(data_dir or default_data_dir() / "centre")}}
    try:
        return load_config(config_path, overrides=overrides)
    except AgentError as exc:
        raise click.UsageError(str(exc)) from None


url_option = click.option("--url", default=None, help="A SQLAlchemy database URL (overrides the config).")


def load(config_path: Path | None) -> Config:
    """The configuration, or a usage error (exit 2) that says what is wrong with it."""
    from agent.config import load_config

    try:
        return load_config(config_path)
    except AgentError as exc:
        raise click.UsageError(str(exc)) from None


def database_url(config: Config, url: str | None) -> str:
    """The URL to use: ``--url`` when given, else the config's (whose SQLite directory is created)."""
    if url is not None:
        return url
    target = config.database_url
    if target.startswith("sqlite:///"):
        config.agent.data_dir.mkdir(parents=True, exist_ok=True)
    return target


@contextmanager
def open_engine(config: Config, url: str | None = None, *, migrate: bool = True) -> Iterator[Engine]:
    """An engine on the command's database, migrated to the newest schema unless ``migrate`` is False.

    A database that cannot be reached or migrated is a runtime error (exit 1) naming it.
    """
    from storage.db import make_engine, upgrade

    try:
        engine = make_engine(database_url(config, url))
        if migrate:
            upgrade(engine)
    except AgentError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def transaction(config: Config, url: str | None, doing: str) -> Iterator[Session]:
    """A session in one transaction on the migrated database; storage errors name ``doing``."""
    from sqlalchemy.orm import Session

    from storage.db import storage_errors

    with open_engine(config, url) as engine:
        try:
            with storage_errors(engine, doing), Session(engine) as session, session.begin():
                yield session
        except AgentError as exc:
            raise click.ClickException(str(exc)) from None


def write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` readable by its owner only, via a temporary name and a rename."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (secret + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
