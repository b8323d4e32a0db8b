"""The ``hayes`` device: a voice/data modem or a USB caller-ID modem on a serial port.

transport (bytes) → :class:`~plugins.hayes.protocol.HayesParser` (lines → events
and replies) → this driver, which owns one reader task per open port. The
reader hands line events to :meth:`HayesModem.events` through a queue and
command replies to whoever sent the command, so ``dial`` works while the
runtime is reading events.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import ClassVar

from agent.errors import DeviceError, DeviceTimeout
from agent.events import Dialed, LineEvent
from agent.numbers import clean
from agent.seat.devices import Device, DeviceConfig
from plugins.hayes.config import HayesConfig
from plugins.hayes.protocol import HayesParser, InitPlan, Reply
from plugins.hayes.transport import SerialTransport

logger = logging.getLogger(__name__)

_DIAL_CHARS = frozenset("0123456789*#,WP")


@dataclass(frozen=True, slots=True)
class _Failed:
    """The reader stopped: ``events()`` raises it."""

    error: BaseException


_CLOSED = object()


class HayesModem(Device):
    """A Hayes-compatible modem: rings and caller ID in, click-to-dial out.

    A plain modem cannot see the handset, so ``reports_hook`` is False; it can
    seize and release the line (``dial``, ``hangup``).
    """

    type: ClassVar[str] = "hayes"
    Config: ClassVar[builtins.type[DeviceConfig]] = HayesConfig
    reports_hook: ClassVar[bool] = False
    can_dial: ClassVar[bool] = True
    can_hangup: ClassVar[bool] = True

    def __init__(self, device_id: str, config: DeviceConfig) -> None:
        super().__init__(device_id, config)
        assert isinstance(self.config, HayesConfig)
        config = self.config
        self.options: HayesConfig = config
        self.cid_command: str | None = None
        self._transport: SerialTransport | None = None
        self._parser: HayesParser | None = None
        self._queue: asyncio.Queue[object] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._reply: asyncio.Future[Reply] | None = None

    def lines(self) -> list[str]:
        """The one line a modem serves."""
        return [self.options.line]

    @classmethod
    async def probe(cls, port: str) -> str | None:
        """Send ``AT`` (and ``ATI3`` for the model) to ``port``; a modem answers OK."""
        transport = SerialTransport(device_id=f"probe:{port}", port=port, baud=115200, read_timeout=0.2)
        try:
            await transport.open()
        except DeviceError:
            return None
        try:
            if "OK" not in await _ask(transport, b"AT\r"):
                return None
            model = [
                line.strip()
                for line in (await _ask(transport, b"ATI3\r")).splitlines()
                if line.strip() and line.strip() not in ("OK", "ERROR", "ATI3")
            ]
            return "Hayes modem (answers AT)" + (f": {model[0]}" if model else "")
        except DeviceError:
            return None
        finally:
            await transport.close()

    # -- open and close -----------------------------------------------------------

    async def __aenter__(self) -> HayesModem:
        if self._transport is not None:
            raise DeviceError(f"{self.device_id}: already open")
        config = self.options
        self._queue = asyncio.Queue()
        self._parser = HayesParser(
            self.device_id, config.line, block_timeout=config.cid_timeout, name_encoding=config.name_encoding
        )
        transport = SerialTransport(
            device_id=self.device_id,
            port=config.port,
            usb=config.usb,
            serial_number=config.serial_number,
            baud=config.baud,
            read_timeout=config.read_timeout,
        )
        await transport.open()
        self._transport = transport
        self._reader = asyncio.create_task(self._read_loop(), name=f"hayes:{self.device_id}")
        try:
            await self._initialise()
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: builtins.type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        reader, self._reader = self._reader, None
        transport, self._transport = self._transport, None
        try:
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        finally:
            if self._queue is not None:
                self._queue.put_nowait(_CLOSED)
            if transport is not None:
                # Shielded: even when we are cancelled the port gets closed, not leaked.
                await asyncio.shield(transport.close())

    async def _initialise(self) -> None:
        plan = InitPlan(self.options.init, self.options.cid_commands)
        while (command := plan.next_command()) is not None:
            try:
                reply = await self.command(command)
            except DeviceTimeout:
                if command in self.options.init:
                    raise
                plan.reply(False, "no reply")
                continue
            plan.reply(reply.ok, reply.text)
        self.cid_command = plan.cid_command
        logger.info(
            "%s: modem ready on %s (caller ID: %s)",
            self.device_id,
            self._transport.path if self._transport else "?",
            plan.cid_command or "no command",
        )

    # -- reading ------------------------------------------------------------------

    async def _read_loop(self) -> None:
        transport, parser, queue = self._transport, self._parser, self._queue
        assert transport is not None
        assert parser is not None
        assert queue is not None
        try:
            while True:
                data = await transport.read()
                now = datetime.now(UTC)
                outputs = parser.feed(data, now) if data else []
                outputs.extend(parser.flush(now))
                for out in outputs:
                    if isinstance(out, Reply):
                        self._on_reply(out)
                    else:
                        queue.put_nowait(out)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("%s: reading the modem failed: %s", self.device_id, exc)
            if self._reply is not None and not self._reply.done():
                self._reply.set_exception(DeviceError(str(exc)))
            queue.put_nowait(_Failed(exc))

    def _on_reply(self, reply: Reply) -> None:
        waiter = self._reply
        if not reply.final:
            logger.debug("%s: < %s", self.device_id, reply.text)
        elif waiter is None or waiter.done():
            # Unsolicited (BUSY, NO DIALTONE after the rep hung up, ...) or too late.
            logger.info("%s: modem said %r", self.device_id, reply.text)
        else:
            waiter.set_result(reply)

    async def events(self) -> AsyncIterator[LineEvent]:
        """Rings, caller ID and hook indications until the device is closed or its port vanishes."""
        queue = self._queue
        if queue is None or self._transport is None:
            raise DeviceError(f"{self.device_id}: the modem is not open")
        while True:
            item = await queue.get()
            if item is _CLOSED:
                queue.put_nowait(_CLOSED)
                return
            if isinstance(item, _Failed):
                queue.put_nowait(item)
                error = item.error
                if isinstance(error, DeviceError):
                    raise DeviceError(str(error)) from error
                raise DeviceError(f"{self.device_id}: {error!r}") from error
            assert isinstance(item, LineEvent)
            yield item

    # -- commands -----------------------------------------------------------------

    async def command(self, command: str, timeout: float | None = None) -> Reply:
        """Send one AT command and wait for its result code (OK, ERROR, NO CARRIER, ...).

        Raises :class:`DeviceTimeout` when the modem does not answer in time and
        :class:`DeviceError` when the port is gone.
        """
        transport, parser = self._transport, self._parser
        if transport is None or parser is None:
            raise DeviceError(f"{self.device_id}: the modem is not open")
        wait = self.options.command_timeout if timeout is None else timeout
        async with self._lock:
            loop = asyncio.get_running_loop()
            self._reply = loop.create_future()
            parser.command_sent()
            logger.debug("%s: > %s", self.device_id, command)
            try:
                await transport.write(command.encode("ascii") + b"\r")
                async with asyncio.timeout(wait):
                    reply = await self._reply
            except TimeoutError:
                parser.command_pending = False
                raise DeviceTimeout(f"{self.device_id}: no reply to {command!r} within {wait:g} s") from None
            finally:
                self._reply = None
        logger.debug("%s: < %s", self.device_id, reply.text)
        return reply

    async def dial(self, line: str, number: str) -> None:
        """Dial ``number`` for the rep, give them ``dial_pickup_delay`` to lift the handset, release the line.

        ``ATDT<number>;`` dials and returns the modem to command mode; ``ATH``
        then drops the modem off the line so the rep's handset carries the call.
        ``ATH`` is sent whatever happens, also on error or cancellation.
        """
        self._check_line(line)
        digits = "".join(ch for ch in clean(number).upper() if ch in _DIAL_CHARS)
        if not any(ch.isdigit() for ch in digits):
            raise DeviceError(f"{self.device_id}: nothing to dial in {number!r}")
        if self._transport is None:
            raise DeviceError(f"{self.device_id}: the modem is not open")
        try:
            reply = await self.command(f"ATDT{digits};", timeout=self.options.dial_timeout)
            if not reply.ok:
                raise DeviceError(f"{self.device_id}: dialing {digits} failed: {reply.text}")
            if self._queue is not None:
                self._queue.put_nowait(
                    Dialed(
                        device_id=self.device_id,
                        line=self.options.line,
                        at=datetime.now(UTC),
                        digits=digits,
                        complete=True,
                    )
                )
            await asyncio.sleep(self.options.dial_pickup_delay)
        finally:
            # Shielded, so a second cancellation cannot leave the line seized.
            await asyncio.shield(self._release())

    async def hangup(self, line: str) -> None:
        """Put the modem on hook (``ATH``)."""
        self._check_line(line)
        await self._release(raise_errors=True)

    async def _release(self, *, raise_errors: bool = False) -> None:
        try:
            reply = await self.command("ATH")
            if not reply.ok:
                raise DeviceError(f"{self.device_id}: the modem answered {reply.text!r} to ATH")
        except DeviceError as exc:
            if raise_errors:
                raise
            logger.error("%s: could not release the line: %s", self.device_id, exc)

    def _check_line(self, line: str) -> None:
        if line != self.options.line:
            raise DeviceError(
                f"{self.device_id}: no line {line!r} (the modem's line is {self.options.line!r})"
            )


__all__ = ["HayesModem"]


async def _ask(transport: SerialTransport, command: bytes, wait: float = 1.5) -> str:
    """Write ``command`` and collect what comes back until a result code or ``wait`` seconds."""
    await transport.write(command)
    text = ""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while loop.time() < deadline:
        text += (await transport.read()).decode("ascii", "replace")
        if any(code in text for code in ("OK\r", "OK\n", "ERROR")):
            break
    return text
