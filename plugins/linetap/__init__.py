"""Line tap: caller ID, dialed digits, call progress and hook state decoded from line audio.

Registered as a built-in plugin through the same hooks a third-party plugin
uses: the ``linetap`` device type and the ``wav`` format of ``cti-agent
decode``. Configure a device as::

    [[devices]]
    id = "box"
    type = "linetap"
    device = "USB Audio"   # sounddevice name, part of one, or index
    channels = [1, 2]      # one line per channel
    plan = "cn"            # or "nanp"
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import agent
from agent.events import ALL_LINES, Decoder, LineError
from agent.numbers import DEFAULT_REGION
from agent.seat.devices import Device
from plugins.linetap.config import LinetapConfig
from plugins.linetap.device import LineTapDevice
from plugins.linetap.protocol import LineTapDecoder, decode_file, decode_samples, event_dict


@agent.hookimpl
def register_devices(register: Callable[[type[Device]], None]) -> None:
    """Contribute the ``linetap`` device type."""
    register(LineTapDevice)


def sniff_audio(head: bytes) -> float:
    """How sure we are that ``head`` starts a recording soundfile reads (WAV, FLAC, Ogg)."""
    if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
        return 0.95
    if head[:4] in (b"fLaC", b"OggS"):
        return 0.8
    return 0.0


def decode_audio(data: bytes, *, plan: str = "cn", region: str = DEFAULT_REGION) -> Iterator[dict[str, Any]]:
    """A whole recording's bytes → event records; an unreadable file is one error record."""
    import soundfile

    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        decoder = LineTapDecoder(8000)
        error = LineError(
            device_id="decode", line=ALL_LINES, at=decoder.start, error=f"not a readable recording: {exc}"
        )
        yield event_dict(decoder, error, region)
        return
    yield from decode_samples(samples, rate, plan=plan, region=region)


@agent.hookimpl
def register_decoders(register: Callable[[Decoder], None]) -> None:
    """Contribute the ``wav`` input of ``cti-agent decode`` (line audio → events with offsets)."""
    register(
        Decoder(
            name="wav",
            description="line audio (WAV/FLAC/Ogg): FSK and DTMF caller ID, digits, tones, hook state",
            decode=decode_audio,
            sniff=sniff_audio,
        )
    )


__all__ = [
    "LineTapDecoder",
    "LineTapDevice",
    "LinetapConfig",
    "decode_audio",
    "decode_file",
    "register_decoders",
    "register_devices",
    "sniff_audio",
]
