"""The real ``cti-agent centre`` process over real HTTP and HTTPS on loopback: seats, credentials, health."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx
import pytest
from factories import ended, make_call

from agent.seatapi import CallEntry

UUID = "2b1f0c7e-aaaa-4bbb-8ccc-{:012d}"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def _drain(stream: IO[str]) -> None:
    for _ in stream:
        pass


def start_centre(data_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """``cti-agent centre`` on ``data_dir`` (unless ``extra`` names a ``--config``); its address."""
    where = [] if "--config" in extra else ["--data-dir", str(data_dir)]
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "centre", *where, "--listen", "127.0.0.1:0", *extra],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if match := re.search(r"centre: (https?://\S+)/", line):
            # Keep reading its log: a busy centre (twenty seats) fills the pipe's 64 KiB and then
            # blocks on its next log line, which looks like a hang on SIGTERM.
            threading.Thread(target=_drain, args=(process.stderr,), daemon=True).start()
            return process, match.group(1)
    process.kill()
    raise AssertionError("the centre did not start:\n" + "".join(seen))


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    process, address = start_centre(tmp_path)
    try:
        yield address, tmp_path
    finally:
        assert stop(process) == 0


def test_a_seat_with_its_token_writes_its_calls_over_http(centre: tuple[str, Path]) -> None:
    address, data_dir = centre
    added = cli("seats", "add", "seat-7", "--team", "north", "--data-dir", str(data_dir))
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("cti_seat_")
    now = datetime.now(UTC) - timedelta(seconds=1)
    entries = [
        CallEntry.of(ended(make_call(UUID.format(n), seat="seat-7", started_at=now)), None, None)
        for n in (1, 2)
    ]
    with httpx.Client(base_url=address, headers={"authorization": f"Bearer {token}"}) as client:
        answer = client.post("/api/v1/calls", json={"seat": "seat-7", "backlog": 0, "calls": entries})
        assert answer.status_code == 200
        assert [r["status"] for r in answer.json()["results"]] == ["accepted", "accepted"]
        again = client.post("/api/v1/calls", json={"seat": "seat-7", "calls": entries})
        assert [r["status"] for r in again.json()["results"]] == ["duplicate", "duplicate"]
        metrics = client.get("/metrics").text
    assert (
        'cti_team_calls_today{direction="in",disposition="answered",rep="alice",team="north"} 2.0' in metrics
    )
    assert "cti_seat_reported_backlog" in metrics
    listed = cli("seats", "list", "--data-dir", str(data_dir), "--json")
    assert '"name": "seat-7"' in listed.stdout
    assert '"backlog": 0' in listed.stdout


def test_wrong_revoked_or_missing_tokens_write_nothing(centre: tuple[str, Path]) -> None:
    address, data_dir = centre
    token = cli("seats", "add", "seat-7", "--data-dir", str(data_dir)).stdout.strip()
    body = {"seat": "seat-7", "calls": [CallEntry.of(make_call(UUID.format(1), seat="seat-7"), None, None)]}
    with httpx.Client(base_url=address) as client:
        assert client.post("/api/v1/calls", json=body).status_code == 401
        assert (
            client.post(
                "/api/v1/calls", json=body, headers={"authorization": "Bearer cti_seat_x"}
            ).status_code
            == 401
        )
        assert cli("seats", "revoke", "seat-7", "--data-dir", str(data_dir)).returncode == 0
        assert (
            client.post("/api/v1/calls", json=body, headers={"authorization": f"Bearer {token}"}).status_code
            == 401
        )
        metrics = client.get("/metrics").text
    assert 'cti_centre_auth_failures_total{reason="missing"} 1.0' in metrics
    assert 'cti_centre_auth_failures_total{reason="unknown"} 2.0' in metrics


def test_health_and_the_host_guard(centre: tuple[str, Path]) -> None:
    address, _ = centre
    with httpx.Client(base_url=address) as client:
        assert client.get("/healthz").text == "ok"
        assert client.get("/healthz", headers={"accept": "application/json"}).json()["database"] == "ok"
        assert client.get("/login", headers={"host": "rebind.attacker.example"}).status_code == 421
        assert client.get("/login").status_code == 200


def test_the_centre_serves_https_with_its_own_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "centre.pem", tmp_path / "centre.key"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    config = tmp_path / "centre.toml"
    config.write_text(
        f'[agent]\ndata_dir = "{tmp_path / "data"}"\n[centre]\ntls_cert = "{cert}"\ntls_key = "{key}"\n',
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "centre", "--config", str(config), "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stderr is not None
        address = None
        deadline = time.monotonic() + 60
        while address is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            assert line or process.poll() is None, "the centre exited"
            if match := re.search(r"centre: (https://\S+)/", line):
                address = match.group(1)
        assert address is not None
        with httpx.Client(base_url=address, verify=str(cert)) as client:
            assert client.get("/healthz").text == "ok"
            login = client.get("/login")
            assert login.status_code == 200
            # Served over TLS by the centre itself, so its session cookie is Secure by default.
            assert "secure" in login.headers.get("set-cookie", "secure").lower()
        with pytest.raises(httpx.ConnectError), httpx.Client(base_url=address) as untrusting:
            untrusting.get("/healthz")
        plain = address.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError), httpx.Client(base_url=plain) as client:
            client.get("/healthz")
    finally:
        assert stop(process) == 0


def test_a_half_tls_config_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "centre.toml"
    config.write_text('[centre]\ntls_cert = "/nonexistent.pem"\n', encoding="utf-8")
    done = cli("centre", "--config", str(config))
    assert done.returncode == 2
    assert "tls_cert and tls_key go together" in done.stderr
