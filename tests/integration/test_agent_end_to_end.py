"""The agent on simulated lines for a few seconds: database rows, /metrics and the SSE stream agree."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from agent.config import load_config
from agent.plugins import make_plugin_manager
from agent.seat.runner import Agent

pytestmark = pytest.mark.slow


def demo_config(tmp_path: Path, *, speed: float = 60.0, rate: float = 40.0, lines: int = 3) -> Any:
    overrides: dict[str, Any] = {
        "agent": {"seat": "seat-e2e", "team": "team-a", "data_dir": str(tmp_path)},
        "web": {"listen": "127.0.0.1:0"},
        "metrics": {"listen": "127.0.0.1:0"},
        "tracker": {"ring_timeout": 8.0 / speed, "dial_timeout": 4.0 / speed},
        "devices": [
            {"id": "sim", "type": "simulator", "lines": lines, "rate": rate, "seed": 7, "speed": speed}
        ],
        "lines": [
            {"id": f"line{n}", "device": "sim", "port": str(n), "rep": f"rep{n:02d}"}
            for n in range(1, lines + 1)
        ],
    }
    pm = make_plugin_manager(load_entrypoints=False)
    from agent.seat.devices import DeviceRegistry

    return load_config(None, DeviceRegistry.from_plugins(pm), overrides=overrides), pm


async def read_sse(port: int, sink: list[tuple[str, dict[str, Any]]], connected: asyncio.Event) -> None:
    """Collect (event, data) pairs from the seat page's stream until the server goes away."""
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0)) as client,
        # Last-Event-ID 0: replay from the first message, so calls that began before
        # the client connected are seen too (as a reconnecting browser would).
        client.stream("GET", f"http://127.0.0.1:{port}/events", headers={"Last-Event-ID": "0"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        connected.set()
        event = "message"
        data: list[str] = []
        try:
            async for line in response.aiter_lines():
                if line == "":
                    if data:
                        sink.append((event, json.loads("\n".join(data))))
                    event, data = "message", []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
        except (httpx.RemoteProtocolError, httpx.ReadError):
            pass  # the server shut down under us: what was sent before is complete


async def test_database_metrics_and_stream_agree(tmp_path: Path) -> None:
    config, pm = demo_config(tmp_path)
    agent = Agent(config, pm)
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    await asyncio.wait_for(agent.started.wait(), 20)
    assert agent.web_port
    assert agent.metrics_port

    messages: list[tuple[str, dict[str, Any]]] = []
    connected = asyncio.Event()
    reader = asyncio.create_task(read_sse(agent.web_port, messages, connected))
    await asyncio.wait_for(connected.wait(), 10)

    await asyncio.sleep(4.0)
    async with httpx.AsyncClient() as client:
        live = await client.get(f"http://127.0.0.1:{agent.metrics_port}/metrics")
    assert live.status_code == 200
    stop.set()
    await asyncio.wait_for(run, 30)
    await asyncio.wait_for(reader, 10)

    # -- the database ----------------------------------------------------------------
    engine = create_engine(f"sqlite:///{tmp_path / 'cti-agent.db'}")
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT uuid, rep, team, direction, disposition, talk_seconds, ended_at, number_raw "
                "FROM calls"
            )
        ).all()
    engine.dispose()
    assert len(rows) >= 5, "the simulator should have produced several calls in 4 s at 60x"
    assert all(r.ended_at is not None for r in rows), "shutdown must end every call in progress"
    db_calls = {r.uuid: r for r in rows}

    # -- the stream: every call ended exactly once, same as the database ------------------
    ended = [data["call"] for event, data in messages if event == "call" and data["kind"] == "ended"]
    assert Counter(c["uuid"] for c in ended).most_common(1)[0][1] == 1
    assert {c["uuid"] for c in ended} == set(db_calls)
    for call in ended:
        row = db_calls[call["uuid"]]
        assert call["disposition"] == row.disposition
        assert call["talk_seconds"] == pytest.approx(row.talk_seconds, abs=0.001)
        assert call["rep"] == row.rep
    started = {
        data["call"]["uuid"] for event, data in messages if event == "call" and data["kind"] == "started"
    }
    assert started == set(db_calls)
    assert any(event == "line" for event, _ in messages)

    # -- the metrics, after shutdown: same counts per rep, direction, disposition ------
    from prometheus_client import generate_latest

    final = generate_latest(agent.registry).decode()
    by_labels: Counter[tuple[str, str, str]] = Counter()
    talk: Counter[str] = Counter()
    for family in text_string_to_metric_families(final):
        for sample in family.samples:
            if sample.name == "cti_calls_total":
                key = (sample.labels["rep"], sample.labels["direction"], sample.labels["disposition"])
                by_labels[key] += int(sample.value)
            if sample.name == "cti_talk_seconds_total":
                talk[sample.labels["rep"]] += sample.value
    db_counts = Counter((r.rep, r.direction, r.disposition) for r in rows)
    assert +by_labels == db_counts
    for rep in {r.rep for r in rows}:
        assert talk[rep] == pytest.approx(sum(r.talk_seconds for r in rows if r.rep == rep), abs=0.01)

    # -- no phone number ever appears in a label --------------------------------------
    numbers = {r.number_raw for r in rows if r.number_raw}
    for text_ in (live.text, final):
        for label_value in re.findall(r'="([^"]*)"', text_):
            assert label_value not in numbers
            assert not re.fullmatch(r"\+?\d{7,}", label_value)
