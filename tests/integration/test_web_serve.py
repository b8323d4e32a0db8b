"""The seat page's event stream and /metrics served by a real uvicorn on 127.0.0.1, read with httpx."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from agent.events import (
    Call,
    CallEvent,
    CallEventKind,
    Direction,
    Disposition,
    LineState,
    LineStatus,
    Message,
)
from agent.seat.metrics import Metrics, make_metrics_app
from agent.seat.web.app import make_seat_app
from agent.seat.web.bus import SeatBus
from agent.seat.web.context import SeatContext
from agent.web import CONTENT_SECURITY_POLICY
from agent.web.serve import AgentServer, ListenError, make_server

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def call_event(uuid: str, kind: CallEventKind = CallEventKind.STARTED, **changes: Any) -> CallEvent:
    call = Call(
        uuid=uuid,
        seat="seat-7",
        device_id="modem0",
        line="L1",
        rep="alice",
        team="north",
        direction=Direction.IN,
        started_at=T0,
        number_raw="13812345678",
        cid_name="<script>alert(1)</script>",
        **changes,
    )
    return CallEvent(kind, call, T0)


def line_status(state: LineState) -> LineStatus:
    return LineStatus("seat-7", "L1", "modem0", "alice", "north", state, T0)


@asynccontextmanager
async def serving(app: ASGIApp, *, graceful_timeout: int = 3) -> AsyncIterator[tuple[AgentServer, str]]:
    server = make_server(app, "127.0.0.1", 0, graceful_timeout=graceful_timeout)
    task = asyncio.create_task(server.serve())
    try:
        await server.wait_started(timeout=10)
        yield server, f"http://127.0.0.1:{server.port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


class SSEReader:
    """Parses a text/event-stream body per the WHATWG HTML spec (the fields we use)."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()
        self.comments: list[str] = []
        self.retry: int | None = None

    async def next_event(self, timeout: float = 5.0) -> tuple[str, str, str]:
        """The next dispatched event as (id, event, data)."""
        event_id, event = "", "message"
        data: list[str] = []
        async with asyncio.timeout(timeout):
            async for raw in self._lines:
                if raw == "":
                    if data:
                        return event_id, event, "\n".join(data)
                    event_id, event, data = "", "message", []
                    continue
                if raw.startswith(":"):
                    self.comments.append(raw[1:].strip())
                    continue
                name, _, value = raw.partition(":")
                value = value.removeprefix(" ")
                if name == "id":
                    event_id = value
                elif name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
                elif name == "retry":
                    self.retry = int(value)
        raise EOFError("stream ended")

    async def next_comment(self, timeout: float = 5.0) -> str:
        async with asyncio.timeout(timeout):
            async for raw in self._lines:
                if raw.startswith(":"):
                    return raw[1:].strip()
        raise EOFError("stream ended")


async def until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_event_stream_delivers_frames_and_replays_after_reconnect() -> None:
    bus = SeatBus()
    bus.publish(line_status(LineState.IDLE))  # id 1, before anyone listens
    async with (
        serving(make_seat_app(SeatContext(bus=bus, seat="seat-7"))) as (_, base),
        httpx.AsyncClient(base_url=base) as http,
    ):
        async with http.stream("GET", "/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert response.headers["x-content-type-options"] == "nosniff"
            reader = SSEReader(response)
            await until(lambda: bus.clients == 1)
            sent: list[Message] = [
                call_event("c1"),
                line_status(LineState.RINGING),
                call_event("c1", CallEventKind.ENDED, disposition=Disposition.MISSED, ring_seconds=12.0),
            ]
            for message in sent:
                bus.publish(message)
            received = [await reader.next_event() for _ in sent]
            assert reader.retry is not None
            assert reader.retry > 0
        assert [(i, e) for i, e, _ in received] == [("2", "call"), ("3", "line"), ("4", "call")]
        # A call's payload is its event's, its number also as the page writes it (none sent: None).
        expected = [
            m.to_dict() | {"call": m.to_dict()["call"] | {"number_display": None}}
            if isinstance(m, CallEvent)
            else m.to_dict()
            for m in sent
        ]
        assert [json.loads(d) for _, _, d in received] == expected
        assert all("<script>" not in d for _, _, d in received)

        await until(lambda: bus.clients == 0)  # the server let go of the closed stream
        bus.publish(line_status(LineState.IDLE))  # id 5, missed while disconnected

        # What EventSource does on reconnect: send the last id it saw.
        async with http.stream("GET", "/events", headers={"Last-Event-ID": "3"}) as response:
            reader = SSEReader(response)
            assert [(await reader.next_event())[0] for _ in range(2)] == ["4", "5"]
            bus.publish(call_event("c2"))
            event_id, event, data = await reader.next_event()
            assert (event_id, event, json.loads(data)["call"]["uuid"]) == ("6", "call", "c2")

        # The first connection of a freshly loaded page passes its snapshot id in the query.
        async with http.stream("GET", "/events?last_event_id=5") as response:
            assert (await SSEReader(response).next_event())[0] == "6"


async def test_event_stream_sends_heartbeats_and_reset() -> None:
    bus = SeatBus(replay_size=2)
    for n in range(5):
        bus.publish(call_event(f"c{n}"))
    app = make_seat_app(SeatContext(bus=bus, seat="seat-7", heartbeat=0.2))
    async with serving(app) as (_, base), httpx.AsyncClient(base_url=base) as http:
        async with http.stream("GET", "/events", headers={"Last-Event-ID": "1"}) as response:
            reader = SSEReader(response)
            assert await reader.next_event() == ("5", "reset", '{"last_id":5}')
            assert await reader.next_comment(timeout=3) == "heartbeat"
        state = (await http.get("/api/state")).json()
        assert state["last_id"] == 5


async def test_closing_the_bus_lets_the_server_stop_at_once() -> None:
    bus = SeatBus()
    async with serving(make_seat_app(SeatContext(bus=bus, seat="seat-7")), graceful_timeout=10) as (
        server,
        base,
    ):
        async with httpx.AsyncClient(base_url=base) as http, http.stream("GET", "/events") as response:
            await until(lambda: bus.clients == 1)
            bus.close()
            with pytest.raises(EOFError):
                await SSEReader(response).next_event()
        began = time.monotonic()
        server.should_exit = True
    assert time.monotonic() - began < 5


async def test_open_stream_holds_shutdown_only_for_the_graceful_timeout() -> None:
    bus = SeatBus()
    async with httpx.AsyncClient() as http:
        async with serving(make_seat_app(SeatContext(bus=bus, seat="seat-7")), graceful_timeout=1) as (
            _,
            base,
        ):
            response = await http.send(http.build_request("GET", f"{base}/events"), stream=True)
            await until(lambda: bus.clients == 1)
            began = time.monotonic()
        assert time.monotonic() - began < 5
        await response.aclose()
    assert bus.clients == 0


async def test_metrics_served_by_uvicorn() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, seat="seat-7")
    await metrics.notify(
        call_event(
            "c1",
            CallEventKind.ENDED,
            disposition=Disposition.ANSWERED,
            answered_at=T0,
            ended_at=T0,
            talk_seconds=90.0,
            ring_seconds=4.0,
        )
    )
    await metrics.notify(line_status(LineState.TALKING))
    async with serving(make_metrics_app(registry)) as (_, base), httpx.AsyncClient(base_url=base) as http:
        response = await http.get("/metrics")
        assert response.status_code == 200
        text = response.text
        assert 'cti_calls_total{direction="in",disposition="answered",rep="alice",team="north"} 1.0' in text
        assert 'cti_effective_calls_total{direction="in",rep="alice",team="north"} 1.0' in text
        assert 'cti_line_state{line="L1",rep="alice",seat="seat-7",state="talking",team="north"} 1.0' in text
        assert "13812345678" not in text
        assert (await http.get("/")).status_code == 404


async def test_server_leaves_signal_handlers_alone() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    async with serving(make_seat_app(SeatContext(bus=SeatBus(), seat="s"))) as (_, base):
        assert {sig: signal.getsignal(sig) for sig in before} == before
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{base}/healthz")).json()["status"] == "ok"
    assert {sig: signal.getsignal(sig) for sig in before} == before


async def test_port_in_use_raises_listen_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = make_server(make_seat_app(SeatContext(bus=SeatBus(), seat="s")), "127.0.0.1", port)
        with pytest.raises(ListenError, match=f"127.0.0.1:{port}"):
            await asyncio.wait_for(server.serve(), 5)
        assert not server.started

        # The runner's way: serve in a task, wait for the start; the failure surfaces at once.
        server = make_server(make_seat_app(SeatContext(bus=SeatBus(), seat="s")), "127.0.0.1", port)
        task = asyncio.create_task(server.serve())
        began = time.monotonic()
        with pytest.raises(ListenError, match="in use"):
            await server.wait_started(timeout=10)
        assert time.monotonic() - began < 2
        with pytest.raises(ListenError):
            await task
