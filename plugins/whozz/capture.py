"""What a user captures from a Whozz Calling unit, cut back into datagrams (pure: bytes in).

Three shapes reach ``cti-agent decode``:

- a pcap or pcapng file (tcpdump, Wireshark, dumpcap) of the LAN: the UDP
  payloads to or from port 3520 are the datagrams; read with dpkt, whose
  readers know both file formats and every link layer a capture here has
  (Ethernet, Linux cooked v1/v2, raw IP, BSD loopback);
- a raw dump of the datagrams back to back (``socat``/``nc -u`` into a file):
  each starts with the ``^^<U>`` unit tag of its binary header;
- text: one record a line (a serial unit's log, datagrams written as hex).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import dpkt

from plugins.whozz.protocol import DEFAULT_PORT, UNIT_TAG

logger = logging.getLogger(__name__)

_PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


class CaptureError(ValueError):
    """A capture file that cannot be read (truncated, an unknown link layer)."""


def is_pcap(data: bytes) -> bool:
    """Does ``data`` start like a pcap or pcapng file?"""
    return data[:4] in _PCAP_MAGICS or data[:4] == _PCAPNG_MAGIC


def udp_payloads(data: bytes, port: int = DEFAULT_PORT) -> Iterator[bytes]:
    """The payloads of the UDP packets to or from ``port`` in a pcap/pcapng capture, in order.

    Raises :class:`CaptureError` when the file cannot be read at all; a packet
    that is not UDP (or not to that port) is skipped, a file cut short ends the
    iteration with a warning (what was read is kept).
    """
    try:
        reader = (dpkt.pcapng.Reader if data[:4] == _PCAPNG_MAGIC else dpkt.pcap.Reader)(io.BytesIO(data))
    except (ValueError, dpkt.dpkt.Error) as exc:
        raise CaptureError(f"not a readable capture: {exc}") from None
    link = reader.datalink()
    try:
        for _, frame in reader:
            udp = _udp(link, frame)
            if udp is not None and port in (udp.sport, udp.dport):
                yield bytes(udp.data)
    except (dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError, ValueError) as exc:
        logger.warning("capture ends early (%s): keeping the packets before it", exc)


def _udp(link: int, frame: bytes) -> dpkt.udp.UDP | None:
    try:
        if link == dpkt.pcap.DLT_EN10MB:
            ip = dpkt.ethernet.Ethernet(frame).data
        elif link == dpkt.pcap.DLT_LINUX_SLL:
            ip = dpkt.sll.SLL(frame).data
        elif link == getattr(dpkt.pcap, "DLT_LINUX_SLL2", 276):
            ip = dpkt.sll2.SLL2(frame).data
        elif link in (dpkt.pcap.DLT_RAW, 12, 14):  # raw IP (numbers differ by platform)
            ip = dpkt.ip.IP(frame) if frame[:1] and frame[0] >> 4 == 4 else dpkt.ip6.IP6(frame)
        elif link in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
            ip = dpkt.loopback.Loopback(frame).data
        else:
            raise CaptureError(f"capture of link type {link}: not Ethernet, Linux cooked, raw IP or loopback")
    except (dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError):
        return None
    if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
        return None
    udp = ip.data
    return udp if isinstance(udp, dpkt.udp.UDP) else None


def split_raw(data: bytes) -> tuple[bytes, list[bytes]]:
    """A raw dump cut at each ``^^<U>`` unit tag: (text before the first, the datagrams).

    A datagram's binary header may hold any byte, CR and LF included, so the
    tag, not the line break, is where one ends and the next begins.
    """
    first = data.find(UNIT_TAG)
    if first < 0:
        return data, []
    starts = []
    at = first
    while at >= 0:
        starts.append(at)
        at = data.find(UNIT_TAG, at + len(UNIT_TAG))
    ends = [*starts[1:], len(data)]
    return data[:first], [data[s:e] for s, e in zip(starts, ends, strict=True)]


__all__ = ["CaptureError", "is_pcap", "split_raw", "udp_payloads"]
