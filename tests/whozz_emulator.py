"""A Whozz Calling Ethernet Link unit, as far as the network sees it: UDP packets on cue.

Packets are built the way the units build them (see :mod:`plugins.whozz.protocol`
for the sources): a binary header ``^^<U>`` + 6-byte unit number + ``<S>`` + 6-byte
serial number (here with ``$`` bytes inside, the trap for a parser that searches
for the separator), a ``$``, and a record in the CallerID.com format::

    01 I S 0000 G A1 01/15 12:30 PM 555-123-4567   JOHN DOE

Each packet is sent ``repeats`` times, as units do. Use as::

    async with WhozzSender(("127.0.0.1", port)) as unit:
        await unit.inbound_start(1, "555-123-4567", "JOHN DOE")
"""

from __future__ import annotations

import asyncio
import builtins
from datetime import datetime
from types import TracebackType

#: A serial number with "$" (0x24) bytes in it, including right before the separator.
TRAP_SERIAL = bytes([0x01, 0x24, 0x03, 0x24, 0x05, 0x24])


def build_packet(
    record: str, *, unit: int = 1, serial: bytes = TRAP_SERIAL, separator: bytes = b"$"
) -> bytes:
    """One Ethernet Link datagram carrying ``record`` (CR LF appended)."""
    if len(serial) != 6:
        raise ValueError("the serial number is 6 bytes")
    header = b"^^<U>" + unit.to_bytes(6, "big") + b"<S>" + serial
    return header + separator + record.encode("latin-1") + b"\r\n"


def _date(when: datetime) -> str:
    return when.strftime("%m/%d")


def _time12(when: datetime) -> str:
    return when.strftime("%I:%M %p")


def call_record(
    line: int,
    *,
    inbound: bool = True,
    start: bool = True,
    duration: int = 0,
    checksum_ok: bool = True,
    ring: str = "A1",
    when: datetime,
    number: str = "",
    name: str = "",
) -> str:
    """A start or end record in the CallerID.com format: number padded to 14, name to 15."""
    return (
        f"{line:02d} {'I' if inbound else 'O'} {'S' if start else 'E'} {duration:04d} "
        f"{'G' if checksum_ok else 'B'} {ring} {_date(when)} {_time12(when)} {number:<14} {name:<15}"
    )


def detail_record(line: int, event: str, when: datetime) -> str:
    """A Deluxe unit's detail record (``R``, ``F``, ``N``, ``H``), date at column 13."""
    return f"{line:02d} {event}     {_date(when)} {when.strftime('%H:%M:%S')}"


class WhozzSender:
    """Sends packets from a loopback UDP socket to ``target``, each ``repeats`` times."""

    def __init__(
        self, target: tuple[str, int], *, unit: int = 1, serial: bytes = TRAP_SERIAL, repeats: int = 3
    ) -> None:
        self.target = target
        self.unit = unit
        self.serial = serial
        self.repeats = repeats
        self.sent = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def __aenter__(self) -> WhozzSender:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        return self

    async def __aexit__(
        self,
        exc_type: builtins.type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    @property
    def address(self) -> tuple[str, int]:
        """Where the packets come from."""
        assert self._transport is not None
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    async def send_raw(self, data: bytes, *, repeats: int | None = None, gap: float = 0.001) -> None:
        """Send ``data`` as it is, ``repeats`` times (default: the sender's)."""
        assert self._transport is not None, "use the sender as an async context manager"
        for index in range(self.repeats if repeats is None else repeats):
            if index:
                await asyncio.sleep(gap)
            self._transport.sendto(data, self.target)
            self.sent += 1
        # Let the receiver's loop take them before the next cue.
        await asyncio.sleep(0.005)

    async def send_record(self, record: str, *, repeats: int | None = None) -> bytes:
        """Wrap ``record`` in this unit's header and send it; returns the packet."""
        packet = build_packet(record, unit=self.unit, serial=self.serial)
        await self.send_raw(packet, repeats=repeats)
        return packet

    async def inbound_start(
        self,
        line: int,
        number: str,
        name: str = "",
        *,
        when: datetime | None = None,
        checksum_ok: bool = True,
    ) -> bytes:
        """Caller ID of an incoming call (the start record)."""
        return await self.send_record(
            call_record(line, when=when or datetime.now(), number=number, name=name, checksum_ok=checksum_ok)
        )

    async def outbound_start(self, line: int, number: str, *, when: datetime | None = None) -> bytes:
        """An outgoing call's start record, with the dialed number."""
        return await self.send_record(
            call_record(line, inbound=False, ring="A0", when=when or datetime.now(), number=number)
        )

    async def call_end(
        self,
        line: int,
        *,
        inbound: bool = True,
        duration: int,
        rings: int = 1,
        number: str = "",
        name: str = "",
        when: datetime | None = None,
    ) -> bytes:
        """The end record, with the call's duration and ring count."""
        return await self.send_record(
            call_record(
                line,
                inbound=inbound,
                start=False,
                duration=duration,
                ring=f"A{min(rings, 9)}",
                when=when or datetime.now(),
                number=number,
                name=name,
            )
        )

    async def detail(self, line: int, event: str, *, when: datetime | None = None) -> bytes:
        """A detail record: ``R`` ring, ``F`` off hook, ``N`` on hook, ``H`` hook flash."""
        return await self.send_record(detail_record(line, event, when or datetime.now()))


__all__ = ["TRAP_SERIAL", "WhozzSender", "build_packet", "call_record", "detail_record"]
