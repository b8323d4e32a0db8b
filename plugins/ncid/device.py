"""The ``ncid`` device: a client of an NCID server over TCP.

Opening the device connects, reads the greeting, answers an API 1.5 server's
``210`` line with ``HELLO:`` lines, and skips the call log and options up to the
``300`` line; :meth:`NcidDevice.events` then turns live lines into line events
(see :mod:`plugins.ncid.protocol`). The connection going away is a
:class:`DeviceError`: the runtime reports ``device_down`` and reconnects with back-off.

The transport is a plain ``asyncio`` stream, small enough to live here.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import TracebackType
from typing import ClassVar

import agent
from agent.errors import DeviceError
from agent.events import LineError, LineEvent
from agent.seat.devices import Device, DeviceConfig
from plugins.ncid.config import NcidConfig
from plugins.ncid.protocol import DEFAULT_LINE, NcidSession, NcidStats, Phase
from plugins.ncid.reports import feed_with_report

logger = logging.getLogger(__name__)

#: Longest line accepted; an NCID line is a few hundred bytes.
LINE_LIMIT = 16 * 1024


class NcidDevice(Device):
    """Caller ID (and, from gateways, outbound calls and hang-ups) from an NCID server.

    ``reports_hook`` is False: a modem-fed NCID server never tells when a handset
    goes off or on hook, so unanswered calls end by the tracker's ring time-out
    with disposition ``unknown``. Gateway-fed servers (SIP, Whozz Calling) send
    ``END:``/``CIDINFO: -1`` lines, which become hook events, and the tracker
    switches to hook-aware reading on the first one it sees. ``END:`` also gives the
    call's length and ``HUP:``/``BLK:`` end their call at once, as
    :class:`~agent.events.CallReport` events (see :mod:`plugins.ncid.reports`).
    """

    type: ClassVar[str] = "ncid"
    Config: ClassVar[builtins.type[DeviceConfig]] = NcidConfig
    reports_hook: ClassVar[bool] = False
    reports_connect: ClassVar[bool] = False

    def __init__(self, device_id: str, config: DeviceConfig) -> None:
        super().__init__(device_id, config)
        assert isinstance(self.config, NcidConfig)
        config = self.config
        self.options: NcidConfig = config
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._session: NcidSession | None = None
        self._pending: list[LineEvent] = []

    def lines(self) -> list[str]:
        """The mapped labels when ``lines`` is configured, else ``"1"`` (NCID's ``-`` line)."""
        mapped = sorted(set(self.options.lines.values()))
        return mapped or [DEFAULT_LINE]

    @property
    def stats(self) -> NcidStats | None:
        """What the current (or last) connection has seen; None before the first."""
        return self._session.stats if self._session else None

    @property
    def where(self) -> str:
        """``host:port`` of the server."""
        return f"{self.options.host}:{self.options.port}"

    async def __aenter__(self) -> NcidDevice:
        if self._writer is not None:
            raise DeviceError(f"{self.device_id}: already connected to {self.where}")
        options = self.options
        try:
            async with asyncio.timeout(options.connect_timeout):
                reader, writer = await asyncio.open_connection(options.host, options.port, limit=LINE_LIMIT)
        except TimeoutError:
            raise DeviceError(f"{self.device_id}: no answer from NCID server {self.where}") from None
        except OSError as exc:
            raise DeviceError(
                f"{self.device_id}: cannot connect to NCID server {self.where}: {exc.strerror or exc}"
            ) from exc
        self._reader, self._writer = reader, writer
        self._session = NcidSession(
            self.device_id,
            options.lines,
            ring_zero_answers=options.ring_zero_answers,
            name_encoding=options.name_encoding,
        )
        self._pending = []
        try:
            await self._startup()
        except BaseException:
            await self._close()
            raise
        stats = self._session.stats
        logger.info(
            "%s: connected to NCID server %s (%s; %d call-log line(s) skipped)",
            self.device_id,
            self.where,
            stats.greeting or "no greeting",
            stats.log_lines,
        )
        return self

    async def __aexit__(
        self,
        exc_type: builtins.type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(2.0):
                await writer.wait_closed()

    async def _startup(self) -> None:
        """Greeting, call log and options, up to the ``300`` line."""
        session = self._require_session()
        timeout = self.options.connect_timeout
        while not session.live:
            try:
                raw = await self._readline(timeout)
            except TimeoutError:
                if session.stats.greeting is None:
                    raise DeviceError(f"{self.device_id}: {self.where} sent no NCID greeting") from None
                # A server that never ends its start-up still sends calls; go on.
                logger.warning(
                    "%s: no end of start-up from %s; reading calls anyway", self.device_id, self.where
                )
                session.phase = Phase.LIVE
                return
            if raw is None:
                raise DeviceError(
                    f"{self.device_id}: NCID server {self.where} closed the connection during start-up"
                )
            api_before = session.stats.api
            self._pending.extend(session.feed(raw, self._now()))
            if session.stats.api is not None and api_before is None:
                await self._hello()

    async def _hello(self) -> None:
        """Answer a ``210`` line: "send zero or more HELLO: lines" right after it (API 1.5)."""
        hello: list[str] = []
        if self.options.ident:
            hello.append(f"HELLO: IDENT: client cti-agent {agent.__version__}")
        if self.options.no_log:
            hello.append("HELLO: CMD: no_log")
        if hello:
            await self._send("".join(f"{line}\r\n" for line in hello))

    async def events(self) -> AsyncIterator[LineEvent]:
        """Live line events until the server goes away (then :class:`DeviceError`)."""
        session = self._require_session()
        while True:
            pending, self._pending = self._pending, []
            for event in pending:
                yield event
            try:
                raw = await self._readline(self.options.keepalive)
            except TimeoutError:
                # "A client ... should [send a newline] only after at least 15 minutes of
                # no server activity": a dead peer then shows up as a write error.
                await self._send("\n")
                continue
            if raw is None:
                if self._writer is None:
                    return  # we closed it
                raise DeviceError(f"{self.device_id}: NCID server {self.where} closed the connection")
            for event in self._live(session, raw):
                yield event

    def _live(self, session: NcidSession, raw: bytes) -> list[LineEvent]:
        """One live server line -> its events and the server's account of the call (see reports)."""
        return feed_with_report(session, raw, self._now())

    async def _readline(self, timeout: float) -> bytes | None:
        """One line's bytes without its ending; None at end of stream. Overlong lines become errors.

        Bytes, not text: the session reads each line's name by the shared rule
        (:mod:`agent.names`), which a decode here would pre-empt.
        """
        reader = self._reader
        if reader is None:
            return None  # closed
        try:
            async with asyncio.timeout(timeout):
                data = await reader.readline()
        except ValueError:
            # The limit was overrun; the reader dropped the oversized data.
            self._pending.append(
                LineError(
                    device_id=self.device_id,
                    line=DEFAULT_LINE,
                    at=self._now(),
                    error=f"line longer than {LINE_LIMIT} bytes dropped",
                )
            )
            return b""
        except TimeoutError:
            raise  # the caller's to handle (TimeoutError is an OSError)
        except OSError as exc:
            raise DeviceError(f"{self.device_id}: connection to {self.where} lost: {exc}") from exc
        if not data:
            return None
        return data.rstrip(b"\r\n")

    async def _send(self, text: str) -> None:
        writer = self._writer
        if writer is None:
            raise DeviceError(f"{self.device_id}: not connected")
        try:
            writer.write(text.encode("utf-8"))
            async with asyncio.timeout(self.options.connect_timeout):
                await writer.drain()
        except (ConnectionError, OSError, TimeoutError) as exc:
            raise DeviceError(f"{self.device_id}: cannot write to NCID server {self.where}: {exc}") from exc

    def _require_session(self) -> NcidSession:
        if self._session is None or self._reader is None:
            raise DeviceError(f"{self.device_id}: the NCID device is not open")
        return self._session

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)


__all__ = ["NcidDevice"]
