"""Options of the ``hayes`` device type (a ``[[devices]]`` table with ``type = "hayes"``)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from agent.seat.devices import DeviceConfig

DEFAULT_INIT = ("ATZ", "ATE0")
#: Caller-ID enable commands, tried in order: Rockwell/Conexant/Agere/USR (+VCID),
#: older Rockwell and 3Com (#CID), some Lucent/Agere (%CCID), and the rest (+CID).
DEFAULT_CID_COMMANDS = ("AT+VCID=1", "AT#CID=1", "AT%CCID=1", "AT+CID=1")

_USB_ID = re.compile(r"^[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}$")


class HayesConfig(DeviceConfig):
    """A serial or USB (CDC-ACM) modem that reports rings and caller ID.

    Give either ``port`` (a path such as ``/dev/ttyACM0`` or a udev symlink) or
    ``usb`` (``"VID:PID"`` in hex, optionally with ``serial_number``), which is
    looked up each time the port is opened, so the modem is found again after
    it re-enumerates under another name.
    """

    port: str | None = Field(default=None, description="serial port path")
    usb: str | None = Field(default=None, description='USB vendor and product id, "VID:PID" in hex')
    serial_number: str | None = Field(default=None, description="USB serial number, with usb")
    baud: int = Field(default=115200, gt=0, description="serial speed")
    init: list[str] = Field(default_factory=lambda: list(DEFAULT_INIT), description="setup commands")
    cid_commands: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CID_COMMANDS),
        description="caller-ID enable commands: the first the modem answers OK wins",
    )
    line: str = Field(default="1", min_length=1, description="the label of the modem's line")
    dial_pickup_delay: float = Field(
        default=4.0, ge=0, le=60, description="seconds the rep has to lift the handset before ATH"
    )
    read_timeout: float = Field(default=0.2, gt=0, le=5, description="seconds one blocking read waits")
    command_timeout: float = Field(default=3.0, gt=0, le=60, description="seconds to wait for OK/ERROR")
    dial_timeout: float = Field(default=30.0, gt=0, le=120, description="seconds to wait for ATDT's OK")
    cid_timeout: float = Field(
        default=2.0, gt=0, le=10, description="seconds a caller-ID block waits for the line that ends it"
    )

    @field_validator("usb")
    @classmethod
    def _usb(cls, value: str | None) -> str | None:
        if value is not None and not _USB_ID.match(value):
            raise ValueError(f'usb must be "VID:PID" in hex, such as "0803:3095", not {value!r}')
        return value.lower() if value is not None else None

    @field_validator("init", "cid_commands")
    @classmethod
    def _commands(cls, value: list[str]) -> list[str]:
        for command in value:
            if not command.strip().upper().startswith("AT"):
                raise ValueError(f"{command!r} is not an AT command")
            if any(ch in command for ch in "\r\n"):
                raise ValueError(f"{command!r}: one command per entry, without line breaks")
        return [command.strip() for command in value]

    @model_validator(mode="after")
    def _where(self) -> HayesConfig:
        if (self.port is None) == (self.usb is None):
            raise ValueError("give exactly one of port or usb")
        if self.serial_number is not None and self.usb is None:
            raise ValueError("serial_number needs usb")
        return self


__all__ = ["DEFAULT_CID_COMMANDS", "DEFAULT_INIT", "HayesConfig"]
