"""Options of the ``serialbox`` device type (a ``[[devices]]`` table with ``type = "serialbox"``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.seat.devices import DeviceConfig

#: The documented port speeds: NetCallerID 4800 8N1 (NCID doc/Devices.md),
#: CallerID.com units 9600 8N1 (Whozz Calling? manuals); HT9032D decoder boxes
#: pass the line's 1200 bit/s Bell 202 / V.23 data straight through.
DEFAULT_BAUDRATE = {"binary": 1200, "netcallerid": 4800, "tci": 9600, "auto": 9600}

_USB_ID = re.compile(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{4}")


class SerialBoxConfig(DeviceConfig):
    """Where the box is and what it speaks.

    Give ``port`` (``/dev/ttyUSB0``, ``COM3``) or ``usb`` (``"VID:PID"`` in hex)
    and/or ``serial_number``: a USB box is then found again by its identity
    after it is re-plugged under a new device name.
    """

    port: str | None = Field(default=None, description="serial port path")
    usb: str | None = Field(default=None, description='USB "VID:PID" of the box, hex')
    serial_number: str | None = Field(default=None, description="USB serial number of the box")
    format: Literal["auto", "binary", "netcallerid", "tci"] = Field(
        default="auto", description="record format; auto recognises it from the first records"
    )
    baudrate: int | None = Field(default=None, gt=0, description="port speed (default: by format)")
    line: str = Field(default="1", min_length=1, description="line label of a one-line box")
    lines: list[str] = Field(
        default_factory=lambda: ["1"], min_length=1, description="line labels of a multi-line tci unit"
    )
    read_timeout: float = Field(default=0.2, gt=0, le=5, description="seconds one blocking read waits")
    idle_flush: float = Field(
        default=2.0, gt=0, description="seconds of silence after which a partial record is reported"
    )

    @field_validator("usb")
    @classmethod
    def _usb(cls, value: str | None) -> str | None:
        if value is not None and not _USB_ID.fullmatch(value):
            raise ValueError(f'usb must be "VID:PID" in hex, like "0403:6001", not {value!r}')
        return value.lower() if value else value

    @model_validator(mode="after")
    def _where(self) -> SerialBoxConfig:
        if not (self.port or self.usb or self.serial_number):
            raise ValueError("give the box's port, or its usb VID:PID and/or serial_number")
        return self

    def speed(self) -> int:
        """The port speed to open with."""
        return self.baudrate or DEFAULT_BAUDRATE[self.format]


__all__ = ["DEFAULT_BAUDRATE", "SerialBoxConfig"]
