"""The modem's serial port: pyserial, opened by path or by USB id, blocking calls off the event loop.

Every blocking call runs through :func:`asyncio.to_thread` with a short
time-out, so closing never waits long and no thread of our own is left behind.
A port that vanishes (the USB modem unplugged, the pty closed) raises
:class:`~agent.errors.DeviceError`; the runtime then reports ``device_down``
and opens the device again later, which looks the USB id up afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable
from typing import Any

import serial
from serial.tools import list_ports

from agent.errors import DeviceError

logger = logging.getLogger(__name__)


def find_usb_port(usb: str, serial_number: str | None, ports: Iterable[Any]) -> str:
    """The device path of the port with USB id ``usb`` ("VID:PID", hex) among ``ports``.

    ``ports`` are :func:`serial.tools.list_ports.comports` entries (anything with
    ``device``, ``vid``, ``pid`` and ``serial_number``). With ``serial_number``
    only that unit matches. Two matching ports without a serial number to tell
    them apart are an error rather than a guess.
    """
    vid_text, pid_text = usb.split(":")
    vid, pid = int(vid_text, 16), int(pid_text, 16)
    seen = list(ports)
    matches = [
        p
        for p in seen
        if p.vid == vid
        and p.pid == pid
        and (serial_number is None or (p.serial_number or "") == serial_number)
    ]
    if not matches:
        present = ", ".join(
            f"{p.device} ({p.vid:04x}:{p.pid:04x})" for p in seen if p.vid is not None and p.pid is not None
        )
        wanted = usb + (f" serial {serial_number}" if serial_number else "")
        raise DeviceError(f"no USB serial port {wanted} (USB ports present: {present or 'none'})")
    if len(matches) > 1:
        found = ", ".join(f"{p.device} (serial {p.serial_number})" for p in matches)
        raise DeviceError(f"several ports match USB {usb}: {found}; set serial_number")
    return str(matches[0].device)


class SerialTransport:
    """One open serial port. Not reentrant: one reader, writes serialised by the caller."""

    def __init__(
        self,
        *,
        device_id: str,
        port: str | None = None,
        usb: str | None = None,
        serial_number: str | None = None,
        baud: int = 115200,
        read_timeout: float = 0.2,
        write_timeout: float = 2.0,
    ) -> None:
        if (port is None) == (usb is None):
            raise ValueError("give exactly one of port or usb")
        self.device_id = device_id
        self.port = port
        self.usb = usb
        self.serial_number = serial_number
        self.baud = baud
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.path: str | None = None
        self._serial: serial.Serial | None = None
        self._read: asyncio.Future[bytes] | None = None

    @property
    def is_open(self) -> bool:
        """True between :meth:`open` and :meth:`close`."""
        return self._serial is not None

    def resolve(self) -> str:
        """The path to open now (blocking: lists the USB ports when opening by USB id)."""
        if self.port is not None:
            return self.port
        assert self.usb is not None
        return find_usb_port(self.usb, self.serial_number, list_ports.comports())

    async def open(self) -> None:
        """Find and open the port; :class:`DeviceError` when it is not there or cannot be opened."""
        if self._serial is not None:
            raise DeviceError(f"{self.device_id}: {self.path} is already open")
        path = await asyncio.to_thread(self.resolve)
        try:
            self._serial = await asyncio.to_thread(self._open, path)
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"{self.device_id}: cannot open {path}: {exc}") from exc
        self.path = path
        logger.info("%s: opened %s at %d baud", self.device_id, path, self.baud)

    def _open(self, path: str) -> serial.Serial:
        port = serial.Serial(
            path,
            self.baud,
            timeout=self.read_timeout,
            write_timeout=self.write_timeout,
            exclusive=True,
        )
        try:
            # Whatever the modem said while nobody listened would be taken for replies.
            port.reset_input_buffer()
        except BaseException:
            port.close()
            raise
        return port

    async def read(self) -> bytes:
        """What arrived, or ``b""`` after the read time-out; :class:`DeviceError` when the port is gone."""
        port = self._port()
        if self._read is None:
            self._read = asyncio.ensure_future(asyncio.to_thread(self._read_blocking, port))
        # Shielded: a cancelled reader leaves the thread to finish its short read,
        # and close() waits for it before closing the port under it.
        future = self._read
        try:
            data = await asyncio.shield(future)
        finally:
            if future.done():
                self._read = None
        return data

    def _read_blocking(self, port: serial.Serial) -> bytes:
        try:
            data: bytes = port.read(1)
            if data and port.in_waiting:
                data += port.read(port.in_waiting)
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"{self.device_id}: {self.path} went away: {exc}") from exc
        if not data and self.path is not None and not os.path.exists(self.path):
            raise DeviceError(f"{self.device_id}: {self.path} went away")
        return data

    async def write(self, data: bytes) -> None:
        """Send ``data``; :class:`DeviceError` when the port is gone or stuck."""
        port = self._port()
        try:
            await asyncio.to_thread(port.write, data)
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"{self.device_id}: writing to {self.path} failed: {exc}") from exc

    async def close(self) -> None:
        """Close the port, after the read in flight (if any) has timed out. Safe to call twice."""
        port, self._serial = self._serial, None
        pending, self._read = self._read, None
        if pending is not None:
            with contextlib.suppress(Exception):
                await pending
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()
            logger.info("%s: closed %s", self.device_id, self.path)

    def _port(self) -> serial.Serial:
        if self._serial is None:
            raise DeviceError(f"{self.device_id}: the port is not open")
        return self._serial


__all__ = ["SerialTransport", "find_usb_port"]
