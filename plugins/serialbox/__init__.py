"""Caller-ID boxes that are not modems, on a serial or USB-serial port: the ``serialbox`` device type.

Raw decoder boxes (Holtek HT9032D, CTI Comet USB), NetCallerID boxes and
CallerID.com "Whozz Calling?" serial units (TCI format). Configure it as::

    [[devices]]
    id = "box"
    type = "serialbox"
    port = "/dev/ttyUSB0"     # or usb = "0403:6001" and/or serial_number = "A1B2C3"
    format = "auto"           # "binary" | "netcallerid" | "tci"
    # baudrate = 4800         # default by format: binary 1200, netcallerid 4800, tci 9600
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import agent
from agent.events import Decoder, LineEvent
from agent.seat.devices import Device
from plugins.serialbox.config import SerialBoxConfig
from plugins.serialbox.device import SerialBoxDevice
from plugins.serialbox.hid import HidCallerIdBox, UsbHandset
from plugins.serialbox.protocol import Format, Parser, detect, to_events


@agent.hookimpl
def register_devices(register: Callable[[type[Device]], None]) -> None:
    """Contribute the ``serialbox`` device type and the USB HID boxes and handsets."""
    register(SerialBoxDevice)
    register(HidCallerIdBox)
    register(UsbHandset)


def _sniff(head: bytes) -> float:
    """Claim only what no other decoder reads: NetCallerID records and binary frames.

    CallerID.com (TCI) text records are the ``whozz`` decoder's, which reads the
    records of serial and Ethernet units with the same parser. Raw binary frames
    are also what the core's "hex" decoder reads as text; only binary input that
    is not printable text is claimed.
    """
    fmt = detect(head)
    if fmt is Format.NETCALLERID or (fmt is Format.BINARY and not head.isascii()):
        return 0.8
    return 0.0


def _decode(data: bytes, *, name_encoding: str = "auto") -> list[LineEvent]:
    parser = Parser(Format.AUTO, name_encoding=name_encoding)
    at = datetime.now(UTC)
    items = [*parser.feed(data), *parser.flush()]
    return [event for item in items for event in to_events(item, device_id="file", at=at)]


@agent.hookimpl
def register_decoders(register: Callable[[Decoder], None]) -> None:
    """``serialbox``: a capture of a caller-ID box's serial output (binary frames, NetCallerID, TCI)."""
    register(
        Decoder(
            "serialbox",
            "caller-ID box serial capture: binary SDMF/MDMF, NetCallerID, TCI",
            _decode,
            _sniff,
            reads_names=True,
        )
    )


__all__ = ["SerialBoxConfig", "SerialBoxDevice", "register_decoders", "register_devices"]
