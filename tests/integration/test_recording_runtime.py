"""The runtime records simulated calls to real files and tells plugins through recording_finished."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import soundfile as sf

from agent import hookimpl
from agent.config import load_config
from agent.events import Call, RecordingFacts
from agent.plugins import make_plugin_manager
from agent.seat.devices import DeviceRegistry
from agent.seat.runner import Agent


async def test_answered_calls_are_recorded_and_announced(tmp_path: Path) -> None:
    finished: list[tuple[Call, RecordingFacts]] = []

    class Archiver:
        @hookimpl
        def recording_finished(self, call: Call, recording: RecordingFacts) -> None:
            finished.append((call, recording))

    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(Archiver(), name="archiver")
    speed = 40.0
    overrides: dict[str, Any] = {
        "agent": {"seat": "s1", "rep": "rep01", "team": "t", "data_dir": str(tmp_path)},
        "web": {"enabled": False},
        "metrics": {"enabled": False},
        "recording": {"enabled": True},
        "tracker": {"ring_timeout": 8.0 / speed, "dial_timeout": 4.0 / speed},
        "devices": [
            {
                "id": "sim",
                "type": "simulator",
                "lines": 2,
                "rate": 30,
                "seed": 4,
                "speed": speed,
                "answer_rate": 1.0,
            }
        ],
    }
    config = load_config(None, DeviceRegistry.from_plugins(pm), overrides=overrides)
    agent = Agent(config, pm)
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    async with asyncio.timeout(30):
        while len(finished) < 2:
            await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(run, 30)

    conn = sqlite3.connect(tmp_path / "cti-agent.db")
    rows = {
        r[0]: r
        for r in conn.execute("SELECT call_uuid, path_or_uri, sha256, status, seconds FROM recordings")
    }
    answered = {r[0] for r in conn.execute("SELECT uuid FROM calls WHERE disposition = 'answered'")}
    conn.close()
    for call, facts in finished:
        path = tmp_path / facts.path
        assert facts.call_uuid == call.uuid
        assert call.uuid in answered
        assert rows[call.uuid][1] == facts.path
        assert facts.status in {"complete", "recovered", "partial"}
        assert path.stat().st_mode & 0o777 == 0o600
        assert hashlib.sha256(path.read_bytes()).hexdigest() == rows[call.uuid][2] == facts.sha256
        info = sf.info(str(path))
        assert info.samplerate == 8000
        assert abs(info.duration - facts.seconds) < 0.05
        assert info.duration > 0.5
    # The retention-age gauge says when the oldest kept recording was made.
    oldest = agent.registry.get_sample_value("cti_recording_oldest_timestamp_seconds")
    conn = sqlite3.connect(tmp_path / "cti-agent.db")
    (first,) = conn.execute("SELECT min(created_at) FROM recordings").fetchone()
    conn.close()
    assert oldest == datetime.fromisoformat(first).replace(tzinfo=UTC).timestamp()
