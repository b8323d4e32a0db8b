"""Line-audio signal generator for the line-tap tests and benchmarks.

Everything is synthesised from the specifications, not from our decoder's
assumptions, so the decoder and the independent peers (minimodem,
multimon-ng) can be checked against the same files:

- FSK caller ID, Bellcore GR-30-CORE (Bell 202: 1200 baud, mark 1200 Hz,
  space 2200 Hz) and ETSI EN 300 659-1 (ITU-T V.23: mark 1300 Hz, space
  2100 Hz): channel seizure of 300 alternating 0/1 bits, a mark signal of 180
  ones (80 for the off-hook variant, which has no seizure and follows the
  CAS tone), then each byte as start bit 0, 8 data bits LSB first, stop bit 1;
  continuous phase across bits.
- DTMF per ITU-T Q.23 (rows 697/770/852/941 Hz, columns 1209/1336/1477/1633
  Hz) with chosen durations, twist (high group level minus low group level)
  and frequency deviation (Q.24 acceptance is judged against these).
- DTMF caller ID in the ETSI EN 300 659-1 annex / Q.23 style: a start key
  (``A``, or ``D`` in some networks), the number, ``#`` between fields, end
  key ``C``; ``B00C`` / ``B10C`` for unavailable / private.
- CAS (dual-tone alerting signal) 2130 + 2750 Hz, 80 ms.
- Call-progress tones with the cadences of ITU-T E.180 Supplement 2.
- Impairments: white noise at a chosen SNR, carrier frequency offset, level
  changes, clipping; any rate (8, 16, 44.1, 48 kHz).
- Distractors: speech-like sound (voiced pulse trains and noise through moving
  formant filters, with a syllabic envelope), music-like note sequences, silence;
  and real synthesised speech (espeak-ng, Mandarin and English) for talk-off.

Levels are in dBFS: a full-scale sine is 0 dBFS.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DTMF_ROWS = (697.0, 770.0, 852.0, 941.0)
DTMF_COLS = (1209.0, 1336.0, 1477.0, 1633.0)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")
FSK = {"bell202": (1200.0, 2200.0), "v23": (1300.0, 2100.0)}
BAUD = 1200.0

#: ITU-T E.180 Supplement 2 tones: name -> (frequencies, [(on, off), ...]); on None = continuous.
TONES: dict[str, dict[str, tuple[tuple[float, ...], tuple[float | None, float]]]] = {
    "cn": {
        "dial_tone": ((450.0,), (None, 0.0)),
        "ringback": ((450.0,), (1.0, 4.0)),
        "busy": ((450.0,), (0.35, 0.35)),
        "congestion": ((450.0,), (0.7, 0.7)),
    },
    "nanp": {
        "dial_tone": ((350.0, 440.0), (None, 0.0)),
        "ringback": ((440.0, 480.0), (2.0, 4.0)),
        "busy": ((480.0, 620.0), (0.5, 0.5)),
        "congestion": ((480.0, 620.0), (0.25, 0.25)),
    },
}


def amplitude(level_dbfs: float) -> float:
    """Peak amplitude of a sine at ``level_dbfs``."""
    return float(10 ** (level_dbfs / 20))


def silence(seconds: float, rate: int) -> np.ndarray:
    """Digital silence."""
    return np.zeros(round(seconds * rate))


def tones(freqs: Sequence[float], seconds: float, rate: int, levels_dbfs: Sequence[float]) -> np.ndarray:
    """A sum of sines, each at its own level."""
    t = np.arange(round(seconds * rate)) / rate
    out = np.zeros(len(t))
    for f, level in zip(freqs, levels_dbfs, strict=True):
        out += amplitude(level) * np.sin(2 * math.pi * f * t)
    return out


def uart_bits(data: bytes) -> np.ndarray:
    """Start bit 0, eight data bits LSB first, stop bit 1, per byte."""
    arr = np.frombuffer(bytes(data), dtype=np.uint8)
    bits = ((arr[:, None] >> np.arange(8)) & 1).astype(np.int8)
    frame = np.concatenate([np.zeros((len(arr), 1), np.int8), bits, np.ones((len(arr), 1), np.int8)], axis=1)
    return frame.reshape(-1)


def fsk(
    bits: np.ndarray,
    rate: int,
    standard: str = "bell202",
    *,
    level_dbfs: float = -10.0,
    freq_offset: float = 0.0,
    baud_error: float = 0.0,
) -> np.ndarray:
    """Continuous-phase FSK of ``bits`` (1 = mark). ``baud_error`` is a fraction (0.01 = 1 % fast)."""
    mark, space = FSK[standard]
    baud = BAUD * (1 + baud_error)
    n = int(math.ceil(len(bits) * rate / baud))
    which = np.minimum((np.arange(n) * baud / rate).astype(np.int64), len(bits) - 1)
    freq = np.where(np.asarray(bits)[which] == 1, mark, space) + freq_offset
    phase = 2 * math.pi * np.cumsum(freq) / rate
    return amplitude(level_dbfs) * np.sin(phase)


def fsk_callerid(
    message: bytes,
    rate: int,
    standard: str = "bell202",
    *,
    seizure_bits: int = 300,
    mark_bits: int = 180,
    level_dbfs: float = -10.0,
    freq_offset: float = 0.0,
    baud_error: float = 0.0,
    trailing_marks: int = 2,
) -> np.ndarray:
    """One caller-ID burst: channel seizure, mark signal, the message's bytes, a few trailing marks."""
    seizure = np.tile(np.array([0, 1], np.int8), seizure_bits // 2)
    bits = np.concatenate(
        [seizure, np.ones(mark_bits, np.int8), uart_bits(message), np.ones(trailing_marks, np.int8)]
    )
    return fsk(bits, rate, standard, level_dbfs=level_dbfs, freq_offset=freq_offset, baud_error=baud_error)


def cas(rate: int, *, seconds: float = 0.08, level_dbfs: float = -15.0) -> np.ndarray:
    """The 2130 + 2750 Hz alerting tone that precedes off-hook (call-waiting) caller ID."""
    return tones((2130.0, 2750.0), seconds, rate, (level_dbfs, level_dbfs))


def offhook_callerid(message: bytes, rate: int, standard: str = "bell202", **kw: float) -> np.ndarray:
    """Call-waiting caller ID: CAS, a pause for the terminal's acknowledgement, 80 marks, no seizure."""
    return np.concatenate(
        [
            cas(rate),
            silence(0.16, rate),
            fsk_callerid(message, rate, standard, seizure_bits=0, mark_bits=80, **kw),  # type: ignore[arg-type]
        ]
    )


def dtmf_key(
    key: str,
    seconds: float,
    rate: int,
    *,
    level_dbfs: float = -10.0,
    twist_db: float = 0.0,
    deviation: float = 0.0,
) -> np.ndarray:
    """One key: low tone at ``level_dbfs``, high tone ``twist_db`` louder, both off by ``deviation``."""
    where = [(r, row.find(key)) for r, row in enumerate(DTMF_KEYS) if key in row]
    if len(key) != 1 or not where:
        raise ValueError(f"not a DTMF key: {key!r}")
    r, c = where[0]
    lo, hi = DTMF_ROWS[r] * (1 + deviation), DTMF_COLS[c] * (1 + deviation)
    return tones((lo, hi), seconds, rate, (level_dbfs, level_dbfs + twist_db))


def dtmf(keys: str, rate: int, *, on: float = 0.07, off: float = 0.07, **kw: float) -> np.ndarray:
    """A key sequence, each key ``on`` seconds followed by ``off`` seconds of silence."""
    parts = []
    for key in keys:
        parts += [dtmf_key(key, on, rate, **kw), silence(off, rate)]
    return np.concatenate(parts) if parts else np.zeros(0)


def dtmf_callerid_keys(number: str | None, *, start: str = "A", absence: str | None = None) -> str:
    """The key string of a DTMF caller ID: ``A<number>C``, or ``B00C`` / ``B10C`` (unavailable / private)."""
    if number is None:
        return {"O": "B00C", "P": "B10C"}[absence or "O"]
    return f"{start}{number}C"


def call_progress(
    name: str, plan: str, seconds: float, rate: int, *, level_dbfs: float = -15.0
) -> np.ndarray:
    """``seconds`` of a plan's tone, with its cadence (starting with an on-segment)."""
    freqs, (on, off) = TONES[plan][name]
    levels = [level_dbfs] * len(freqs)
    if on is None:
        return tones(freqs, seconds, rate, levels)
    period = tones(freqs, on, rate, levels)
    period = np.concatenate([period, silence(off, rate)])
    reps = int(math.ceil(seconds * rate / len(period)))
    return np.tile(period, reps)[: round(seconds * rate)]


def _fft_filter(
    x: np.ndarray, rate: int, gain: np.ndarray | None = None, band: tuple[float, float] = (300, 3400)
) -> np.ndarray:
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / rate)
    mask = ((f >= band[0]) & (f <= band[1])).astype(float)
    if gain is not None:
        mask = mask * gain
    return np.fft.irfft(spec * mask, len(x))


def speech_like(
    seconds: float, rate: int, rng: np.random.Generator, *, level_dbfs: float = -15.0
) -> np.ndarray:
    """Speech-like sound: syllables of voiced (gliding pitch, harmonics) or unvoiced sound, formant-shaped.

    Syllables last 120-350 ms with a raised-cosine envelope and short pauses;
    each has its own pitch contour (90-260 Hz) and two or three formants.
    """
    n = round(seconds * rate)
    out = np.zeros(n)
    pos = 0
    f = np.fft.rfftfreq(4096, 1 / rate)
    while pos < n:
        dur = int(rng.uniform(0.12, 0.35) * rate)
        seg_n = min(dur, n - pos)
        t = np.arange(seg_n) / rate
        if rng.random() < 0.75:
            f0 = rng.uniform(90, 260) * (1 + rng.uniform(-0.25, 0.25) * t / max(t[-1], 1e-3))
            phase = 2 * math.pi * np.cumsum(f0) / rate
            src = np.sign(np.sin(phase)) * 0.5 + 0.5 * np.sin(phase)  # rich in harmonics
        else:
            src = rng.standard_normal(seg_n)
        gain = np.zeros_like(f)
        for _ in range(rng.integers(2, 4)):
            fc, bw = rng.uniform(300, 3200), rng.uniform(60, 300)
            gain += 1 / (1 + ((f - fc) / bw) ** 2)
        nfft = max(4096, seg_n)
        spec = np.fft.rfft(src, nfft)
        g = np.interp(np.fft.rfftfreq(nfft, 1 / rate), f, gain)
        seg = np.fft.irfft(spec * g, nfft)[:seg_n]
        env = np.sin(np.linspace(0, math.pi, seg_n)) ** 2
        seg = seg * env
        rms = np.sqrt(np.mean(seg**2)) + 1e-12
        seg *= amplitude(level_dbfs + rng.uniform(-6, 3)) / math.sqrt(2) / rms
        out[pos : pos + seg_n] = seg
        pos += seg_n + int(rng.uniform(0.02, 0.25) * rate)
    return _fft_filter(out, rate)


#: What a rep and a customer say on a telesales call: sentences with numbers spoken (digits
#: are what a DTMF detector should not hear in speech), for espeak-ng's voices.
SPEECH_TEXTS = {
    "cmn": (
        "你好，我是上海分公司的小王，想问一下您上次看的那款产品还需要吗？"
        "价格是三千八百八十八元，本周下单可以打九折。"
        "我的手机号码是一三八一二三四五六七八，座机是零二一六二三四五六七八。"
        "好的，那我明天下午三点再给您打电话，谢谢您，再见。"
    ),
    "en": (
        "Good morning, this is Sam calling from the sales office about your order. "
        "The price is three hundred and forty nine dollars, and delivery takes five to seven days. "
        "You can reach me on one eight hundred, five five five, zero one nine nine, extension four two. "
        "Shall I call you back tomorrow at half past two? Thank you, goodbye."
    ),
}


def espeak(text: str, voice: str, rate: int, *, pitch: int = 50, words_per_minute: int = 160) -> np.ndarray:
    """Speech synthesised by espeak-ng (``voice`` ``cmn``, ``en``, ...), resampled by sox to ``rate``.

    espeak-ng writes 22050 Hz; sox resamples to 32-bit float (no clipping on the way).
    Needs the Debian packages espeak-ng and sox (tests/system-deps.sh).
    """
    import soundfile

    with tempfile.TemporaryDirectory(prefix="cti-espeak-") as tmp:
        raw, out = Path(tmp) / "speech.wav", Path(tmp) / f"speech-{rate}.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(words_per_minute), "-w", str(raw), text],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            ["sox", str(raw), "-e", "floating-point", "-b", "32", "-r", str(rate), str(out)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        x, _ = soundfile.read(str(out), dtype="float64")
    return np.asarray(x)


def at_level(x: np.ndarray, level_dbfs: float) -> np.ndarray:
    """``x`` scaled so its active samples (above -60 dBFS) have the power of a sine at ``level_dbfs``."""
    active = x[np.abs(x) > 1e-3]
    power = float(np.mean(active**2)) if len(active) else 1.0
    return x * math.sqrt(amplitude(level_dbfs) ** 2 / 2 / power)


def music_like(
    seconds: float, rate: int, rng: np.random.Generator, *, level_dbfs: float = -15.0
) -> np.ndarray:
    """Notes and chords of the equal-tempered scale (a few harmonics each), 100-500 ms per chord."""
    n = round(seconds * rate)
    out = np.zeros(n)
    pos = 0
    while pos < n:
        seg_n = min(int(rng.uniform(0.1, 0.5) * rate), n - pos)
        t = np.arange(seg_n) / rate
        seg = np.zeros(seg_n)
        for _ in range(rng.integers(1, 4)):
            f0 = 440.0 * 2 ** (rng.integers(-24, 16) / 12)
            for h in range(1, 4):
                if f0 * h < rate / 2:
                    seg += np.sin(2 * math.pi * f0 * h * t) / h
        env = np.minimum(1, np.minimum(t / 0.01, (t[-1] - t) / 0.02 + 1e-9)) if seg_n > 1 else np.ones(seg_n)
        seg *= env * amplitude(level_dbfs) / (np.max(np.abs(seg)) + 1e-12)
        out[pos : pos + seg_n] = seg
        pos += seg_n
    return out


def add_noise(
    x: np.ndarray,
    snr_db: float,
    rng: np.random.Generator,
    *,
    rate: int = 8000,
    reference_dbfs: float | None = None,
) -> np.ndarray:
    """White noise such that the signal-to-noise ratio in the 0-4 kHz telephone band is ``snr_db``.

    The signal power is that of a sine at ``reference_dbfs`` (the burst's
    level), or of ``x``'s non-silent samples when not given. At rates above
    8 kHz the noise spreads wider, keeping its power per Hz.
    """
    if reference_dbfs is not None:
        ps = amplitude(reference_dbfs) ** 2 / 2
    else:
        active = x[np.abs(x) > 1e-9]
        ps = float(np.mean(active**2)) if len(active) else 1e-6
    pn = ps / 10 ** (snr_db / 10) * (rate / 2) / 4000
    return x + rng.standard_normal(len(x)) * math.sqrt(pn)


def level_ramp(x: np.ndarray, start_db: float, end_db: float) -> np.ndarray:
    """A level change across ``x`` (line attenuation drifting), in dB."""
    return x * 10 ** (np.linspace(start_db, end_db, len(x)) / 20)


def clip(x: np.ndarray, limit: float) -> np.ndarray:
    """Hard clipping at ``limit`` (an overdriven input)."""
    clipped: np.ndarray = np.clip(x, -limit, limit)
    return clipped


def to_int16(x: np.ndarray) -> np.ndarray:
    """PCM16 (what a sound card delivers), saturating."""
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


def write_wav(path: Path | str, x: np.ndarray, rate: int) -> Path:
    """A 16-bit PCM WAV file."""
    import soundfile

    soundfile.write(str(path), to_int16(x), rate, subtype="PCM_16")
    return Path(path)


def line_session(rate: int, plan: str, rng: np.random.Generator, *, snr_db: float = 50.0) -> np.ndarray:
    """A short day on one line, for the replayed fixture and the device tests.

    An inbound call announced by FSK caller ID (MDMF, Bell 202) and answered,
    then DTMF caller ID (``A...C``), then an outbound call: dial tone, the rep
    dials, ringback, the far end speaks, the rep hangs up.
    """
    from agent.callerid import encode_mdmf

    message = encode_mdmf(datetime="11271015", number="02112345678", name="WANG WEI")
    parts = [
        silence(0.5, rate),
        fsk_callerid(message, rate, "bell202", level_dbfs=-12),
        silence(1.5, rate),
        dtmf("A13912345678C", rate, level_dbfs=-12),
        silence(2.0, rate),
        call_progress("dial_tone", plan, 2.0, rate),
        dtmf("13812345678", rate, on=0.09, off=0.11, level_dbfs=-10, twist_db=2),
        silence(0.6, rate),
        call_progress("ringback", plan, 6.5, rate),
        speech_like(2.5, rate, rng),
        silence(5.0, rate),
    ]
    return add_noise(np.concatenate(parts), snr_db, rng, rate=rate, reference_dbfs=-12)
