"""An example cti-agent plugin: a device type that places an unanswered call every few seconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from pydantic import Field

from agent import hookimpl
from agent.events import CallerId, LineEvent, Ring
from agent.seat.devices import Device, DeviceConfig


class ExampleClock(Device):
    """Every ``interval`` seconds: a ring and caller ID, then silence, so the call goes unanswered.

    The call tracker ends each call ``[tracker] ring_timeout`` seconds after its ring;
    an ``interval`` shorter than that reads as one long ringing call.
    """

    type = "example-clock"

    class Config(DeviceConfig):
        interval: float = Field(default=10.0, gt=0)
        line: str = "1"

    config: Config

    def lines(self) -> list[str]:
        return [self.config.line]

    async def events(self) -> AsyncIterator[LineEvent]:
        line = self.config.line
        while True:
            await asyncio.sleep(self.config.interval)
            now = datetime.now(UTC)
            yield Ring(device_id=self.device_id, line=line, at=now)
            yield CallerId(device_id=self.device_id, line=line, at=now, number="13800138000", name="Example")


@hookimpl
def register_devices(register: Callable[[type[Device]], None]) -> None:
    register(ExampleClock)
