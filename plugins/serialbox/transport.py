"""The serial port of a caller-ID box: find it, open it, read it off the event loop.

pySerial is blocking; each read runs in a worker thread through
:func:`asyncio.to_thread` and returns within ``read_timeout``, so closing never
waits long and no thread outlives the device.
"""

from __future__ import annotations

import asyncio
import logging

import serial
from serial.tools import list_ports

from agent.errors import DeviceError

logger = logging.getLogger(__name__)


def find_port(*, port: str | None, usb: str | None, serial_number: str | None) -> str:
    """The device path of the box: ``port`` as given, or the USB port matching ``usb`` / ``serial_number``.

    Raises :class:`DeviceError` when no attached port matches (the box is
    unplugged: the runtime retries with back-off).
    """
    if usb is None and serial_number is None:
        if port is None:
            raise DeviceError("no serial port configured")
        return port
    vid = pid = None
    if usb is not None:
        vid, pid = (int(part, 16) for part in usb.split(":"))
    matches = sorted(
        (
            info
            for info in list_ports.comports()
            if (vid is None or (info.vid == vid and info.pid == pid))
            and (serial_number is None or info.serial_number == serial_number)
        ),
        key=lambda info: info.device,
    )
    wanted = " ".join(
        part
        for part in (f"usb={usb}" if usb else "", f"serial={serial_number}" if serial_number else "")
        if part
    )
    if not matches:
        raise DeviceError(f"no serial port with {wanted} is attached")
    if len(matches) > 1:
        logger.warning(
            "%d ports match %s (%s); using %s: set serial_number to choose",
            len(matches),
            wanted,
            ", ".join(m.device for m in matches),
            matches[0].device,
        )
    return str(matches[0].device)


class SerialTransport:
    """One open serial port, 8N1, read in short blocking slices off the event loop."""

    def __init__(self, device_id: str, path: str, baudrate: int, *, read_timeout: float = 0.2) -> None:
        self.device_id = device_id
        self.path = path
        self.baudrate = baudrate
        self.read_timeout = read_timeout
        self._serial: serial.Serial | None = None
        self._inflight: asyncio.Future[bytes] | None = None

    async def open(self) -> None:
        """Open the port; :class:`DeviceError` when it is missing or busy."""
        try:
            self._serial = await asyncio.to_thread(
                serial.Serial,
                self.path,
                self.baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=self.read_timeout,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceError(f"{self.device_id}: cannot open {self.path}: {exc}") from exc
        logger.info("%s: opened %s at %d 8N1", self.device_id, self.path, self.baudrate)

    def _read_blocking(self) -> bytes:
        port = self._serial
        if port is None:
            raise DeviceError(f"{self.device_id}: {self.path} is closed")
        data = port.read(1)  # waits up to read_timeout
        if data:
            waiting = port.in_waiting
            if waiting:
                data += port.read(waiting)
        return bytes(data)

    async def read(self) -> bytes:
        """The bytes that arrived (b"" after ``read_timeout`` of silence).

        Raises :class:`DeviceError` when the port vanished (unplugged, pty closed).
        """
        if self._serial is None:
            raise DeviceError(f"{self.device_id}: {self.path} is not open")
        future = asyncio.ensure_future(asyncio.to_thread(self._read_blocking))
        self._inflight = future
        try:
            # Shielded: a cancelled reader leaves the thread to finish its slice;
            # close() waits for it before closing the port under it.
            return await asyncio.shield(future)
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"{self.device_id}: {self.path} went away: {exc}") from exc

    async def close(self) -> None:
        """Close the port once any read in progress has returned."""
        future, self._inflight = self._inflight, None
        if future is not None:
            await asyncio.wait([future])
            if not future.cancelled():
                future.exception()  # retrieved: it was reported (or is moot) already
        port, self._serial = self._serial, None
        if port is not None:
            await asyncio.to_thread(_close_quietly, port)
            logger.info("%s: closed %s", self.device_id, self.path)


def _close_quietly(port: serial.Serial) -> None:
    try:
        port.close()
    except (serial.SerialException, OSError) as exc:
        # The port is already gone (unplugged); there is nothing left to release.
        logger.debug("closing %s: %s", port.port, exc)


__all__ = ["SerialTransport", "find_port"]
