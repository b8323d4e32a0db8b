"""``cti-agent demo --seats N``: a whole floor on one machine — the centre and N simulated seats.

Each seat is a real ``cti-agent run`` process with its own rep, data directory and token, and
the centre a real ``cti-agent centre`` process; the seats sync to it over the seat API on
loopback exactly as a floor's seats do over the network. Layout under the data directory::

    centre/             the embedded centre (SQLite, recordings, console secret)
    seat-01/ ...        one directory per seat: its database, recordings, token, config, log
    centre.log          the centre's log

The centre holds the demo's customers (:mod:`agent.commands.demo`), whose numbers the
simulated lines call and are called by. A rerun reuses everything (a seat whose token file no
longer opens the centre gets a new one). The console's log-ins are ``manager`` and one per rep
(``rep01`` ...), with a password made for this floor, printed at start and kept in
``centre/manager-password`` (mode 0600).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from agent.errors import AgentError

logger = logging.getLogger(__name__)

#: Seconds a process may take to say where it listens.
START_SECONDS = 60.0
#: Seconds a process may take to stop after SIGTERM before it is killed.
STOP_SECONDS = 30.0
MANAGER = "manager"
TEAMS = ("team-a", "team-b")
#: Each demo team's daily targets per rep (a simulated line makes about a call a minute).
DEMO_TARGETS = {"calls": 120, "talk_seconds": 4 * 3600, "effective_calls": 40}


def team_of(index: int, seats: int) -> str:
    """The team of the seat at ``index``: one team of up to six seats, else two teams alternating."""
    return TEAMS[index % len(TEAMS)] if seats > 6 else TEAMS[0]


@dataclass
class _Child:
    """A process of the floor and what it printed about itself."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent.cli", *args]


def _spawn(name: str, argv: list[str], log: Path) -> _Child:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603 - our own CLI, arguments we built
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # Ctrl-C reaches the floor, which stops its children in order
        )
    return _Child(name, process, log)


def _wait_for(child: _Child, pattern: str, offset: int) -> re.Match[str]:
    """The first match of ``pattern`` the child logs after ``offset``; ClickException if it dies first."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        text = child.log.read_bytes()[offset:].decode("utf-8", "replace")
        if match := re.search(pattern, text):
            return match
        if child.process.poll() is not None:
            raise click.ClickException(
                f"{child.name} stopped at start (exit {child.process.returncode}):\n{text[-2000:]}"
            )
        time.sleep(0.1)
    raise click.ClickException(f"{child.name} did not start within {START_SECONDS:.0f} s; see {child.log}")


def _start(name: str, argv: list[str], log: Path, pattern: str) -> tuple[_Child, re.Match[str]]:
    offset = log.stat().st_size if log.exists() else 0
    child = _spawn(name, argv, log)
    return child, _wait_for(child, pattern, offset)


def _stop(children: list[_Child]) -> None:
    """SIGTERM each in turn (seats first: their last batches reach a centre still up)."""
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
            try:
                child.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0f s; killed", child.name, STOP_SECONDS)
                child.process.kill()
                child.process.wait()


def _provision(centre_dir: Path, names: list[str]) -> tuple[dict[str, str], str, list[str]]:
    """Seats with valid tokens (reused or new), the manager's password and the demo's customers.

    The customers are the centre's (the team's), so every seat's pop finds them through it.
    Returns the token files, the password and the customers' numbers for the simulators.
    """
    from sqlalchemy.orm import Session

    from agent.centre.auth import UserError, create_user, set_password
    from agent.commands.common import write_secret
    from agent.commands.demo import demo_owners, seed_demo
    from storage.db import make_engine, upgrade
    from storage.seats import SeatError, add_seat, revoke_seat, seat_for_token, set_seat_rep
    from storage.teams import set_team_targets, team_targets

    engine = make_engine(f"sqlite:///{centre_dir / 'cti-agent.db'}")
    tokens: dict[str, str] = {}
    try:
        upgrade(engine)
        numbers = seed_demo(engine, seat=names[0], team=team_of(0, len(names)))
        with Session(engine) as session, session.begin():
            for n, name in enumerate(names):
                token_file = centre_dir.parent / name / "seat.token"
                token = token_file.read_text(encoding="utf-8").strip() if token_file.exists() else ""
                seat = seat_for_token(session, token) if token else None
                if seat is None or seat.name != name:
                    with contextlib.suppress(SeatError):
                        revoke_seat(session, name)
                    _, token = add_seat(session, name, team_of(n, len(names)), f"rep{n + 1:02d}")
                    write_secret(token_file, token)
                elif seat.rep is None:  # a demo directory from before seats had reps
                    set_seat_rep(session, name, f"rep{n + 1:02d}")
                tokens[name] = str(token_file)
            password = secrets.token_urlsafe(12)
            # The manager, and a log-in for every rep of the floor (the seats' and the customers'
            # owners): a rep known to the centre, in a team, is whose customers a seat may see.
            team = team_of(0, len(names))
            reps = {f"rep{n:02d}": team_of(n - 1, len(names)) for n in range(1, len(names) + 1)}
            for owner in demo_owners():
                reps.setdefault(owner, team)
            for login, role, rep, rep_team in [
                (MANAGER, "manager", None, None),
                *((rep, "rep", rep, rep_team) for rep, rep_team in reps.items()),
            ]:
                try:
                    create_user(session, login, password, role=role, rep=rep, team=rep_team)
                except UserError:
                    set_password(session, login, password)
            # The teams' daily targets, kept where a centre keeps them (its database), so the
            # console and the wallboard have bars to fill; a rerun keeps targets set since.
            stored = team_targets(session)
            for floor_team in sorted(set(reps.values())):
                if floor_team not in stored:
                    set_team_targets(session, floor_team, **DEMO_TARGETS)
        write_secret(centre_dir / "manager-password", password)
    finally:
        engine.dispose()
    return tokens, password, numbers


def _seat_toml(
    name: str,
    n: int,
    data: Path,
    centre: str,
    token_file: str,
    options: FloorOptions,
    team: str,
    known: list[str],
) -> str:
    rep = f"rep{n:02d}"
    seed = "" if options.seed is None else f"seed = {options.seed + n}\n"
    speed = options.speed
    tracker = (
        f"[tracker]\nring_timeout = {8.0 / speed!r}\ndial_timeout = {4.0 / speed!r}\n\n"
        if speed != 1.0
        else ""
    )
    lines = "".join(
        f'[[lines]]\nid = "line{k}"\ndevice = "sim"\nport = "{k}"\nrep = "{rep}"\n\n'
        for k in range(1, options.lines + 1)
    )
    return (
        f'[agent]\nseat = "{name}"\nrep = "{rep}"\nteam = "{team}"\ndata_dir = "{data}"\n\n'
        '[web]\nlisten = "127.0.0.1:0"\n\n[metrics]\nlisten = "127.0.0.1:0"\n\n'
        "[recording]\nenabled = true\n\n"
        f'[central]\nurl = "{centre}"\ntoken_file = "{token_file}"\ninterval = 2.0\nbackoff_max = 30.0\n\n'
        f"{tracker}"
        f'[[devices]]\nid = "sim"\ntype = "simulator"\nlines = {options.lines}\n'
        f"rate = {options.rate!r}\nspeed = {speed!r}\nknown_numbers = {json.dumps(known)}\n{seed}\n"
        f"{lines}"
    )


@dataclass(frozen=True)
class FloorOptions:
    """What ``demo --seats`` was asked for."""

    seats: int
    lines: int
    rate: float
    seed: int | None
    speed: float
    listen: str
    duration: float | None


def run_floor(root: Path, options: FloorOptions) -> None:
    """Provision and run the floor under ``root`` until Ctrl-C, SIGTERM or ``options.duration``."""
    root.mkdir(parents=True, exist_ok=True)
    centre_dir = root / "centre"
    names = [f"seat-{n:02d}" for n in range(1, options.seats + 1)]
    try:
        token_files, password, numbers = _provision(centre_dir, names)
    except (AgentError, OSError) as exc:
        raise click.ClickException(f"cannot prepare the floor in {root}: {exc}") from None
    children: list[_Child] = []
    stopping = {"now": False}

    def stop_soon(*_args: object) -> None:
        stopping["now"] = True

    previous = {sig: signal.signal(sig, stop_soon) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        centre, found = _start(
            "the centre",
            _cli("centre", "--data-dir", str(centre_dir), "--listen", options.listen),
            root / "centre.log",
            r"centre: (https?://\S+?)/?\s",
        )
        children.append(centre)
        centre_url = found.group(1)
        click.echo(f"centre:     {centre_url}/  (console log-in: {MANAGER} / {password})", err=True)
        click.echo("            reps log in as rep01, rep02 ... with the same password", err=True)
        click.echo(f"team metrics: {centre_url}/metrics", err=True)
        # All seats start at once (each is its own process), then each is asked where it listens.
        started: list[tuple[int, str, _Child, int]] = []
        for n, name in enumerate(names, start=1):
            data = root / name
            config = data / "agent.toml"
            config.write_text(
                _seat_toml(
                    name,
                    n,
                    data,
                    centre_url,
                    token_files[name],
                    options,
                    team_of(n - 1, options.seats),
                    numbers,
                ),
                encoding="utf-8",
            )
            log = data / "agent.log"
            offset = log.stat().st_size if log.exists() else 0
            seat = _spawn(name, _cli("run", "--config", str(config)), log)
            children.insert(0, seat)  # stopped before the centre
            started.append((n, name, seat, offset))
        for n, name, seat, offset in started:
            page = _wait_for(seat, r"seat page:\s+(\S+)[\s\S]*?metrics:\s+(\S+)", offset)
            click.echo(f"{name}:    {page.group(1)}  metrics {page.group(2)}  (rep{n:02d})", err=True)
        click.echo("press Ctrl-C to stop", err=True)
        deadline = None if options.duration is None else time.monotonic() + options.duration
        while not stopping["now"] and (deadline is None or time.monotonic() < deadline):
            for child in children:
                if child.process.poll() is not None:
                    raise click.ClickException(
                        f"{child.name} stopped (exit {child.process.returncode}); see {child.log}"
                    )
            time.sleep(0.2)
    finally:
        _stop(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = ["FloorOptions", "run_floor", "team_of"]
