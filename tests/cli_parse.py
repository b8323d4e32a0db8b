"""Parse a ``cti-agent`` command line the way the CLI would, without running it (for docs tests)."""

from __future__ import annotations

import re
import shlex
import warnings
from typing import Any

import click

from agent.cli import cli

#: Markdown inline code holding a ``cti-agent`` call: `sudo -u cti .../bin/cti-agent seats list`.
INLINE = re.compile(r"`([^`]*cti-agent\s[^`]+)`")
_SHELL_OPERATORS = {">", ">>", "<", "|", "||", "&&", ";", "&", "2>&1"}


def parse_cli(args: list[str], *, mention: bool = False) -> None:
    """Parse ``cti-agent ARGS`` down to the leaf command; click's error when the CLI would refuse it.

    ``mention``: the text names the command rather than runs it (`cti-agent run` in a sentence),
    so a required option it leaves out is no error; an unknown command or option still is.
    """
    ctx = cli.make_context("cti-agent", list(args))
    command: Any = cli
    rest = _unparsed(ctx)  # after the group's own options (--verbose, --log-level)
    while rest and hasattr(command, "get_command"):
        name, rest = rest[0], rest[1:]
        command = command.get_command(ctx, name)
        assert command is not None, f"no command {name!r} in {args}"
        try:
            ctx = command.make_context(name, list(rest), parent=ctx)
        except click.MissingParameter:
            if not mention:
                raise
            return
        rest = _unparsed(ctx)


def _unparsed(ctx: click.Context) -> list[str]:
    with warnings.catch_warnings():
        # Click 8.2 deprecates protected_args (9.0 puts the subcommand into args).
        warnings.simplefilter("ignore", DeprecationWarning)
        return list(ctx.protected_args) + list(ctx.args)


def inline_calls(markdown: str) -> list[list[str]]:
    """The ``cti-agent`` calls in a Markdown text's inline code (fenced blocks left out)."""
    prose = re.sub(r"```.*?```", "", markdown, flags=re.S)
    return [call for span in INLINE.findall(prose) for call in cli_calls(" ".join(span.split()))]


def cli_calls(shell: str) -> list[list[str]]:
    """The arguments of each ``cti-agent`` call in a shell snippet (continuations joined, comments cut)."""
    calls = []
    for line in shell.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        for n, word in enumerate(words):
            # The program, not a unit or path of that name: a venv's script, the first word, or
            # what `docker compose exec SERVICE` or `sudo -u USER` runs.
            launched = n == 0 or words[n - 1] == "centre" or words[n - 2 : n] == ["-u", "cti"]
            if word.endswith("/bin/cti-agent") or (word == "cti-agent" and launched):
                args = []
                for arg in words[n + 1 :]:
                    if arg in _SHELL_OPERATORS:
                        break
                    args.append(arg)
                calls.append(args)
                break
    return calls
