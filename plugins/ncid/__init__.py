"""NCID: caller ID from a Network CallerID server, the ``ncid`` device type.

NCID (http://ncid.sourceforge.net) serves caller ID from modems, SIP and other
gateways and Whozz Calling units over TCP; with this plugin every device NCID
supports works with cti-agent. Configure it as::

    [[devices]]
    id = "ncid"
    type = "ncid"
    host = "192.168.1.10"   # default 127.0.0.1
    port = 3333
    lines = { POTS = "1" }  # optional: NCID LINE label -> our line label
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

import agent
from agent.events import Decoder, LineEvent
from agent.seat.devices import Device
from plugins.ncid.config import NcidConfig
from plugins.ncid.device import NcidDevice
from plugins.ncid.protocol import NcidSession
from plugins.ncid.reports import feed_with_report


@agent.hookimpl
def register_devices(register: Callable[[type[Device]], None]) -> None:
    """Contribute the ``ncid`` device type."""
    register(NcidDevice)


# A call-log line (CIDLOG:, OUTLOG:, ...) is history to a live client, but the
# very thing a user decoding a saved log wants to see.
_LOG_TYPE = re.compile(rb"^(\w+)LOG:")
_NCID_LINE = re.compile(rb"^(200 |CID|OUT|HUP|BLK|PID|WID|END|MSG|NOT|CIDINFO)\w*:? ", re.MULTILINE)


def _sniff(head: bytes) -> float:
    return 0.8 if head.startswith(b"200 NCID") else 0.6 if len(_NCID_LINE.findall(head)) >= 1 else 0.0


def _decode(data: bytes, *, name_encoding: str = "auto") -> list[LineEvent]:
    session = NcidSession("file", name_encoding=name_encoding)
    at = datetime.now(UTC)
    out: list[LineEvent] = []
    # Bytes per line: the session reads each name by the shared rule (agent.names). The
    # server's account of a call (END: times, HUP:/BLK: blocked callers) is shown as the device
    # reports it to the tracker, so a user can check what their gateway counts.
    for raw in data.splitlines():
        out.extend(feed_with_report(session, _LOG_TYPE.sub(rb"\1:", raw), at))
    return out


@agent.hookimpl
def register_decoders(register: Callable[[Decoder], None]) -> None:
    """``ncid``: an NCID server session or call log (cidcall.log), one line per record."""
    register(
        Decoder(
            "ncid",
            "NCID server lines or call log (CID:, OUT:, HUP:, END: ...)",
            _decode,
            _sniff,
            reads_names=True,
        )
    )


__all__ = ["NcidConfig", "NcidDevice", "register_decoders", "register_devices"]
