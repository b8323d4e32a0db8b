"""The ``whozz`` device: CallerID.com Whozz Calling Ethernet Link units, over UDP.

Opening the device binds a UDP socket (``listen``, by default every address on
port 3520, where units broadcast); each datagram goes through the pure pieces of
:mod:`plugins.whozz.protocol`: repeat filter, header and record parser, decoder.
UDP has no connection, so a unit that is unplugged is silent rather than down;
the socket failing is a :class:`DeviceError`, and the runtime binds it again.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar

from agent.errors import DeviceError
from agent.events import CallReport, LineError, LineEvent
from agent.seat.devices import Device, DeviceConfig
from plugins.whozz.config import WhozzConfig, parse_listen
from plugins.whozz.protocol import (
    Deduper,
    NotARecord,
    WhozzDecoder,
    WhozzParseError,
    WhozzRecord,
    end_report,
    parse_datagram,
)

logger = logging.getLogger(__name__)

_ERROR_LINE = "1"


#: How many sending addresses the per-sender counts keep apart.
MAX_SENDERS = 64


@dataclass
class WhozzStats:
    """What the device has received since it was constructed."""

    datagrams: int = 0
    records: int = 0
    repeats: int = 0
    not_records: int = 0
    errors: int = 0
    rejected: int = 0
    #: Datagrams per sending address (at most :data:`MAX_SENDERS` addresses; the rest as "other").
    senders: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Failed:
    error: Exception


class _Closed:
    """Put on the queue when the device closes, so a reader still waiting ends."""


class _Receiver(asyncio.DatagramProtocol):
    """Hands datagrams (and a socket failure) to the device's queue."""

    def __init__(self, queue: asyncio.Queue[tuple[bytes, Any] | _Failed | _Closed]) -> None:
        self.queue = queue

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.queue.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for something we never sent; nothing to do but note it.
        logger.debug("whozz socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.queue.put_nowait(_Failed(exc))


class WhozzDevice(Device):
    """Calls on up to 32 lines per unit: caller ID, outbound numbers, hook state and ends.

    ``reports_hook`` follows ``detail_records``: Deluxe units send off-hook and
    on-hook detail records. Basic units send start records only, so their
    unanswered and answered calls alike end by the tracker's ring time-out. A
    unit with detail records off that still sends end records (``end_records``)
    ``reports_end``: its calls end at their end record, with the unit's count of
    the talk (see :meth:`_report`).
    """

    type: ClassVar[str] = "whozz"
    Config: ClassVar[builtins.type[DeviceConfig]] = WhozzConfig
    reports_hook: ClassVar[bool] = True
    reports_connect: ClassVar[bool] = False

    def __init__(self, device_id: str, config: DeviceConfig) -> None:
        super().__init__(device_id, config)
        assert isinstance(self.config, WhozzConfig)
        config = self.config
        self.options: WhozzConfig = config
        # Per device, not per class: a Basic unit cannot see the handset.
        self.reports_hook = config.detail_records  # type: ignore[misc]
        # A Basic unit sends start records only [BASIC]: waiting for an end record that never
        # comes would hold its calls open for hours, so only a unit said to send them waits.
        self.reports_end = config.end_records and not config.detail_records  # type: ignore[misc]
        self.stats = WhozzStats()
        self._transport: asyncio.DatagramTransport | None = None
        self._queue: asyncio.Queue[tuple[bytes, Any] | _Failed | _Closed] | None = None
        self._decoder = WhozzDecoder(device_id, config.lines, detail_records=config.detail_records)
        self._deduper = Deduper(config.dedupe_seconds)

    def lines(self) -> list[str]:
        """The mapped labels, or ``"1"`` .. ``line_count``."""
        if self.options.lines:
            return sorted(set(self.options.lines.values()))
        return [str(n) for n in range(1, self.options.line_count + 1)]

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound ``(host, port)`` while open (the real port when ``listen`` asked for 0)."""
        if self._transport is None:
            return None
        sockname = self._transport.get_extra_info("sockname")
        return (str(sockname[0]), int(sockname[1]))

    async def __aenter__(self) -> WhozzDevice:
        if self._transport is not None:
            raise DeviceError(f"{self.device_id}: already listening")
        host, port = parse_listen(self.options.listen)
        queue: asyncio.Queue[tuple[bytes, Any] | _Failed | _Closed] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Receiver(queue), local_addr=(host, port)
            )
        except OSError as exc:
            raise DeviceError(
                f"{self.device_id}: cannot listen on UDP {self.options.listen}: {exc.strerror or exc}"
            ) from exc
        self._transport = transport
        self._queue = queue
        logger.info(
            "%s: listening for Whozz Calling packets on UDP %s:%d", self.device_id, *self.address or ("?", 0)
        )
        if not self.options.sources:
            # Any host on the network can then send calls: a spoofed packet is a wrong number on a pop.
            logger.warning(
                "%s: no [[devices]] sources set: packets from any address are taken as calls; "
                "name the unit's address in sources",
                self.device_id,
            )
        return self

    async def __aexit__(
        self,
        exc_type: builtins.type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        transport, self._transport = self._transport, None
        queue, self._queue = self._queue, None
        if transport is not None:
            transport.close()
        if queue is not None:
            queue.put_nowait(_Closed())

    async def events(self) -> AsyncIterator[LineEvent]:
        """Line events from every unit heard, in arrival order, until closed or the socket fails."""
        queue = self._queue
        if queue is None:
            raise DeviceError(f"{self.device_id}: the whozz device is not open")
        loop = asyncio.get_running_loop()
        while True:
            item = await queue.get()
            if isinstance(item, _Closed):
                return
            if isinstance(item, _Failed):
                raise DeviceError(f"{self.device_id}: UDP socket failed: {item.error}") from item.error
            data, addr = item
            for event in self.receive(data, addr, loop.time(), datetime.now(UTC)):
                yield event

    def _count_sender(self, source: str) -> None:
        senders = self.stats.senders
        if source not in senders and len(senders) >= MAX_SENDERS:
            source = "other"
        if source not in senders and not self.options.sources and senders:
            logger.warning("%s: packets from another address, %s, taken as calls", self.device_id, source)
        senders[source] = senders.get(source, 0) + 1

    def receive(self, data: bytes, addr: tuple[str, int] | None, now: float, at: datetime) -> list[LineEvent]:
        """One datagram from ``addr`` at monotonic ``now`` (wall time ``at``) -> events."""
        stats = self.stats
        stats.datagrams += 1
        source = str(addr[0]) if addr else ""
        self._count_sender(source)
        if self.options.sources and source not in self.options.sources:
            stats.rejected += 1
            logger.debug("%s: packet from %s ignored (not in sources)", self.device_id, source)
            return []
        if self._deduper.is_repeat(data, now):
            stats.repeats += 1
            return []
        try:
            packet = parse_datagram(data, name_encoding=self.options.name_encoding)
        except NotARecord as exc:
            stats.not_records += 1
            logger.debug("%s: %s from %s", self.device_id, exc, source)
            return []
        except WhozzParseError as exc:
            stats.errors += 1
            raw = data.decode("ascii", errors="backslashreplace")
            return [LineError(device_id=self.device_id, line=_ERROR_LINE, at=at, error=str(exc), raw=raw)]
        stats.records += 1
        events = self._decoder.events(packet.record, at)
        report = self._report(packet.record, events, at)
        # Before the on-hook that ends the call: the tracker keeps it for the end.
        return [report, *events] if report is not None else events

    def _report(self, record: WhozzRecord, events: list[LineEvent], at: datetime) -> CallReport | None:
        """The unit's own account of a call from its end record (:func:`~plugins.whozz.protocol.end_report`).

        Only from a unit without detail records: one that sends them reports
        the hook as it happens, which is better than any count, and a Basic unit,
        which sees no hook state, is then credited with real talk time.
        """
        if self._decoder.detail_records or not events:
            return None
        return end_report(record, device_id=self.device_id, line=events[0].line, at=at)


__all__ = ["WhozzDevice", "WhozzStats"]
