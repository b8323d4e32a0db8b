"""The CLI starts at once: ``--help`` and ``--version`` import none of the heavy libraries."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import click
import pytest

from agent.cli import LAZY_COMMANDS, cli

HEAVY = ("sqlalchemy", "alembic", "numpy", "soundfile", "sounddevice", "starlette", "uvicorn", "httpx")


def _modules_after(args: list[str]) -> set[str]:
    script = (
        "import json, sys\n"
        "from agent.cli import main\n"
        f"code = main({args!r})\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_help_and_version_import_no_heavy_library(args: list[str]) -> None:
    loaded = _modules_after(args)
    assert sorted(m for m in HEAVY if m in loaded) == []


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_a_lazy_commands_listed_help_is_its_own(name: str) -> None:
    target, listed = LAZY_COMMANDS[name]
    module_name, _, attribute = target.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    assert command.name == name
    assert click.Command(name, help=listed).get_short_help_str(300) == command.get_short_help_str(300)


def test_a_lazy_command_runs_through_the_group() -> None:
    ctx = click.Context(cli)
    command = cli.get_command(ctx, "report")
    assert command is not None
    assert command.name == "report"
    assert "report" in cli.list_commands(ctx)
    assert cli.get_command(ctx, "no-such-command") is None
