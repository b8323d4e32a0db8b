"""The whozz device receiving the emulator's UDP packets on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from whozz_emulator import WhozzSender, build_packet, call_record

import agent
from agent.calls import CallTracker, LineIdentity, TrackerConfig
from agent.config import load_config
from agent.errors import DeviceError
from agent.events import (
    Call,
    CallerId,
    CallEventKind,
    Dialed,
    Direction,
    Disposition,
    EndReason,
    LineError,
    LineEvent,
    OnHook,
)
from agent.plugins import make_plugin_manager
from agent.seat.devices import DeviceRegistry
from agent.seat.runner import Agent
from plugins import whozz
from plugins.whozz.config import WhozzConfig
from plugins.whozz.device import WhozzDevice

WHEN = datetime(2026, 1, 15, 12, 30, 0)


class Reader:
    """Collects a device's events in a task."""

    def __init__(self, device: WhozzDevice) -> None:
        self.events: list[LineEvent] = []
        self._new = asyncio.Event()
        self._task = asyncio.create_task(self._run(device))

    async def _run(self, device: WhozzDevice) -> None:
        async with contextlib.aclosing(device.events()) as stream:
            async for event in stream:
                self.events.append(event)
                self._new.set()

    async def until(self, done: Callable[[list[LineEvent]], bool], timeout: float = 3.0) -> list[LineEvent]:
        async with asyncio.timeout(timeout):
            while not done(self.events):
                self._new.clear()
                await self._new.wait()
        return self.events

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
async def device() -> AsyncIterator[WhozzDevice]:
    dev = WhozzDevice("wc", WhozzConfig(listen="127.0.0.1:0", line_count=4))
    async with dev:
        yield dev


def target(device: WhozzDevice) -> tuple[str, int]:
    assert device.address is not None
    return device.address


def ended_calls(events: list[LineEvent], line: str, *, reports_hook: bool = True) -> list[Call]:
    """Feed ``line``'s events to a tracker at the times they arrived, as the runtime does."""
    tracker = CallTracker(
        LineIdentity(seat="s", device_id="wc", line=line), TrackerConfig(reports_hook=reports_hook)
    )
    ended: list[Call] = []
    last = None
    for event in events:
        if event.line != line:
            continue
        last = event.at
        ended += [e.call for e in tracker.feed(event, event.at) if e.kind is CallEventKind.ENDED]
    if last is not None:
        ended += [e.call for e in tracker.tick(last + timedelta(hours=1)) if e.kind is CallEventKind.ENDED]
    return ended


async def test_two_lines_with_repeats_give_the_right_calls(device: WhozzDevice) -> None:
    reader = Reader(device)
    async with WhozzSender(target(device), repeats=3) as unit:
        # Line 1: an inbound call, answered, talked about 0.4 s. Line 2: an outbound call.
        await unit.detail(1, "R", when=WHEN)
        await unit.inbound_start(1, "555-123-4567", "JOHN DOE", when=WHEN)
        await unit.detail(2, "F", when=WHEN)
        await unit.outbound_start(2, "13812345678", when=WHEN)
        await unit.detail(1, "F", when=WHEN + timedelta(seconds=5))
        await asyncio.sleep(0.4)
        await unit.detail(1, "N", when=WHEN + timedelta(seconds=125))
        await unit.call_end(
            1, duration=120, number="555-123-4567", name="JOHN DOE", when=WHEN + timedelta(minutes=2)
        )
        await asyncio.sleep(0.2)
        await unit.detail(2, "N", when=WHEN + timedelta(seconds=200))
        await unit.call_end(
            2, inbound=False, duration=200, number="13812345678", when=WHEN + timedelta(minutes=3)
        )
        assert unit.sent == 27  # 9 packets, each sent three times
    events = await reader.until(lambda evs: sum(isinstance(e, OnHook) for e in evs) >= 4)
    await asyncio.sleep(0.05)  # anything more would be a repeat let through
    await reader.stop()
    assert device.stats.datagrams == 27
    assert device.stats.repeats == 18
    assert device.stats.records == 9
    assert len(events) == 9
    (inbound,) = ended_calls(events, "1")
    assert (inbound.direction, inbound.disposition) == (Direction.IN, Disposition.ANSWERED)
    assert (inbound.number_raw, inbound.cid_name, inbound.rings) == ("555-123-4567", "JOHN DOE", 1)
    assert inbound.talk_seconds == pytest.approx(0.4, abs=0.2)
    (outbound,) = ended_calls(events, "2")
    assert (outbound.direction, outbound.disposition) == (Direction.OUT, Disposition.ANSWERED)
    assert (outbound.number_raw, outbound.number_e164) == ("13812345678", "+8613812345678")
    assert outbound.talk_seconds == pytest.approx(0.6, abs=0.25)


async def test_basic_unit_unanswered_call_and_end_record(device: WhozzDevice) -> None:
    # A unit without detail records: the start record is the ring, the end record the on-hook.
    basic = WhozzDevice("basic", WhozzConfig(listen="127.0.0.1:0", detail_records=False))
    async with basic, WhozzSender(target(basic), repeats=2) as unit:
        assert basic.reports_hook is False
        reader = Reader(basic)
        await unit.inbound_start(3, "770-263-7111", "CALLERID.COM", when=WHEN)
        await asyncio.sleep(0.3)
        await unit.call_end(3, duration=0, rings=4, number="770-263-7111", when=WHEN + timedelta(seconds=30))
        events = await reader.until(lambda evs: any(isinstance(e, OnHook) for e in evs))
        await reader.stop()
    assert [e.kind for e in events] == ["ring", "caller_id", "on_hook"]
    (call,) = ended_calls(events, "3", reports_hook=False)
    # The end record came while it was still ringing: the caller gave up.
    assert (call.direction, call.disposition, call.number_raw) == (
        Direction.IN,
        Disposition.MISSED,
        "770-263-7111",
    )
    assert call.ring_seconds == pytest.approx(0.3, abs=0.2)


async def test_garbage_and_commands_do_not_stop_later_calls(device: WhozzDevice) -> None:
    reader = Reader(device)
    async with WhozzSender(target(device), repeats=1) as unit:
        await unit.send_raw(b"\x00\xff garbage \x24\x24")
        await unit.send_raw(b"^^<U>\x00\x00")  # truncated header
        await unit.send_raw(b"^^IdX")  # another program's discovery command
        await unit.send_raw(build_packet(call_record(33, when=WHEN, number="5551234567")))
        await unit.inbound_start(4, "5551234567", when=WHEN)
    events = await reader.until(lambda evs: any(isinstance(e, CallerId) for e in evs))
    await reader.stop()
    errors = [e for e in events if isinstance(e, LineError)]
    assert len(errors) == 3
    assert "garbage" in errors[0].raw
    assert errors[2].error == "line number 33 out of range 1-32"
    assert device.stats.not_records == 1
    assert isinstance(events[-1], CallerId)
    assert events[-1].line == "4"


async def test_sources_filter_and_dial_is_refused() -> None:
    dev = WhozzDevice("wc", WhozzConfig(listen="127.0.0.1:0", sources=["192.0.2.1"]))
    async with dev, WhozzSender(target(dev), repeats=1) as unit:
        reader = Reader(dev)
        await unit.outbound_start(1, "4075550000", when=WHEN)
        await asyncio.sleep(0.1)
        await reader.stop()
        assert reader.events == []
        assert dev.stats.rejected == 1
        with pytest.raises(DeviceError, match="cannot dial"):
            await dev.dial("1", "4075550000")


async def test_port_in_use_is_a_device_error_and_reopen_works(device: WhozzDevice) -> None:
    host, port = target(device)
    other = WhozzDevice("wc2", WhozzConfig(listen=f"{host}:{port}"))
    with pytest.raises(DeviceError, match="cannot listen"):
        async with other:
            pass
    # Closed and opened again (as the runtime does after a failure), it hears packets.
    again = WhozzDevice("wc3", WhozzConfig(listen="127.0.0.1:0"))
    async with again:
        pass
    async with again, WhozzSender(target(again), repeats=1) as unit:
        reader = Reader(again)
        await unit.outbound_start(1, "4075550000", when=WHEN)
        events = await reader.until(lambda evs: any(isinstance(e, Dialed) for e in evs))
        await reader.stop()
    assert isinstance(events[0], Dialed)
    assert events[0].digits == "4075550000"
    assert again.address is None


class _Ended:
    """A throwaway plugin that keeps the calls the agent ends."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    @agent.hookimpl
    def call_ended(self, call: Call) -> None:
        self.calls.append(call)


async def run_agent(
    tmp_path: Path, device: dict[str, Any], send: Callable[[WhozzSender], Any], **tracker: float
) -> list[Call]:
    """Run the agent with one whozz device on a free loopback port; ``send`` plays the unit."""
    registry = DeviceRegistry()
    whozz.register_devices(register=lambda cls: registry.add(cls, "whozz"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    overrides: dict[str, Any] = {
        "agent": {"seat": "seat-wc", "data_dir": str(tmp_path)},
        "web": {"enabled": False},
        "metrics": {"enabled": False},
        "devices": [{"id": "wc", "type": "whozz", "listen": f"127.0.0.1:{port}", "line_count": 2, **device}],
        "lines": [{"id": "desk", "device": "wc", "port": "2", "rep": "rep02"}],
    }
    if tracker:
        overrides["tracker"] = tracker
    config = load_config(None, registry, overrides=overrides)
    pm = make_plugin_manager(load_entrypoints=False)
    ended = _Ended()
    pm.register(ended, name="ended")
    runner = Agent(config, pm, devices=registry)
    stop = asyncio.Event()
    run = asyncio.create_task(runner.run(stop))
    try:
        await asyncio.wait_for(runner.started.wait(), 20)
        async with WhozzSender(("127.0.0.1", port)) as unit:
            await send(unit)
        async with asyncio.timeout(10):
            while not ended.calls:
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(run, 30)
    return ended.calls


async def test_the_agent_runs_the_device(tmp_path: Path) -> None:
    async def send(unit: WhozzSender) -> None:
        await unit.detail(2, "R", when=WHEN)
        await unit.inbound_start(2, "13812345678", "WANG WEI", when=WHEN)
        await unit.detail(2, "F", when=WHEN + timedelta(seconds=4))
        await asyncio.sleep(0.3)
        await unit.detail(2, "N", when=WHEN + timedelta(seconds=64))
        await unit.call_end(2, duration=60, number="13812345678", when=WHEN + timedelta(minutes=1))

    (call,) = await run_agent(tmp_path, {}, send)
    assert (call.line, call.rep, call.direction, call.disposition) == (
        "desk",
        "rep02",
        Direction.IN,
        Disposition.ANSWERED,
    )
    assert (call.number_e164, call.cid_name, call.rings) == ("+8613812345678", "WANG WEI", 1)
    assert call.talk_seconds == pytest.approx(0.3, abs=0.25)


async def test_a_unit_that_sends_end_records_has_its_first_call_timed(tmp_path: Path) -> None:
    # No detail records, but end records (a Deluxe unit with its d toggle off): the line cannot
    # see the handset, so a call whose rings stopped may be a talk. The very first call on the
    # line waits for its end record instead of ending at the ring time-out, and gets the unit's
    # count of its talk (1 s of the 1.2 s it lasted) rather than none.
    async def send(unit: WhozzSender) -> None:
        await unit.inbound_start(2, "13812345678", "WANG WEI", when=WHEN)
        await asyncio.sleep(1.2)  # four ring time-outs
        await unit.call_end(2, duration=1, number="13812345678", when=WHEN)

    device = {"detail_records": False, "end_records": True}
    (call,) = await run_agent(tmp_path, device, send, ring_timeout=0.3)
    assert (call.line, call.disposition, call.end_reason) == ("desk", Disposition.ANSWERED, EndReason.HANGUP)
    assert call.number_e164 == "+8613812345678"
    assert call.talk_seconds == pytest.approx(1.0, abs=0.05)
    assert call.ring_seconds == pytest.approx(0.2, abs=0.15)


async def test_a_basic_unit_s_calls_end_by_the_ring_time_out(tmp_path: Path) -> None:
    # Start records only (no end_records): nothing will end the call but its rings stopping.
    async def send(unit: WhozzSender) -> None:
        await unit.inbound_start(2, "13812345678", when=WHEN)

    (call,) = await run_agent(tmp_path, {"detail_records": False}, send, ring_timeout=0.3)
    assert (call.disposition, call.end_reason) == (Disposition.UNKNOWN, EndReason.RING_TIMEOUT)


async def test_closing_ends_a_waiting_reader() -> None:
    dev = WhozzDevice("wc", WhozzConfig(listen="127.0.0.1:0"))
    async with dev:
        stream = dev.events()
        waiting = asyncio.create_task(anext(stream, None))
        await asyncio.sleep(0.05)
    assert await asyncio.wait_for(waiting, 2) is None
    with pytest.raises(DeviceError, match="not open"):
        await anext(dev.events())
