"""Line-tap FSK caller ID: ours beside minimodem and multimon-ng on the same files, in the same run.

For Bell 202 and V.23 MDMF bursts (random numbers and names) at SNRs from
30 dB down until every decoder fails: decode success (number and name exactly
right), wrong numbers (a number that is not the one sent: worse than a miss),
the SNR at which each decoder reaches 90 %, false caller IDs and digits per
hour of speech-like sound and of real speech (espeak-ng, Mandarin and English,
several voices, levels, rates, with and without noise), and decode speed in
multiples of real time on one core. Files are 22050 Hz 16-bit WAV (what multimon-ng wants; minimodem and we
read any rate). SNR is measured in the 0-4 kHz band against the burst's level.

Run: .venv/bin/python tests/bench/bench_linetap.py [--trials 30] [--speech-minutes 10] [--talkoff-only]
"""

from __future__ import annotations

import os

# One core for numpy's BLAS too: the figures are per core.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import random
import re
import resource
import string
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import signalgen as sg
import spandsp_peer as sp

from agent.callerid import encode_mdmf
from agent.events import CallerId, Dialed, LineError
from plugins.linetap.protocol import LineTapDecoder, ToneEvent, decode_file

RATE = 22050
LEVEL = -12.0
TOOLS = ("ours", "minimodem", "multimon-ng")


def run_minimodem(path: Path) -> list[tuple[str | None, str | None]]:
    out = subprocess.run(
        ["minimodem", "--rx", "-q", "-f", str(path), "callerid"],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
    ).stdout
    found = []
    for block in out.split("CALLER-ID")[1:]:
        phone = re.search(r"^Phone:\s*(.*?)\s*$", block, re.MULTILINE)
        name = re.search(r"^Name:\s*(.*?)\s*$", block, re.MULTILINE)
        found.append((phone.group(1).replace("-", "") if phone else None, name.group(1) if name else None))
    return found


def run_multimon(path: Path) -> list[tuple[str | None, str | None]]:
    out = subprocess.run(
        ["multimon-ng", "-q", "-t", "wav", "-a", "CLIPFSK", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
    ).stdout
    found = []
    for line in out.splitlines():
        if line.startswith("CLIPFSK:"):
            fields = dict(re.findall(r"(DATE|CID|CNT)=(.*?)(?= [A-Z]+=|$)", line))
            found.append((fields.get("CID"), fields.get("CNT")))
    return found


def run_ours(path: Path) -> list[tuple[str | None, str | None]]:
    return [(r["number"], r["name"]) for r in decode_file(path) if r["kind"] == "caller_id"]


RUNNERS = {"ours": run_ours, "minimodem": run_minimodem, "multimon-ng": run_multimon}


def random_caller(rng: random.Random) -> tuple[str, str]:
    number = "1" + "".join(rng.choice(string.digits) for _ in range(10))
    name = "".join(rng.choice(string.ascii_uppercase + " ") for _ in range(rng.randint(4, 15))).strip() or "X"
    return number, name


def success_curve(
    standard: str, snrs: list[int], trials: int, workdir: Path
) -> tuple[dict[str, dict[int, float]], dict[str, int]]:
    rng = random.Random(f"{standard}-curve")
    nrng = np.random.default_rng(zlib.crc32(standard.encode()))  # the same noise on every run
    rates: dict[str, dict[int, float]] = {t: {} for t in TOOLS}
    wrong = dict.fromkeys(TOOLS, 0)
    for snr in snrs:
        ok = dict.fromkeys(TOOLS, 0)
        for trial in range(trials):
            number, name = random_caller(rng)
            message = encode_mdmf(datetime="11271015", number=number, name=name)
            x = np.concatenate(
                [
                    sg.silence(0.3, RATE),
                    sg.fsk_callerid(message, RATE, standard, level_dbfs=LEVEL),
                    sg.silence(0.3, RATE),
                ]
            )
            x = sg.add_noise(x, snr, nrng, rate=RATE, reference_dbfs=LEVEL)
            path = sg.write_wav(workdir / f"{standard}-{snr}-{trial}.wav", x, RATE)
            for tool in TOOLS:
                got = RUNNERS[tool](path)
                if (number, name) in got:
                    ok[tool] += 1
                wrong[tool] += sum(1 for n, _ in got if n is not None and n != number)
            path.unlink()
        for tool in TOOLS:
            rates[tool][snr] = ok[tool] / trials
        print(
            f"  {standard} {snr:3d} dB  " + "  ".join(f"{t} {rates[t][snr]:4.0%}" for t in TOOLS), flush=True
        )
        if all(rates[t][snr] == 0 for t in TOOLS):
            break
    return rates, wrong


def snr_at(curve: dict[int, float], target: float = 0.9) -> float | None:
    """The lowest SNR where the success rate still reaches ``target`` (linear between measured points)."""
    points = sorted(curve.items(), reverse=True)  # high SNR first
    if not points or points[0][1] < target:
        return None
    for (s_hi, r_hi), (s_lo, r_lo) in zip(points, points[1:], strict=False):
        if r_lo < target <= r_hi:
            return s_lo + (target - r_lo) / (r_hi - r_lo) * (s_hi - s_lo)
    return float(points[-1][0])


def false_rate(minutes: float, workdir: Path) -> dict[str, tuple[int, int, float]]:
    """Caller IDs (and, for ours, dialed digits) found in speech-like sound: counts and per hour."""
    rng = np.random.default_rng(2026)
    x = np.concatenate([sg.speech_like(60.0, RATE, rng) for _ in range(max(1, round(minutes)))])
    x = sg.add_noise(x, 30, rng, rate=RATE, reference_dbfs=-15)
    path = sg.write_wav(workdir / "speech.wav", x, RATE)
    hours = len(x) / RATE / 3600
    out: dict[str, tuple[int, int, float]] = {}
    records = list(decode_file(path))
    cid = sum(r["kind"] == "caller_id" for r in records)
    digits = sum(r["kind"] == "dialed" for r in records)
    out["ours"] = (cid, digits, (cid + digits) / hours)
    for tool in ("minimodem", "multimon-ng"):
        n = len(RUNNERS[tool](path))
        out[tool] = (n, 0, n / hours)
    path.unlink()
    return out


def talkoff(voices: tuple[str, ...] = ("", "+f3", "+m3")) -> None:
    """False digits, caller IDs and CAS tones per hour of real speech (espeak-ng), ours and SpanDSP's dtmf_rx.

    Every language x voice x pitch is decoded at each level (-30/-20/-10 dBFS),
    rate (8/16 kHz) and noise (none, 30 dB under the speech). SpanDSP reads
    the 8 kHz copies only (its one rate). Doubtful digit bursts (an error event,
    never a number) are counted apart: they are what the guard refused.
    """
    counts = {"digits": 0, "caller_id": 0, "cas": 0, "errors": 0}
    spandsp_digits = 0  # dtmf_rx keys heard in the 8 kHz copies
    seconds = spandsp_seconds = 0.0
    for language in sg.SPEECH_TEXTS:
        for rate in (8000, 16000):
            for voice in voices:
                for pitch in (30, 60, 90):
                    base = sg.espeak(sg.SPEECH_TEXTS[language], language + voice, rate, pitch=pitch)
                    for level in (-30.0, -20.0, -10.0):
                        for noisy in (False, True):
                            x = sg.at_level(base, level)
                            if noisy:
                                x = sg.add_noise(
                                    x, 30.0, np.random.default_rng(pitch), rate=rate, reference_dbfs=level
                                )
                            x = np.clip(x, -1.0, 1.0)
                            decoder = LineTapDecoder(rate)
                            events = decoder.feed(x) + decoder.flush()
                            counts["digits"] += sum(isinstance(e, Dialed) for e in events)
                            counts["caller_id"] += sum(isinstance(e, CallerId) for e in events)
                            counts["cas"] += sum(isinstance(e, ToneEvent) and e.tone == "cas" for e in events)
                            counts["errors"] += sum(isinstance(e, LineError) for e in events)
                            seconds += len(x) / rate
                            if rate == sp.RATE:
                                spandsp_digits += len(sp.dtmf_rx(x))
                                spandsp_seconds += len(x) / rate
    hours = seconds / 3600
    print(f"real speech (espeak-ng cmn+en, {seconds / 60:.1f} min):")
    for what, n in counts.items():
        print(f"  ours {what:<10} {n:>4}  ({n / hours:.1f} per hour)")
    print(
        f"  spandsp dtmf_rx digits {spandsp_digits:>4}  ({spandsp_digits / (spandsp_seconds / 3600):.1f}"
        f" per hour, {spandsp_seconds / 60:.1f} min at 8 kHz)",
        flush=True,
    )


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (fair on a busy machine)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def speed(workdir: Path, seconds: float = 120.0) -> dict[str, float]:
    """Multiples of real time decoding a long file (bursts among speech), in CPU time, best of 3."""
    rng = np.random.default_rng(7)
    parts = []
    while sum(len(p) for p in parts) < seconds * RATE:
        parts.append(sg.speech_like(8.0, RATE, rng))
        parts.append(sg.fsk_callerid(encode_mdmf(number="13812345678", name="BENCH"), RATE, level_dbfs=LEVEL))
    x = np.concatenate(parts)
    path = sg.write_wav(workdir / "speed.wav", x, RATE)
    duration = len(x) / RATE
    result = {}
    for tool in TOOLS:
        best = float("inf")
        for _ in range(3):
            t0 = cpu_seconds()
            RUNNERS[tool](path)
            best = min(best, cpu_seconds() - t0)
        result[tool] = duration / best
    path.unlink()
    return result


def speed_8k(seconds: float = 120.0) -> float:
    """Ours at 8 kHz (a telephone-rate sound card), in memory, every detector on."""
    from plugins.linetap.protocol import LineTapDecoder

    rng = np.random.default_rng(8)
    x = np.concatenate([sg.speech_like(10.0, 8000, rng) for _ in range(round(seconds / 10))])
    best = float("inf")
    for _ in range(3):
        decoder = LineTapDecoder(8000)
        t0 = cpu_seconds()
        for i in range(0, len(x), 8000):
            decoder.feed(x[i : i + 8000])
        decoder.flush()
        best = min(best, cpu_seconds() - t0)
    return len(x) / 8000 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30, help="bursts per SNR and standard")
    parser.add_argument("--speech-minutes", type=float, default=10.0, help="minutes of speech-like sound")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--step", type=int, default=2)
    parser.add_argument("--talkoff-only", action="store_true", help="only the real-speech talk-off rows")
    args = parser.parse_args()
    if args.talkoff_only:
        talkoff()
        return
    snrs = list(range(args.top, -1, -args.step))
    with tempfile.TemporaryDirectory(prefix="bench-linetap-") as tmp:
        work = Path(tmp)
        summary = {}
        for standard in ("bell202", "v23"):
            print(f"decode success, {standard} MDMF, {args.trials} bursts per SNR:")
            summary[standard] = success_curve(standard, snrs, args.trials, work)
        print(f"false detections in {args.speech_minutes:g} min of speech-like sound:")
        false = false_rate(args.speech_minutes, work)
        print("decode speed (22050 Hz WAV, 120 s, CPU time, best of 3):")
        speeds = speed(work)
        ours_8k = speed_8k()
    talkoff()

    print()
    print(f"{'':28}" + "".join(f"{t:>14}" for t in TOOLS))
    for standard, (curve, wrong) in summary.items():
        cells = []
        for t in TOOLS:
            at = snr_at(curve[t])
            cells.append(f"{at:>11.1f} dB" if at is not None else f"{'never':>14}")
        print(f"{standard + ' SNR at 90%':28}" + "".join(cells))
        print(f"{standard + ' wrong numbers':28}" + "".join(f"{wrong[t]:>14}" for t in TOOLS))
    print(f"{'false CID+digits per hour':28}" + "".join(f"{false[t][2]:>14.1f}" for t in TOOLS))
    print(f"{'speed x real time (22 kHz)':28}" + "".join(f"{speeds[t]:>14.0f}" for t in TOOLS))
    print(f"{'speed x real time (8 kHz)':28}{ours_8k:>14.0f}{'-':>14}{'-':>14}")
    print()
    print("success rate by SNR (dB):")
    for standard, (curve, _) in summary.items():
        for t in TOOLS:
            row = " ".join(f"{s}:{r:.0%}" for s, r in sorted(curve[t].items(), reverse=True))
            print(f"  {standard:8} {t:12} {row}")


if __name__ == "__main__":
    main()
