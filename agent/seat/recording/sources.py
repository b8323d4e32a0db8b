"""Where a call's audio comes from: the production source factory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agent.config import Config
from agent.events import Call
from agent.seat.audio import AudioSource, SoundDeviceSource

SourceFactory = Callable[[Call], AudioSource | None]
"""Gives the audio source of a call's line, or None when the line has no audio input."""


def line_sources(config: Config, devices: Mapping[str, Any]) -> SourceFactory:
    """The production source factory: a line's ``audio_device``, else its device's own audio.

    A ``[[lines]]`` table with ``audio_device`` records from that sound input
    (:class:`agent.seat.audio.SoundDeviceSource`, its ``audio_channels``). Otherwise a
    device that offers ``audio_source(line, call_uuid, samplerate)`` (the
    simulator's synthetic speech) is used. ``devices`` is read at call time.
    """
    rate = config.recording.sample_rate

    def source(call: Call) -> AudioSource | None:
        for line in config.lines:
            if line.id == call.line and line.device == call.device_id and line.audio_device is not None:
                return SoundDeviceSource(line.audio_device, line.audio_channels, rate)
        offer = getattr(devices.get(call.device_id), "audio_source", None)
        if callable(offer):
            made: AudioSource = offer(call.line, call.uuid, rate or 8000)
            return made
        return None

    return source


__all__ = ["SourceFactory", "line_sources"]
