"""Line audio -> line events (pure: no asyncio, no device I/O, no clock).

:class:`LineTapDecoder` takes blocks of samples of one line and returns the
:class:`~agent.events.LineEvent` objects they complete: caller ID (FSK Bell 202
or V.23, decoded by :mod:`agent.callerid`, the one message decoder; or DTMF),
digits the rep dialed, off-hook and on-hook inferred from the line level and
tones, and ``Connected`` when ringback stops and the far end speaks.
Call-progress tones come as :class:`ToneEvent` (kind ``tone``), which the
call tracker ignores and ``decode`` prints.

Event times are ``start`` plus the offset of the signal in the audio, so a
file decoded with the default start (the Unix epoch) gives offsets in seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from agent.callerid import MDMF, SDMF, CallerIdError, CallerIdMessage, find_messages, to_event
from agent.decode import event_record
from agent.events import Absence, CallerId, Connected, Dialed, LineError, LineEvent, OffHook, OnHook
from agent.numbers import DEFAULT_REGION
from plugins.linetap import dsp

logger = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SPEECH_GAP = 0.4  # seconds of pause that still count as one stretch of speech
_BLOCK_SECONDS = 0.5  # longest piece handed to the detectors at once (bounds memory)

# DTMF caller ID (ETSI EN 300 659-1 annex, ITU-T Q.23 keys): start key, fields
# separated by '#', end key C. "B" + two digits says why there is no number.
_DTMF_CID_START = frozenset("AD")
_DTMF_CID_KEYS = _DTMF_CID_START | {"B"}  # first keys of a DTMF caller ID (B: absence code)
_DTMF_ABSENCE = {"00": Absence.UNAVAILABLE, "10": Absence.PRIVATE}


@dataclass(frozen=True, slots=True, kw_only=True)
class ToneEvent(LineEvent):
    """A call-progress tone (``dial_tone``, ``ringback``, ``busy``, ``congestion``) or ``cas``."""

    kind: ClassVar[str] = "tone"
    tone: str


@dataclass(frozen=True, slots=True)
class HookSettings:
    """Thresholds of the hook inference (see ``dsp.calibrate`` for suggestions)."""

    off_hook_dbfs: float = -45.0  # a line louder than this is in use
    on_hook_dbfs: float = -50.0  # quieter than this is idle (hysteresis below off_hook_dbfs)
    off_hook_after: float = (
        1.5  # seconds of sound before it counts as off-hook (a caller-ID burst is shorter)
    )
    on_hook_after: float = 4.0  # seconds of quiet before it counts as on-hook
    answer_speech: float = 0.5  # seconds of non-tone sound after ringback that mean the far end answered
    digit_gap: float = 2.0  # seconds without a key that end a burst of dialed digits


@dataclass
class _Digits:
    keys: list[str] = field(default_factory=list)
    start: int = 0
    end: int = 0


class LineTapDecoder:
    """Streaming decoder of one line's audio.

    :param rate: sample rate of the input (8000 Hz or more; 16/44.1/48 kHz are decimated).
    :param plan: call-progress tone plan, ``"cn"`` (450 Hz) or ``"nanp"``.
    :param fsk: the FSK standards to listen for (``"bell202"``, ``"v23"``).
    :param start: the time of the first sample.

    ``feed`` accepts blocks of any length (int PCM or float); memory is
    bounded by the detectors' windows, not by the length of the input.
    """

    def __init__(
        self,
        rate: int,
        plan: str = "cn",
        *,
        fsk: tuple[str, ...] = ("bell202", "v23"),
        device_id: str = "linetap",
        line: str = "1",
        start: datetime = EPOCH,
        hook: HookSettings | None = None,
        dtmf_limits: dsp.DtmfLimits | None = None,
        fsk_min_dbfs: float = -50.0,
    ) -> None:
        self.device_id = device_id
        self.line = line
        self.start = start
        self.hook = hook or HookSettings()
        self._decimator = dsp.Decimator(rate)
        self.rate = self._decimator.out_rate
        unknown = set(fsk) - set(dsp.FSK_STANDARDS)
        if unknown:
            raise ValueError(
                f"unknown FSK standard(s) {sorted(unknown)} (known: {sorted(dsp.FSK_STANDARDS)})"
            )
        self._fsk = [dsp.FskReceiver(self.rate, dsp.FSK_STANDARDS[s], min_dbfs=fsk_min_dbfs) for s in fsk]
        self._fsk_band = dsp.fsk_band(self.rate)
        self._dtmf = dsp.DtmfDetector(self.rate, dtmf_limits)
        self._tones = dsp.ToneDetector(self.rate, plan, min_dbfs=self.hook.on_hook_dbfs)
        self._n = 0  # samples seen at the decimated rate
        self._recent: dict[bytes, int] = {}  # raw message -> sample index, to drop the twin decode
        self._digits = _Digits()
        self.off_hook = False
        self._active_since: int | None = None
        self._quiet_since: int | None = None
        self._ringback = False
        self._connected = False
        self._speech_since: int | None = None
        self._speech_last = 0

    # -- time

    def _at(self, sample: int) -> datetime:
        return self.start + timedelta(seconds=sample / self.rate)

    def offset(self, event: LineEvent) -> float:
        """Seconds from the first sample to ``event``."""
        return round((event.at - self.start).total_seconds(), 3)

    # -- input

    def feed(self, samples: np.ndarray) -> list[LineEvent]:
        """Decode one block of mono samples; returns the events it completed, in time order."""
        x = dsp.to_float(samples)
        if x.ndim != 1:
            raise ValueError("feed() takes mono samples; pick a channel first")
        step = max(1, round(_BLOCK_SECONDS * self._decimator.in_rate))
        out: list[tuple[int, LineEvent]] = []
        for i in range(0, len(x), step):
            y = self._decimator.process(x[i : i + step])
            if len(y):
                self._process(y, out)
        out.sort(key=lambda item: item[0])
        return [event for _, event in out]

    def flush(self) -> list[LineEvent]:
        """End of input: close what is still open (a burst, a held key, pending digits)."""
        out: list[tuple[int, LineEvent]] = []
        for rx in self._fsk:
            self._on_bursts(rx.flush(), out)
        for hit in self._dtmf.flush():
            self._on_key(hit, out)
        self._flush_digits(out)
        out.sort(key=lambda item: item[0])
        return [event for _, event in out]

    def _process(self, y: np.ndarray, out: list[tuple[int, LineEvent]]) -> None:
        band = self._fsk_band.process(y)
        for rx in self._fsk:
            self._on_bursts(rx.process(y, band), out)
        for hit in self._dtmf.process(y):
            self._on_key(hit, out)
        for tone in self._tones.process(y):
            self._on_tone(tone, out)
        self._on_levels(self._tones.frames, out)
        self._n += len(y)
        if self._digits.keys and self._n - self._digits.end > self.hook.digit_gap * self.rate:
            self._flush_digits(out)
        horizon = self._n - round(2 * self.rate)
        self._recent = {raw: at for raw, at in self._recent.items() if at >= horizon}

    # -- caller ID (FSK)

    def _on_bursts(self, bursts: list[dsp.FskBurst], out: list[tuple[int, LineEvent]]) -> None:
        for burst in bursts:
            found, _ = find_messages(burst.data)
            at = self._at(burst.start)
            for item in found:
                if isinstance(item, CallerIdMessage):
                    if item.raw in self._recent:
                        continue  # the other standard's receiver decoded the same burst
                    self._recent[item.raw] = burst.start
                    logger.debug("%s: %s caller ID %s", self.device_id, burst.standard, item.number)
                    out.append((burst.start, to_event(item, device_id=self.device_id, line=self.line, at=at)))
                elif _looks_like_message(item) and item.raw not in self._recent:
                    self._recent[item.raw] = burst.start
                    out.append(
                        (
                            burst.start,
                            LineError(
                                device_id=self.device_id,
                                line=self.line,
                                at=at,
                                error=item.reason,
                                raw=item.raw.hex(),
                            ),
                        )
                    )

    # -- DTMF: caller ID and dialed digits

    def _on_key(self, hit: dsp.DtmfHit, out: list[tuple[int, LineEvent]]) -> None:
        if hit.key == "CAS":
            out.append(
                (
                    hit.start,
                    ToneEvent(device_id=self.device_id, line=self.line, at=self._at(hit.start), tone="cas"),
                )
            )
            return
        digits = self._digits
        if not digits.keys:
            digits.start = hit.start
        digits.keys.append(hit.key)
        digits.end = hit.end
        first = digits.keys[0]
        if first in _DTMF_CID_KEYS:
            if hit.key == "C":
                self._dtmf_callerid(out)
            return
        if not self.off_hook:
            self._set_hook(True, digits.start, out)

    def _dtmf_callerid(self, out: list[tuple[int, LineEvent]]) -> None:
        digits = self._digits
        keys = "".join(digits.keys)
        self._digits = _Digits()
        at = self._at(digits.start)
        body = keys[1:-1]
        number: str | None = None
        absence: Absence | None = None
        error: str | None = None
        if keys[0] == "B":
            absence = _DTMF_ABSENCE.get(body)
            if absence is None:
                error = "unknown DTMF caller-ID absence code"
        else:
            # Fields are separated by '#'; the first is the calling number.
            number = body.split("#")[0]
            if not number.isdigit():
                error = "malformed DTMF caller ID"
        event: LineEvent
        if error is not None:
            event = LineError(device_id=self.device_id, line=self.line, at=at, error=error, raw=keys)
        else:
            event = CallerId(
                device_id=self.device_id, line=self.line, at=at, number=number, absence=absence, raw=keys
            )
        out.append((digits.start, event))

    def _flush_digits(self, out: list[tuple[int, LineEvent]]) -> None:
        digits = self._digits
        if not digits.keys:
            return
        self._digits = _Digits()
        keys = "".join(digits.keys)
        if keys[0] in _DTMF_CID_KEYS:
            out.append(
                (
                    digits.start,
                    LineError(
                        device_id=self.device_id,
                        line=self.line,
                        at=self._at(digits.start),
                        error="DTMF caller ID without its end key",
                        raw=keys,
                    ),
                )
            )
            return
        out.append(
            (
                digits.start,
                Dialed(device_id=self.device_id, line=self.line, at=self._at(digits.start), digits=keys),
            )
        )

    # -- call progress, hook, answer

    def _on_tone(self, hit: dsp.ToneHit, out: list[tuple[int, LineEvent]]) -> None:
        out.append(
            (
                hit.start,
                ToneEvent(device_id=self.device_id, line=self.line, at=self._at(hit.start), tone=hit.name),
            )
        )
        if hit.name == "dial_tone" and not self.off_hook:
            self._set_hook(True, hit.start, out)
        if hit.name == "ringback":
            self._ringback = True
            self._speech_since = None
        elif hit.name in ("busy", "congestion"):
            self._ringback = False

    def _on_levels(self, frames: dsp.LevelFrames, out: list[tuple[int, LineEvent]]) -> None:
        hook = self.hook
        if len(frames.starts) == 0:
            return
        active = frames.level_db >= hook.off_hook_dbfs
        quiet = frames.level_db < hook.on_hook_dbfs
        speech = active & ~frames.tonal
        if not self.off_hook and not active.any() and self._active_since is None:
            return
        # A DTMF caller ID is sent on hook and may last longer than off_hook_after.
        cid_keys = bool(self._digits.keys) and self._digits.keys[0] in _DTMF_CID_KEYS
        for start, is_active, is_quiet, is_speech in zip(
            frames.starts.tolist(), active.tolist(), quiet.tolist(), speech.tolist(), strict=True
        ):
            if not self.off_hook:
                if is_active and not cid_keys:
                    if self._active_since is None:
                        self._active_since = start
                    elif start - self._active_since >= hook.off_hook_after * self.rate:
                        self._set_hook(True, self._active_since, out)
                else:
                    self._active_since = None
                continue
            if is_quiet:
                if self._quiet_since is None:
                    self._quiet_since = start
                elif start - self._quiet_since >= hook.on_hook_after * self.rate:
                    self._set_hook(False, self._quiet_since, out)
                    continue
            else:
                self._quiet_since = None
            if self._ringback and not self._connected:
                if is_speech:
                    # Speech comes in syllables: gaps up to _SPEECH_GAP keep it one stretch.
                    if self._speech_since is None or start - self._speech_last > _SPEECH_GAP * self.rate:
                        self._speech_since = start
                    self._speech_last = start
                    if start - self._speech_since >= hook.answer_speech * self.rate:
                        self._connected = True
                        at = self._speech_since
                        out.append((at, Connected(device_id=self.device_id, line=self.line, at=self._at(at))))
                elif self._speech_since is not None and start - self._speech_last > _SPEECH_GAP * self.rate:
                    self._speech_since = None

    def _set_hook(self, off: bool, at: int, out: list[tuple[int, LineEvent]]) -> None:
        if off == self.off_hook:
            return
        self.off_hook = off
        self._active_since = None
        self._quiet_since = None
        if off:
            out.append((at, OffHook(device_id=self.device_id, line=self.line, at=self._at(at))))
        else:
            self._flush_digits(out)
            self._ringback = False
            self._connected = False
            self._speech_since = None
            out.append((at, OnHook(device_id=self.device_id, line=self.line, at=self._at(at))))


def _looks_like_message(error: CallerIdError) -> bool:
    """Junk that starts like a caller-ID message is worth reporting; channel noise is not."""
    return len(error.raw) >= 3 and error.raw[0] in (SDMF, MDMF)


def event_dict(decoder: LineTapDecoder, event: LineEvent, region: str = DEFAULT_REGION) -> dict[str, Any]:
    """The JSON record ``cti-agent decode`` prints for one event (the shared keys plus digits, tone, at)."""
    record = event_record(event, region)
    record["digits"] = None
    record["tone"] = None
    if isinstance(event, Dialed):
        record["digits"] = event.digits
    elif isinstance(event, CallerId) and event.raw and not event.raw.startswith(("04", "80")):
        record["digits"] = event.raw  # DTMF caller ID: the keys as sent
    elif isinstance(event, ToneEvent):
        record["tone"] = event.tone
    record["at"] = decoder.offset(event)
    return record


def decode_samples(
    samples: np.ndarray,
    rate: int,
    *,
    plan: str = "cn",
    region: str = DEFAULT_REGION,
    channel: int = 0,
    **kw: Any,
) -> Iterator[dict[str, Any]]:
    """Decode a whole recording (mono, or frames x channels) into event records."""
    x = np.asarray(samples)
    if x.ndim == 2:
        x = x[:, channel]
    decoder = LineTapDecoder(rate, plan, **kw)
    step = rate  # one second at a time, as a live stream would come
    for i in range(0, len(x), step):
        for event in decoder.feed(x[i : i + step]):
            yield event_dict(decoder, event, region)
    for event in decoder.flush():
        yield event_dict(decoder, event, region)


def decode_file(
    path: str | Path, *, plan: str = "cn", region: str = DEFAULT_REGION, channel: int = 0, **kw: Any
) -> Iterator[dict[str, Any]]:
    """Decode a WAV (or anything soundfile reads) in blocks, without loading it whole."""
    import soundfile

    with soundfile.SoundFile(str(path)) as f:
        if channel >= f.channels:
            raise ValueError(f"{path}: channel {channel} asked for, the file has {f.channels}")
        decoder = LineTapDecoder(f.samplerate, plan, **kw)
        for block in f.blocks(blocksize=f.samplerate, dtype="float32", always_2d=True):
            for event in decoder.feed(block[:, channel]):
                yield event_dict(decoder, event, region)
        for event in decoder.flush():
            yield event_dict(decoder, event, region)
