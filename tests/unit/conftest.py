"""Shared fixtures of the unit tests: no network, deterministic uuids and a tiny device type.

Unit tests are pure: every one runs with sockets disabled (pytest-socket), whether the suite is
run by ``make test-unit`` or a single file by hand. Unix sockets stay allowed, because asyncio's
event loop needs a socketpair.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime

import pytest
import pytest_socket

from agent.events import ALL_LINES, DeviceUp, LineEvent
from agent.seat.devices import Device, DeviceConfig, DeviceRegistry

#: The time TinyDevice reports its DeviceUp at.
BASE_TIME = datetime(2024, 5, 6, 9, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    pytest_socket.disable_socket(allow_unix_socket=True)
    yield
    pytest_socket.enable_socket()


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
