"""The CLI's log: no migration chatter (Alembic's steps, "at revision head") unless ``--verbose``.

Each test runs the real ``cti-agent`` entry point in a subprocess on a fresh SQLite database in a
temporary directory, so the migrations really run and the logging is configured as a user gets it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import CHATTY_LOGGERS, _setup_logging

MIGRATION_LINES = ("alembic", "Running upgrade", "Context impl", "is at revision")


def cti_agent(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_AGENT_")}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


@pytest.mark.parametrize("level", [[], ["--log-level", "info"], ["--log-level", "warning"]])
def test_a_command_that_migrates_prints_no_migration_lines(tmp_path: Path, level: list[str]) -> None:
    done = cti_agent(*level, "seats", "add", "seat-07", "--data-dir", str(tmp_path / "centre"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cti_seat_")
    assert (tmp_path / "centre" / "cti-agent.db").exists()
    for text in MIGRATION_LINES:
        assert text not in done.stderr, done.stderr
    # What the command itself says is still there.
    assert "seat seat-07 added" in done.stderr


def test_db_upgrade_says_what_it_did_in_one_line(tmp_path: Path) -> None:
    done = cti_agent("db", "upgrade", "--url", f"sqlite:///{tmp_path / 'x.db'}")
    assert done.returncode == 0, done.stderr
    assert "upgraded empty -> " in done.stdout
    assert done.stderr == ""


@pytest.mark.parametrize("flag", ["--verbose", "-v"])
def test_verbose_shows_the_migrations(tmp_path: Path, flag: str) -> None:
    done = cti_agent(flag, "seats", "list", "--data-dir", str(tmp_path / "centre"))
    assert done.returncode == 0, done.stderr
    assert "alembic.runtime.migration: Running upgrade  -> 0001_initial" in done.stderr
    assert "storage.db: database sqlite:///" in done.stderr
    assert "is at revision head" in done.stderr


def test_verbose_shows_the_migrations_under_a_quieter_level(tmp_path: Path) -> None:
    done = cti_agent(
        "--verbose", "--log-level", "warning", "db", "upgrade", "--url", f"sqlite:///{tmp_path}/x.db"
    )
    assert done.returncode == 0, done.stderr
    assert "Running upgrade" in done.stderr


@pytest.mark.parametrize(
    ("level", "verbose", "expected"),
    [
        ("info", False, logging.WARNING),
        ("warning", False, logging.WARNING),
        ("error", False, logging.ERROR),
        ("info", True, logging.INFO),
        ("warning", True, logging.INFO),
        ("debug", False, logging.DEBUG),
    ],
)
def test_the_chatty_loggers_levels(level: str, verbose: bool, expected: int) -> None:
    before = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    try:
        _setup_logging(level, verbose)
        for name in ("alembic.runtime.migration", "storage.db", "uvicorn.error", "httpx"):
            assert logging.getLogger(name).getEffectiveLevel() == expected, name
    finally:
        for name, value in before.items():
            logging.getLogger(name).setLevel(value)
