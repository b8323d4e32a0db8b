"""Shared fixtures of the unit tests: deterministic uuids and a tiny device type."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest

from agent.events import ALL_LINES, DeviceUp, LineEvent
from agent.seat.devices import Device, DeviceConfig, DeviceRegistry

#: The time TinyDevice reports its DeviceUp at.
BASE_TIME = datetime(2024, 5, 6, 9, 0, 0, tzinfo=UTC)


class TinyDevice(Device):
    """A device type for registry and config tests: it reports itself up, once."""

    type = "tiny"

    class Config(DeviceConfig):
        port: str
        baud: int = 9600

    async def events(self) -> AsyncIterator[LineEvent]:
        yield DeviceUp(device_id=self.device_id, line=ALL_LINES, at=BASE_TIME, detail=self.config.port)


@pytest.fixture
def uuids() -> Callable[[], str]:
    """A ``new_uuid`` for the tracker: ``call-1``, ``call-2``, ..."""
    counter = itertools.count(1)
    return lambda: f"call-{next(counter)}"


@pytest.fixture
def tiny_registry() -> DeviceRegistry:
    """A device registry holding :class:`TinyDevice`, owned by ``tiny-plugin``."""
    registry = DeviceRegistry()
    registry.add(TinyDevice, "tiny-plugin")
    return registry


@pytest.fixture
def tiny_device_cls() -> type[TinyDevice]:
    """The :class:`TinyDevice` class (type name ``tiny``)."""
    return TinyDevice
