"""The simulator device in real time (compressed): event stream, commands, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest

from agent.calls import CallTracker, LineIdentity, TrackerConfig
from agent.errors import DeviceError
from agent.events import (
    ALL_LINES,
    Call,
    CallerId,
    CallEventKind,
    Connected,
    DeviceUp,
    Dialed,
    Direction,
    Disposition,
    EndReason,
    LineEvent,
    OffHook,
    OnHook,
    Ring,
)
from plugins.simulator import scenario as scenario_module
from plugins.simulator.config import SimulatorConfig
from plugins.simulator.device import SimulatorDevice
from plugins.simulator.scenario import Scenario, line_random

pytestmark = pytest.mark.slow

SPEED = 200.0


async def collect_for(device: SimulatorDevice, seconds: float) -> list[LineEvent]:
    """Every event the device reports within ``seconds`` of wall time."""
    events: list[LineEvent] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds), contextlib.aclosing(device.events()) as stream:
            async for event in stream:
                events.append(event)
    return events


async def collect_until(device: SimulatorDevice, done: object, seconds: float = 5.0) -> list[LineEvent]:
    """Events until one satisfies ``done(event)`` (included); fails after ``seconds``."""
    events: list[LineEvent] = []
    async with asyncio.timeout(seconds), contextlib.aclosing(device.events()) as stream:
        async for event in stream:
            events.append(event)
            if done(event):  # type: ignore[operator]
                return events
    raise AssertionError(f"the device closed before the awaited event: {events}")


def calls_of(
    events: list[LineEvent], line: str, speed: float = SPEED, tracker_config: TrackerConfig | None = None
) -> tuple[list[Call], Call | None]:
    """Read one line's events with a call tracker, on the simulated clock (wall time x speed).

    Returns the ended calls and the call still in progress when the events stop.
    """
    t0 = events[0].at
    tracker = CallTracker(
        LineIdentity(seat="seat", device_id="sim", line=line),
        tracker_config or TrackerConfig(reports_hook=True, reports_connect=True),
    )
    ended = []
    last = t0
    for event in events:
        if event.line != line:
            continue
        last = t0 + (event.at - t0) * speed
        ended += [e.call for e in tracker.feed(event, last) if e.kind is CallEventKind.ENDED]
    # Rings that stopped before the end are over after the tracker's ring time-out.
    ended += [e.call for e in tracker.tick(last + timedelta(seconds=1)) if e.kind is CallEventKind.ENDED]
    return ended, tracker.call


def described(event: LineEvent) -> tuple[object, ...]:
    """An event without its device, line and time (and the caller-ID clock the device adds)."""
    data = event.to_dict()
    for key in ("device_id", "line", "at", "device_time"):
        data.pop(key, None)
    return tuple(sorted(data.items()))


async def test_lines_ring_dial_and_talk_in_time_order() -> None:
    # x100 rather than x200: on a loaded machine a 10 ms scheduling hiccup is a second of simulated time.
    speed = 100.0
    config = SimulatorConfig(lines=3, rate=30.0, talk_median=15.0, seed=7, speed=speed, withheld_ratio=0.1)
    device = SimulatorDevice("sim", config)
    async with device:
        events = await collect_for(device, 2.0)

    assert isinstance(events[0], DeviceUp)
    assert events[0].line == ALL_LINES
    assert all(e.device_id == "sim" for e in events)
    assert all(e.at.tzinfo is not None and e.at.utcoffset() == timedelta(0) for e in events)
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert {e.line for e in events[1:]} == {"1", "2", "3"}
    assert not any(isinstance(e, DeviceUp) for e in events[1:])
    for event in events:
        if isinstance(event, CallerId):
            assert event.device_time is not None
            assert len(event.device_time) == 8

    # Ring and dial time-outs with room for scheduling jitter; the scripts leave 5-12 s and < 2 s.
    reader = TrackerConfig(reports_hook=True, reports_connect=True, ring_timeout=8.5, dial_timeout=10.0)
    total = 0
    for line in device.lines():
        # Each line plays its seeded scenario: exactly the events the pure scenario scripts.
        scenario = Scenario(config, line, line_random(config.seed, line))
        scripts = [scenario.next_call() for _ in range(200)]
        steps = [
            described(step.build(device_id="sim", line=line, at=events[0].at))
            for script in scripts
            for step in script.steps
        ]
        seen = [described(e) for e in events if e.line == line]
        assert seen == steps[: len(seen)]

        ended, _ = calls_of(events, line, speed, reader)
        assert len(ended) >= 3, line
        total += len(ended)
        for call, script in zip(ended, scripts, strict=False):
            assert call.direction is script.direction
            assert call.disposition is script.disposition
            assert call.number_raw == script.number
            assert call.cid_name == script.name
            assert call.absence == script.absence
            # Scheduling jitter is magnified by the speed-up: milliseconds become seconds.
            assert call.talk_seconds == pytest.approx(script.talk_seconds, abs=5.0)
            if call.direction is Direction.IN:
                assert call.rings == script.rings
    assert total >= 12


async def test_same_seed_same_events() -> None:
    def summary(events: list[LineEvent], line: str) -> list[tuple[object, ...]]:
        return [
            (e.kind, getattr(e, "number", None), getattr(e, "name", None), getattr(e, "digits", None))
            for e in events
            if e.line == line
        ]

    config = SimulatorConfig(lines=2, rate=30.0, talk_median=10.0, seed=99, speed=SPEED)
    first, second, other = (
        SimulatorDevice("sim", config),
        SimulatorDevice("sim", config),
        SimulatorDevice("sim", config.model_copy(update={"seed": 100})),
    )
    async with first, second, other:
        runs = await asyncio.gather(
            collect_for(first, 1.0), collect_for(second, 1.0), collect_for(other, 1.0)
        )
    for line in ("1", "2"):
        a, b, c = (summary(run, line) for run in runs)
        n = min(len(a), len(b))
        assert n >= 15
        # The windows end at slightly different points; everything both saw is identical.
        assert a[:n] == b[:n]
        assert a[: min(n, len(c))] != c[: min(n, len(c))]


async def test_dial_places_an_outbound_call() -> None:
    # A rate this low keeps the lines idle: the only call is the one dialed.
    config = SimulatorConfig(
        lines=2, rate=0.0001, answer_rate=1.0, talk_median=30.0, talk_sigma=0.0, speed=SPEED
    )
    device = SimulatorDevice("sim", config)
    with pytest.raises(DeviceError, match="not open"):
        await device.dial("1", "13812345678")
    async with device:
        await device.dial("2", "138 1234 5678")
        with pytest.raises(DeviceError, match="line 2 busy"):
            await device.dial("2", "13900000000")
        with pytest.raises(DeviceError, match="no line '3'"):
            await device.dial("3", "13812345678")
        with pytest.raises(DeviceError, match="nothing to dial"):
            await device.dial("1", "call me")
        events = await collect_until(device, lambda e: isinstance(e, OnHook))
        line_events = [e for e in events if e.line == "2"]
        assert [type(e) for e in line_events] == [OffHook, Dialed, Connected, OnHook]
        assert line_events[1].digits == "13812345678"
        assert line_events[1].complete is True
        assert not [e for e in events[1:] if e.line == "1"]
        (call,), in_progress = calls_of(events, "2")
        assert in_progress is None
        assert call.direction is Direction.OUT
        assert call.disposition is Disposition.ANSWERED
        assert call.number_e164 == "+8613812345678"
        assert call.talk_seconds == pytest.approx(30.0, abs=6.0)
        # Once the call is over the line takes the next one.
        await asyncio.sleep(0.05)
        await device.dial("2", "02187654321")
        events = await collect_until(device, lambda e: isinstance(e, Dialed))
        assert events[-1].digits == "02187654321"


async def test_hangup_ends_the_call_now() -> None:
    config = SimulatorConfig(
        lines=1, rate=0.0001, answer_rate=1.0, talk_median=3600.0, talk_sigma=0.0, speed=SPEED
    )
    device = SimulatorDevice("sim", config)
    async with device:
        await device.hangup("1")  # idle: nothing happens
        await device.dial("1", "13812345678")
        events = await collect_until(device, lambda e: isinstance(e, Connected))
        connected_at = datetime.now(UTC)
        await device.hangup("1")
        events += await collect_until(device, lambda e: isinstance(e, OnHook), seconds=1.0)
        # An hour of talk at x200 would take 18 s; the hang-up ends it at once.
        assert datetime.now(UTC) - connected_at < timedelta(seconds=1)
        assert [type(e) for e in events] == [DeviceUp, OffHook, Dialed, Connected, OnHook]
        (call,), _ = calls_of(events, "1")
        assert call.disposition is Disposition.ANSWERED
        assert call.talk_seconds is not None
        assert call.talk_seconds < 200
        await device.hangup("1")
        assert await collect_for(device, 0.2) == []  # nothing more on an idle line


async def test_hangup_while_ringing_ends_an_unanswered_call() -> None:
    config = SimulatorConfig(lines=1, rate=600.0, inbound_ratio=1.0, answer_rate=0.0, speed=SPEED)
    device = SimulatorDevice("sim", config)
    async with device:
        events = await collect_until(device, lambda e: isinstance(e, Ring))
        await device.hangup("1")
        events += await collect_until(device, lambda e: isinstance(e, OnHook), seconds=1.0)
    (call, *_), _ = calls_of(events, "1")
    assert call.direction is Direction.IN
    assert call.disposition is Disposition.MISSED
    assert call.end_reason is EndReason.HANGUP
    assert call.rings == 1


async def test_exit_cancels_everything_and_ends_the_stream() -> None:
    before = asyncio.all_tasks()
    device = SimulatorDevice("sim", SimulatorConfig(lines=4, rate=60.0, speed=SPEED, seed=1))
    async with device:
        names = {t.get_name() for t in asyncio.all_tasks() - before}
        assert names == {f"simulator:sim:{n}" for n in "1234"}
        reader = asyncio.create_task(collect_until(device, lambda e: False, seconds=10.0))
        await asyncio.sleep(0.3)
    assert asyncio.all_tasks() - before <= {reader}
    # The reader ends when the device closes (not by its time-out).
    with pytest.raises(AssertionError, match="closed before"):
        await asyncio.wait_for(reader, 1.0)
    assert asyncio.all_tasks() - before == set()
    # Closed and reopened: it starts over with DeviceUp.
    async with device:
        events = await collect_until(device, lambda e: isinstance(e, DeviceUp))
        assert isinstance(events[0], DeviceUp)
    assert asyncio.all_tasks() - before == set()


async def test_a_failing_line_surfaces_as_device_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Scenario) -> None:
        raise ValueError("scenario bug")

    monkeypatch.setattr(scenario_module.Scenario, "next_call", broken)
    device = SimulatorDevice("sim", SimulatorConfig(lines=1, speed=SPEED))
    async with device:
        with pytest.raises(DeviceError, match="line 1 failed"):
            await collect_for(device, 1.0)
