"""The ncid device against the NCID server emulator over loopback TCP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ncid_emulator import NcidEmulator

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
    LineError,
    LineEvent,
    OffHook,
    OnHook,
    Ring,
)
from agent.plugins import make_plugin_manager
from agent.seat.devices import DeviceRegistry
from agent.seat.runner import Agent
from plugins import ncid
from plugins.ncid.config import NcidConfig
from plugins.ncid.device import NcidDevice


@pytest.fixture
async def emulator() -> AsyncIterator[NcidEmulator]:
    async with NcidEmulator() as emu:
        yield emu


def device_for(emu: NcidEmulator, **options: object) -> NcidDevice:
    return NcidDevice(
        "ncid", NcidConfig.model_validate({"port": emu.port, "connect_timeout": 3.0, **options})
    )


class Reader:
    """Collects a device's events in a task, so a test can act and then look."""

    def __init__(self, device: NcidDevice) -> None:
        self.events: list[LineEvent] = []
        self.error: BaseException | None = None
        self._new = asyncio.Event()
        self._task = asyncio.create_task(self._run(device))

    async def _run(self, device: NcidDevice) -> None:
        try:
            async with contextlib.aclosing(device.events()) as stream:
                async for event in stream:
                    self.events.append(event)
                    self._new.set()
        except DeviceError as exc:
            self.error = exc
            self._new.set()

    async def until(self, done: Callable[[list[LineEvent]], bool], timeout: float = 3.0) -> list[LineEvent]:
        async with asyncio.timeout(timeout):
            while not done(self.events):
                if self.error is not None:
                    raise AssertionError(f"device failed: {self.error}; events {self.events}")
                self._new.clear()
                await self._new.wait()
        return self.events

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def at_least(n: int, kind: type[LineEvent]) -> Callable[[list[LineEvent]], bool]:
    """A ``Reader.until`` condition: ``n`` events of ``kind`` have arrived."""
    return lambda events: sum(isinstance(e, kind) for e in events) >= n


async def test_startup_skips_the_log_and_live_calls_come_through(emulator: NcidEmulator) -> None:
    device = device_for(emulator, lines={"POTS": "1"})
    async with device:
        stats = device.stats
        assert stats is not None
        assert stats.greeting == "Server: ncidd (NCID) 1.13 cti-agent test emulator"
        assert stats.log_lines == 5  # CIDLOG, HUPLOG, OUTLOG, MSGLOG, LOG
        assert stats.options == ["hangup-1", "ignore1"]
        await emulator.wait_clients(1)
        # The client introduced itself after the 210 line.
        assert any(line.startswith("HELLO: IDENT: client cti-agent") for line in emulator.received)
        reader = Reader(device)
        await emulator.send_cid("5551234567", "JOHN DOE", line="POTS")
        await emulator.send_cidinfo(1, line="POTS")
        await emulator.send_out("13812345678", line="VOIP")
        events = await reader.until(lambda evs: any(isinstance(e, Dialed) for e in evs))
        await reader.stop()
    # Nothing from the replayed call log became a live event.
    assert [type(e) for e in events] == [CallerId, Ring, Dialed]
    cid, ring, dialed = events
    assert isinstance(cid, CallerId)
    assert (cid.line, cid.number, cid.name) == ("1", "5551234567", "JOHN DOE")
    assert ring.line == "1"
    assert isinstance(dialed, Dialed)
    assert (dialed.line, dialed.digits, dialed.complete) == ("VOIP", "13812345678", True)


async def test_no_log_request_and_an_old_server() -> None:
    async with NcidEmulator() as emu:
        device = device_for(emu, no_log=True)
        async with device:
            assert device.stats is not None
            assert device.stats.log_lines == 0
            assert device.stats.ignored["251"] == 1
        assert "HELLO: CMD: no_log" in emu.received
    async with NcidEmulator(greeting="200 NCID Server:  ARC_ncidd 0.83", api=None) as old:
        device = device_for(old)
        async with device:
            assert device.stats is not None
            assert device.stats.log_lines == 5
            assert device.stats.api is None
            await old.wait_clients(1)
            reader = Reader(device)
            await old.send_cid("4075552222", "NEW CALL")
            (event,) = await reader.until(at_least(1, CallerId))
            await reader.stop()
        assert isinstance(event, CallerId)
        assert (event.line, event.number) == ("1", "4075552222")
        # An old server gets no HELLO lines.
        assert not any(line.startswith("HELLO:") for line in old.received)


async def test_calls_through_the_tracker(emulator: NcidEmulator) -> None:
    """Live lines fed to a call tracker on the wall clock, as the runtime does."""
    device = device_for(emulator, ring_zero_answers=True)
    tracker = CallTracker(
        LineIdentity(seat="s", device_id="ncid", line="VOIP"),
        TrackerConfig(reports_hook=device.reports_hook, ring_timeout=8.0),
    )
    ended: list[Call] = []
    async with device:
        await emulator.wait_clients(1)
        reader = Reader(device)
        await emulator.send_cid("13812345678", "WANG WEI", line="VOIP")
        await emulator.send_cidinfo(1, line="VOIP")
        await emulator.send_cidinfo(0, line="VOIP")  # answered
        await asyncio.sleep(0.3)
        await emulator.send_end("BYE", number="13812345678", line="VOIP")
        await emulator.send_cid("02112345678", line="VOIP")
        await emulator.send_cidinfo(-1, line="VOIP")  # the caller gave up
        await emulator.send_out("13912345678", line="VOIP")
        await asyncio.sleep(0.2)
        await emulator.send_end("BYE", ctype="OUT", number="13912345678", line="VOIP")
        events = await reader.until(at_least(3, OnHook))
        await reader.stop()
    for event in events:
        assert event.line == "VOIP"
        ended += [e.call for e in tracker.feed(event, event.at) if e.kind is CallEventKind.ENDED]
    answered, missed, out = ended
    assert (answered.direction, answered.disposition) == (Direction.IN, Disposition.ANSWERED)
    assert answered.number_e164 == "+8613812345678"
    assert answered.cid_name == "WANG WEI"
    assert answered.talk_seconds == pytest.approx(0.3, abs=0.25)
    assert (missed.direction, missed.disposition, missed.number_raw) == (
        Direction.IN,
        Disposition.MISSED,
        "02112345678",
    )
    assert (out.direction, out.disposition, out.number_raw) == (
        Direction.OUT,
        Disposition.ANSWERED,
        "13912345678",
    )
    assert out.talk_seconds == pytest.approx(0.2, abs=0.2)
    # Ring count 0, then one with each END BYE (a repeat the tracker ignores).
    assert [type(e) for e in events].count(OffHook) == 3


async def test_unknown_lines_are_errors_and_later_calls_still_arrive(emulator: NcidEmulator) -> None:
    device = device_for(emulator)
    async with device:
        await emulator.wait_clients(1)
        reader = Reader(device)
        await emulator.send_raw("XYZ: *DATE*01152026*")
        await emulator.send_raw("complete garbage \x01\x02")
        await emulator.send_raw("+CID: *DATE*01152026*TIME*1230*LINE*FWD*NMBR*5550001111*MESG*NONE*NAME*X*")
        await emulator.send_msg("hello from the server")
        await emulator.send_raw(
            "NOT: PHONE 4012: PING ***DATE*01152026*TIME*1230*NAME*-*NMBR*-*LINE*-*MTYPE*IN*"
        )
        await emulator.send_cid("5551234567")
        events = await reader.until(at_least(1, CallerId))
        await reader.stop()
    errors = [e for e in events if isinstance(e, LineError)]
    assert [e.raw for e in errors] == ["XYZ: *DATE*01152026*", "complete garbage \x01\x02"]
    assert isinstance(events[-1], CallerId)
    assert len(events) == 3
    assert device.stats is not None
    assert device.stats.ignored["+CID"] == 1
    assert device.stats.ignored["MSG"] == 1
    assert device.stats.ignored["NOT"] == 1


async def test_server_drop_is_a_device_error_and_reconnecting_works(emulator: NcidEmulator) -> None:
    device = device_for(emulator)
    async with device:
        await emulator.wait_clients(1)
        reader = Reader(device)
        await emulator.drop()
        async with asyncio.timeout(3):
            while reader.error is None:
                await asyncio.sleep(0.01)
        assert isinstance(reader.error, DeviceError)
        assert "closed the connection" in str(reader.error)
    # The runtime opens the same device again: a fresh connection and start-up.
    async with device:
        await emulator.wait_clients(1)
        assert emulator.connections == 2
        reader = Reader(device)
        await emulator.send_cid("5551234567")
        (event,) = await reader.until(at_least(1, CallerId))
        await reader.stop()
    assert isinstance(event, CallerId)


async def test_no_server_and_a_silent_server_fail_to_open() -> None:
    async with NcidEmulator() as emu:
        port = emu.port
    # Nothing listens there any more.
    with pytest.raises(DeviceError, match="cannot connect"):
        async with NcidDevice("ncid", NcidConfig(port=port, connect_timeout=2.0)):
            pass

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # says nothing until the client goes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(DeviceError, match="sent no NCID greeting"):
            async with NcidDevice("ncid", NcidConfig(port=port, connect_timeout=0.3)):
                pass
    finally:
        server.close()
        await server.wait_closed()


async def test_keepalive_newline_is_sent_when_the_server_is_quiet(emulator: NcidEmulator) -> None:
    device = device_for(emulator, keepalive=0.1)
    async with device:
        await emulator.wait_clients(1)
        reader = Reader(device)
        await asyncio.sleep(0.35)
        await reader.stop()
    # Empty lines arrived after the HELLO line: the API's "are you there" check.
    assert emulator.received.count("") >= 2


async def test_times_are_tz_aware_utc(emulator: NcidEmulator) -> None:
    device = device_for(emulator)
    async with device:
        await emulator.wait_clients(1)
        reader = Reader(device)
        before = datetime.now(UTC)
        await emulator.send_cid("5551234567")
        (event,) = await reader.until(at_least(1, CallerId))
        await reader.stop()
    assert event.at.tzinfo is not None
    assert before <= event.at <= datetime.now(UTC)


class _Ended:
    """A throwaway plugin that keeps the calls the agent ends."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    @agent.hookimpl
    def call_ended(self, call: Call) -> None:
        self.calls.append(call)


async def test_the_agent_runs_the_device_and_reconnects(tmp_path: Path, emulator: NcidEmulator) -> None:
    registry = DeviceRegistry()
    ncid.register_devices(register=lambda cls: registry.add(cls, "ncid"))
    overrides: dict[str, Any] = {
        "agent": {"seat": "seat-ncid", "data_dir": str(tmp_path)},
        "web": {"enabled": False},
        "metrics": {"enabled": False},
        "tracker": {"ring_timeout": 0.3},
        "devices": [{"id": "ncid", "type": "ncid", "port": emulator.port, "lines": {"POTS": "1"}}],
        "lines": [{"id": "desk", "device": "ncid", "port": "1", "rep": "rep01"}],
    }
    config = load_config(None, registry, overrides=overrides)
    pm = make_plugin_manager(load_entrypoints=False)
    ended = _Ended()
    pm.register(ended, name="ended")
    runner = Agent(config, pm, devices=registry)
    stop = asyncio.Event()
    run = asyncio.create_task(runner.run(stop))
    try:
        await asyncio.wait_for(runner.started.wait(), 20)
        await emulator.wait_clients(1)
        await emulator.send_cid("13812345678", "WANG WEI", line="POTS")

        async def calls(n: int) -> None:
            async with asyncio.timeout(10):
                while len(ended.calls) < n:
                    await asyncio.sleep(0.02)

        await calls(1)
        # The server goes away: the runtime reports the device down and connects again.
        await emulator.drop()
        await emulator.wait_clients(1, timeout=10)
        assert emulator.connections == 2
        await emulator.send_cid("02112345678", line="POTS")
        await calls(2)
    finally:
        stop.set()
        await asyncio.wait_for(run, 30)
    first, second = ended.calls
    assert (first.line, first.rep, first.number_e164, first.cid_name) == (
        "desk",
        "rep01",
        "+8613812345678",
        "WANG WEI",
    )
    assert first.disposition is Disposition.UNKNOWN  # a modem-fed server cannot see the answer
    assert second.number_raw == "02112345678"


async def test_closing_ends_a_waiting_reader(emulator: NcidEmulator) -> None:
    device = device_for(emulator)
    async with device:
        stream = device.events()
        waiting = asyncio.create_task(anext(stream, None))
        await asyncio.sleep(0.05)
    assert await asyncio.wait_for(waiting, 2) is None
