"""Options of the ``ncid`` device type (a ``[[devices]]`` table with ``type = "ncid"``)."""

from __future__ import annotations

from pydantic import Field, field_validator

from agent.seat.devices import DeviceConfig


class NcidConfig(DeviceConfig):
    """Where the NCID server is and how its line labels map to ours.

    Example::

        [[devices]]
        id = "ncid"
        type = "ncid"
        host = "192.168.1.10"
        lines = { POTS = "1", VOIP = "2" }
    """

    host: str = Field(default="127.0.0.1", min_length=1, description="NCID server host name or address")
    port: int = Field(default=3333, ge=1, le=65535, description="NCID server TCP port")
    lines: dict[str, str] = Field(
        default_factory=dict,
        description="NCID LINE label -> our line label; unmapped labels are used as they are, '-' is '1'",
    )
    connect_timeout: float = Field(
        default=10.0, gt=0, description="seconds to connect and finish the start-up"
    )
    keepalive: float = Field(
        default=900.0,
        gt=0,
        description="seconds of silence before sending the API's empty line to check the server is there",
    )
    ring_zero_answers: bool | None = Field(
        default=None,
        description=(
            "CIDINFO ring count 0 means answered (true for SIP/Whozz gateways, false for modems); "
            "unset: learned per line from the first end-of-call report"
        ),
    )
    ident: bool = Field(default=True, description="introduce ourselves with HELLO: IDENT: to API 1.5 servers")
    no_log: bool = Field(
        default=False, description="ask API 1.5 servers not to send the call log (HELLO: CMD: no_log)"
    )

    @field_validator("lines")
    @classmethod
    def _lines(cls, value: dict[str, str]) -> dict[str, str]:
        for ncid_label, ours in value.items():
            if not ours or ours == "*":
                raise ValueError(f"line {ncid_label!r} must map to a label other than '' and '*'")
        return value


__all__ = ["NcidConfig"]
