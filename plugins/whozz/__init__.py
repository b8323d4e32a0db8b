"""CallerID.com "Whozz Calling?" Ethernet Link units: the ``whozz`` device type.

Basic and Deluxe units, 2 to 8 lines each (up to 32 line numbers), broadcast a
UDP packet per call record to port 3520 of the LAN. Configure as::

    [[devices]]
    id = "wc"
    type = "whozz"
    listen = "0.0.0.0:3520"   # the default: units broadcast, so listen on every address
    line_count = 4
    detail_records = true     # Deluxe; false for Basic units

The record parser (:func:`plugins.whozz.protocol.parse_record`) is the one parser
of the CallerID.com record format: the ``serialbox`` plugin reads serial Whozz
Calling units with it, and ``cti-agent decode`` picks this plugin's decoder for
any capture of such records, from either kind of unit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

import agent
from agent.events import Decoder, LineError, LineEvent
from agent.seat.devices import Device
from plugins.whozz.capture import CaptureError, is_pcap, split_raw, udp_payloads
from plugins.whozz.config import WhozzConfig
from plugins.whozz.device import WhozzDevice
from plugins.whozz.protocol import (
    UNIT_TAG,
    NotARecord,
    WhozzDecoder,
    WhozzParseError,
    WhozzRecord,
    end_report,
    parse_datagram,
    parse_record,
)


@agent.hookimpl
def register_devices(register: Callable[[type[Device]], None]) -> None:
    """Contribute the ``whozz`` device type."""
    register(WhozzDevice)


_HEX = re.compile(r"^[0-9A-Fa-f\s]+$")
_HEX_HEADER = UNIT_TAG.hex()


def _sniff(head: bytes) -> float:
    """How sure we are that ``head`` is ours.

    Text holding a record :func:`parse_record` reads (what Ethernet Link and serial units send
    alike, so ``serialbox`` leaves these to us), a datagram, a raw dump of datagrams or a
    pcap/pcapng capture.
    """
    if is_pcap(head):
        return 0.9
    if head.startswith(UNIT_TAG):
        return 0.85
    for raw in head.decode("latin-1").splitlines():
        if _HEX.match(raw) and re.sub(r"\s", "", raw).lower().startswith(_HEX_HEADER):
            return 0.85
        try:
            parse_record(raw)
        except WhozzParseError:
            continue
        return 0.85
    return 0.0


def _decode(data: bytes, *, name_encoding: str = "auto") -> list[LineEvent]:
    """Events from captured Whozz Calling output.

    Datagrams from a pcap/pcapng capture or a raw dump (binary headers included, back to back),
    else one record per line: the record text, or a datagram written as hex.

    Decoding shows what the records say: a start record is its caller ID and no
    more. The ring a Basic unit's start record implies is an inference the device
    makes for the call tracker (``detail_records = false``), not part of a capture.
    An end record's count of the call's seconds is shown as the ``call_report`` it
    is to the tracker (the device sends it only without detail records).
    """
    decoder = WhozzDecoder("file", detail_records=True)
    at = datetime.now(UTC)
    out: list[LineEvent] = []
    datagrams: list[bytes] = []
    if is_pcap(data):
        try:
            datagrams = list(udp_payloads(data))
        except CaptureError as exc:
            return [LineError(device_id="file", line="*", at=at, error=str(exc), raw=data[:64].hex())]
        data = b""
    else:
        data, datagrams = split_raw(data)
    for raw in data.decode("latin-1").splitlines():
        if not raw.strip():
            continue
        try:
            if _HEX.match(raw) and len(raw.strip()) > 20:
                record = parse_datagram(bytes.fromhex(raw), name_encoding=name_encoding).record
            else:
                record = parse_record(raw, name_encoding=name_encoding)
        except (WhozzParseError, ValueError) as exc:
            out.append(LineError(device_id="file", line="*", at=at, error=str(exc), raw=raw))
            continue
        out.extend(_record_events(decoder, record, at))
    for datagram in datagrams:
        try:
            record = parse_datagram(datagram, name_encoding=name_encoding).record
        except NotARecord:
            continue  # a unit's command reply: not a call
        except WhozzParseError as exc:
            out.append(LineError(device_id="file", line="*", at=at, error=str(exc), raw=datagram.hex()))
            continue
        out.extend(_record_events(decoder, record, at))
    return out


def _record_events(decoder: WhozzDecoder, record: WhozzRecord, at: datetime) -> list[LineEvent]:
    events = decoder.events(record, at)
    report = end_report(record, device_id=decoder.device_id, line=decoder.line_label(record.line), at=at)
    return [report, *events] if report is not None else events


@agent.hookimpl
def register_decoders(register: Callable[[Decoder], None]) -> None:
    """``whozz``: Whozz Calling records, as text lines or captured datagrams in hex."""
    register(
        Decoder(
            "whozz",
            "CallerID.com Whozz Calling records (text, datagrams as hex or raw, pcap/pcapng of UDP 3520)",
            _decode,
            _sniff,
            reads_names=True,
        )
    )


__all__ = ["WhozzConfig", "WhozzDevice", "register_decoders", "register_devices"]
