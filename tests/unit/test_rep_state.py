"""Rep state: available, on a call, wrap-up with a time limit, paused with a reason; counted and stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from seat_client import page_token
from sqlalchemy.orm import Session

from agent.config import load_config
from agent.events import Call, CallEvent, CallEventKind, Direction, Disposition, Message, RepStateChange
from agent.plugins import make_plugin_manager
from agent.repstate import RepState, RepStateSink, count_change
from agent.seat.devices import DeviceRegistry
from agent.seat.runner import Agent
from agent.seat.web.app import make_seat_app
from agent.seat.web.bus import SeatBus
from storage.repository import rep_state_totals

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_calls_move_the_state_and_wrap_up_ends_by_itself() -> None:
    rep = RepState("alice", T0, wrap_up_seconds=30)
    change = rep.call_answered("c1", s(10))
    assert (change.previous, change.state, change.previous_seconds, change.automatic) == (
        "available",
        "on_call",
        10.0,
        True,
    )
    assert rep.call_answered("c2", s(20)) is None  # a second line: still on a call
    assert rep.call_ended("c1", s(50)) is None
    assert rep.call_ended("c2", s(70)).state == "wrap_up"
    assert rep.deadline() == s(100)
    assert rep.tick(s(99)) is None
    back = rep.tick(s(130))
    assert (back.state, back.since, back.previous_seconds) == ("available", s(100), 30.0)
    assert rep.call_ended("unknown", s(140)) is None


def test_pause_needs_a_listed_reason_and_resumes_after_a_call() -> None:
    rep = RepState("alice", T0, wrap_up_seconds=0, pause_reasons=["meeting", "break"])
    with pytest.raises(ValueError, match="needs a reason"):
        rep.choose("paused", None, s(1))
    with pytest.raises(ValueError, match="needs a reason"):
        rep.choose("paused", "nap", s(1))
    with pytest.raises(ValueError, match="state must be one of"):
        rep.choose("on_call", None, s(1))
    paused = rep.choose("paused", "break", s(5))
    assert (paused.state, paused.reason, paused.automatic) == ("paused", "break", False)
    rep.call_answered("c1", s(10))
    with pytest.raises(ValueError, match="on a call"):
        rep.choose("available", None, s(11))
    # No wrap-up configured: straight back to the pause the call interrupted.
    back = rep.call_ended("c1", s(40))
    assert (back.state, back.reason) == ("paused", "break")
    assert rep.choose("available", "ignored", s(60)).reason is None
    assert rep.choose("available", None, s(61)) is None  # no change


class Sink:
    def __init__(self) -> None:
        self.states: list[tuple[str, str, str | None]] = []
        self.seconds: list[tuple[str, str, float]] = []

    def rep_state(self, rep: str, state: str, reason: str | None) -> None:
        self.states.append((rep, state, reason))

    def rep_state_seconds(self, rep: str, state: str, seconds: float) -> None:
        self.seconds.append((rep, state, seconds))


def call_event(kind: CallEventKind, at: datetime, rep: str = "alice") -> CallEvent:
    call = Call(
        uuid="c1",
        seat="s",
        device_id="d",
        line="L1",
        rep=rep,
        team="",
        direction=Direction.IN,
        started_at=T0,
    )
    if kind is CallEventKind.ENDED:
        call = replace(call, ended_at=at, disposition=Disposition.ANSWERED)
    return CallEvent(kind, call, at)


async def test_bus_follows_the_reps_calls_streams_and_counts() -> None:
    sink = Sink()
    assert isinstance(sink, RepStateSink)
    rep = RepState("alice", T0, wrap_up_seconds=30)
    # What the runtime does: count the state at start, then fan out each call
    # event followed by the rep-state change it caused.
    sink.rep_state(rep.rep, rep.state, rep.reason)
    bus = SeatBus(rep_state=rep.snapshot())

    def fan_out(message: Message | None) -> None:
        if message is None:
            return
        bus.publish(message)
        if isinstance(message, RepStateChange):
            count_change(sink, message)
        if isinstance(message, CallEvent):
            fan_out(rep.feed(message, message.at))

    with bus.subscribe() as sub:
        fan_out(call_event(CallEventKind.ANSWERED, s(10), rep="bob"))  # another rep's line
        fan_out(call_event(CallEventKind.ANSWERED, s(20)))
        fan_out(call_event(CallEventKind.ENDED, s(80)))
        fan_out(rep.tick(s(110)))
        items = [await sub.get(timeout=1) for _ in range(6)]
    reps = [item[2] for item in items if item is not None and item[1] == "rep"]
    assert [(r["previous"], r["state"]) for r in reps] == [
        ("available", "on_call"),
        ("on_call", "wrap_up"),
        ("wrap_up", "available"),
    ]
    assert sink.states == [
        ("alice", "available", None),
        ("alice", "on_call", None),
        ("alice", "wrap_up", None),
        ("alice", "available", None),
    ]
    assert sink.seconds == [
        ("alice", "available", 20.0),
        ("alice", "on_call", 60.0),
        ("alice", "wrap_up", 30.0),
    ]
    assert bus.snapshot()["rep_state"]["state"] == "available"


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[tuple[Agent, list[datetime]]]:
    """A running agent for rep alice (no devices, no listeners) on a clock the test moves."""
    clock = [s(0)]
    pm = make_plugin_manager(load_entrypoints=False)
    config = load_config(
        None,
        DeviceRegistry.from_plugins(pm),
        overrides={
            "agent": {"seat": "s", "rep": "alice", "data_dir": str(tmp_path)},
            "web": {"enabled": False},
            "metrics": {"enabled": False},
            "rep_state": {"wrap_up_seconds": 30, "pause_reasons": ["meeting", "break"]},
        },
    )
    running = Agent(config, pm, registry=CollectorRegistry(), clock=lambda: clock[0])
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    await asyncio.wait_for(running.started.wait(), 10)
    try:
        yield running, clock
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def test_page_sets_the_state_and_it_is_stored_for_reports(agent: tuple[Agent, list[datetime]]) -> None:
    running, clock = agent
    transport = httpx.ASGITransport(app=make_seat_app(running.seat_context()))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8330") as client:
        headers = {"X-CSRF-Token": page_token((await client.get("/")).text)}
        forbidden = await client.post("/api/rep-state", json={"state": "paused", "reason": "break"})
        assert forbidden.status_code == 403
        clock[0] = s(600)
        response = await client.post(
            "/api/rep-state", json={"state": "paused", "reason": "break"}, headers=headers
        )
        assert response.status_code == 200
        assert response.json()["state"] == "paused"
        bad = await client.post("/api/rep-state", json={"state": "paused", "reason": "nap"}, headers=headers)
        assert bad.status_code == 409
        assert "meeting, break" in bad.json()["error"]
        clock[0] = s(900)
        await client.post("/api/rep-state", json={"state": "paused", "reason": "meeting"}, headers=headers)
        clock[0] = s(1500)
        await client.post("/api/rep-state", json={"state": "available"}, headers=headers)
        assert (await client.get("/api/state")).json()["rep_state"]["state"] == "available"
    assert running.engine is not None
    with Session(running.engine) as session:
        totals = rep_state_totals(session, "alice", since=T0, until=s(1800))
        later = rep_state_totals(session, "alice", since=s(700), until=s(1800))
    assert totals == {"available": 900.0, "paused:break": 300.0, "paused:meeting": 600.0}
    assert later == {"paused:break": 200.0, "paused:meeting": 600.0, "available": 300.0}


def test_feed_follows_only_the_reps_answers_and_ends() -> None:
    rep = RepState("alice", T0, wrap_up_seconds=30)
    assert rep.feed(call_event(CallEventKind.STARTED, s(1)), s(1)) is None
    assert rep.feed(call_event(CallEventKind.IDENTIFIED, s(2)), s(2)) is None
    assert rep.feed(call_event(CallEventKind.ANSWERED, s(3), rep="bob"), s(3)) is None
    # Dated at the event, not when it was handed on (an ended call waits for its lookup).
    on_call = rep.feed(call_event(CallEventKind.ANSWERED, s(5)), s(9))
    assert on_call is not None
    assert (on_call.state, on_call.since, on_call.previous_seconds) == ("on_call", s(5), 5.0)
    # A time from the future is capped at now.
    wrap_up = rep.feed(call_event(CallEventKind.ENDED, s(60)), s(50))
    assert wrap_up is not None
    assert (wrap_up.state, wrap_up.since) == ("wrap_up", s(50))
    assert rep.deadline() == s(80)
