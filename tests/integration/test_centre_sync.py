"""Real seat processes syncing to a real ``cti-agent centre`` process over HTTP on loopback.

The seats are ``cti-agent run`` on simulated lines, configured only with the centre's URL and
a token file (no database URL, no password, no share). The centre is stopped and started again
while calls flow: nothing is lost, nothing doubled (compared by UUID and final state).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_centre_process import cli, start_centre, stop
from test_crash_recovery import free_port, query

CLI = [sys.executable, "-m", "agent.cli"]
FINAL = "SELECT uuid, seat, ended_at IS NOT NULL, talk_seconds, notes FROM calls ORDER BY uuid"


def wait_for(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def seat_config(tmp_path: Path, name: str, centre_url: str, token: str, seed: int) -> Path:
    data = tmp_path / name
    data.mkdir()
    token_file = data / "seat.token"
    token_file.write_text(token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    config = tmp_path / f"{name}.toml"
    config.write_text(
        f"""
[agent]
seat = "{name}"
rep = "rep-{name}"
team = "north"
data_dir = "{data}"

[web]
enabled = false

[metrics]
enabled = false

[tracker]
ring_timeout = 0.2
dial_timeout = 0.1

[central]
url = "{centre_url}"
token_file = "{token_file}"
interval = 0.2
backoff_max = 1.0

[[devices]]
id = "sim"
type = "simulator"
lines = 2
rate = 120
seed = {seed}
speed = 40.0
""",
        encoding="utf-8",
    )
    return config


def start_seat(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, "run", "--config", str(config)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


@pytest.mark.slow
def test_seats_sync_over_http_through_a_centre_restart(tmp_path: Path) -> None:
    centre_dir = tmp_path / "centre"
    port = free_port()
    listen = f"127.0.0.1:{port}"
    centre, url = start_centre(centre_dir, "--listen", listen)
    seats: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for n, name in enumerate(("seat-a", "seat-b")):
            added = cli("seats", "add", name, "--team", "north", "--data-dir", str(centre_dir))
            assert added.returncode == 0, added.stderr
            config = seat_config(tmp_path, name, url, added.stdout.strip(), seed=n + 3)
            seats[name] = start_seat(config, tmp_path / f"{name}.log")
        centre_db = centre_dir / "cti-agent.db"

        def count_at_centre() -> int:
            return len(query(centre_db, "SELECT uuid FROM calls"))

        wait_for(lambda: count_at_centre() >= 6, 60, "calls at the centre")
        # The centre goes away for a while; the seats go on locally and back off.
        assert stop(centre) == 0
        time.sleep(3)
        centre, _ = start_centre(centre_dir, "--listen", listen)
        time.sleep(2)
        for process in seats.values():
            process.send_signal(signal.SIGTERM)
        for name, process in seats.items():
            assert process.wait(timeout=60) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]

        local = sorted(row for name in seats for row in query(tmp_path / name / "cti-agent.db", FINAL))
        assert len(local) > 6
        # The seats' last batches (sent at shutdown, or after it by the next run) reach the centre.
        wait_for(lambda: count_at_centre() >= len(local), 30, "the last batches")
        assert query(centre_db, FINAL) == local
        assert all(row[2] for row in local)  # every call ended, here and at the centre
        seen = query(centre_db, "SELECT name, backlog, last_seen_at IS NOT NULL FROM seats ORDER BY name")
        assert seen == [("seat-a", 0, 1), ("seat-b", 0, 1)]
    finally:
        for process in seats.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        stop(centre)


def test_a_seat_with_a_bad_token_keeps_its_calls_and_says_why(tmp_path: Path) -> None:
    centre_dir = tmp_path / "centre"
    centre, url = start_centre(centre_dir)
    try:
        config = seat_config(tmp_path, "seat-x", url, "cti_seat_not-issued", seed=5)
        log = tmp_path / "seat-x.log"
        seat = start_seat(config, log)
        try:
            wait_for(
                lambda: len(query(tmp_path / "seat-x" / "cti-agent.db", "SELECT uuid FROM calls")) >= 3,
                60,
                "calls on the seat",
            )
            wait_for(
                lambda: "refused this seat" in log.read_text(errors="replace"), 30, "the refusal in the log"
            )
        finally:
            seat.send_signal(signal.SIGTERM)
            assert seat.wait(timeout=60) == 0
        assert query(centre_dir / "cti-agent.db", "SELECT uuid FROM calls") == []
        pending = query(tmp_path / "seat-x" / "cti-agent.db", "SELECT count(*) FROM outbox WHERE NOT parked")
        assert pending[0][0] >= 3
    finally:
        stop(centre)


@pytest.mark.slow
def start_floor(root: Path, port: int, *options: str) -> tuple[subprocess.Popen[str], str]:
    """``cti-agent demo`` with ``options``, read until it is up; the process and what it printed."""
    demo = subprocess.Popen(
        [*CLI, "demo", "--data-dir", str(root), "--listen", f"127.0.0.1:{port}", *options],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )  # fmt: skip
    assert demo.stderr is not None
    shown: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not any("press Ctrl-C" in line for line in shown):
        line = demo.stderr.readline()
        if not line and demo.poll() is not None:
            raise AssertionError("".join(shown))
        shown.append(line)
    return demo, "".join(shown)


def test_demo_seats_runs_a_floor_the_console_shows_whole(tmp_path: Path) -> None:
    root = tmp_path / "floor"
    port = free_port()
    demo, text = start_floor(root, port, "--seats", "2", "--speed", "30", "--rate", "20", "--seed", "7")
    try:
        login = re.search(r"console log-in: manager / (\S+)\)", text)
        assert login, text
        seat_page = re.search(r"seat-01:\s+(http://127\.0\.0\.1:\d+)/", text)
        assert seat_page, text
        assert re.search(r"seat-02:\s+http://127\.0\.0\.1:\d+/", text)
        centre_db = root / "centre" / "cti-agent.db"
        wait_for(
            lambda: (
                {row[0] for row in query(centre_db, "SELECT DISTINCT seat FROM calls")}
                == {"seat-01", "seat-02"}
            ),
            60,
            "calls of both seats at the centre",
        )

        # The seat keeps no customers of its own: the pop's card is the team's, from the centre.
        def popped() -> bool:
            state = httpx.get(f"{seat_page.group(1)}/api/state", timeout=5).json()
            return any((c.get("customer") or {}).get("source") == "centre" for c in state["calls"])

        wait_for(popped, 60, "a known customer popped through the centre")
        assert query(root / "seat-01" / "cti-agent.db", "SELECT count(*) FROM customers") == [(0,)]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            form = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
            assert form
            answer = client.post(
                "/login", data={"login": "manager", "password": login.group(1), "csrf": form.group(1)}
            )
            assert answer.status_code == 303
            page = client.get("/calls").text
        assert "rep01" in page  # each seat's rep, on the one console
        assert "rep02" in page
        assert (root / "seat-01" / "seat.token").stat().st_mode & 0o077 == 0
        assert (root / "centre" / "manager-password").stat().st_mode & 0o077 == 0
    finally:
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=90) == 0
    # Every process of the floor stopped with it, and the seats' last batches arrived.
    local = sorted(row for n in (1, 2) for row in query(root / f"seat-0{n}" / "cti-agent.db", FINAL))
    at_centre = query(root / "centre" / "cti-agent.db", FINAL)
    uuids = {row[0] for row in local}
    assert [row for row in at_centre if row[0] in uuids] == local
    # Besides the seats' calls, the centre holds the demo's three earlier calls with follow-ups.
    assert len([row for row in at_centre if row[0] not in uuids and row[4]]) == 3
