"""Options of the ``simulator`` device type (a ``[[devices]]`` table with ``type = "simulator"``)."""

from __future__ import annotations

import phonenumbers
from pydantic import Field, field_validator

from agent.numbers import DEFAULT_REGION
from agent.seat.devices import DeviceConfig


class SimulatorConfig(DeviceConfig):
    """How busy the simulated lines are and what their calls look like.

    Times are seconds of simulated time; ``speed`` compresses them (10 runs
    everything ten times faster), which ``demo`` and the tests use.
    """

    lines: int = Field(default=2, ge=1, le=64, description="number of lines, labelled '1'..'N'")
    rate: float = Field(default=1.0, gt=0, description="calls per minute per line (Poisson arrivals)")
    inbound_ratio: float = Field(default=0.6, ge=0, le=1, description="fraction of calls that are inbound")
    answer_rate: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="fraction of calls that connect (inbound picked up, outbound answered by the far end)",
    )
    talk_median: float = Field(default=90.0, gt=0, description="median talk time (log-normal)")
    talk_sigma: float = Field(default=0.9, ge=0, description="sigma of the log of the talk time")
    # Mainland China cadence: 1 s on, 4 s off. Kept below the tracker's 8 s
    # ring timeout, or every ring would look like a new call.
    ring_period: float = Field(default=5.0, ge=1.0, le=7.5, description="seconds from one ring to the next")
    max_rings: int = Field(default=6, ge=1, le=50, description="rings of an unanswered inbound call")
    withheld_ratio: float = Field(
        default=0.05, ge=0, le=1, description="fraction of inbound calls whose caller withheld the number"
    )
    region: str = Field(default=DEFAULT_REGION, description="numbering plan of the simulated callers")
    seed: int | None = Field(
        default=None, description="fixes the sequence of calls (None: different each run)"
    )
    speed: float = Field(default=1.0, gt=0, description="time compression: 10 runs ten times faster")
    known_numbers: list[str] = Field(
        default=[],
        max_length=10_000,
        description="numbers (as dialed, e.g. 13801012345) of customers who call and are called",
    )
    known_ratio: float = Field(
        default=0.6, ge=0, le=1, description="fraction of calls with a known number, when there are any"
    )

    @field_validator("known_numbers")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for number in value:
            if not number.isdigit() or not 3 <= len(number) <= 15:
                raise ValueError(f"not a number as dialed (digits only): {number!r}")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        value = value.upper()
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r} (an ISO 3166 code such as CN, US, GB)")
        return value


__all__ = ["SimulatorConfig"]
