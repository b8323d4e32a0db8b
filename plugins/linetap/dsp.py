"""Signal processing for the line tap (pure numpy, streaming, no per-sample Python loops).

Every detector here is a small object fed consecutive blocks of float samples
at one rate; it keeps only the history its filters need, so memory stays
bounded however long the line is tapped. Sample positions are absolute
(counted from the first sample ever fed), so the protocol layer can turn them
into offsets in seconds.

Specifications the numbers come from, cited by name where they are used:

- Bell 202 (Bellcore GR-30-CORE, on-hook and off-hook data transmission):
  1200 baud, mark (1) 1200 Hz, space (0) 2200 Hz; channel seizure of 300
  alternating bits, then 180 bits of mark (80 off-hook), then bytes as
  start bit (0), 8 data bits LSB first, stop bit (1).
- ITU-T V.23 as used by ETSI EN 300 659-1 (on-hook) / -2 (off-hook):
  1200 baud, mark 1300 Hz, space 2100 Hz; channel seizure 300 bits, mark
  180 +/- 25 bits (off-hook: no seizure, mark 80 +/- 25 bits).
- DTMF: ITU-T Q.23 frequencies (rows 697/770/852/941 Hz, columns
  1209/1336/1477/1633 Hz); ITU-T Q.24 receiver limits: frequency deviation
  within +/-1.5 % accepted, beyond +/-3.5 % rejected; a tone of 40 ms
  accepted, one of 20 ms or less rejected; twist (level difference of the
  two groups) limited, here to 8 dB with the high group louder and 4 dB
  with the low group louder, the North American figures Q.24 lists.
- CAS / dual-tone alerting signal for off-hook caller ID (GR-30-CORE,
  ETSI EN 300 659-2): 2130 Hz + 2750 Hz, 80 ms (ETSI: 80-100 ms).
- Call-progress tones (ITU-T E.180 Supplement 2, national tone plans):
  China: 450 Hz; dial tone continuous, ringback 1.0 s on / 4.0 s off,
  busy 0.35 / 0.35 s, congestion 0.7 / 0.7 s. North America (precise tone
  plan): dial 350+440 Hz continuous, ringback 440+480 Hz 2 s / 4 s, busy
  480+620 Hz 0.5 / 0.5 s, reorder (congestion) 480+620 Hz 0.25 / 0.25 s.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

TWO_PI = 2.0 * math.pi
EPS = 1e-12

DTMF_ROWS = (697.0, 770.0, 852.0, 941.0)
DTMF_COLS = (1209.0, 1336.0, 1477.0, 1633.0)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")
CAS_FREQS = (2130.0, 2750.0)


@dataclass(frozen=True, slots=True)
class FskStandard:
    """One FSK modem standard used for caller ID."""

    name: str
    mark: float
    space: float
    baud: float


BELL202 = FskStandard("bell202", 1200.0, 2200.0, 1200.0)
V23 = FskStandard("v23", 1300.0, 2100.0, 1200.0)
FSK_STANDARDS = {s.name: s for s in (BELL202, V23)}


def to_float(samples: np.ndarray) -> np.ndarray:
    """Samples as float64 in [-1, 1]: integer PCM is scaled, floats are kept."""
    a = np.asarray(samples)
    if a.dtype.kind == "i":
        return a.astype(np.float64) / float(-np.iinfo(a.dtype).min)
    if a.dtype.kind == "u":
        info = np.iinfo(a.dtype)
        mid = (info.max + 1) / 2
        return (a.astype(np.float64) - mid) / mid
    return a.astype(np.float64, copy=False)


def dbfs(power: np.ndarray | float) -> np.ndarray:
    """Mean power (of samples in [-1, 1]) in dB relative to a full-scale sine."""
    return 10.0 * np.log10(np.maximum(np.asarray(power, dtype=np.float64), EPS) / 0.5)


class Decimator:
    """Integer down-sampling to the 8-12 kHz every detector here runs at.

    Telephone signalling lives below 3.4 kHz (the CAS tone's 2750 Hz is the
    highest), so 48/44.1/16 kHz input is low-pass filtered (windowed sinc) and
    decimated by ``rate // 8000``; 8-12 kHz input passes through untouched.
    Only the kept outputs are computed (a strided window times the taps).
    """

    def __init__(self, rate: int) -> None:
        if rate < 8000:
            raise ValueError(f"sample rate {rate} Hz is below the 8000 Hz telephone minimum")
        self.factor = max(1, rate // 8000)
        self.in_rate = rate
        self.out_rate = rate / self.factor
        m = self.factor
        if m == 1:
            self._taps = np.ones(1)
        else:
            n = 16 * m + 1
            t = np.arange(n) - (n - 1) / 2
            cutoff = 3400.0 / rate  # cycles per input sample
            h = 2 * cutoff * np.sinc(2 * cutoff * t) * np.hamming(n)
            self._taps = h / h.sum()
        self._hist = np.zeros(len(self._taps) - 1)
        self._phase = 0  # input samples to skip before the next kept output

    def process(self, x: np.ndarray) -> np.ndarray:
        """Decimate one block (any length); returns the new output samples."""
        if self.factor == 1:
            return x
        z = np.concatenate([self._hist, x])
        k = len(self._taps)
        windows = sliding_window_view(z, k)
        out = windows[self._phase :: self.factor] @ self._taps[::-1]
        used = self._phase + len(out) * self.factor
        self._phase = used - len(windows)
        self._hist = z[len(z) - (k - 1) :] if k > 1 else z[:0]
        return out


def bandpass(rate: float, low: float, high: float, seconds: float = 0.008) -> np.ndarray:
    """A linear-phase FIR band-pass (Hamming-windowed sinc difference) about ``seconds`` long."""
    n = int(round(seconds * rate)) | 1
    t = np.arange(n) - (n - 1) / 2
    h = 2 * high / rate * np.sinc(2 * high / rate * t) - 2 * low / rate * np.sinc(2 * low / rate * t)
    taps: np.ndarray = h * np.hamming(n)
    return taps


class Fir:
    """A streaming FIR filter: blocks in, as many filtered samples out (history kept between blocks)."""

    def __init__(self, taps: np.ndarray) -> None:
        self.taps = taps
        self._hist = np.zeros(len(taps) - 1)

    def process(self, x: np.ndarray) -> np.ndarray:
        """Filter one block."""
        z = np.concatenate([self._hist, x])
        self._hist = z[len(z) - len(self.taps) + 1 :]
        out: np.ndarray = np.convolve(z, self.taps, mode="valid")
        return out


def fsk_band(rate: float) -> Fir:
    """The band-pass every FSK receiver wants (900-2500 Hz covers Bell 202 and V.23); share one."""
    return Fir(bandpass(rate, 900.0, 2500.0))


def _boxcar_stream(z: np.ndarray, length: int) -> np.ndarray:
    """Sums over ``length``-sample windows ending at each of z's last ``len(z) - length + 1`` samples."""
    cs = np.concatenate([np.zeros(1, dtype=z.dtype), np.cumsum(z)])
    sums: np.ndarray = cs[length:] - cs[:-length]
    return sums


@dataclass(frozen=True, slots=True)
class FskBurst:
    """The bytes of one FSK burst (what the UART framed between carrier on and off)."""

    standard: str
    data: bytes
    start: int  # absolute sample index (at the receiver's rate) of the first byte's start bit
    end: int  # of the last byte's stop bit
    #: each data bit's soft decision, 8 per byte LSB first (+1 sure mark .. -1 sure space)
    soft: tuple[float, ...] = ()


class FskReceiver:
    """FSK demodulator + carrier/mark detector + UART for one standard.

    Demodulation is non-coherent: the signal is band-passed (900-2500 Hz),
    mixed down by the mark and the space frequency and each product summed
    over one bit (a matched filter for a one-bit tone);
    ``d = (|m|^2 - |s|^2) / (|m|^2 + |s|^2)`` is +1 on mark and -1 on space.
    The share of the raw signal's power those two filters hold says whether
    an FSK carrier is there at all: ``carrier_share`` to arm on a mark,
    ``data_share`` (on average over a byte) to accept a byte.

    The UART is armed by a mark signal (GR-30 / EN 300 659-1: 180 bits
    on-hook, 80 off-hook; armed here after ``mark_bits`` of mostly-mark
    samples, which the channel seizure's alternating bits never give); it
    then frames bytes (start bit 0, 8 data bits LSB first, stop bit 1) at
    mid-bit points after each start edge, until the carrier goes or no byte
    follows for ``idle_bits``. A byte whose stop bit is not mark is skipped
    (the UART looks for the next start edge), never guessed.
    """

    def __init__(
        self,
        rate: float,
        standard: FskStandard = BELL202,
        *,
        mark_bits: int = 40,
        idle_bits: int = 24,
        min_dbfs: float = -50.0,
        carrier_share: float = 0.7,
        data_share: float = 0.5,
    ) -> None:
        self.rate = rate
        self.standard = standard
        self.spb = rate / standard.baud  # samples per bit
        self.L = max(2, round(self.spb))
        self.mark_len = round(mark_bits * self.spb)
        self.idle_len = round(idle_bits * self.spb)
        self.lead_len = round(240 * self.spb)
        self.min_power = 0.5 * 10 ** (min_dbfs / 10)
        self.carrier_share = carrier_share
        self.data_share = data_share
        self._wm = TWO_PI * standard.mark / rate
        self._ws = TWO_PI * standard.space / rate
        self._tables: dict[float, np.ndarray] = {}
        self._band = fsk_band(rate)
        self._tailf = np.zeros(self.L)
        self._tail = np.zeros(self.L)
        self._ttail = np.zeros(4 * self.L)
        self._ptail = np.zeros(4 * self.L)
        self._n = 0  # absolute index of the next input sample
        # Demodulated buffer: d and the carrier share, from absolute index _b0.
        self._d = np.zeros(0, dtype=np.float32)
        self._car = np.zeros(0, dtype=np.float32)
        self._b0 = 0
        self._armed = False
        self._pos = 0  # absolute index where the UART resumes looking
        self._bytes = bytearray()
        self._soft: list[float] = []
        self._burst_start = 0
        self._last_byte_end = 0
        self._next_start: float | None = None  # absolute: where a byte sent back to back would start
        # Where to read each of a byte's 10 bits, from the start edge's zero
        # crossing (where the one-bit window is half over the edge): the
        # window sits on bit k about (k + 1/2) bits later. The extra half
        # sample was found best by measurement at 8 and 11.025 kHz.
        self._offsets = (np.arange(10) + 0.5) * self.spb + 0.5

    def _demodulate(self, x: np.ndarray, xf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # The tone filters see the band-passed signal (their sidelobes would
        # let in noise from the whole band); the power they are compared with
        # is the raw signal's, so out-of-band noise lowers the carrier share.
        zf = np.concatenate([self._tailf, xf])
        z = np.concatenate([self._tail, x])
        start = self._n - self.L
        m = _boxcar_stream(zf * self._osc(self._wm, start, len(zf)), self.L)[1:]
        s = _boxcar_stream(zf * self._osc(self._ws, start, len(zf)), self.L)[1:]
        p = _boxcar_stream(z * z, self.L)[1:]
        em = m.real**2 + m.imag**2
        es = s.real**2 + s.imag**2
        tot = em + es
        d = (em - es) / (tot + EPS)
        # A pure tone on one filter gives 2 |m|^2 / (L p) = 1.
        # Carrier: the share of the power the two filters hold, over 4 bits
        # (a pure tone on one filter gives 1; white noise over the telephone band about 0.3).
        w = 4 * self.L
        zz = np.concatenate([self._ptail, p])
        share = _boxcar_stream(np.concatenate([self._ttail, tot]), w) / (
            0.5 * self.L * _boxcar_stream(zz, w) + EPS
        )
        # The share itself goes in the buffer (0 where the level is too low):
        # arming wants a pure mark, framing only a carrier in the band.
        car = np.where(p > self.L * self.min_power, share[1:], 0.0).astype(np.float32)
        self._ttail = np.concatenate([self._ttail, tot])[-w:]
        self._ptail = zz[-w:]
        self._tail = z[-self.L :]
        self._tailf = zf[-self.L :]
        self._n += len(x)
        return d.astype(np.float32), car

    def _osc(self, w: float, start: int, n: int) -> np.ndarray:
        """``exp(-j w (start + k))`` for k < n: a cached table turned to the block's phase."""
        table = self._tables.get(w)
        if table is None or len(table) < n:
            table = np.exp(-1j * w * np.arange(max(n, round(self.rate)), dtype=np.float64))
            self._tables[w] = table
        turned: np.ndarray = table[:n] * np.exp(-1j * ((w * start) % TWO_PI))
        return turned

    def process(self, x: np.ndarray, filtered: np.ndarray | None = None) -> list[FskBurst]:
        """Feed one block; returns the bursts that ended in it.

        ``filtered`` is the block through :func:`fsk_band` when the caller
        shares one filter among several receivers (else each filters its own).
        """
        if len(x) == 0:
            return []
        d, car = self._demodulate(x, self._band.process(x) if filtered is None else filtered)
        self._d = np.concatenate([self._d, d])
        self._car = np.concatenate([self._car, car])
        out: list[FskBurst] = []
        while True:
            if not self._armed and not self._search():
                break
            if self._armed and not self._frame(out):
                break
        self._trim()
        return out

    def flush(self) -> list[FskBurst]:
        """End of input: a burst still open is returned as it is."""
        out: list[FskBurst] = []
        self._end_burst(out)
        return out

    def _search(self) -> bool:
        """Look for a mark signal; arms the UART and returns True when found."""
        lo = max(self._pos, self._b0) - self._b0
        d = self._d[lo:]
        if len(d) < self.mark_len:
            return False
        # V23 tones are only 800 Hz apart: a one-bit filter leaks, a pure mark gives d of about 0.65.
        car = self._car[lo:]
        mark = (d > 0.25) & (car > 0)
        # Share of mark samples over each mark_len window; 90 % tolerates noise flicks.
        counts = _boxcar_stream(mark.astype(np.int32), self.mark_len)
        # The carrier share is judged on its mean over the window, not sample by sample:
        # at 6 dB SNR a Bell 202 mark's share dips under 0.7 in one sample of five (mean 0.92,
        # white noise alone about 0.45), and SpanDSP sends only 80 mark bits to arm on.
        share = _boxcar_stream(car.astype(np.float64), self.mark_len) / self.mark_len
        hits = np.flatnonzero((counts >= 0.9 * self.mark_len) & (share > self.carrier_share))
        if len(hits) == 0:
            self._pos = self._b0 + lo + len(d) - self.mark_len + 1
            return False
        self._armed = True
        self._pos = self._b0 + lo + int(hits[0]) + self.mark_len - 1
        self._last_byte_end = self._pos
        self._bytes = bytearray()
        self._next_start = None
        return True

    def _frame(self, out: list[FskBurst]) -> bool:
        """Frame bytes from ``_pos``; returns True when the burst ended (search again)."""
        d, car, b0 = self._d, self._car, self._b0
        frame_len = int(self._offsets[-1]) + 3  # + the soft decision's look-ahead
        while True:
            lo = self._pos - b0
            # Before the first byte the mark signal may run on (180 + 25 bits at most).
            wait = self.idle_len if self._bytes else self.lead_len
            deadline = self._last_byte_end + wait - b0
            hi = min(len(d) - frame_len, deadline)
            if hi <= lo:
                if deadline <= len(d) - frame_len:
                    # Nothing framed for idle_bits: the burst is over.
                    self._end_burst(out)
                    self._pos = self._last_byte_end
                    return True
                return False
            if self._next_start is not None:
                chained = self._chain(out)
                if chained is None:
                    return False  # wait for the rest of the byte
                if chained:
                    return True
                continue
            seg = d[max(lo - 1, 0) : hi]
            edges = np.flatnonzero((seg[:-1] >= 0) & (seg[1:] < 0)) + max(lo - 1, 0) + 1
            if len(edges) == 0:
                self._pos = b0 + hi
                continue
            framed = False
            for j in edges.tolist():
                # Sub-sample zero crossing between j-1 and j.
                a, b = float(d[j - 1]), float(d[j])
                c = j - 1 + a / (a - b + EPS)
                pts = np.floor(c + self._offsets).astype(np.int64)
                v = _soft_bits(d, pts)
                if v[0] >= 0 or v[9] <= 0:
                    continue
                if not car[int(pts[0]) : int(pts[9]) + 1].mean() > self.data_share:
                    continue
                framed = True
                if self._take(b0 + c, pts, v, out):
                    return True
                break
            if not framed:
                self._pos = b0 + int(edges[-1]) + 1
                if car[int(edges[-1])] <= self.data_share and not self._bytes:
                    # Carrier gone before any byte: a mark-like sound, not a burst.
                    self._armed = False
                    return True

    def _take(self, c: float, pts: np.ndarray, v: np.ndarray, out: list[FskBurst]) -> bool:
        """Keep one framed byte (start edge at absolute ``c``); returns True when it completed a message."""
        bits = (v[1:9] > 0).astype(np.int64)
        if not self._bytes:
            self._burst_start = int(c)
            self._soft = []
        self._bytes.append(int((bits << np.arange(8)).sum()))
        self._soft.extend(v[1:9].tolist())
        self._pos = self._b0 + int(pts[9])
        self._last_byte_end = self._pos
        self._next_start = c + 10 * self.spb
        if _message_complete(self._bytes):
            self._end_burst(out)
            return True
        return False

    def _chain(self, out: list[FskBurst]) -> bool | None:
        """Frame the byte that starts right after the last one's stop bit, if one does.

        Caller-ID transmitters send a message's bytes back to back, so the next
        start edge is due 10 bits after the last. Noise moves a zero crossing
        and can fake one in the stop bit, or turn the stop bit to space; the
        edge search alone then starts a byte early or skips it, and every byte
        after it slips. Here the byte is read at the due point, nudged halfway
        to a start edge found within half a bit of it (a loop that follows a
        transmitter's clock error of a percent or two), whatever its stop bit
        says. A mark at the due point (marks between bytes, or the message's
        end) hands back to the edge search. Returns True when a message was
        completed, False to go on, None to wait for more input.
        """
        assert self._next_start is not None
        d, car, b0 = self._d, self._car, self._b0
        e = self._next_start - b0
        half = self.spb / 2
        lo, hi = int(math.floor(e - half)), int(math.ceil(e + half)) + 1
        if hi + int(self._offsets[-1]) + 3 > len(d):
            return None
        self._next_start = None
        if lo < 1:
            return False
        seg = d[lo - 1 : hi]
        at = np.flatnonzero((seg[:-1] >= 0) & (seg[1:] < 0)) + lo
        c = e
        if len(at):
            a, b = d[at - 1].astype(np.float64), d[at].astype(np.float64)
            crossings = at - 1 + a / (a - b + EPS)
            x = float(crossings[np.argmin(np.abs(crossings - e))])
            if abs(x - e) <= half:
                c = e + 0.5 * (x - e)
        pts = np.floor(c + self._offsets).astype(np.int64)
        v = _soft_bits(d, pts)
        if v[0] >= 0 or not car[int(pts[0]) : int(pts[9]) + 1].mean() > self.data_share:
            return False
        return self._take(b0 + c, pts, v, out)

    def _end_burst(self, out: list[FskBurst]) -> None:
        if self._bytes:
            out.append(
                FskBurst(
                    self.standard.name,
                    bytes(self._bytes),
                    self._burst_start,
                    self._last_byte_end,
                    tuple(self._soft),
                )
            )
        self._bytes = bytearray()
        self._armed = False
        self._next_start = None

    def _trim(self) -> None:
        keep_from = self._pos - self.mark_len - 2 * self.L
        if self._armed:
            keep_from = min(keep_from, self._pos - 2 * self.L)
        drop = keep_from - self._b0
        if drop > 0:
            self._d = self._d[drop:]
            self._car = self._car[drop:]
            self._b0 += drop


def _soft_bits(d: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Each bit's soft decision: the discriminator averaged over the bit's centre (a 5-sample taper).

    One sample is at the mercy of the ripple a hard-clipped input leaves on the
    discriminator (a clipped V.23 tone's odd harmonics alias to 1500 and 1700 Hz,
    between mark and space); the average smooths it out and lowers the noise's share
    (measured: V.23 at 7 dB SNR from 15 to 18 of 20, Bell 202 at 6 dB 13 to 14).
    """
    soft: np.ndarray = (0.5 * d[pts - 2] + d[pts - 1] + d[pts] + d[pts + 1] + 0.5 * d[pts + 2]) / 4
    return soft


def _message_complete(data: bytearray) -> bool:
    """Do the bytes end with a whole caller-ID message (SDMF 0x04 or MDMF 0x80 header, checksum 0)?

    Ending the burst there gives the message without waiting for the carrier
    to drop; anything else ends on carrier loss or idle time.
    """
    n = len(data)
    if n < 3:
        return False
    tail_sum = 0
    for i in range(n - 1, -1, -1):
        tail_sum += data[i]
        if i + 2 < n and data[i] in (0x04, 0x80) and data[i + 1] + 3 == n - i and tail_sum & 0xFF == 0:
            return True
    return False


class _FrameBank:
    """Sliding frames of a stream, correlated with a bank of frequencies (rectangular window).

    ``process`` returns, per new frame, the complex DFT value at each
    frequency (phase referred to the absolute sample index of the frame
    start, so consecutive frames can be compared) and the frame's energy.
    """

    def __init__(self, rate: float, freqs: tuple[float, ...], frame: int, hop: int) -> None:
        self.rate = rate
        self.freqs = np.asarray(freqs, dtype=np.float64)
        self.N = frame
        self.H = hop
        n = np.arange(frame)
        basis = np.exp(-1j * TWO_PI * np.outer(n, self.freqs) / rate)
        # Real [cos | -sin] columns: one BLAS matmul of contiguous float32
        # (plenty for tone powers and phase steps, twice as fast as float64).
        self._basis = np.ascontiguousarray(np.hstack([basis.real, basis.imag]), dtype=np.float32)
        self._k = len(self.freqs)
        self._rot = np.zeros((0, self._k), complex)  # phase turn of frame t after a block's first
        self._buf = np.zeros(0)
        self._b0 = 0  # absolute index of _buf[0]; always a frame start

    def process(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(frame start indices, complex values [frames x freqs], energies [frames])."""
        buf = np.concatenate([self._buf, x])
        if len(buf) < self.N:
            self._buf = buf
            return np.zeros(0, dtype=np.int64), np.zeros((0, len(self.freqs)), complex), np.zeros(0)
        frames = np.ascontiguousarray(sliding_window_view(buf, self.N)[:: self.H], dtype=np.float32)
        starts = self._b0 + np.arange(len(frames), dtype=np.int64) * self.H
        ri = (frames @ self._basis).astype(np.float64)
        values = ri[:, : self._k] + 1j * ri[:, self._k :]
        # Refer each value's phase to the absolute start so frames compare:
        # the block's first frame by its start, the next ones by whole hops.
        if len(self._rot) < len(frames):
            t = np.arange(max(len(frames), 256), dtype=np.float64)
            self._rot = np.exp(-1j * TWO_PI * np.outer(t * self.H, self.freqs) / self.rate)
        first = np.exp(-1j * TWO_PI * np.mod(self.freqs * self._b0 / self.rate, 1.0))
        values *= self._rot[: len(frames)] * first
        energy = np.einsum("ij,ij->i", frames, frames).astype(np.float64)
        consumed = len(frames) * self.H
        self._buf = buf[consumed:]
        self._b0 += consumed
        return starts, values, energy


@dataclass(frozen=True, slots=True)
class DtmfHit:
    """One DTMF key (or the CAS tone, as key ``"CAS"``) with its extent in samples."""

    key: str
    start: int
    end: int
    #: False for a candidate the detector did not accept (too short, talk-off guard, level
    #: not steady): reported only by a detector built with ``report_doubtful=True``, so the
    #: protocol can tell "nothing was keyed" from "a key was there but not certain".
    certain: bool = True
    #: the key's tones over the line's broadband noise floor (dB; 99 on a silent line)
    snr_db: float = 99.0


@dataclass(frozen=True, slots=True)
class DtmfLimits:
    """DTMF acceptance limits (ITU-T Q.24 figures; see the module docstring)."""

    min_dbfs: float = -40.0  # each tone's level
    forward_twist_db: float = 8.0  # high group louder than low group by at most
    reverse_twist_db: float = 4.0  # low group louder than high group by at most
    # Q.24 has a key at either twist limit accepted; the frames at a key's edges measure its
    # twist up to about 0.4 dB off (the groups' tones fill a frame unevenly), so the limits
    # are applied this much wider.
    twist_margin_db: float = 0.5
    max_deviation: float = 0.025  # between Q.24's accept 1.5 % and reject 3.5 %
    concentration: float = 0.75  # share of the frame's energy in the two tones
    neighbour_db: float = 10.0  # strongest tone above the next of its group by at least
    guard_db: float = 20.0  # the frames just before and after a key are quieter than it by at least
    cas_twist_db: float = 6.0  # the CAS's two tones differ in level by at most (GR-30-CORE's receiver)
    # ... or, on a noisy line, no louder at the DTMF frequencies than this many times the
    # line's noise floor there (its 10th percentile over recent key-free frames): white noise
    # 10 dB under the keys would otherwise fail a 20 dB guard on every key.
    floor_factor: float = 6.0
    flatness_db: float = 6.0  # a key's level varies by at most this over its frames (a syllable swells)
    # The line's noise is taken off a frame's energy before the concentration test only when it is
    # steady: its median key-free frame within this of its quietest tenth (white noise: 0.6 dB).
    noise_steady_db: float = 3.0
    # A near miss: frames that fail the limits above by no more than these, which a key
    # pushed out of them by noise (twist and deviation measured on noisy tones) looks like.
    # Two of them in a row are a doubtful key, so a burst that lost a key to the limits is
    # an error, not a shorter number.
    near_twist_db: float = 8.0  # beyond either twist limit
    near_deviation: float = 0.045  # beyond Q.24's reject limit (3.5 %): a key off by that is no key
    near_concentration: float = 0.4
    near_neighbour_db: float = 3.0


class DtmfDetector:
    """DTMF keys per ITU-T Q.23/Q.24, plus the 2130+2750 Hz CAS tone.

    Frames of 25.6 ms (205 samples at 8 kHz, the classic Goertzel length that
    separates the rows) slide by a quarter frame. Each tone is probed at its
    nominal frequency and up to 1.5 % either side (Q.24's accept band),
    the best probe counting. A frame counts for a key when both tones are there
    (level, twist, one row and one column clearly stronger than their
    neighbours), hold most of the frame's energy (speech and music spread
    theirs) and are on frequency (the phase advance between consecutive
    frames measures the deviation). A key starts after ``on`` consecutive
    frames of it (about 30-35 ms of tone: 40 ms is always accepted, 20 ms
    never) and ends after ``off`` frames in which its tones have dropped
    below a third of their onset power, so a drop-out of 10 ms or less
    inside a key is not a pause (Q.24). Talk-off guard: a key is reported
    only when, at the DTMF frequencies, the frame just before it and the
    frame just after it are ``guard_db`` quieter than it (keys are pressed
    in pauses; a speech harmonic pair that mimics a key sits inside a
    syllable, among other harmonics), and when its level stayed within
    ``flatness_db`` (a keypad's tone is steady; a syllable swells and fades).
    On a noisy line "quieter" means "no louder than the line's own noise
    floor" (``floor_factor``), which the detector tracks over key-free frames.

    With ``report_doubtful`` the candidates it refused after two or more
    frames (a run too short to be a key, a key inside speech, a level that
    swelled) come back too, with ``certain=False``: a burst of digits with one
    of those in it is not a number anyone can trust.
    """

    _PROBES = (1 - 0.015, 1 - 0.0075, 1.0, 1 + 0.0075, 1 + 0.015)

    def __init__(
        self, rate: float, limits: DtmfLimits | None = None, *, report_doubtful: bool = False
    ) -> None:
        self.rate = rate
        self.limits = limits or DtmfLimits()
        self.report_doubtful = report_doubtful
        n = round(0.0256 * rate)
        hop = max(1, n // 4)
        self.frame_seconds = n / rate
        self._nominal = np.asarray(DTMF_ROWS + DTMF_COLS + CAS_FREQS)
        probes = tuple(float(f * k) for f in self._nominal for k in self._PROBES)
        self._bank = _FrameBank(rate, probes, n, hop)
        self.on = 3
        self.off = 2
        self.cas_on = 6
        self._prev_value: np.ndarray | None = None
        self._current: str | None = None  # the key being held
        self._ref: tuple[int, int, float, float] = (0, 0, 0.0, 0.0)  # its row, column and onset powers
        self._run_key: str | None = None
        self._run = 0
        self._run_end = 0  # end of the run's last frame
        self._doubts: list[DtmfHit] = []  # refused candidates, when report_doubtful
        self._gap = 0
        self._start = 0
        self._last_end = 0
        self._talk_off = False  # the key being held sits inside speech
        self._span = (0.0, 0.0)  # least and greatest power of the key's tones over its frames
        self._pending: tuple[DtmfHit, int, float] | None = None  # key, frame start due, energy limit
        self._after: float | None = None  # DTMF-band power of the frame just after the held key's last
        self._energies: deque[tuple[int, float]] = deque(maxlen=16)  # recent (frame start, DTMF-band power)
        # Key-free frames of the last 4 s: DTMF-band power and broadband energy (the noise floor).
        self._floor_band: deque[float] = deque(maxlen=round(4.0 * rate / hop))
        self._floor_energy: deque[float] = deque(maxlen=round(4.0 * rate / hop))
        self._floor = 0.0  # 10th percentile of _floor_band
        self._floor_e = 0.0  # 10th percentile of _floor_energy
        self._noise_e = 0.0  # _floor_e when the line's noise is steady, else 0 (see _track_floor)
        self._last_label: int | None = None  # start of the latest frame with a label
        self._floor_wait: deque[tuple[int, float, float]] = deque()  # key-free frames not yet known clear
        self._near: tuple[str, int, int, int] | None = None  # near-miss run: key, frames, start, end
        self._tail: tuple[str, int] | None = None  # the key last ended and the end of its extent
        self._last_doubt: DtmfHit | None = None

    def _labels(
        self, values: np.ndarray, energy: np.ndarray
    ) -> tuple[list[str | None], list[str | None], np.ndarray]:
        """Each frame's key (or CAS), each frame's near-miss key (see DtmfLimits), and the tones' power."""
        lim = self.limits
        n = self._bank.N
        k = len(self._PROBES)
        nf = len(self._nominal)
        probe_power = (2.0 * (values.real**2 + values.imag**2) / n).reshape(-1, nf, k)
        best = probe_power.argmax(axis=2)  # frames x tones
        power = np.take_along_axis(probe_power, best[:, :, None], axis=2)[:, :, 0]
        rows, cols, cas = power[:, :4], power[:, 4:8], power[:, 8:]
        ri = rows.argmax(axis=1)
        ci = cols.argmax(axis=1)
        ar = np.arange(len(power))
        pr = rows[ar, ri]
        pc = cols[ar, ci]
        # Frequency from the best probe's phase advance between consecutive
        # frames (phases are referred to absolute time: advance = 2 pi df H / fs).
        prev = np.vstack(
            [self._prev_value[None, :] if self._prev_value is not None else values[:1], values[:-1]]
        )
        adv = np.angle(values * np.conj(prev)).reshape(-1, nf, k)
        adv = np.take_along_axis(adv, best[:, :, None], axis=2)[:, :, 0]
        probe_freq = self._nominal[None, :] * np.asarray(self._PROBES)[best]
        measured = probe_freq + adv * self.rate / (TWO_PI * self._bank.H)
        dev = np.abs(measured / self._nominal[None, :] - 1)

        min_energy = 0.5 * 10 ** (lim.min_dbfs / 10) * n
        # The share of the frame's energy in the two tones, once a steady line noise
        # (see _track_floor) is taken off: white noise 6 dB under the keys would
        # otherwise leave them 80 % at best. At most half a frame's energy is taken
        # off, so a quiet frame of speech or music never looks purer than twice its share.
        share = (pr + pc) / np.maximum(energy - np.minimum(self._noise_e, 0.5 * energy), EPS)
        neighbour = np.minimum(
            pr / np.maximum(self._neighbours(probe_power[:, :4], ri, measured[ar, ri], 0), EPS),
            pc / np.maximum(self._neighbours(probe_power[:, 4:8], ci, measured[ar, 4 + ci], 4), EPS),
        )
        twist = 10 * np.log10(np.maximum(pc, EPS) / np.maximum(pr, EPS))  # high group over low
        deviation = np.maximum(dev[ar, ri], dev[ar, 4 + ci])
        present = (pr > min_energy) & (pc > min_energy)

        def within(
            extra_twist: float, deviation_limit: float, concentration: float, neighbour_db: float
        ) -> np.ndarray:
            extra_twist += lim.twist_margin_db
            ok: np.ndarray = present & (twist <= lim.forward_twist_db + extra_twist)
            ok &= twist >= -(lim.reverse_twist_db + extra_twist)
            ok &= share >= concentration
            ok &= neighbour > 10 ** (neighbour_db / 10)
            ok &= deviation <= deviation_limit
            return ok

        ok = within(0.0, lim.max_deviation, lim.concentration, lim.neighbour_db)
        near_ok = within(lim.near_twist_db, lim.near_deviation, lim.near_concentration, lim.near_neighbour_db)

        cas_ok = (cas.min(axis=1) > min_energy) & (cas.sum(axis=1) >= lim.concentration * energy)
        cas_ok &= (dev[:, 8] <= lim.max_deviation) & (dev[:, 9] <= lim.max_deviation)
        # A vowel's harmonics can sit on both CAS frequencies, one of them far weaker;
        # the exchange sends the pair at (nearly) one level.
        cas_twist = 10 ** (lim.cas_twist_db / 10)
        cas_ok &= (cas[:, 0] <= cas[:, 1] * cas_twist) & (cas[:, 1] <= cas[:, 0] * cas_twist)
        self._prev_value = values[-1]
        labels: list[str | None] = [None] * len(power)
        for i in np.flatnonzero(ok | cas_ok):
            labels[i] = "CAS" if cas_ok[i] else DTMF_KEYS[int(ri[i])][int(ci[i])]
        near: list[str | None] = [None] * len(power)
        for i in np.flatnonzero(near_ok & ~cas_ok):
            near[i] = DTMF_KEYS[int(ri[i])][int(ci[i])]
        return labels, near, power

    def _neighbours(self, group: np.ndarray, win: np.ndarray, win_freq: np.ndarray, first: int) -> np.ndarray:
        """The strongest other tone of a group (frames x 4 tones x probes), probed away from the winner.

        A neighbour's probes nearer the winner than the two nominal frequencies are
        apart measure the winner's own leakage, not a second tone: 697 Hz leaks
        -14 dB into the 1.5 % low probe of 770 Hz, -23 dB into 770 Hz itself.
        Each neighbour counts its probes at least that far from the winner's measured
        frequency (its farthest one when the winner itself is off by more).
        """
        nominal = self._nominal[first : first + 4]
        freqs = nominal[:, None] * np.asarray(self._PROBES)[None, :]  # 4 tones x probes
        dist = np.abs(freqs[None, :, :] - win_freq[:, None, None])  # frames x tones x probes
        spacing = np.abs(nominal[None, :] - nominal[win][:, None])  # frames x tones
        far = dist >= np.minimum(spacing, dist.max(axis=2))[:, :, None]
        power = np.where(far, group, 0.0).max(axis=2)
        power[np.arange(len(win)), win] = 0.0
        strongest: np.ndarray = power.max(axis=1)
        return strongest

    def process(self, x: np.ndarray) -> list[DtmfHit]:
        """Feed one block; returns the keys that ended in it."""
        starts, values, energy = self._bank.process(x)
        out: list[DtmfHit] = []
        # A long block is judged in pieces of 0.1 s at most, so the noise floor its
        # first frames show counts for the keys in its later ones.
        step = max(1, round(0.1 * self.rate / self._bank.H))
        for lo in range(0, len(starts), step):
            self._frames(starts[lo : lo + step], values[lo : lo + step], energy[lo : lo + step], out)
        return self._with_doubts(out)

    def _frames(self, starts: np.ndarray, values: np.ndarray, energy: np.ndarray, out: list[DtmfHit]) -> None:
        """Label consecutive frames and follow the keys they make (hits appended to ``out``)."""
        labels, near, power = self._labels(values, energy)
        # What the talk-off guard compares: the power at the DTMF frequencies
        # (a dial tone before the first key is not speech around it).
        band = power[:, :8].sum(axis=1)
        self._track_floor(starts, band, energy, labels)
        idle = self._current is None and self._run == 0 and self._pending is None and self._near is None
        if idle and not any(labels) and not any(near):
            self._energies.extend(zip(starts.tolist()[-8:], band.tolist()[-8:], strict=True))
            return
        n = self._bank.N
        for i, (start, label) in enumerate(zip(starts.tolist(), labels, strict=True)):
            frame_energy = float(band[i])
            self._energies.append((start, frame_energy))
            self._check_pending(start, frame_energy, out)
            self._follow_near(start, near[i] if self._current is None else None)
            if self._current is not None:
                r, c, pr, pc = self._ref
                held = label == self._current or (
                    label is None and power[i, r] >= pr / 3 and power[i, c] >= pc / 3
                )
                if label == self._current:
                    self._after = None
                elif self._after is None and start >= self._last_end:
                    # The frame just after the key's last one: a fading tail that still
                    # holds the key (a syllable dies away) is the frame the guard judges.
                    self._after = frame_energy
                if held:
                    self._gap = 0
                    if label == self._current:
                        self._last_end = start + n
                        key_power = float(power[i, r] + power[i, c])
                        self._span = (min(self._span[0], key_power), max(self._span[1], key_power))
                    continue
                self._gap += 1
                if self._gap >= self.off or label is not None:
                    self._end_key(out)
                else:
                    continue
            if label is None:
                self._short_run(start)
                self._run = 0
                self._run_key = None
                continue
            if label == self._run_key:
                self._run += 1
            else:
                self._short_run(start)
                self._run_key = label
                self._run = 1
                self._start = start
            self._run_end = start + n
            need = self.cas_on if label == "CAS" else self.on
            if self._run >= need:
                self._current = label
                self._gap = 0
                self._last_end = start + n
                self._after = None
                if label == "CAS":
                    self._ref = (8, 9, float(power[i, 8]), float(power[i, 9]))
                else:
                    r = int(np.argmax(power[i, :4]))
                    c = 4 + int(np.argmax(power[i, 4:8]))
                    self._ref = (r, c, float(power[i, r]), float(power[i, c]))
                self._talk_off = label != "CAS" and not self._quiet_before(self._start)
                self._span = (self._ref[2] + self._ref[3], self._ref[2] + self._ref[3])

    def _follow_near(self, start: int, key: str | None) -> None:
        """Follow runs of near-miss frames while no key is held (``key`` None: not one).

        A run that becomes a key is that key's onset; one that ends on its own
        after two frames or more is a key the limits refused, reported as a doubt,
        unless it is the fading tail of the key just ended.
        """
        if self._current is not None:
            self._near = None
            return
        if self._near is not None and key == self._near[0]:
            self._near = (key, self._near[1] + 1, self._near[2], start + self._bank.N)
            return
        if self._near is not None:
            run_key, count, run_start, run_end = self._near
            tail = self._tail is not None and run_key == self._tail[0] and run_start < self._tail[1]
            if count >= 2 and not tail:
                self._doubt(DtmfHit(run_key, run_start, run_end, certain=False))
        self._near = None if key is None else (key, 1, start, start + self._bank.N)

    def _with_doubts(self, out: list[DtmfHit]) -> list[DtmfHit]:
        if self._doubts:
            out = sorted(out + self._doubts, key=lambda h: h.start)
            self._doubts = []
        return out

    def _track_floor(
        self, starts: np.ndarray, band: np.ndarray, energy: np.ndarray, labels: list[str | None]
    ) -> None:
        """Keep the line's noise floor (DTMF band and broadband) from the frames clear of any key.

        A frame counts when no frame with a label starts within one frame length of
        it, before or after: the frames that straddle a key's edges hold part of its
        tones, and in a burst of keys they would soon be most of the floor's frames.
        A frame waits until the frames after it are known.
        """
        n = self._bank.N
        marked = np.asarray([lab is not None for lab in labels])
        labelled = starts[marked]
        if len(labelled):
            while self._floor_wait and self._floor_wait[-1][0] >= labelled[0] - n:
                self._floor_wait.pop()
        near = np.zeros(len(starts), dtype=bool)
        known = labelled if self._last_label is None else np.concatenate([[self._last_label], labelled])
        if len(known):
            at = np.searchsorted(known, starts)
            before = known[np.maximum(at - 1, 0)]
            after = known[np.minimum(at, len(known) - 1)]
            near = (np.abs(starts - before) <= n) | (np.abs(after - starts) <= n)
            self._last_label = int(known[-1])
        free = ~marked & ~near
        self._floor_wait.extend(
            zip(starts[free].tolist(), band[free].tolist(), energy[free].tolist(), strict=True)
        )
        horizon = int(starts[-1]) + self._bank.H - n
        added = False
        while self._floor_wait and self._floor_wait[0][0] < horizon:
            _, b, e = self._floor_wait.popleft()
            self._floor_band.append(b)
            self._floor_energy.append(e)
            added = True
        if added and len(self._floor_band) >= 16:
            self._floor = float(np.percentile(np.fromiter(self._floor_band, float), 10))
            low, mid = np.percentile(np.fromiter(self._floor_energy, float), [10, 50])
            self._floor_e = float(low)
            # Steady noise (hiss, white noise: the median frame 0.6 dB over the quietest
            # tenth) may be taken off a key's frames; a floor that speech or music makes
            # (10 dB and more between the two) may not.
            steady = mid <= low * 10 ** (self.limits.noise_steady_db / 10)
            self._noise_e = float(low) if steady else 0.0

    def _snr_db(self) -> float:
        """The held key's tones over the broadband noise floor, in dB (99 on a silent line)."""
        _, _, pr, pc = self._ref
        if self._floor_e <= EPS * self._bank.N:
            return 99.0
        return float(min(99.0, 10 * math.log10((pr + pc) / self._floor_e + EPS)))

    def _short_run(self, at: int) -> None:
        """A run of one key's frames ended before it made a key: a doubt when it lasted 2 frames or more."""
        if self._run >= 2 and self._current is None and self._run_key not in (None, "CAS"):
            self._doubt(DtmfHit(str(self._run_key), self._start, self._run_end, certain=False))

    def _doubt(self, hit: DtmfHit) -> None:
        if not self.report_doubtful:
            return
        last = self._doubts[-1] if self._doubts else self._last_doubt
        if last is not None and last.key == hit.key and hit.start < last.end and last.start < hit.end:
            return  # the same candidate, seen both as a short run and as near misses
        self._doubts.append(hit)
        self._last_doubt = hit

    def _guard(self) -> float:
        _, _, pr, pc = self._ref
        return max((pr + pc) / 10 ** (self.limits.guard_db / 10), self._floor * self.limits.floor_factor)

    def _quiet_before(self, start: int) -> bool:
        """Was the frame that ends where the key's first frame starts quiet (a pause, not a syllable)?"""
        target = start - self._bank.N
        for at, e in reversed(self._energies):
            if at <= target:
                return e <= self._guard()
        return True  # the stream began with the key

    def _end_key(self, out: list[DtmfHit]) -> None:
        assert self._current is not None
        hit = DtmfHit(self._current, self._start, self._last_end, snr_db=self._snr_db())
        if self._current == "CAS":
            out.append(hit)
        elif not self._talk_off and self._span[1] <= self._span[0] * 10 ** (self.limits.flatness_db / 10):
            # Emitted once the frame after the key proves a pause follows, not more speech.
            if self._after is None:
                self._pending = (hit, self._last_end, self._guard())
            elif self._after <= self._guard():
                out.append(hit)
            else:
                self._doubt(DtmfHit(hit.key, hit.start, hit.end, certain=False, snr_db=hit.snr_db))
        else:
            self._doubt(DtmfHit(hit.key, hit.start, hit.end, certain=False, snr_db=hit.snr_db))
        self._tail = (self._current, self._last_end)
        self._current = None
        self._run = 0
        self._run_key = None

    def _check_pending(self, start: int, frame_energy: float, out: list[DtmfHit]) -> None:
        if self._pending is None:
            return
        hit, due, guard = self._pending
        if start < due:
            return
        self._pending = None
        if frame_energy <= guard:
            out.append(hit)
        else:
            self._doubt(DtmfHit(hit.key, hit.start, hit.end, certain=False, snr_db=hit.snr_db))

    def flush(self) -> list[DtmfHit]:
        """End of input: a pending key, or one still held, is returned."""
        out: list[DtmfHit] = []
        if self._current is not None:
            self._end_key(out)
        if self._pending is not None:
            out.append(self._pending[0])
            self._pending = None
        self._short_run(self._run_end)
        self._follow_near(self._run_end, None)
        self._run = 0
        return self._with_doubts(out)


@dataclass(frozen=True, slots=True)
class Cadence:
    """One call-progress tone of a plan: its frame label and on/off times (seconds)."""

    name: str
    label: str
    on: float | None  # None: continuous (recognised after ``continuous`` seconds)
    off: float | None
    cycles: int = 1  # on-segments (each followed by a matching off) needed


@dataclass(frozen=True, slots=True)
class TonePlan:
    """A national call-progress plan: which frequencies make which label, and the cadences."""

    name: str
    labels: dict[str, tuple[float, ...]]
    cadences: tuple[Cadence, ...]
    continuous: float = 1.0


# ITU-T E.180 Supplement 2: China (450 Hz) and the North American precise tone plan.
PLANS: dict[str, TonePlan] = {
    "cn": TonePlan(
        "cn",
        {"450": (450.0,)},
        (
            Cadence("dial_tone", "450", None, None),
            Cadence("ringback", "450", 1.0, 4.0),
            Cadence("busy", "450", 0.35, 0.35, cycles=2),
            Cadence("congestion", "450", 0.7, 0.7, cycles=2),
        ),
        continuous=1.6,  # longer than a ringback burst (1.0 s)
    ),
    "nanp": TonePlan(
        "nanp",
        {"dial": (350.0, 440.0), "ring": (440.0, 480.0), "busy": (480.0, 620.0)},
        (
            Cadence("dial_tone", "dial", None, None),
            Cadence("ringback", "ring", 2.0, 4.0),
            Cadence("busy", "busy", 0.5, 0.5, cycles=2),
            Cadence("congestion", "busy", 0.25, 0.25, cycles=2),
        ),
        continuous=1.0,
    ),
}


@dataclass(frozen=True, slots=True)
class ToneHit:
    """A recognised call-progress tone; ``start`` is where its first on-segment began."""

    name: str
    start: int


@dataclass(frozen=True, slots=True)
class LevelFrames:
    """Per-frame facts the hook inference needs: frame starts, level in dBFS, whether a plan tone."""

    starts: np.ndarray
    level_db: np.ndarray
    tonal: np.ndarray  # bool: the frame is a call-progress tone of the plan


class ToneDetector:
    """Call-progress tones by frequency and cadence, plus per-frame levels.

    Frames of 64 ms (resolution enough to tell 440 from 480 Hz) slide by 32
    ms. A frame is labelled when the plan's frequencies of one label hold
    ``concentration`` of its energy. Segments of one label are timed and
    matched against the plan's cadences within ``tolerance``.
    """

    def __init__(
        self,
        rate: float,
        plan: str = "cn",
        *,
        min_dbfs: float = -45.0,
        concentration: float = 0.7,
        tolerance: float = 0.25,
    ) -> None:
        if plan not in PLANS:
            raise ValueError(f"unknown tone plan {plan!r} (known: {', '.join(PLANS)})")
        self.plan = PLANS[plan]
        self.rate = rate
        n = round(0.064 * rate)
        self.hop = n // 2
        self.N = n
        self.min_dbfs = min_dbfs
        self.concentration = concentration
        self.tolerance = tolerance
        freqs = sorted({f for fs in self.plan.labels.values() for f in fs})
        self._freqs = freqs
        self._bank = _FrameBank(rate, tuple(freqs), n, self.hop)
        self._label_cols = {label: [freqs.index(f) for f in fs] for label, fs in self.plan.labels.items()}
        self._names = list(self.plan.labels)
        self._label = ""  # label of the current segment ('' = none)
        self._seg_start = 0
        self._history: list[tuple[str, int, int]] = []  # finished segments (label, start, end)
        self._continuous_done = False
        self._last_name = ""
        self.rearm_after = 5.0  # seconds of pause after which a tone is reported again (ringback off is 4 s)
        self.frames = LevelFrames(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool))

    def _classify(self, values: np.ndarray, energy: np.ndarray) -> np.ndarray:
        power = 2.0 * (values.real**2 + values.imag**2) / self.N
        label_idx = np.full(len(energy), -1)
        best = np.zeros(len(energy))
        min_energy = 0.5 * 10 ** (self.min_dbfs / 10) * self.N
        for k, name in enumerate(self._names):
            cols = self._label_cols[name]
            share = power[:, cols].sum(axis=1) / (energy + EPS)
            # Each component of a dual tone must be there, within 10 dB of the other.
            present = power[:, cols].min(axis=1) > 0.1 * power[:, cols].max(axis=1)
            good = (share >= self.concentration) & present & (energy > min_energy) & (share > best)
            label_idx[good] = k
            best[good] = share[good]
        return label_idx

    def process(self, x: np.ndarray) -> list[ToneHit]:
        """Feed one block; returns the tones recognised in it. ``frames`` holds its frame facts."""
        starts, values, energy = self._bank.process(x)
        level = dbfs(energy / self.N) if len(energy) else np.zeros(0)
        if len(starts) == 0:
            self.frames = LevelFrames(starts, level, np.zeros(0, bool))
            return []
        idx = self._classify(values, energy)
        self.frames = LevelFrames(starts, level, idx >= 0)
        labels = np.asarray([""] + self._names, dtype=object)[idx + 1]
        out: list[ToneHit] = []
        # Walk segment boundaries only (a handful per second at most).
        prev = np.concatenate([[self._label], labels[:-1]])
        changes = np.flatnonzero(labels != prev)
        for i in changes.tolist():
            at = int(starts[i])
            self._close_segment(at, out)
            self._label = str(labels[i])
            self._seg_start = at
            self._continuous_done = False
        self._check_continuous(int(starts[-1]) + self.N, out)
        return out

    def _close_segment(self, at: int, out: list[ToneHit]) -> None:
        self._history.append((self._label, self._seg_start, at))
        self._history = self._history[-8:]
        self._match(out)
        if not self._label and (at - self._seg_start) / self.rate > self.rearm_after:
            self._last_name = ""  # a long pause: the next tone is news again

    def _near(self, seconds: float, target: float) -> bool:
        return abs(seconds - target) <= self.tolerance * target + self.N / self.rate / 2

    def _emit(self, name: str, start: int, out: list[ToneHit]) -> None:
        # One report per run of a tone: its next cycles say nothing new.
        if name != self._last_name:
            self._last_name = name
            out.append(ToneHit(name, start))

    def _match(self, out: list[ToneHit]) -> None:
        hist = self._history
        label, s, e = hist[-1]
        if label:
            # A burst just ended. Single-burst cadences (ringback: its off lasts
            # seconds) are told by the burst's length alone, so an answer in the
            # first pause is still seen as an answer after ringback.
            for cad in self.plan.cadences:
                if (
                    cad.on is not None
                    and cad.cycles == 1
                    and cad.label == label
                    and self._near((e - s) / self.rate, cad.on)
                ):
                    self._emit(cad.name, s, out)
                    return
            return
        # A pause just ended: look for whole (on, off) cycles at the end of the history.
        for cad in self.plan.cadences:
            if cad.on is None or cad.off is None or cad.cycles < 2:
                continue
            pairs = 0
            k = len(hist) - 2
            while k >= 0 and pairs < cad.cycles:
                on_label, on_s, on_e = hist[k]
                _, off_s, off_e = hist[k + 1]
                if on_label != cad.label or not self._near((on_e - on_s) / self.rate, cad.on):
                    break
                if not self._near((off_e - off_s) / self.rate, cad.off):
                    break
                pairs += 1
                k -= 2
            if pairs >= cad.cycles:
                self._emit(cad.name, hist[k + 2][1], out)
                return

    def _check_continuous(self, now: int, out: list[ToneHit]) -> None:
        if not self._label or self._continuous_done:
            return
        if (now - self._seg_start) / self.rate >= self.plan.continuous:
            for cad in self.plan.cadences:
                if cad.on is None and cad.label == self._label:
                    out.append(ToneHit(cad.name, self._seg_start))
                    self._last_name = cad.name
                    self._continuous_done = True
                    return


def calibrate(samples: np.ndarray, rate: float) -> dict[str, float]:
    """Suggest hook thresholds from a recording of the line (on-hook silence, then off-hook).

    Levels are measured in 64 ms frames; the quiet floor is the 10th
    percentile, the busy level the 90th. The off-hook threshold sits a third
    of the way up from floor to busy level, the on-hook one 3 dB below it
    (hysteresis). With no contrast (the line never went off hook) the
    thresholds sit 10 and 7 dB above the floor.
    """
    x = to_float(samples)
    if x.ndim > 1:
        x = x[:, 0]
    n = round(0.064 * rate)
    if len(x) < n:
        raise ValueError("recording shorter than one 64 ms frame")
    frames = x[: len(x) // n * n].reshape(-1, n)
    level = dbfs((frames**2).mean(axis=1))
    floor = float(np.percentile(level, 10))
    busy = float(np.percentile(level, 90))
    off = floor + (busy - floor) / 3 if busy - floor >= 15 else floor + 10
    return {
        "floor_dbfs": round(floor, 1),
        "busy_dbfs": round(busy, 1),
        "off_hook_dbfs": round(off, 1),
        "on_hook_dbfs": round(off - 3, 1),
    }
