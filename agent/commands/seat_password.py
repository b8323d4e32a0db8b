"""``cti-agent seat-password``: the rep's password for the seat page reached over the network."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agent.commands.common import config_option
from agent.config import load_config

__all__ = ["seat_password"]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise click.UsageError("--password-stdin: nothing on standard input")
        return line.rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@click.command("seat-password")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--remove", is_flag=True, help="Remove the password: the page then works on loopback only.")
@config_option()
def seat_password(password_stdin: bool, remove: bool, config_path: Path | None) -> None:
    """Set the password the seat page asks for when reached over the network ([web] listen)."""
    from agent.seat.web.login import HASH_FILE_NAME, write_password

    path = load_config(config_path).agent.data_dir / HASH_FILE_NAME
    if remove:
        path.unlink(missing_ok=True)
        click.echo(f"seat password removed ({path}); open page sessions end", err=True)
        return
    password = _password(password_stdin)
    try:
        write_password(path, password)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc}") from None
    click.echo(f"seat password set ({path}); open page sessions end", err=True)
