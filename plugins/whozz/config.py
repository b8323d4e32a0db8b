"""Options of the ``whozz`` device type (a ``[[devices]]`` table with ``type = "whozz"``)."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from agent.seat.devices import DeviceConfig
from plugins.whozz.protocol import DEFAULT_PORT, MAX_LINES


def parse_listen(value: str) -> tuple[str, int]:
    """``"0.0.0.0:3520"`` -> ``("0.0.0.0", 3520)``; ``"[::]:3520"`` for IPv6; the port may be 0."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT")
    host = host.strip("[]")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    ipaddress.ip_address(host)
    return host, port


class WhozzConfig(DeviceConfig):
    """Where to listen for a unit's packets and how its lines map to ours.

    Units broadcast on the LAN, so the listener must be on all addresses
    (``0.0.0.0:3520``, the default) to hear them; ``sources`` limits which hosts
    are believed. Example::

        [[devices]]
        id = "wc"
        type = "whozz"
        listen = "0.0.0.0:3520"
        sources = ["192.168.0.90"]
        line_count = 4
    """

    listen: str = Field(
        default=f"0.0.0.0:{DEFAULT_PORT}",
        description="UDP address:port to receive on; units broadcast to port 3520 of the LAN",
    )
    sources: list[str] = Field(
        default_factory=list, description="accept packets only from these unit addresses (empty: any)"
    )
    line_count: int = Field(default=2, ge=1, le=MAX_LINES, description="lines of the unit(s), shown up front")
    lines: dict[str, str] = Field(
        default_factory=dict, description="unit line number -> our line label (default: the number, '1'..)"
    )
    detail_records: bool = Field(
        default=True,
        description="the unit sends detail records (off hook, on hook, ring): Deluxe units; false for Basic",
    )
    end_records: bool = Field(
        default=False,
        description=(
            "without detail records, the unit still sends each call's end record (a Deluxe unit with"
            " its d toggle off): a call is over at its end record, not when its rings stop"
        ),
    )
    dedupe_seconds: float = Field(
        default=2.0, ge=0, le=60, description="an identical packet within this many seconds is a repeat"
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        for address in value:
            ipaddress.ip_address(address)
        return value

    @field_validator("lines")
    @classmethod
    def _lines(cls, value: dict[str, str]) -> dict[str, str]:
        for number, label in value.items():
            if not number.isdigit() or not 1 <= int(number) <= MAX_LINES:
                raise ValueError(f"unit line {number!r} is not a number 1-{MAX_LINES}")
            if not label or label == "*":
                raise ValueError(f"line {number} must map to a label other than '' and '*'")
        return value


__all__ = ["WhozzConfig", "parse_listen"]
