"""The ``linetap`` device: caller ID, dialed digits, call progress and hook state from line audio.

One sound input (or a replayed recording) carries one line per channel. Each
block read is handed to every line's :class:`~plugins.linetap.protocol.LineTapDecoder`;
the events they return are yielded in order. Call-progress tones are logged,
not yielded: the call tracker learns what they mean through ``off_hook`` and
``connected``.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import TracebackType
from typing import ClassVar

import numpy as np

from agent.errors import DeviceError
from agent.events import ALL_LINES, DeviceUp, LineEvent
from agent.seat.devices import Device, DeviceConfig
from plugins.linetap import dsp
from plugins.linetap.config import LinetapConfig
from plugins.linetap.protocol import LineTapDecoder, ToneEvent
from plugins.linetap.transport import FileInput, Input, SoundDeviceInput, open_input, read_block

logger = logging.getLogger(__name__)


class LineTapDevice(Device):
    """Line audio decoded in software: any USB phone box becomes a CTI device.

    It sees hook state (from the line level and dial tone) and the far end
    answering (ringback stops and speech follows), but cannot dial or hang up.
    A replayed ``file`` ends the event stream at its end.
    """

    type: ClassVar[str] = "linetap"
    Config: ClassVar[builtins.type[DeviceConfig]] = LinetapConfig
    reports_hook: ClassVar[bool] = True
    reports_connect: ClassVar[bool] = True

    def __init__(self, device_id: str, config: DeviceConfig) -> None:
        super().__init__(device_id, config)
        assert isinstance(self.config, LinetapConfig)
        config = self.config
        self.options: LinetapConfig = config
        self._input: Input | None = None
        self._decoders: list[LineTapDecoder] = []

    def lines(self) -> list[str]:
        """One label per configured channel."""
        return self.options.line_labels()

    def _make_input(self) -> Input:
        o = self.options
        if o.file is not None:
            return FileInput(o.file, o.channels, o.block_seconds, o.speed)
        return SoundDeviceInput(o.device, o.channels, o.samplerate, o.block_seconds)

    async def __aenter__(self) -> LineTapDevice:
        if self._input is not None:
            raise DeviceError(f"{self.device_id}: already open")
        source = self._make_input()
        await open_input(source)
        self._input = source
        now = datetime.now(UTC)
        o = self.options
        self._decoders = [
            LineTapDecoder(
                source.samplerate,
                o.plan,
                fsk=tuple(o.fsk),
                device_id=self.device_id,
                line=label,
                start=now,
                hook=o.hook_settings(),
                region=o.region,
                bare_dtmf_callerid=o.bare_dtmf_callerid,
                name_encoding=o.name_encoding,
                ring=o.ring_settings(),
            )
            for label in o.line_labels()
        ]
        logger.info(
            "%s: line tap open, %d line(s) at %d Hz", self.device_id, len(self._decoders), source.samplerate
        )
        return self

    async def __aexit__(
        self,
        exc_type: builtins.type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        source, self._input = self._input, None
        if source is not None:
            source.close()
            logger.info("%s: line tap closed", self.device_id)

    async def events(self) -> AsyncIterator[LineEvent]:
        """Line events of every line until the input closes; a failed input raises DeviceError."""
        source = self._input
        if source is None:
            raise DeviceError(f"{self.device_id}: not open")
        yield DeviceUp(
            device_id=self.device_id, line=ALL_LINES, at=datetime.now(UTC), detail=self._describe()
        )
        while self._input is source:
            try:
                block = await read_block(source)
            except EOFError:
                for decoder in self._decoders:
                    for event in decoder.flush():
                        if self._wanted(event):
                            yield event
                return
            if block is None:
                continue
            for column, decoder in enumerate(self._decoders):
                for event in decoder.feed(block[:, column]):
                    if self._wanted(event):
                        yield event

    async def calibrate(self, seconds: float = 10.0) -> dict[str, dict[str, float]]:
        """Record ``seconds`` of every line and suggest hook thresholds for each (``dsp.calibrate``).

        For ``cti-agent devices --calibrate``: leave the line idle for the first
        part and lift the handset (or talk) for the rest. The device must be open.
        """
        source = self._input
        if source is None:
            raise DeviceError(f"{self.device_id}: not open")
        blocks: list[np.ndarray] = []
        got = 0
        while got < seconds * source.samplerate:
            try:
                block = await read_block(source)
            except EOFError:
                break
            if block is not None:
                blocks.append(block)
                got += len(block)
        if not blocks:
            raise DeviceError(f"{self.device_id}: no audio to calibrate from")
        audio = np.concatenate(blocks)
        labels = self.options.line_labels()
        return {label: dsp.calibrate(audio[:, i], source.samplerate) for i, label in enumerate(labels)}

    def _wanted(self, event: LineEvent) -> bool:
        if isinstance(event, ToneEvent):
            logger.debug("%s: line %s %s", self.device_id, event.line, event.tone)
            return False
        return True

    def _describe(self) -> str:
        o = self.options
        where = (
            f"file {o.file}" if o.file else f"audio input {o.device if o.device is not None else 'default'}"
        )
        return f"line tap, {where}, {len(o.channels)} line(s), plan {o.plan}"
