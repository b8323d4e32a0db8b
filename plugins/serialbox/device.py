"""The ``serialbox`` device: a caller-ID box (not a modem) on a serial or USB-serial port.

Transport (pySerial, :mod:`plugins.serialbox.transport`) → pure parser
(:mod:`plugins.serialbox.protocol`) → line events. The box only talks; nothing
is sent to it. When the port vanishes ``events()`` raises
:class:`~agent.errors.DeviceError` and the runtime reopens it with back-off.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import TracebackType
from typing import ClassVar

from agent.errors import DeviceError
from agent.events import CallerId, LineEvent
from agent.seat.devices import Device, DeviceConfig
from plugins.serialbox.config import SerialBoxConfig
from plugins.serialbox.protocol import Format, ParseError, Parser, to_events
from plugins.serialbox.transport import SerialTransport, find_port

logger = logging.getLogger(__name__)


class SerialBoxDevice(Device):
    """A HT9032D / CTI Comet raw decoder, a NetCallerID box or a CallerID.com (TCI) serial unit.

    Only CallerID.com units in detail mode report hook state, so
    ``reports_hook`` is True for ``format = "tci"`` alone; with ``auto`` the
    tracker switches to hook-aware reading on the first hook event it sees.
    """

    type: ClassVar[str] = "serialbox"
    Config: ClassVar[builtins.type[DeviceConfig]] = SerialBoxConfig

    def __init__(self, device_id: str, config: DeviceConfig) -> None:
        super().__init__(device_id, config)
        assert isinstance(self.config, SerialBoxConfig)
        config = self.config
        self.options: SerialBoxConfig = config
        # Per instance: what the box reports depends on its configured format.
        self.reports_hook = config.format == "tci"  # type: ignore[misc]
        self._transport: SerialTransport | None = None
        self._parser = Parser(config.format, name_encoding=config.name_encoding)

    def lines(self) -> list[str]:
        """The configured labels (``lines`` for a tci unit, else ``line``)."""
        return list(self.options.lines) if self.options.format == "tci" else [self.options.line]

    @property
    def format(self) -> Format:
        """The record format in use (``auto`` until recognised)."""
        return self._parser.format

    async def __aenter__(self) -> SerialBoxDevice:
        if self._transport is not None:
            raise DeviceError(f"{self.device_id}: already open")
        options = self.options
        path = await asyncio.to_thread(
            find_port, port=options.port, usb=options.usb, serial_number=options.serial_number
        )
        transport = SerialTransport(self.device_id, path, options.speed(), read_timeout=options.read_timeout)
        await transport.open()
        self._transport = transport
        # A reopened port starts clean: half a record from before is gone for good.
        self._parser = Parser(options.format, name_encoding=options.name_encoding)
        return self

    async def __aexit__(
        self,
        exc_type: builtins.type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.close()

    async def events(self) -> AsyncIterator[LineEvent]:
        """Line events as the box reports them, until the port goes away (:class:`DeviceError`)."""
        transport = self._transport
        if transport is None:
            raise DeviceError(f"{self.device_id}: not open")
        loop = asyncio.get_running_loop()
        last_data = loop.time()
        while True:
            data = await transport.read()
            if data:
                last_data = loop.time()
                items = self._parser.feed(data)
            elif self._parser.pending and loop.time() - last_data >= self.options.idle_flush:
                items = self._parser.flush()
            else:
                continue
            at = datetime.now(UTC)
            for item in items:
                if isinstance(item, ParseError):
                    logger.warning("%s: %s: %r", self.device_id, item.reason, item.raw)
                for event in to_events(item, device_id=self.device_id, at=at, line=self.options.line):
                    if isinstance(event, CallerId):
                        logger.debug("%s: caller ID on line %s: %s", self.device_id, event.line, event.number)
                    yield event


__all__ = ["SerialBoxDevice"]
