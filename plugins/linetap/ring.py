"""Ringing as a line tap's sound card hears it (pure: numpy only, no I/O, no clock).

The exchange rings a line with 16⅔-50 Hz at 40-90 V rms (mostly 25 Hz in
China and Europe, 20 Hz in North America), in bursts of a fixed cadence (China
1 s on / 4 s off, NANP 2 s / 4 s, UK 0.4+0.4 s). A tap's coupling capacitor,
transformer and the card's input filter attenuate that frequency, but the ring is
some 40 dB louder than speech, so what reaches the samples is still a loud wave
of that period, often clipped by the tap's protection diodes or the converter
into a near-square wave rich in odd harmonics. Where a card's high-pass removes
the fundamental, the harmonics keep its period. What the capture path sees,
and what this detector keys on, is therefore:

- a loud signal (``min_dbfs``, well above speech on the tap);
- crossing zero only 2 x 14-60 times a second (speech crosses 200-3000 times,
  call-progress tones and FSK 700-5000 times);
- periodic at that period (normalised autocorrelation), which rejects rumble,
  handling thumps and low-frequency noise;
- in bursts of ``min_on``-``max_on`` seconds after a pause, so continuous
  mains hum (50/60 Hz, also periodic and low) is not a ring.

A line-tap box that filters the ring out completely (some have a 300 Hz
high-pass and a ring-blocking relay) gives no ring to detect; the decoder still
reports the caller ID between rings, and hook state by level as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: ring frequencies in use: 16⅔ Hz (old European), 20 Hz (NANP), 25 Hz (CN, EU), 50 Hz (some PBXs)
MIN_HZ = 14.0
MAX_HZ = 60.0
_WINDOW = 0.16  # seconds per analysis window: two periods of the lowest ring frequency
_HOP = 0.04


@dataclass(frozen=True, slots=True)
class RingSettings:
    """Thresholds of ring detection (defaults suit a tap that passes the ring at all)."""

    min_dbfs: float = -30.0  # quieter than this is not a ring voltage, whatever its shape
    min_on: float = 0.25  # a ring burst lasts at least this (UK bursts are 0.4 s)
    max_on: float = 3.0  # longer than any cadence's burst (NANP 2 s): hum, not ringing
    periodicity: float = 0.6  # normalised autocorrelation at the ring's period


class RingDetector:
    """Streaming detector of ring bursts in one line's samples.

    :meth:`process` takes blocks of float samples and returns the sample index
    (counted from the first sample given) where each confirmed ring burst began.
    :attr:`ring_until` is the end of the last ring-like window, which the hook
    inference uses so that a ring burst never counts as the line going off hook.
    """

    def __init__(self, rate: float, settings: RingSettings | None = None) -> None:
        self.rate = rate
        self.settings = settings or RingSettings()
        self.n = round(_WINDOW * rate)
        self.hop = round(_HOP * rate)
        self._box = np.ones(max(1, round(rate / 200))) / max(1, round(rate / 200))
        self._lags = np.arange(int(rate / MAX_HZ), int(rate / MIN_HZ) + 1)
        self._buf = np.zeros(0)
        self._pos = 0  # sample index of self._buf[0]
        self._burst_start: int | None = None
        self._burst_last = 0  # start of the last ring-like window of the burst
        self._reported = False
        self._period = 1.0  # the burst's ring period (seconds)
        self._quiet_windows = 0
        self._armed = False  # a ring starts after a pause, never mid-hum
        self.ringing = False
        self.ring_until = -1

    def is_ring_window(self, w: np.ndarray) -> bool:
        """One window holds ring voltage: loud, low zero-crossing rate, periodic at 14-60 Hz."""
        return self.ring_period(w) is not None

    def ring_period(self, w: np.ndarray) -> float | None:
        """The ring period (seconds) of one window, or None when it holds no ring voltage."""
        w = w - w.mean()
        power = float(np.mean(w * w))
        if power <= 0 or 10 * np.log10(power) < self.settings.min_dbfs:
            return None
        # Crossings and period are judged below ~200 Hz (two 5 ms boxcars): line
        # noise on a quiet tap would otherwise add crossings around every real one.
        low = np.convolve(np.convolve(w, self._box, "same"), self._box, "same")
        if float(np.mean(low * low)) < 0.1 * power:
            return None  # the loudness is not low-frequency: tones, keys, speech, not a ring
        signs = np.signbit(low)
        crossings = int(np.count_nonzero(signs[1:] != signs[:-1]))
        per_second = crossings / (len(w) / self.rate)
        if not 2 * MIN_HZ * 0.8 <= per_second <= 2 * MAX_HZ * 1.15:
            return None
        spectrum = np.fft.rfft(low, 2 * len(low))
        acf = np.fft.irfft(spectrum * np.conj(spectrum))[: len(w)]
        lags = self._lags[self._lags < len(w) // 2 + len(w) // 4]
        # Unbiased: each lag's sum over the overlap, scaled to the overlap's length.
        normed = acf[lags] / acf[0] * len(w) / (len(w) - lags)
        peak = float(normed.max())
        if peak < self.settings.periodicity:
            return None
        # The period, not a multiple of it: the shortest lag nearly as similar as the best.
        best = int(np.flatnonzero(normed >= 0.9 * peak)[0])
        period = float(lags[best]) / self.rate
        # The wave's crossings must tell the same period as its self-similarity:
        # a ring is one steady frequency; speech's pitch and formants disagree.
        if abs(period * per_second / 2 - 1) > 0.25:
            return None
        return period

    def process(self, x: np.ndarray) -> list[int]:
        """Feed one block; returns the start sample of each ring burst confirmed in it."""
        self._buf = np.concatenate([self._buf, x])
        found: list[int] = []
        s = self.settings
        while len(self._buf) >= self.n:
            start = self._pos
            period = self.ring_period(self._buf[: self.n])
            if period is not None and self._burst_start is not None and abs(period / self._period - 1) > 0.1:
                period = None  # a ring generator holds its frequency through a burst
            if period is not None:
                self.ring_until = start + self.n
                self._quiet_windows = 0
                if self._burst_start is None and self._armed:
                    self._burst_start = start
                    self._reported = False
                    self._armed = False  # the next burst needs a pause first
                    self._period = period
                self._burst_last = start
                if self._burst_start is not None:
                    length = start + self.n - self._burst_start
                    if length > s.max_on * self.rate:
                        # Too long for any cadence: hum. Wait for a pause before the next ring.
                        self._burst_start = None
                        self._armed = False
                        self.ringing = False
                    elif not self._reported and length >= s.min_on * self.rate:
                        self._reported = True
                        self.ringing = True
                        # The first window began up to a window before the ring did.
                        found.append(self._burst_start + (self.n - self.hop) // 2)
            else:
                self._quiet_windows += 1
                # Two windows of something else end a burst (the windows overlap).
                if self._burst_start is not None and start - self._burst_last > 2 * self.hop:
                    self._burst_start = None
                    self.ringing = False
                if self._quiet_windows * self.hop >= 0.2 * self.rate:
                    self._armed = True
            self._buf = self._buf[self.hop :]
            self._pos += self.hop
        return found


__all__ = ["MAX_HZ", "MIN_HZ", "RingDetector", "RingSettings"]
