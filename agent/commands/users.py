"""``cti-agent users``: console log-ins (add, passwd, logout, disable, list)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from sqlalchemy.orm import Session

from agent.commands.common import config_option, transaction, url_option
from agent.config import load_config
from storage.models import ROLES

__all__ = ["users"]


@contextmanager
def _session(config_path: Path | None, url: str | None) -> Iterator[Session]:
    with transaction(load_config(config_path), url, "changing users") as session:
        yield session


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise click.UsageError("--password-stdin: nothing on standard input")
        return line.rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


def _apply(action: Callable[[], Any]) -> Any:
    from agent.centre.auth import UserError

    try:
        return action()
    except UserError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def users() -> None:
    """Console log-ins: rep (own calls), lead (own team), manager (all calls), admin (users, audit)."""


@users.command("add")
@click.argument("login")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--team", default=None, help="The team (a lead sees its calls); created when unknown.")
@click.option("--rep", default=None, help="The rep name seats write into calls (a rep sees those).")
@click.option(
    "--language",
    type=click.Choice(["auto", "en", "zh-CN"]),
    default="auto",
    show_default=True,
    help="Page language (auto: the browser's).",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@config_option("Read the database URL from this config.")
@url_option
def add(
    login: str,
    role: str,
    team: str | None,
    rep: str | None,
    language: str,
    password_stdin: bool,
    config_path: Path | None,
    url: str | None,
) -> None:
    """Add a user LOGIN (the password is asked for twice, or read with --password-stdin)."""
    from agent.centre.auth import create_user

    password = _password(password_stdin)
    with _session(config_path, url) as session:
        _apply(
            lambda: create_user(session, login, password, role=role, team=team, rep=rep, language=language)
        )
    click.echo(f"user {login} added ({role})", err=True)


@users.command("passwd")
@click.argument("login")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@config_option("Read the database URL from this config.")
@url_option
def passwd(login: str, password_stdin: bool, config_path: Path | None, url: str | None) -> None:
    """Set LOGIN's password; their open sessions end."""
    from agent.centre.auth import set_password

    password = _password(password_stdin)
    with _session(config_path, url) as session:
        _apply(lambda: set_password(session, login, password))
    click.echo(f"password of {login} changed", err=True)


@users.command("logout")
@click.argument("login")
@config_option("Read the database URL from this config.")
@url_option
def logout(login: str, config_path: Path | None, url: str | None) -> None:
    """End every console session of LOGIN now (a lost or shared computer); they may log in again."""
    from agent.centre.auth import end_sessions_of

    with _session(config_path, url) as session:
        _apply(lambda: end_sessions_of(session, login))
    click.echo(f"every session of {login} ended", err=True)


@users.command("disable")
@click.argument("login")
@config_option("Read the database URL from this config.")
@url_option
def disable(login: str, config_path: Path | None, url: str | None) -> None:
    """Stop LOGIN logging in; their open sessions end at their next request."""
    from agent.centre.auth import disable_user

    with _session(config_path, url) as session:
        _apply(lambda: disable_user(session, login))
    click.echo(f"user {login} disabled", err=True)


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@config_option("Read the database URL from this config.")
@url_option
def list_command(as_json: bool, config_path: Path | None, url: str | None) -> None:
    """Every user with role, team, rep and whether disabled."""
    from agent.centre.auth import list_users

    with _session(config_path, url) as session:
        rows = list_users(session)
    for row in rows:
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            state = "disabled" if row["disabled"] else "active"
            team, rep = row["team"] or "-", row["rep"] or "-"
            click.echo(f"{row['login']:<20} {row['role']:<8} team={team} rep={rep} {state}")
