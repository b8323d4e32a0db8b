"""The hayes device against the modem emulator on a real pseudo-terminal, opened with pyserial."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agent.errors import DeviceError, DeviceTimeout
from agent.events import CallerId, Dialed, LineError, LineEvent, Ring
from plugins.hayes import transport as transport_module
from plugins.hayes.config import HayesConfig
from plugins.hayes.device import HayesModem

pytestmark = pytest.mark.pty


def _load_emulator() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "modem_emulator.py"
    spec = importlib.util.spec_from_file_location("modem_emulator", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("modem_emulator", module)
    spec.loader.exec_module(module)
    return module


modem_emulator = _load_emulator()
ModemEmulator = modem_emulator.ModemEmulator


@pytest.fixture
def make_emulator(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start emulators whose stable path is a symlink in ``tmp_path``; all are unplugged afterwards."""
    started: list[Any] = []

    def make(profile: str = "usr") -> Any:
        emulator = ModemEmulator(profile, link=tmp_path / f"modem{len(started)}").start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.vanish()


def modem(emulator: Any, **options: Any) -> HayesModem:
    options.setdefault("dial_pickup_delay", 0.2)
    options.setdefault("read_timeout", 0.05)
    options.setdefault("cid_timeout", 0.5)
    return HayesModem("modem", HayesConfig(port=emulator.path, **options))


async def collect(
    device: HayesModem, done: Callable[[list[LineEvent]], bool], seconds: float = 5.0
) -> list[LineEvent]:
    """Events until ``done(events so far)``; fails after ``seconds``."""
    events: list[LineEvent] = []
    async with asyncio.timeout(seconds), contextlib.aclosing(device.events()) as stream:
        async for event in stream:
            events.append(event)
            if done(events):
                return events
    raise AssertionError(f"the device closed early: {events}")


def kinds(events: list[LineEvent]) -> list[str]:
    return [e.kind for e in events]


# -- init ---------------------------------------------------------------------------------


async def test_usr_accepts_vcid(make_emulator: Callable[..., Any]) -> None:
    emulator = make_emulator("usr")
    device = modem(emulator)
    async with device:
        assert device.cid_command == "AT+VCID=1"
    assert emulator.received == ["ATZ", "ATE0", "AT+VCID=1"]


async def test_a_modem_that_knows_only_hash_cid(make_emulator: Callable[..., Any]) -> None:
    emulator = make_emulator("hash-only")
    device = modem(emulator)
    async with device:
        assert device.cid_command == "AT#CID=1"
    assert emulator.received == ["ATZ", "ATE0", "AT+VCID=1", "AT#CID=1"]


async def test_a_modem_refusing_every_cid_command_is_named(make_emulator: Callable[..., Any]) -> None:
    emulator = make_emulator("no-cid")
    device = modem(emulator)
    with pytest.raises(DeviceError) as caught:
        async with device:
            pytest.fail("opened a modem without caller ID")
    message = str(caught.value)
    for command in ("AT+VCID=1", "AT#CID=1", "AT%CCID=1", "AT+CID=1"):
        assert f"{command} (ERROR)" in message
    # The port was closed on the way out: the same device opens once caller ID is not required.
    device = modem(emulator, cid_commands=[])
    async with device:
        assert device.cid_command is None


async def test_a_refused_init_command_and_a_silent_modem(make_emulator: Callable[..., Any]) -> None:
    emulator = make_emulator("usr")
    emulator.refused.add("ATE0")
    with pytest.raises(DeviceError, match="refused 'ATE0'"):
        async with modem(emulator):
            pass
    emulator.refused.clear()
    emulator.silent.add("ATZ")
    with pytest.raises(DeviceTimeout, match="no reply to 'ATZ'"):
        async with modem(emulator, command_timeout=0.3):
            pass


# -- rings and caller ID ---------------------------------------------------------------------


@pytest.mark.parametrize("style", ["usr", "zoom", "runtogether", "quebec", "vcid2-hex"])
async def test_ring_and_caller_id_arrive_as_events(make_emulator: Callable[..., Any], style: str) -> None:
    emulator = make_emulator("usr")
    cid = ["AT+VCID=2"] if style == "vcid2-hex" else ["AT+VCID=1"]
    async with modem(emulator, cid_commands=cid) as device:
        emulator.ring()
        emulator.caller_id("5072884388", "JOHN DOE", style=style)
        emulator.ring("B")
        events = await collect(device, lambda got: len(got) == 3)
    assert kinds(events) == ["ring", "caller_id", "ring"]
    caller = events[1]
    assert isinstance(caller, CallerId)
    assert (caller.number, caller.name, caller.device_time) == ("5072884388", "JOHN DOE", "01151230")
    assert caller.device_id == "modem"
    assert caller.line == "1"
    assert isinstance(events[2], Ring)
    assert events[2].cadence == "B"


async def test_withheld_number_and_the_line_label(make_emulator: Callable[..., Any]) -> None:
    emulator = make_emulator("zoom")
    async with modem(emulator, line="front-desk") as device:
        assert device.lines() == ["front-desk"]
        emulator.caller_id(None, None, absence="P")
        (event,) = await collect(device, lambda got: len(got) == 1)
    assert isinstance(event, CallerId)
    assert (event.number, event.absence, event.line) == (None, "P", "front-desk")


async def test_lost_characters_never_give_a_wrong_number(make_emulator: Callable[..., Any]) -> None:
    emulator = make_emulator("usr")
    async with modem(emulator) as device:
        emulator.drop_every = 5
        emulator.caller_id("5072884388", "JOHN DOE")
        emulator.send_line("RING")
        emulator.drop_every = 0
        await asyncio.sleep(0.8)  # past the caller-ID time-out
        emulator.ring()
        emulator.caller_id("4075550000", "JANE ROE")
        events = await collect(
            device, lambda got: isinstance(got[-1], CallerId) and got[-1].number == "4075550000"
        )
    numbers = [e.number for e in events if isinstance(e, CallerId)]
    assert set(numbers) <= {"5072884388", "4075550000", None}
    assert any(isinstance(e, LineError) for e in events), events


# -- click-to-dial -----------------------------------------------------------------------------


async def test_dial_sends_atdt_then_ath_after_the_pickup_delay(make_emulator: Callable[..., Any]) -> None:
    emulator = make_emulator("usr")
    async with modem(emulator, dial_pickup_delay=0.6) as device:
        started = time.monotonic()
        await device.dial("1", "(507) 288-4388")
        elapsed = time.monotonic() - started
        (event,) = await collect(device, lambda got: len(got) == 1)
    assert emulator.received[-2:] == ["ATDT5072884388;", "ATH"]
    assert elapsed >= 0.6
    assert isinstance(event, Dialed)
    assert (event.digits, event.complete) == ("5072884388", True)


async def test_dial_cancelled_or_refused_still_releases_the_line(make_emulator: Callable[..., Any]) -> None:
    emulator = make_emulator("usr")
    async with modem(emulator, dial_pickup_delay=30) as device:
        task = asyncio.create_task(device.dial("1", "5551234"))
        await asyncio.to_thread(emulator.wait_for, lambda got: "ATDT5551234;" in got)
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.to_thread(emulator.wait_for, lambda got: got[-1] == "ATH")

        emulator.refused.add("ATDT5550000;")
        with pytest.raises(DeviceError, match="dialing 5550000 failed: ERROR"):
            await device.dial("1", "555-0000")
        assert emulator.received[-2:] == ["ATDT5550000;", "ATH"]

        with pytest.raises(DeviceError, match="nothing to dial"):
            await device.dial("1", "call me")
        with pytest.raises(DeviceError, match="no line '2'"):
            await device.dial("2", "5551234")
        await device.hangup("1")
        assert emulator.received[-1] == "ATH"


# -- unplug and replug -------------------------------------------------------------------------


async def test_unplug_raises_device_error_and_replug_reopens(make_emulator: Callable[..., Any]) -> None:
    emulator = make_emulator("usr")
    first_pty = emulator.slave_path
    device = modem(emulator)
    async with device:
        emulator.ring()
        await collect(device, lambda got: len(got) == 1)
        emulator.vanish()
        with pytest.raises(DeviceError):
            await collect(device, lambda got: False)
    with pytest.raises(DeviceError, match="cannot open"):
        async with device:
            pass
    emulator.come_back()
    assert emulator.slave_path != first_pty or os.path.realpath(emulator.path) == emulator.slave_path
    async with device:
        assert device.cid_command == "AT+VCID=1"
        emulator.ring()
        emulator.caller_id("5072884388", "JOHN DOE")
        events = await collect(device, lambda got: len(got) == 2)
    assert kinds(events) == ["ring", "caller_id"]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _threads() -> tuple[int, int]:
    """Threads outside asyncio's default executor, and the executor's worker threads."""
    names = [t.name for t in threading.enumerate()]
    pool = sum(name.startswith("asyncio_") for name in names)
    return len(names) - pool, pool


async def test_open_close_cycles_leak_no_fds_or_threads(make_emulator: Callable[..., Any]) -> None:
    emulator = make_emulator("usr")
    device = modem(emulator, read_timeout=0.02)
    async with device:
        pass
    fds, (threads, _) = _open_fds(), _threads()
    for _ in range(100):
        async with device:
            pass
    assert _open_fds() == fds
    # to_thread reuses the loop's executor: its workers are bounded, never one per open.
    others, pool = _threads()
    assert others == threads
    assert pool <= min(32, (os.cpu_count() or 1) + 4)
    async with device:
        emulator.ring()
        assert kinds(await collect(device, lambda got: len(got) == 1)) == ["ring"]


@dataclass
class _UsbPort:
    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None = None


async def test_usb_id_is_looked_up_at_each_open(
    make_emulator: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opened by USB id, the modem is found again under its new name after it re-enumerates."""
    emulator = make_emulator("zoom")
    lookups: list[str] = []

    def comports() -> list[_UsbPort]:
        lookups.append(emulator.slave_path)
        return [
            _UsbPort("/dev/ttyS0", None, None),
            _UsbPort(emulator.slave_path, 0x0803, 0x3095, "Z1"),
            _UsbPort("/dev/ttyACM9", 0x0803, 0x3095, "Z2"),
        ]

    monkeypatch.setattr(transport_module.list_ports, "comports", comports)
    device = HayesModem(
        "usb-modem",
        HayesConfig(usb="0803:3095", serial_number="Z1", read_timeout=0.05, cid_timeout=0.5),
    )
    async with device:
        emulator.ring()
        assert kinds(await collect(device, lambda got: len(got) == 1)) == ["ring"]
    first = emulator.slave_path
    emulator.come_back()
    async with device:
        emulator.caller_id("5072884388", None)
        (event,) = await collect(device, lambda got: len(got) == 1)
    assert isinstance(event, CallerId)
    assert event.number == "5072884388"
    assert lookups == [first, emulator.slave_path]
