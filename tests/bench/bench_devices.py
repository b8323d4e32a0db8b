"""Caller-ID device plugins: parser throughput, and latency from the wire to ``Device.events()``.

Part 1, throughput on one core: each pure parser is fed a corpus of thousands of
distinct, realistic messages (random NANP and UK numbers, caller-ID style
names, some withheld or unavailable callers) in the form its device sends
them, passes over the corpus repeating for about ``--seconds`` each. Every row
is bytes/text in, line events out (``decode_message``: bytes in, decoded
message out); the first pass checks that every message gave a caller ID, so a
parser that rejects the corpus cannot post a fast figure.

Part 2, latency: a real device object (default config except where the row
says), fed by the test emulators over a real transport, read by a consumer
task that iterates ``events()`` as the runtime does and stamps each event as
it comes out. t0 is taken just before the write carrying the caller ID's last
byte; the figure is (event out of ``events()``) - t0. A ring precedes each
caller ID, as on a line, and the calls are a few milliseconds apart so each
one finds the device idle.

What the hayes parser waits for: formatted caller ID has no end marker, so a
block (DATE/TIME/NMBR/NAME) is complete once its number has come and then a
blank line, a ``RING``, a field the block already has, or ``cid_timeout``
(2 s by default) after its first field. Modems that end the block with a blank
line (the USR 5637 and the emulator do) are decoded at once; for one that does
not, the ``no blank line`` row shows the time-out, checked each time a serial
read returns (at least every ``read_timeout``, 0.2 s). Unformatted (hex)
messages carry their length and end as soon as their last digit arrives.

Run: .venv/bin/python tests/bench/bench_devices.py [--seconds 1.0] [--calls 200] [--timeout-calls 12]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent import callerid
from agent.events import Absence, CallerId, LineEvent
from agent.seat.devices import Device
from plugins.hayes.config import HayesConfig
from plugins.hayes.device import HayesModem
from plugins.hayes.protocol import HayesParser
from plugins.ncid.config import NcidConfig
from plugins.ncid.device import NcidDevice
from plugins.ncid.protocol import NcidSession
from plugins.serialbox.config import SerialBoxConfig
from plugins.serialbox.device import SerialBoxDevice
from plugins.serialbox.protocol import Parser, to_events
from plugins.whozz.config import WhozzConfig
from plugins.whozz.device import WhozzDevice
from plugins.whozz.protocol import WhozzDecoder, parse_datagram, parse_record

# The emulators live in tests/, which is on sys.path only under pytest (tests/conftest.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modem_emulator import ModemEmulator
from ncid_emulator import NcidEmulator, fields
from whozz_emulator import WhozzSender, build_packet, call_record

AT = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

# -- a corpus of callers ------------------------------------------------------------------

_FIRST: tuple[str, ...] = (
    "JOHN",
    "MARY",
    "JAMES",
    "LINDA",
    "DAVID",
    "SUSAN",
    "JOSE",
    "MARIA",
    "WEI",
    "PRIYA",
    "RAJ",
)
_FIRST += ("ELIZABETH", "WILLIAM", "JENNIFER", "MICHAEL", "KAREN", "THOMAS", "SARAH", "ANA", "LUIS")
_LAST: tuple[str, ...] = (
    "SMITH",
    "JOHNSON",
    "WILLIAMS",
    "BROWN",
    "GARCIA",
    "MILLER",
    "RODRIGUEZ",
    "HERNANDEZ",
    "LOPEZ",
)
_LAST += ("WILSON", "ANDERSON", "TAYLOR", "LEE", "PEREZ", "OCONNOR", "NGUYEN", "PATEL", "KOWALSKI")
_PLACES = ("BOSTON MA", "CHICAGO IL", "DALLAS TX", "AUSTIN TX", "DENVER CO", "MIAMI FL", "TORONTO ON")
_BUSINESS = ("ACME SUPPLY", "WIRELESS CALLER", "CITY OF SPRINGF", "MERCY HOSPITAL", "FIRST NATL BANK")
_AREA = (201, 212, 303, 305, 312, 415, 416, 469, 507, 512, 617, 702, 713, 718, 773, 800, 847, 917)


@dataclass(frozen=True)
class Caller:
    """One call's caller ID: ``number`` None means withheld (``absence``)."""

    number: str | None
    name: str | None
    absence: Absence | None
    stamp: datetime

    @property
    def mmddhhmm(self) -> str:
        return self.stamp.strftime("%m%d%H%M")

    @property
    def dashed(self) -> str:
        """The number as CallerID.com units print a 10-digit one (555-123-4567)."""
        n = self.number or ""
        return f"{n[:3]}-{n[3:6]}-{n[6:]}" if len(n) == 10 else n


def corpus(count: int, seed: int = 3) -> list[Caller]:
    """``count`` distinct callers: 86% NANP, 4% UK, 5% private, 5% out of area."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[Caller] = []
    while len(out) < count:
        stamp = AT + timedelta(minutes=rng.randrange(60 * 24 * 365))
        roll = rng.random()
        if roll < 0.05:
            out.append(Caller(None, None, Absence.PRIVATE, stamp))
            continue
        if roll < 0.10:
            out.append(Caller(None, None, Absence.UNAVAILABLE, stamp))
            continue
        if roll < 0.14:
            number = f"020{rng.randrange(70000000, 79999999)}"
        else:
            number = f"{rng.choice(_AREA)}{rng.randrange(200, 999)}{rng.randrange(10000):04d}"
        if number in seen:
            continue
        seen.add(number)
        style = rng.random()
        if style < 0.6:
            name = f"{rng.choice(_LAST)} {rng.choice(_FIRST)}"[:15]
        elif style < 0.8:
            name = rng.choice(_PLACES)
        elif style < 0.9:
            name = rng.choice(_BUSINESS)
        else:
            name = None
        out.append(Caller(number, name, None, stamp))
    return out


# -- part 1: parser throughput ------------------------------------------------------------


@dataclass
class Throughput:
    name: str
    messages: int
    seconds: float


def measure(
    name: str,
    items: Sequence[Any],
    run: Callable[[Sequence[Any]], int],
    expected: int,
    seconds: float,
) -> Throughput:
    """Run ``run(items)`` (returns caller IDs produced) in passes for about ``seconds``."""
    got = run(items)
    if got != expected:
        raise RuntimeError(f"{name}: {got} caller IDs from {expected} messages; the corpus is wrong")
    done = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        run(items)
        done += len(items)
        elapsed = time.perf_counter() - start
    return Throughput(name, done, elapsed)


def _count(events: Iterable[object]) -> int:
    return sum(isinstance(e, CallerId) for e in events)


def _hayes_block(c: Caller) -> bytes:
    """What a USR 5637 sends for one call (AT+VCID=1): a RING, the formatted block, a blank line."""
    number = c.number if c.number is not None else str(c.absence)
    name = c.name if c.name is not None else str(c.absence or "O")
    return (
        f"\r\nRING\r\n\r\nDATE = {c.mmddhhmm[:4]}\r\nTIME = {c.mmddhhmm[4:]}\r\n"
        f"NMBR = {number}\r\nNAME = {name}\r\n\r\n"
    ).encode("latin-1")


def _mdmf(c: Caller) -> bytes:
    return callerid.encode_mdmf(
        datetime=c.mmddhhmm,
        number=c.number,
        name=c.name,
        absence=c.absence,
        name_absence=None if c.name is not None else (c.absence or Absence.UNAVAILABLE),
    )


def _hayes_hex(c: Caller) -> bytes:
    """AT+VCID=2: the MDMF message in hex, wrapped at 60 digits (as the modem emulator does)."""
    digits = _mdmf(c).hex().upper()
    wrapped = "\r\n".join(digits[i : i + 60] for i in range(0, len(digits), 60))
    return f"\r\nRING\r\n\r\n{wrapped}\r\n".encode("ascii")


def _netcallerid(c: Caller) -> bytes:
    number = c.number if c.number is not None else str(c.absence)
    return f"###DATE{c.mmddhhmm}...NMBR{number}...NAME{c.name or 'O'}+++\r".encode("latin-1")


_TCI_ABSENCE = {Absence.PRIVATE: "Private", Absence.UNAVAILABLE: "Out-of-Area"}


def _tci(c: Caller, line: int) -> str:
    number = c.dashed if c.number is not None else _TCI_ABSENCE[c.absence or Absence.UNAVAILABLE]
    return call_record(line, when=c.stamp.replace(tzinfo=None), number=number, name=c.name or "")


def _ncid(c: Caller, line: str) -> str:
    number = (
        c.number if c.number is not None else ("PRIVATE" if c.absence is Absence.PRIVATE else "OUT-OF-AREA")
    )
    return "CID: " + fields(
        DATE=c.stamp.strftime("%m%d%Y"),
        TIME=c.stamp.strftime("%H%M"),
        LINE=line,
        NMBR=number,
        MESG="NONE",
        NAME=c.name or "NO NAME",
    )


def throughput(callers: list[Caller], seconds: float) -> list[Throughput]:
    n = len(callers)
    rows: list[Throughput] = []

    sdmf = [callerid.encode_sdmf(c.number, c.mmddhhmm, c.absence) for c in callers]
    mdmf = [_mdmf(c) for c in callers]

    def decode(messages: Sequence[bytes]) -> int:
        got = 0
        for message in messages:
            decoded = callerid.decode_message(message)  # raises on a bad message
            got += decoded.number is not None or decoded.absence is not None
        return got

    rows.append(measure("agent.callerid.decode_message SDMF", sdmf, decode, n, seconds))
    rows.append(measure("agent.callerid.decode_message MDMF", mdmf, decode, n, seconds))

    def hayes(chunks: Sequence[bytes]) -> int:
        parser = HayesParser("bench", "1")
        return sum(_count(parser.feed(chunk, AT)) for chunk in chunks)

    rows.append(
        measure("hayes HayesParser formatted (USR)", [_hayes_block(c) for c in callers], hayes, n, seconds)
    )
    rows.append(
        measure("hayes HayesParser hex (AT+VCID=2)", [_hayes_hex(c) for c in callers], hayes, n, seconds)
    )

    def serialbox(fmt: str) -> Callable[[Sequence[bytes]], int]:
        def run(chunks: Sequence[bytes]) -> int:
            parser = Parser(fmt)
            got = 0
            for chunk in chunks:
                for item in parser.feed(chunk):
                    got += _count(to_events(item, device_id="bench", at=AT))
            return got

        return run

    rng = random.Random(5)
    # Seizure (0x55) and marks (0xFF) before each message, as an HT9032D passes them on.
    frames = [
        b"\x55" * 30 + b"\xff" * 18 + (_mdmf(c) if rng.random() < 0.7 else sdmf[i])
        for i, c in enumerate(callers)
    ]
    rows.append(measure("serialbox Parser binary SDMF/MDMF", frames, serialbox("binary"), n, seconds))
    rows.append(
        measure(
            "serialbox Parser NetCallerID",
            [_netcallerid(c) for c in callers],
            serialbox("netcallerid"),
            n,
            seconds,
        )
    )
    tci = [(_tci(c, rng.randint(1, 4)) + "\r\n").encode("latin-1") for c in callers]
    rows.append(measure("serialbox Parser TCI (CallerID.com)", tci, serialbox("tci"), n, seconds))

    def ncid(lines: Sequence[str]) -> int:
        session = NcidSession("bench", {"POTS": "1", "VOIP": "2"})
        session.feed("200 Server: ncidd (NCID) 1.13", AT)
        session.feed("300 End of connection startup", AT)
        return sum(_count(session.feed(line, AT)) for line in lines)

    ncid_lines = [_ncid(c, rng.choice(("POTS", "VOIP", "-"))) for c in callers]
    rows.append(measure("ncid NcidSession.feed CID:", ncid_lines, ncid, n, seconds))

    def whozz_udp(packets: Sequence[bytes]) -> int:
        decoder = WhozzDecoder("bench")
        return sum(_count(decoder.events(parse_datagram(p).record, AT)) for p in packets)

    def whozz_serial(records: Sequence[str]) -> int:
        decoder = WhozzDecoder("bench")
        return sum(_count(decoder.events(parse_record(r), AT)) for r in records)

    records = [_tci(c, rng.randint(1, 32)) for c in callers]
    packets = [build_packet(r, unit=rng.randint(1, 4)) for r in records]
    rows.append(measure("whozz parse_datagram + events (UDP)", packets, whozz_udp, n, seconds))
    rows.append(measure("whozz parse_record + events (serial)", records, whozz_serial, n, seconds))
    return rows


# -- part 2: latency ----------------------------------------------------------------------


@dataclass
class Latency:
    name: str
    samples: list[float]  # seconds


class Stamped:
    """Iterates a device's ``events()`` in a task, as the runtime does, stamping each event."""

    def __init__(self, device: Device) -> None:
        self.queue: asyncio.Queue[tuple[float, LineEvent]] = asyncio.Queue()
        self.error: BaseException | None = None
        self._task = asyncio.create_task(self._run(device))

    async def _run(self, device: Device) -> None:
        try:
            async with contextlib.aclosing(device.events()) as stream:
                async for event in stream:
                    self.queue.put_nowait((time.perf_counter(), event))
        except Exception as exc:
            self.error = exc
            raise

    async def caller_id(self, t0: float, number: str | None, timeout: float = 10.0) -> float:
        """Seconds from ``t0`` to the next caller ID out of ``events()`` (checked against ``number``)."""
        async with asyncio.timeout(timeout):
            while True:
                if self.error is not None:
                    raise RuntimeError(f"the device failed: {self.error!r}")
                stamp, event = await self.queue.get()
                if isinstance(event, CallerId):
                    if event.number != number:
                        raise RuntimeError(f"expected {number!r}, the device decoded {event!r}")
                    return stamp - t0

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


async def _pause(rng: random.Random) -> None:
    await asyncio.sleep(rng.uniform(0.004, 0.012))


async def hayes_latency(
    callers: list[Caller], style: str, label: str, options: dict[str, Any] | None = None
) -> Latency:
    """``style``: the emulator's ``usr`` / ``vcid2-hex``, or ``no-blank`` (no blank line after the block)."""
    rng = random.Random(11)
    samples: list[float] = []
    with ModemEmulator("usr") as emulator:
        device = HayesModem("bench", HayesConfig(port=emulator.path, **(options or {})))
        async with device:
            reader = Stamped(device)
            try:
                for c in callers:
                    emulator.ring()
                    await asyncio.sleep(0.005)
                    absence = str(c.absence or "O")
                    if style == "no-blank":
                        # Fields only, no blank line after NAME: nothing says the block is over.
                        text = (
                            f"\r\nDATE = {c.mmddhhmm[:4]}\r\nTIME = {c.mmddhhmm[4:]}\r\n"
                            f"NMBR = {c.number or absence}\r\nNAME = {c.name or absence}\r\n"
                        )
                        t0 = time.perf_counter()
                        emulator.send(text.encode("latin-1"))
                    else:
                        t0 = time.perf_counter()
                        emulator.caller_id(
                            c.number,
                            c.name,
                            style=style,
                            date=c.mmddhhmm[:4],
                            time_=c.mmddhhmm[4:],
                            absence=absence,
                        )
                    samples.append(await reader.caller_id(t0, c.number))
                    await _pause(rng)
            finally:
                await reader.stop()
    return Latency(label, samples)


class Pty:
    """The master side of a pseudo-terminal: the benchmark plays the caller-ID box."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        self.name = os.ttyname(self._slave)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view) :]

    def close(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


async def serialbox_latency(callers: list[Caller], fmt: str, label: str) -> Latency:
    rng = random.Random(13)
    samples: list[float] = []
    box = Pty()
    try:
        device = SerialBoxDevice("bench", SerialBoxConfig(port=box.name))  # format "auto": the default
        async with device:
            reader = Stamped(device)
            try:
                for c in callers:
                    if fmt == "binary":
                        box.write(b"\x55" * 30)  # channel seizure, then marks and the message
                        await asyncio.sleep(0.005)
                        data = b"\xff" * 18 + _mdmf(c)
                    elif fmt == "netcallerid":
                        data = _netcallerid(c)
                    else:
                        box.write(f"01 R     {c.stamp:%m/%d %H:%M:%S}\r\n".encode("ascii"))
                        await asyncio.sleep(0.005)
                        data = (_tci(c, 1) + "\r\n").encode("latin-1")
                    t0 = time.perf_counter()
                    box.write(data)
                    expected = (c.dashed if c.number else None) if fmt == "tci" else c.number
                    samples.append(await reader.caller_id(t0, expected))
                    await _pause(rng)
            finally:
                await reader.stop()
        if device.format.value != fmt:
            raise RuntimeError(f"serialbox recognised {device.format.value}, not {fmt}")
    finally:
        box.close()
    return Latency(label, samples)


async def ncid_latency(callers: list[Caller]) -> Latency:
    rng = random.Random(17)
    samples: list[float] = []
    async with NcidEmulator() as emulator:
        device = NcidDevice("bench", NcidConfig(port=emulator.port))
        async with device:
            await emulator.wait_clients(1)
            reader = Stamped(device)
            try:
                for c in callers:
                    await emulator.send_cidinfo(1, line="POTS")
                    await asyncio.sleep(0.005)
                    number = c.number or ("PRIVATE" if c.absence is Absence.PRIVATE else "OUT-OF-AREA")
                    t0 = time.perf_counter()
                    await emulator.send_cid(number, c.name or "NO NAME", line="POTS", when=c.stamp)
                    samples.append(await reader.caller_id(t0, c.number))
                    await _pause(rng)
            finally:
                await reader.stop()
    return Latency("ncid      CID: line, TCP loopback", samples)


async def whozz_latency(callers: list[Caller]) -> Latency:
    rng = random.Random(19)
    samples: list[float] = []
    device = WhozzDevice("bench", WhozzConfig(listen="127.0.0.1:0"))
    async with device:
        assert device.address is not None
        reader = Stamped(device)
        try:
            async with WhozzSender(device.address) as unit:  # 3 copies of each packet, as units send
                for n, c in enumerate(callers):
                    line = n % 4 + 1
                    await unit.detail(line, "R", when=c.stamp.replace(tzinfo=None))
                    number = (
                        c.dashed
                        if c.number
                        else ("Private" if c.absence is Absence.PRIVATE else "Out-of-Area")
                    )
                    record = call_record(
                        line, when=c.stamp.replace(tzinfo=None), number=number, name=c.name or ""
                    )
                    t0 = time.perf_counter()
                    # The first copy goes out before send_record first waits; the reader task
                    # stamps the event meanwhile.
                    await unit.send_record(record)
                    samples.append(await reader.caller_id(t0, c.dashed if c.number else None))
                    await _pause(rng)
        finally:
            await reader.stop()
    return Latency("whozz     Ethernet Link, UDP loopback", samples)


async def latencies(callers: list[Caller], calls: int, timeout_calls: int) -> list[Latency]:
    some = callers[:calls]
    return [
        await hayes_latency(some, "usr", "hayes     USR formatted + blank line, pty"),
        await hayes_latency(
            some, "vcid2-hex", "hayes     hex (AT+VCID=2), pty", {"cid_commands": ["AT+VCID=2"]}
        ),
        await hayes_latency(callers[:timeout_calls], "no-blank", "hayes     no blank line: cid_timeout, pty"),
        await serialbox_latency(some, "binary", "serialbox binary MDMF (auto), pty"),
        await serialbox_latency(some, "netcallerid", "serialbox NetCallerID (auto), pty"),
        await serialbox_latency(some, "tci", "serialbox TCI (auto), pty"),
        await ncid_latency(some),
        await whozz_latency(some),
    ]


# -- the table ----------------------------------------------------------------------------


def _pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(rows: list[Throughput], lat: list[Latency]) -> None:
    print("Parser throughput, one core (corpus of distinct messages, bytes/text in -> events out)")
    print(f"{'parser':<40} {'messages':>9} {'msg/s':>10} {'us/msg':>8}")
    for r in rows:
        rate, each = r.messages / r.seconds, r.seconds / r.messages * 1e6
        print(f"{r.name:<40} {r.messages:>9} {rate:>10,.0f} {each:>8.2f}")
    print()
    print("Latency, last caller-ID byte written -> caller_id out of Device.events() (default config)")
    print(f"{'device / transport':<40} {'calls':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for r in lat:
        ms = [s * 1000 for s in r.samples]
        print(f"{r.name:<40} {len(ms):>5} {_pct(ms, 50):>8.2f} {_pct(ms, 99):>8.2f} {max(ms):>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per parser (throughput)")
    parser.add_argument("--calls", type=int, default=200, help="calls per latency row")
    parser.add_argument(
        "--timeout-calls",
        type=int,
        default=12,
        help="calls for the hayes row that waits for the block time-out",
    )
    parser.add_argument("--corpus", type=int, default=5000, help="distinct callers in the corpus")
    args = parser.parse_args()
    callers = corpus(max(args.corpus, args.calls, args.timeout_calls))
    started = time.perf_counter()
    rows = throughput(callers, args.seconds)
    lat = asyncio.run(latencies(callers, args.calls, args.timeout_calls))
    report(rows, lat)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
