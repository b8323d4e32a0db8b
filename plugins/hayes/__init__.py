"""Serial voice/data modems and USB caller-ID modems: the ``hayes`` device type.

USRobotics 5637, Zoom 3095, modems on Conexant, Agere, Lucent or Motorola
chipsets, and CDC-ACM USB caller-ID boxes that answer AT commands. Configure
one as::

    [[devices]]
    id = "modem"
    type = "hayes"
    port = "/dev/ttyACM0"      # or: usb = "0803:3095" (+ serial_number = "...")
    # init = ["ATZ", "ATE0"]
    # cid_commands = ["AT+VCID=1", "AT#CID=1", "AT%CCID=1", "AT+CID=1"]
    # dial_pickup_delay = 4    # seconds the rep has to lift the handset after ATDT
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import agent
from agent.events import Decoder, LineEvent
from agent.seat.devices import Device
from plugins.hayes.config import HayesConfig
from plugins.hayes.device import HayesModem
from plugins.hayes.protocol import decode_capture, sniff_capture


@agent.hookimpl
def register_devices(register: Callable[[type[Device]], None]) -> None:
    """Contribute the ``hayes`` device type."""
    register(HayesModem)


def _decode(data: bytes, *, name_encoding: str = "auto") -> list[LineEvent]:
    return decode_capture(data, datetime.now(UTC), name_encoding=name_encoding)


@agent.hookimpl
def register_decoders(register: Callable[[Decoder], None]) -> None:
    """Contribute ``--format hayes``: a captured modem log (formatted or hex caller ID, rings)."""
    register(
        Decoder(
            name="hayes",
            description="a Hayes modem's output: RING, DATE/TIME/NMBR/NAME caller ID, AT+VCID=2 hex",
            decode=_decode,
            sniff=sniff_capture,
            reads_names=True,
        )
    )


__all__ = ["HayesConfig", "HayesModem", "register_decoders", "register_devices"]
