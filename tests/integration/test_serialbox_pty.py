"""The serialbox device on a real pseudo-terminal: the test plays the box on the master side."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from agent.callerid import encode_mdmf, encode_sdmf
from agent.errors import DeviceError
from agent.events import Absence, CallerId, LineError, LineEvent, OffHook, OnHook, Ring
from plugins.serialbox.config import SerialBoxConfig
from plugins.serialbox.device import SerialBoxDevice

pytestmark = pytest.mark.pty


class Pty:
    """The master side of a pseudo-terminal; the device opens the slave by name."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        self.name = os.ttyname(self._slave)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def pty() -> Iterator[Pty]:
    box = Pty()
    try:
        yield box
    finally:
        box.close()


async def _next(events: AsyncIterator[LineEvent], timeout: float = 5.0) -> LineEvent:
    return await asyncio.wait_for(anext(events), timeout)


def _device(pty: Pty, fmt: str, **extra: object) -> SerialBoxDevice:
    config = SerialBoxConfig(port=pty.name, format=fmt, read_timeout=0.05, idle_flush=0.3, **extra)
    return SerialBoxDevice("box", config)


async def test_binary_box_events_errors_and_recovery(pty: Pty) -> None:
    async with _device(pty, "binary") as device:
        events = device.events()
        pty.write(
            b"\x55" * 30
            + b"\xff" * 15
            + encode_mdmf(datetime="01151230", number="5551234567", name="JOHN DOE")
        )
        event = await _next(events)
        assert isinstance(event, CallerId)
        assert (event.line, event.number, event.name, event.device_time) == (
            "1",
            "5551234567",
            "JOHN DOE",
            "01151230",
        )

        # Garbage on the line: a LineError with the raw bytes once the box goes quiet.
        pty.write(b"\x13\x9a\xc4 noise")
        error = await _next(events)
        assert isinstance(error, LineError)
        assert "6e 6f 69 73 65" in error.raw  # "noise"

        # A message with a bad checksum is an error, and the next call still decodes.
        bad = bytearray(encode_sdmf("6095551212", "09301224"))
        bad[14] ^= 0x02
        pty.write(b"\x55" * 10 + bytes(bad))
        pty.write(b"\x55" * 10 + encode_sdmf(None, "09301225", Absence.PRIVATE))
        error = await _next(events)
        assert isinstance(error, LineError)
        assert "bad checksum" in error.error
        event = await _next(events)
        assert isinstance(event, CallerId)
        assert (event.number, event.absence) == (None, Absence.PRIVATE)
        await events.aclose()


async def test_tci_unit_on_a_pty(pty: Pty) -> None:
    async with _device(pty, "auto") as device:
        assert device.format.value == "auto"
        events = device.events()
        pty.write(b"01 R     09/26 11:28:02\r\n01 I S 0000 G A1 09/26 11:28 AM 800-240-4637 CallerID.com\r\n")
        assert isinstance(await _next(events), Ring)
        event = await _next(events)
        assert isinstance(event, CallerId)
        assert (event.line, event.number, event.name) == ("1", "800-240-4637", "CallerID.com")
        assert device.format.value == "tci"
        pty.write(b"01 F     09/26 11:28:09\r\n01 N     09/26 11:32:45\r\n")
        assert isinstance(await _next(events), OffHook)
        assert isinstance(await _next(events), OnHook)
        await events.aclose()


async def test_netcallerid_box_on_a_pty(pty: Pty) -> None:
    async with _device(pty, "netcallerid") as device:
        events = device.events()
        pty.write(b"###DATE08082225...NMBR14075551212...NAMEJOHN+++\r")
        event = await _next(events)
        assert isinstance(event, CallerId)
        assert (event.number, event.name, event.device_time) == ("14075551212", "JOHN", "08082225")
        await events.aclose()


async def test_closing_the_pty_raises_device_error(pty: Pty) -> None:
    device = _device(pty, "binary")
    async with device:
        events = device.events()
        pty.write(encode_sdmf("5551234", "01151230"))
        assert isinstance(await _next(events), CallerId)
        pty.close()
        with pytest.raises(DeviceError):
            await _next(events)
        await events.aclose()
    # Reopening a port that is gone fails the same way, for the runtime to back off.
    with pytest.raises(DeviceError):
        async with device:
            pass


async def test_open_missing_port_and_usb_match() -> None:
    with pytest.raises(DeviceError, match="cannot open"):
        async with SerialBoxDevice("box", SerialBoxConfig(port="/dev/does-not-exist")):
            pass
    with pytest.raises(DeviceError, match="no serial port"):
        async with SerialBoxDevice("box", SerialBoxConfig(usb="ffff:fffe", serial_number="nope")):
            pass


async def test_open_close_cycles_leak_no_threads_or_fds(pty: Pty) -> None:
    device = _device(pty, "binary")

    async def cycle(n: int) -> None:
        async with device:
            events = device.events()
            pty.write(encode_sdmf(f"55512{n:02d}", "01151230"))
            event = await _next(events)
            assert isinstance(event, CallerId)
            assert event.number == f"55512{n:02d}"
            await events.aclose()

    await cycle(0)  # warm up the thread pool
    fds = len(os.listdir("/proc/self/fd"))
    threads = threading.active_count()
    for n in range(1, 21):
        await cycle(n)
    assert len(os.listdir("/proc/self/fd")) == fds
    assert threading.active_count() <= threads + 1
