"""USB caller-ID boxes and handsets that present USB HID instead of a serial port.

Many driverless boxes sold in China enumerate as HID and carry, inside their
input reports, the same frames the serial boxes send:

    port letter (A-D, or S for a one-port box) | type 0x04/0x80 | length | payload | checksum

where the checksum is 256 minus the sum of type, length and payload (the
GR-30 / ETSI message checksum, :mod:`agent.callerid`); boxes built on the
Holtek HT9032 decoder put its channel-seizure bytes (0x55) before the message
instead of a port letter. Each input report is ``count | count bytes |
padding``: the convention of the HID-to-UART bridges these boxes use.

USB handsets (Holtek-based, e.g. 04d9:0602) report the hook switch and the
keypad over HID while their audio is a USB sound card (use ``linetap`` on it
for caller ID from the line). Their report: byte 0 bit 0 = off hook, byte 1 =
the key held (ASCII ``0-9*#``, 0 when none).

Layers as everywhere: transport (hidapi, imported lazily so a machine without
it still runs; blocking reads in ``asyncio.to_thread``) -> pure parsers here
(:class:`HidFrameParser`, :class:`HandsetParser`) -> the device classes.
Tests drive the transport through an emulator of the hidapi ``hid`` module's
interface that replays report streams in this format.
"""

from __future__ import annotations

import asyncio
import builtins
import importlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, ClassVar, Protocol

from pydantic import Field, field_validator

from agent.callerid import CallerIdError, CallerIdMessage, decode_message, to_event
from agent.errors import DeviceError
from agent.events import Dialed, LineError, LineEvent, OffHook, OnHook
from agent.seat.devices import Device, DeviceConfig

logger = logging.getLogger(__name__)

PORT_LETTERS = {ord("A"): "1", ord("B"): "2", ord("C"): "3", ord("D"): "4", ord("S"): "1"}
_TYPES = (0x04, 0x80)
_SEIZURE = 0x55
_MAX_PENDING = 512  # bytes held waiting for the rest of a frame


class HidHandle(Protocol):
    """What we use of an open ``hid.device()`` (cython-hidapi)."""

    def open_path(self, path: bytes) -> None: ...
    def read(self, max_length: int, timeout_ms: int = 0) -> list[int]: ...
    def close(self) -> None: ...


class HidApi(Protocol):
    """What we use of the ``hid`` module: ``enumerate`` and ``device``."""

    def enumerate(self, vendor_id: int = 0, product_id: int = 0) -> list[dict[str, Any]]: ...
    def device(self) -> HidHandle: ...


def load_hidapi() -> HidApi:
    """The hidapi binding (PyPI ``hidapi``, module ``hid``), imported on first use."""
    try:
        module: HidApi = importlib.import_module("hid")
    except ImportError as exc:
        raise DeviceError(
            f"USB HID devices need the hidapi package (pip install 'cti-agent[usbhid]'): {exc}"
        ) from None
    return module


def list_hid_devices(api: HidApi | None = None) -> list[dict[str, Any]]:
    """Every HID device the system lists, with its USB id (``vid:pid``), for ``cti-agent devices``."""
    try:
        api = api or load_hidapi()
    except DeviceError:
        return []
    out = []
    for info in api.enumerate(0, 0):
        path = info.get("path", b"")
        out.append(
            {
                "path": path.decode("latin-1") if isinstance(path, bytes) else str(path),
                "usb": f"{info.get('vendor_id', 0):04x}:{info.get('product_id', 0):04x}",
                "serial_number": info.get("serial_number") or None,
                "description": " ".join(
                    s for s in (info.get("manufacturer_string"), info.get("product_string")) if s
                ),
            }
        )
    return out


def report_payload(report: list[int] | bytes) -> bytes:
    """The data bytes of one input report (``count | count bytes | padding``)."""
    data = bytes(report)
    if not data:
        return b""
    count = data[0]
    return data[1 : 1 + min(count, len(data) - 1)]


@dataclass(frozen=True, slots=True)
class Frame:
    """One checksum-valid message from a HID box, with the line its port letter names."""

    line: str
    message: CallerIdMessage


class HidFrameParser:
    """Report payloads in, :class:`Frame` or :class:`CallerIdError` out (pure; never raises on input).

    A frame starts at a port letter followed by a message type, or at a 0x55
    seizure byte followed by one (HT9032 modules). Bytes that start neither, or
    a message whose checksum fails, come back as one error per run.
    """

    def __init__(self, name_encoding: str = "auto") -> None:
        self.name_encoding = name_encoding
        self._buffer = b""

    @property
    def pending(self) -> int:
        """Bytes held as the start of a frame not complete yet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame | CallerIdError]:
        """Take payload bytes; return the frames (and errors) they complete."""
        self._buffer += data
        out: list[Frame | CallerIdError] = []
        junk = bytearray()
        reason: str | None = None
        buf = self._buffer
        i = 0
        while i < len(buf):
            head = buf[i]
            if (head in PORT_LETTERS or head == _SEIZURE) and i + 1 < len(buf) and buf[i + 1] in _TYPES:
                if i + 2 >= len(buf) or i + 2 + buf[i + 2] + 2 > len(buf):
                    break  # the rest of the frame is in the next reports
                end = i + 2 + buf[i + 2] + 2
                line = PORT_LETTERS.get(head, "1")
                try:
                    message = decode_message(buf[i + 1 : end], name_encoding=self.name_encoding)
                except CallerIdError as exc:
                    # Not a frame after all (or a damaged one): skip one byte, as
                    # find_messages does, so a real frame inside it is still found.
                    junk.append(head)
                    reason = reason or exc.reason
                    i += 1
                    continue
                if junk:
                    out.append(CallerIdError(reason or "not a caller-ID frame", bytes(junk)))
                    junk.clear()
                    reason = None
                out.append(Frame(line, message))
                i = end
                continue
            if (head in PORT_LETTERS or head == _SEIZURE) and i + 1 == len(buf):
                break  # a letter or seizure byte whose type byte is still to come
            if head != _SEIZURE:
                junk.append(head)
            i += 1
        if junk:
            out.append(CallerIdError(reason or "not a caller-ID frame", bytes(junk)))
        self._buffer = buf[i:]
        if len(self._buffer) > _MAX_PENDING:
            out.append(CallerIdError("frame longer than any caller-ID message", self._buffer))
            self._buffer = b""
        return out

    def flush(self) -> list[Frame | CallerIdError]:
        """The box went quiet: a partial frame is an error."""
        rest, self._buffer = self._buffer, b""
        return [CallerIdError("incomplete frame", rest)] if rest.strip(bytes([_SEIZURE])) else []


class HandsetParser:
    """A USB handset's reports in, hook and dialed-digit events out (pure: time comes in).

    Keys count on their press (a report whose key byte changes from 0); the
    digits dialed since going off hook are one :class:`Dialed` when
    ``digit_gap`` seconds pass without a key (:meth:`tick`) or the handset is
    put down. A key byte that is not a keypad key is an error event, never a digit.
    """

    def __init__(self, device_id: str, line: str = "1", *, digit_gap: float = 3.0) -> None:
        self.device_id = device_id
        self.line = line
        self.digit_gap = timedelta(seconds=digit_gap)
        self.off_hook = False
        self._key = 0
        self._digits = ""
        self._first: datetime | None = None
        self._last: datetime | None = None

    def feed(self, report: list[int] | bytes, now: datetime) -> list[LineEvent]:
        """One input report."""
        data = bytes(report)
        out: list[LineEvent] = []
        if len(data) < 2:
            return [
                LineError(
                    device_id=self.device_id, line=self.line, at=now, error="short report", raw=data.hex()
                )
            ]
        off = bool(data[0] & 0x01)
        if off != self.off_hook:
            if not off:
                out += self._flush(now)
            self.off_hook = off
            cls = OffHook if off else OnHook
            out.append(cls(device_id=self.device_id, line=self.line, at=now))
        key = data[1]
        if key and key != self._key:
            char = chr(key)
            if char in "0123456789*#":
                if self._first is None:
                    self._first = now
                self._digits += char
                self._last = now
            else:
                out.append(
                    LineError(
                        device_id=self.device_id, line=self.line, at=now, error="unknown key", raw=data.hex()
                    )
                )
        self._key = key
        return out

    def _error(self, now: datetime, error: str, data: bytes) -> LineError:
        return LineError(device_id=self.device_id, line=self.line, at=now, error=error, raw=data.hex())

    def tick(self, now: datetime) -> list[LineEvent]:
        """Time passes: digits followed by ``digit_gap`` of no key are dialed."""
        if self._digits and self._last is not None and now - self._last >= self.digit_gap:
            return self._flush(now)
        return []

    def _flush(self, now: datetime) -> list[LineEvent]:
        if not self._digits:
            return []
        digits, at = self._digits, self._first or now
        self._digits, self._first, self._last = "", None, None
        return [Dialed(device_id=self.device_id, line=self.line, at=at, digits=digits)]


# -- transport and devices ----------------------------------------------------------


class HidConfig(DeviceConfig):
    """Which HID device: ``usb = "vid:pid"`` (the first one found) or its hidapi ``path``."""

    usb: str | None = Field(default=None, description='USB "VID:PID" of the device, hex')
    path: str | None = Field(default=None, description="hidapi path (see cti-agent devices)")
    report_size: int = Field(default=64, ge=2, le=1024, description="bytes per input report")
    read_timeout: float = Field(default=0.2, gt=0, le=5, description="seconds one blocking read waits")

    @field_validator("usb")
    @classmethod
    def _usb(cls, value: str | None) -> str | None:
        if value is None:
            return None
        vid, sep, pid = value.partition(":")
        try:
            if sep != ":" or not (0 <= int(vid, 16) <= 0xFFFF and 0 <= int(pid, 16) <= 0xFFFF):
                raise ValueError
        except ValueError:
            raise ValueError(f'usb must be "VID:PID" in hex, not {value!r}') from None
        return value.lower()


class HidTransport:
    """One open HID device; blocking hidapi calls run in ``asyncio.to_thread``."""

    def __init__(self, device_id: str, config: HidConfig, api: HidApi | None = None) -> None:
        self.device_id = device_id
        self.config = config
        self._api = api
        self._handle: HidHandle | None = None

    def _find(self, api: HidApi) -> bytes:
        if self.config.path:
            return self.config.path.encode("latin-1")
        if not self.config.usb:
            raise DeviceError(f'{self.device_id}: set usb = "VID:PID" or path')
        vid, pid = (int(v, 16) for v in self.config.usb.split(":"))
        found = api.enumerate(vid, pid)
        if not found:
            raise DeviceError(f"{self.device_id}: no HID device {self.config.usb}")
        path: bytes = found[0]["path"]
        return path

    def _open(self) -> HidHandle:
        api = self._api or load_hidapi()
        handle = api.device()
        try:
            handle.open_path(self._find(api))
        except OSError as exc:
            raise DeviceError(f"{self.device_id}: cannot open HID device: {exc}") from exc
        return handle

    async def open(self) -> None:
        """Find and open the device."""
        self._handle = await asyncio.to_thread(self._open)

    async def read(self) -> bytes:
        """One input report (b"" when none came within ``read_timeout``)."""
        handle = self._handle
        if handle is None:
            raise DeviceError(f"{self.device_id}: not open")
        try:
            report = await asyncio.to_thread(
                handle.read, self.config.report_size, round(self.config.read_timeout * 1000)
            )
        except (OSError, ValueError) as exc:
            raise DeviceError(f"{self.device_id}: HID device gone: {exc}") from exc
        return bytes(report)

    async def close(self) -> None:
        """Close the device (idempotent)."""
        handle, self._handle = self._handle, None
        if handle is not None:
            await asyncio.to_thread(handle.close)


class _HidDevice(Device):
    Config: ClassVar[builtins.type[DeviceConfig]] = HidConfig
    #: replaced in tests by an emulator of the ``hid`` module
    hidapi: ClassVar[HidApi | None] = None

    def __init__(self, device_id: str, config: DeviceConfig) -> None:
        super().__init__(device_id, config)
        config = self.config
        self.options: Any = config
        self._transport: HidTransport | None = None

    async def __aenter__(self) -> _HidDevice:
        transport = HidTransport(self.device_id, self.options, self.hidapi)
        await transport.open()
        self._transport = transport
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

    def _open_transport(self) -> HidTransport:
        if self._transport is None:
            raise DeviceError(f"{self.device_id}: not open")
        return self._transport


class HidBoxConfig(HidConfig):
    """A HID caller-ID box."""

    idle_flush: float = Field(default=1.0, gt=0, description="seconds of quiet that end a partial frame")


class HidCallerIdBox(_HidDevice):
    """A driverless USB HID caller-ID box (port letter / HT9032 frames): type ``usbhid-box``."""

    type: ClassVar[str] = "usbhid-box"
    Config: ClassVar[builtins.type[DeviceConfig]] = HidBoxConfig

    def lines(self) -> list[str]:
        """Port letters A-D are lines 1-4."""
        return ["1", "2", "3", "4"]

    async def events(self) -> AsyncIterator[LineEvent]:
        """Caller IDs as the box reports them, until it is unplugged (:class:`DeviceError`)."""
        transport = self._open_transport()
        parser = HidFrameParser(self.options.name_encoding)
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            report = await transport.read()
            if report:
                last = loop.time()
                items = parser.feed(report_payload(report))
            elif parser.pending and loop.time() - last >= self.options.idle_flush:
                items = parser.flush()
            else:
                continue
            at = datetime.now(UTC)
            for item in items:
                if isinstance(item, Frame):
                    yield to_event(item.message, device_id=self.device_id, line=item.line, at=at)
                else:
                    logger.warning("%s: %s", self.device_id, item)
                    yield LineError(
                        device_id=self.device_id, line="*", at=at, error=item.reason, raw=item.raw.hex()
                    )


class HandsetConfig(HidConfig):
    """A USB handset's keypad and hook switch."""

    line: str = Field(default="1", min_length=1, description="line label")
    digit_gap: float = Field(
        default=3.0, gt=0, description="seconds without a key that end the dialed number"
    )


class UsbHandset(_HidDevice):
    """A USB handset (Holtek-based, e.g. 04d9:0602): hook and keys over HID; type ``usb-handset``."""

    type: ClassVar[str] = "usb-handset"
    Config: ClassVar[builtins.type[DeviceConfig]] = HandsetConfig
    reports_hook: ClassVar[bool] = True

    def lines(self) -> list[str]:
        """The configured label."""
        return [self.options.line]

    async def events(self) -> AsyncIterator[LineEvent]:
        """Hook changes and dialed numbers, until it is unplugged (:class:`DeviceError`)."""
        transport = self._open_transport()
        parser = HandsetParser(self.device_id, self.options.line, digit_gap=self.options.digit_gap)
        while True:
            report = await transport.read()
            now = datetime.now(UTC)
            for event in (parser.feed(report, now) if report else []) + parser.tick(now):
                yield event


__all__ = [
    "Frame",
    "HandsetParser",
    "HidCallerIdBox",
    "HidFrameParser",
    "HidTransport",
    "UsbHandset",
    "list_hid_devices",
    "load_hidapi",
    "report_payload",
]
