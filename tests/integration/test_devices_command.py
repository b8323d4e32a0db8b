"""``cti-agent devices``: probing a port that a modem answers on, and asking a running agent for its lines."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from modem_emulator import ModemEmulator

from plugins.hayes.device import HayesModem

pytestmark = pytest.mark.pty


async def test_probe_finds_a_modem_and_leaves_the_port_closed(tmp_path: Path) -> None:
    emulator = ModemEmulator("usr", link=tmp_path / "modem").start()
    try:
        answer = await HayesModem.probe(emulator.path)
        assert answer is not None
        assert answer.startswith("Hayes modem (answers AT)")
        assert "AT" in emulator.received
        assert not any(cmd.startswith("ATD") for cmd in emulator.received)  # never seizes the line
    finally:
        emulator.vanish()


async def test_probe_of_a_silent_port_says_nothing(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        started = time.monotonic()
        assert await HayesModem.probe(os.ttyname(slave)) is None
        assert time.monotonic() - started < 10
        assert await HayesModem.probe(str(tmp_path / "no-such-port")) is None
    finally:
        os.close(master)
        os.close(slave)


def test_devices_lists_ports_and_the_running_agents_lines(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\nseat = "s1"\ndata_dir = "{tmp_path}"\n[web]\nlisten = "127.0.0.1:0"\n'
        '[metrics]\nenabled = false\n[[devices]]\nid = "sim"\ntype = "simulator"\nlines = 2\n',
        encoding="utf-8",
    )
    cli = [sys.executable, "-m", "agent.cli"]
    # Nothing running yet: a clear word, not a traceback.
    down = subprocess.run(
        [*cli, "devices", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert down.returncode == 0, down.stderr
    assert "not answering" in down.stdout
    agent = subprocess.Popen([*cli, "run", "--config", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        assert agent.stderr is not None
        port = None
        while port is None:
            line = agent.stderr.readline()
            assert line, "the agent exited"
            if m := re.search(r"seat page:\s+http://[^:]+:(\d+)/", line):
                port = m.group(1)
        config.write_text(config.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"), encoding="utf-8")
        out = subprocess.run(
            [*cli, "devices", "--config", str(config), "--json"], capture_output=True, text=True, timeout=60
        )
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    lines = [r for r in records if r["kind"] == "line"]
    assert sorted(line["line"] for line in lines) == ["sim", "sim:2"]
    assert all(line["state"] in {"idle", "ringing", "dialing", "talking"} for line in lines)


def test_calibrate_a_line_tap_line_from_a_recording(tmp_path: Path) -> None:
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "linetap" / "line_session_cn.flac"
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndata_dir = "{tmp_path}"\n[[devices]]\nid = "tap"\ntype = "linetap"\n'
        f'file = "{fixture}"\nspeed = 0\n[[lines]]\nid = "desk"\ndevice = "tap"\n',
        encoding="utf-8",
    )
    cli = [sys.executable, "-m", "agent.cli", "devices", "--config", str(config)]
    out = subprocess.run(
        [*cli, "--calibrate", "desk", "--seconds", "5", "--json"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    (record,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert record["device"] == "tap"
    assert record["port"] == "1"
    assert {"floor_dbfs", "off_hook_dbfs", "on_hook_dbfs"} <= set(record)
    assert record["on_hook_dbfs"] < record["off_hook_dbfs"]
    not_tap = subprocess.run(
        [sys.executable, "-m", "agent.cli", "devices", "--calibrate", "desk"], capture_output=True, text=True
    )
    assert not_tap.returncode == 2
    assert "needs --config" in not_tap.stderr
