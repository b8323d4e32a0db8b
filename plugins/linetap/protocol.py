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
import phonenumbers
from phonenumbers import shortnumberinfo

from agent.callerid import MDMF, SDMF, CallerIdError, CallerIdMessage, find_messages, to_event
from agent.decode import event_record
from agent.events import Absence, CallerId, Connected, Dialed, LineError, LineEvent, OffHook, OnHook, Ring
from agent.names import check_encoding
from agent.numbers import DEFAULT_REGION
from plugins.linetap import dsp
from plugins.linetap.correct import correct
from plugins.linetap.ring import RingDetector, RingSettings

logger = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DEFAULT_RING = RingSettings()
_SPEECH_GAP = 0.4  # seconds of pause that still count as one stretch of speech
_BLOCK_SECONDS = 0.5  # longest piece handed to the detectors at once (bounds memory)

# DTMF caller ID: the framings in use are listed in parse_dtmf_callerid; these are
# the first keys that open one (a bare-digit framing is told by its end key instead).
_DTMF_CID_KEYS = frozenset("ABD")
_DTMF_CID_END = frozenset("C#")
#: ETSI EN 300 659-1 annex B (DTMF CLIP, SpanDSP "variant 1"): B + two digits, the
#: reason for absence. (SpanDSP's adsi.h names them the other way round in one enum
#: comment; its own description of the format and ETSI agree on these.)
_DTMF_ABSENCE_B = {"00": Absence.UNAVAILABLE, "10": Absence.PRIVATE}
#: The '#'-terminated DTMF framing (Denmark; SpanDSP "variant 2", adsi.c):
#: D1# restricted by the caller, D2# international (not passed on), D3# not available.
_DTMF_ABSENCE_D = {"1": Absence.PRIVATE, "2": Absence.UNAVAILABLE, "3": Absence.UNAVAILABLE}
#: A DTMF caller ID is sent by an exchange at a fixed cadence: a pause between two
#: keys longer than this many times the burst's typical one means a key went unheard.
#: Noisy dialed digits are held to the same (see _gap_in_cadence).
_GAP_FACTOR = 1.8
#: Below this SNR (the keys over the line's noise floor) a burst is "noisy": its digit
#: count must also be one the numbering plan allows before it is reported as a number.
NOISY_SNR_DB = 15.0
#: Seconds after a ring (see LineTapDecoder.ring) in which bare on-hook digits are caller ID.
_RING_WINDOW = 8.0
#: Seconds without a key that end a DTMF caller ID (exchanges send 50-100 ms keys and pauses).
_CID_IDLE = 0.6
#: Seconds before a burst's first certain key in which a doubtful key belongs to the burst
#: (a first key the detector refused would leave a shorter number).
_DOUBT_LEAD = 0.6


@dataclass(frozen=True, slots=True)
class DtmfCallerId:
    """A DTMF caller ID read from its keys: a number, a reason for its absence, or an error."""

    number: str | None = None
    absence: Absence | None = None
    redirecting: str | None = None
    error: str | None = None


def parse_dtmf_callerid(keys: str) -> DtmfCallerId:
    """Read the keys of one DTMF caller-ID message, in whichever framing it came.

    The framings (ETSI EN 300 659-1 annex B and the national variants SpanDSP's
    ``adsi.c`` implements, whose names are used here):

    - ``A<number>D<redirecting>B<code>C`` (variant 1: Belgium, Brazil, Denmark,
      Finland, Iceland, India, Netherlands, Saudi Arabia, Sweden, Uruguay); any
      field may be missing (``B00C`` unavailable, ``B10C`` private); ``#`` inside
      ``A...C`` separates extra fields after the number (the Q.23 style some
      exchanges use).
    - ``A<number>#``, and ``D1#`` / ``D2#`` / ``D3#`` (variant 2, Denmark).
    - ``D<number>C`` (variant 3, Taiwan and Kuwait).
    - ``<number>#`` or ``<number>C`` with no start key (variant 4, Denmark and
      Holland), and bare digits between rings.

    Anything else, or a field that is not digits, is an error: never a number.
    """
    if len(keys) < 2:
        return DtmfCallerId(error="DTMF caller ID too short")
    first, end, body = keys[0], keys[-1], keys[1:-1]
    if end not in _DTMF_CID_END:
        if keys.isdigit():  # bare digits between rings: no framing keys at all
            return _number_only(keys)
        return DtmfCallerId(error="DTMF caller ID without its end key")
    if first == "D" and end == "#":
        absence = _DTMF_ABSENCE_D.get(body)
        if absence is None:
            return DtmfCallerId(error="unknown DTMF caller-ID absence code")
        return DtmfCallerId(absence=absence)
    if first == "D" and end == "C":
        return _number_only(body)
    if first == "A" and end == "#":
        return _number_only(body)
    if first in "AB" and end == "C":
        return _variant1(keys[:-1])
    if first.isdigit():
        return _number_only(keys[:-1])
    return DtmfCallerId(error="malformed DTMF caller ID")


def _number_only(digits: str) -> DtmfCallerId:
    if not digits.isdigit():
        return DtmfCallerId(error="malformed DTMF caller ID")
    return DtmfCallerId(number=digits)


def _variant1(keys: str) -> DtmfCallerId:
    """``A<number>D<redirecting>B<code>`` (end key removed), each field optional, in that order."""
    fields: dict[str, str] = {}
    order = "ADB"
    key = ""
    for ch in keys:
        if ch in order:
            if ch in fields or (key and order.index(ch) < order.index(key)):
                return DtmfCallerId(error="malformed DTMF caller ID")
            key = ch
            fields[key] = ""
        else:
            fields[key] += ch
    number = fields.get("A")
    if number is not None:
        number = number.split("#")[0]  # '#' separates fields after the number (Q.23 style)
        if not number.isdigit():
            return DtmfCallerId(error="malformed DTMF caller ID")
    redirecting = fields.get("D") or None
    if redirecting is not None and not redirecting.isdigit():
        return DtmfCallerId(error="malformed DTMF caller ID")
    absence: Absence | None = None
    if "B" in fields:
        absence = _DTMF_ABSENCE_B.get(fields["B"])
        if absence is None:
            return DtmfCallerId(error="unknown DTMF caller-ID absence code")
    if number is None and absence is None:
        return DtmfCallerId(error="DTMF caller ID without a number or a reason for its absence")
    return DtmfCallerId(number=number, absence=absence if number is None else None, redirecting=redirecting)


def plausible_dial_string(digits: str, region: str = DEFAULT_REGION) -> bool:
    """Could ``digits`` be what someone dialed, by the numbering plan of ``region``?

    A valid number, a valid short code (110, 10086, 95555), a local subscriber
    number dialed without its area code, each possibly after one PBX line-access
    digit (9 or 0); feature codes with ``*`` or ``#`` cannot be judged and pass.
    Used only on noisy lines, where a key lost in the noise would otherwise turn
    a number into a shorter wrong one.
    """
    if not digits or set(digits) - set("0123456789*#"):
        return False
    if "*" in digits or "#" in digits:
        return True
    candidates = [digits] + ([digits[1:]] if digits[0] in "90" and len(digits) > 1 else [])
    return any(_plausible_number(d, region) for d in candidates)


def _plausible_number(digits: str, region: str) -> bool:
    try:
        parsed = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return False
    if phonenumbers.is_valid_number(parsed) or shortnumberinfo.is_valid_short_number_for_region(
        parsed, region
    ):
        return True
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    local = reason == phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY
    # A subscriber number without its area code (7-8 digits in CN, 7 in NANP) is
    # "possible" but cannot be validated without the area it is dialed in.
    return local or (
        reason == phonenumbers.ValidationResult.IS_POSSIBLE
        and not digits.startswith("0")
        and len(digits) <= 8
    )


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
    sure: list[bool] = field(default_factory=list)  # per key: the detector was certain of it
    starts: list[int] = field(default_factory=list)
    start: int = 0
    end: int = 0
    snr_db: float = 99.0  # the noisiest key's

    def heard(self) -> str:
        """The keys as heard, each doubtful one followed by ``?``."""
        return "".join(k if ok else f"{k}?" for k, ok in zip(self.keys, self.sure, strict=True))

    def certain_keys(self) -> list[str]:
        return [k for k, ok in zip(self.keys, self.sure, strict=True) if ok]


class LineTapDecoder:
    """Streaming decoder of one line's audio.

    :param rate: sample rate of the input (8000 Hz or more; 16/44.1/48 kHz are decimated).
    :param plan: call-progress tone plan, ``"cn"`` (450 Hz) or ``"nanp"``.
    :param fsk: the FSK standards to listen for (``"bell202"``, ``"v23"``).
    :param start: the time of the first sample.
    :param name_encoding: how MDMF name parameters are read (:mod:`agent.names`).
    :param ring: thresholds of ring detection (:mod:`plugins.linetap.ring`); None: off
        (a tap whose box filters the ring out, or a line fed by a device that reports rings).

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
        region: str = DEFAULT_REGION,
        bare_dtmf_callerid: bool = False,
        name_encoding: str = "auto",
        ring: RingSettings | None = _DEFAULT_RING,
    ) -> None:
        self.device_id = device_id
        self.name_encoding = check_encoding(name_encoding)
        self.region = region
        #: on-hook digits with no start key are caller ID (Denmark, Holland: ``<number>#``)
        self.bare_dtmf_callerid = bare_dtmf_callerid
        self._cid = False  # the open digit burst is a DTMF caller ID
        self._last_ring: int | None = None
        self._dial_bursts = 0  # digit bursts since the line went off hook
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
        self._dtmf = dsp.DtmfDetector(self.rate, dtmf_limits, report_doubtful=True)
        self._tones = dsp.ToneDetector(self.rate, plan, min_dbfs=self.hook.on_hook_dbfs)
        self._ring = RingDetector(self.rate, ring) if ring is not None else None
        self._n = 0  # samples seen at the decimated rate
        self._recent: dict[bytes, int] = {}  # raw message -> sample index, to drop the twin decode
        self._digits = _Digits()
        self._doubts: list[dsp.DtmfHit] = []  # doubtful keys heard while no burst was open
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
        if self._ring is not None:
            for start in self._ring.process(y):
                self._on_ring(start, out)
        self._on_levels(self._tones.frames, out)
        self._n += len(y)
        gap = _CID_IDLE if self._cid else self.hook.digit_gap
        if self._digits.keys and self._n - self._digits.end > gap * self.rate:
            self._flush_digits(out)
        horizon = self._n - round(2 * self.rate)
        self._recent = {raw: at for raw, at in self._recent.items() if at >= horizon}

    # -- caller ID (FSK)

    def _on_bursts(self, bursts: list[dsp.FskBurst], out: list[tuple[int, LineEvent]]) -> None:
        for burst in bursts:
            found, _ = find_messages(burst.data, name_encoding=self.name_encoding)
            if burst.soft and not any(isinstance(item, CallerIdMessage) for item in found):
                # A failed burst may be a bit or two off: repaired only when unambiguous.
                repaired = correct(
                    burst.data,
                    burst.soft,
                    standard=burst.standard,
                    name_encoding=self.name_encoding,
                    plausible=lambda number: plausible_dial_string(number, self.region),
                )
                if repaired is not None:
                    logger.debug("%s: %s burst repaired by its checksum", self.device_id, burst.standard)
                    found = [repaired]
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

    # -- ringing

    def _on_ring(self, start: int, out: list[tuple[int, LineEvent]]) -> None:
        if self.off_hook:
            return  # no exchange rings a line in use (call waiting is a tone, not ring voltage)
        self._last_ring = start
        self._active_since = None  # the burst was ringing, not the line going off hook
        out.append((start, Ring(device_id=self.device_id, line=self.line, at=self._at(start))))

    def _in_ring(self, start: int) -> bool:
        """The level frame at ``start`` is part of a ring burst (loud, but the line is not in use)."""
        return self._ring is not None and start <= self._ring.ring_until

    # -- DTMF: caller ID and dialed digits

    def ring(self) -> None:
        """Note that the line is ringing now (told by a device that sees rings).

        Bare on-hook digits in the next seconds are a caller ID sent between rings, not a rep dialing.
        """
        self._last_ring = self._n

    def _cid_burst_opens(self, hit: dsp.DtmfHit) -> bool:
        if self.off_hook:
            return False
        if hit.key in _DTMF_CID_KEYS:
            return True
        recent_ring = self._last_ring is not None and self._n - self._last_ring <= _RING_WINDOW * self.rate
        return hit.key.isdigit() and (self.bare_dtmf_callerid or recent_ring)

    def _on_key(self, hit: dsp.DtmfHit, out: list[tuple[int, LineEvent]]) -> None:
        if hit.key == "CAS":
            if hit.certain:
                out.append(
                    (
                        hit.start,
                        ToneEvent(
                            device_id=self.device_id, line=self.line, at=self._at(hit.start), tone="cas"
                        ),
                    )
                )
            return
        digits = self._digits
        if not digits.keys:
            if not hit.certain:
                # Doubts alone open no burst (speech is full of near misses, and an open
                # caller-ID burst would hold up the hook); they wait for a certain key.
                horizon = hit.end - round(_DOUBT_LEAD * self.rate)
                self._doubts = [d for d in self._doubts if d.end >= horizon] + [hit]
                return
            lead = [d for d in self._doubts if d.end >= hit.start - round(_DOUBT_LEAD * self.rate)]
            self._doubts = []
            digits.start = lead[0].start if lead else hit.start
            self._cid = self._cid_burst_opens(hit)
            for doubt in lead:  # a first key lost to the limits: the burst is short of it
                digits.keys.append(doubt.key)
                digits.sure.append(False)
                digits.starts.append(doubt.start)
        digits.keys.append(hit.key)
        digits.sure.append(hit.certain)
        digits.starts.append(hit.start)
        digits.end = hit.end
        if hit.certain:
            digits.snr_db = min(digits.snr_db, hit.snr_db)
        if self._cid:
            # Read once the exchange has stopped keying (_CID_IDLE), not at the end key:
            # keys right after a C are part of the same message, and make it doubtful.
            return
        if hit.certain and not self.off_hook:
            self._set_hook(True, digits.start, out)

    def _error(self, at: int, error: str, raw: str) -> tuple[int, LineEvent]:
        return (
            at,
            LineError(device_id=self.device_id, line=self.line, at=self._at(at), error=error, raw=raw),
        )

    def _dtmf_callerid(self, out: list[tuple[int, LineEvent]]) -> None:
        digits = self._digits
        keys = "".join(digits.keys)
        recent_ring = (
            self._last_ring is not None and digits.start - self._last_ring <= _RING_WINDOW * self.rate
        )
        if keys[0].isdigit() and keys[-1] not in _DTMF_CID_END and not recent_ring:
            # Bare digits with no end key and no ring: someone dialing, not the exchange.
            self._cid = False
            if any(digits.sure):
                self._set_hook(True, digits.start, out)
            self._flush_digits(out)
            return
        self._digits = _Digits()
        self._cid = False
        if not any(digits.sure):
            logger.debug("%s: DTMF heard but no key certain (%s)", self.device_id, digits.heard())
            return
        if not all(digits.sure):
            out.append(self._error(digits.start, "doubtful DTMF caller-ID key", digits.heard()))
            return
        # An exchange sends at a fixed cadence: a long pause is a key lost in the noise.
        if _gap_in_cadence(digits.starts):
            out.append(self._error(digits.start, "DTMF caller-ID key timing doubtful", keys))
            return
        parsed = parse_dtmf_callerid(keys)
        noisy = digits.snr_db < NOISY_SNR_DB
        if parsed.number and noisy and not plausible_dial_string(parsed.number, self.region):
            parsed = DtmfCallerId(error="noisy DTMF caller ID: number ruled out by the numbering plan")
        event: LineEvent
        if parsed.error is not None:
            event = LineError(
                device_id=self.device_id,
                line=self.line,
                at=self._at(digits.start),
                error=parsed.error,
                raw=keys,
            )
        else:
            event = CallerId(
                device_id=self.device_id,
                line=self.line,
                at=self._at(digits.start),
                number=parsed.number,
                absence=parsed.absence,
                raw=keys,
            )
        out.append((digits.start, event))

    def _flush_digits(self, out: list[tuple[int, LineEvent]]) -> None:
        digits = self._digits
        if not digits.keys:
            return
        if self._cid:
            self._dtmf_callerid(out)
            return
        self._digits = _Digits()
        keys = "".join(digits.keys)
        if not any(digits.sure):
            logger.debug("%s: DTMF heard but no key certain (%s)", self.device_id, digits.heard())
            return
        if not all(digits.sure):
            out.append(self._error(digits.start, "doubtful DTMF digits", digits.heard()))
            return
        first_dial = self._dial_bursts == 0 and not self._ringback and not self._connected
        self._dial_bursts += 1
        if digits.snr_db < NOISY_SNR_DB and _gap_in_cadence(digits.starts):
            # A key lost in the noise leaves an empty slot (two keys of one kept as one
            # leave a long one): the digits heard would be a shorter, wrong number.
            out.append(self._error(digits.start, "noisy dialed digits with a gap in their cadence", keys))
            return
        if first_dial and digits.snr_db < NOISY_SNR_DB and not plausible_dial_string(keys, self.region):
            out.append(self._error(digits.start, "noisy dialed digits ruled out by the numbering plan", keys))
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

    def _on_levels(self, frames: dsp.LevelFrames, out: list[tuple[int, LineEvent]]) -> None:  # noqa: C901 - the hook rules read as one table of level cases
        hook = self.hook
        if len(frames.starts) == 0:
            return
        active = frames.level_db >= hook.off_hook_dbfs
        quiet = frames.level_db < hook.on_hook_dbfs
        speech = active & ~frames.tonal
        if not self.off_hook and not active.any() and self._active_since is None:
            return
        # A DTMF caller ID is sent on hook and may last longer than off_hook_after.
        cid_keys = bool(self._digits.keys) and self._cid
        for start, is_active, is_quiet, is_speech in zip(
            frames.starts.tolist(), active.tolist(), quiet.tolist(), speech.tolist(), strict=True
        ):
            if not self.off_hook:
                if is_active and not cid_keys and not self._in_ring(start):
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
        self._dial_bursts = 0
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


def _gap_in_cadence(starts: list[int]) -> bool:
    """Is one key-to-key step of a burst far longer than its typical one (a key unheard)?

    Judged from four keys on (three steps); an exchange or a phone's memory keys at a
    fixed cadence, and a person dialing on a noisy line who pauses gets an error, not a
    number that might be short of a key.
    """
    steps = np.diff(np.asarray(starts))
    return len(steps) >= 3 and float(steps.max()) > _GAP_FACTOR * float(np.median(steps))


def _looks_like_message(error: CallerIdError) -> bool:
    """Junk that starts like a caller-ID message is worth reporting; channel noise is not.

    "Like a message": a type byte and a length that type can have (SDMF: 8 date digits
    and at least one more; MDMF: one parameter at least). Speech that arms the FSK
    receiver frames bytes such as ``04 00`` or ``04 01``, which no transmitter sends.
    """
    if len(error.raw) < 3:
        return False
    kind, length = error.raw[0], error.raw[1]
    return (kind == SDMF and 9 <= length <= 32) or (kind == MDMF and length >= 3)


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
    decoder = LineTapDecoder(rate, plan, region=region, **kw)
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
        decoder = LineTapDecoder(f.samplerate, plan, region=region, **kw)
        for block in f.blocks(blocksize=f.samplerate, dtype="float32", always_2d=True):
            for event in decoder.feed(block[:, channel]):
                yield event_dict(decoder, event, region)
        for event in decoder.flush():
            yield event_dict(decoder, event, region)
