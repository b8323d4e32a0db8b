"""The ``cti-agent`` command as a user runs it: real processes, real ports, exit codes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

CLI = [sys.executable, "-m", "agent.cli"]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def start_demo(data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *CLI,
            "demo",
            "--data-dir",
            str(data_dir),
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_ports(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, int]:
    """Read the demo's stderr until it prints where the seat page and metrics listen."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seat = metrics = None
    seen: list[str] = []
    while time.monotonic() < deadline and (seat is None or metrics is None):
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if m := re.search(r"seat page:\s+http://[^:]+:(\d+)/", line):
            seat = int(m.group(1))
        if m := re.search(r"metrics:\s+http://[^:]+:(\d+)/metrics", line):
            metrics = int(m.group(1))
    assert seat, "".join(seen)
    assert metrics, "".join(seen)
    return seat, metrics


def calls(data_dir: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(data_dir / "cti-agent.db")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM calls ORDER BY started_at").fetchall()
    finally:
        conn.close()


def test_version_and_help() -> None:
    out = run_cli("--version")
    assert out.returncode == 0
    assert "cti-agent" in out.stdout
    for command in ("run", "demo", "plugins", "db"):
        helped = run_cli(command, "--help")
        assert helped.returncode == 0, helped.stderr
        assert "Usage:" in helped.stdout


def test_demo_runs_for_a_duration_and_stores_calls(tmp_path: Path) -> None:
    out = run_cli(
        "demo",
        "--data-dir",
        str(tmp_path),
        "--duration",
        "3",
        "--speed",
        "60",
        "--rate",
        "30",
        "--lines",
        "2",
        "--seed",
        "5",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    )
    assert out.returncode == 0, out.stderr
    rows = calls(tmp_path)
    assert rows, out.stderr
    assert {row["rep"] for row in rows} <= {"rep01", "rep02"}
    assert all(row["ended_at"] for row in rows)
    assert {"started_at", "answered_at", "ended_at", "ring_seconds", "talk_seconds", "disposition"} <= set(
        rows[0].keys()
    )


def test_sigterm_finishes_calls_in_progress(tmp_path: Path) -> None:
    # Real time (speed 1), one call a second per line: calls are surely in progress at the signal.
    proc = start_demo(tmp_path, "--rate", "60", "--lines", "4", "--seed", "11")
    try:
        seat, metrics = wait_for_ports(proc)
        assert httpx.get(f"http://127.0.0.1:{seat}/healthz", timeout=5).status_code == 200
        assert "cti_" in httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=5).text
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    rows = calls(tmp_path)
    assert rows
    assert all(row["ended_at"] for row in rows)
    assert any(row["end_reason"] == "shutdown" for row in rows)


def test_config_error_names_file_line_and_key(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        '[agent]\nseat = "s1"\n\n[[devices]]\nid = "sim"\ntype = "simulator"\nlines = 2\nspeeed = 3\n',
        encoding="utf-8",
    )
    out = run_cli("run", "--config", str(config))
    assert out.returncode == 2
    assert f"{config}:8:" in out.stderr
    assert "speeed" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    out = run_cli("run", "--config", str(tmp_path / "nope.toml"))
    assert out.returncode == 2
    assert "nope.toml" in out.stderr
    assert "Traceback" not in out.stderr


def test_port_in_use_is_a_runtime_failure(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        out = run_cli(
            "demo",
            "--data-dir",
            str(tmp_path),
            "--listen",
            f"127.0.0.1:{port}",
            "--metrics-listen",
            "127.0.0.1:0",
            "--duration",
            "5",
        )
    assert out.returncode == 1
    assert "cannot listen" in out.stderr
    assert "Traceback" not in out.stderr


def test_plugins_lists_the_builtins() -> None:
    out = run_cli("plugins", env={"CTI_AGENT_LOAD_PLUGINS": ""})
    assert out.returncode == 0, out.stderr
    assert "simulator" in out.stdout
    assert "built-in" in out.stdout
    records = [json.loads(line) for line in run_cli("plugins", "--json").stdout.splitlines()]
    simulator = next(r for r in records if r["name"] == "simulator")
    assert simulator["device_types"] == ["simulator"]
    assert "register_devices" in simulator["hooks"]


def test_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    first = run_cli("db", "upgrade", "--url", url)
    assert first.returncode == 0, first.stderr
    assert "upgraded" in first.stdout
    second = run_cli("db", "upgrade", "--url", url)
    assert second.returncode == 0
    assert "already at" in second.stdout


def test_unreachable_database_is_a_clear_failure_without_the_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    out = run_cli("db", "upgrade", "--url", f"postgresql+psycopg://cti:s3cret@127.0.0.1:{port}/cti")
    assert out.returncode == 1
    assert "s3cret" not in out.stderr + out.stdout
    assert "Traceback" not in out.stderr
    assert str(port) in out.stderr


def test_the_demo_pops_a_known_customer_within_the_first_minute(tmp_path: Path) -> None:
    """The demo's customers call and are called: within a minute at --speed 10 a call pops one."""
    proc = start_demo(tmp_path, "--speed", "10", "--rate", "2", "--seed", "1")
    try:
        seat, _ = wait_for_ports(proc)
        started = time.monotonic()
        known = None
        while known is None and time.monotonic() - started < 60:
            time.sleep(0.3)
            state = httpx.get(f"http://127.0.0.1:{seat}/api/state", timeout=5).json()
            known = next((c for c in state["calls"] if (c.get("customer") or {}).get("name")), None)
        assert known is not None, "no known customer popped within a minute"
        names = {
            row[0] for row in sqlite3.connect(tmp_path / "cti-agent.db").execute("SELECT name FROM customers")
        }
        assert known["customer"]["name"] in names
        assert len(names) == 15
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
