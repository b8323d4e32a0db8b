"""Dialed DTMF digits in white noise: our decoder beside SpanDSP's dtmf_rx, both fed SpanDSP's dtmf_tx.

Per trial a random number of the CN plan is keyed by SpanDSP's ``dtmf_tx``
(level, twist and timing drawn from ranges both receivers must accept: low
group -8 to -20 dBm0, twist -2 to +2 dB, tones of 40-70 ms with pauses of
40-70 ms) and white noise over 0-4 kHz is added at the SNR of the row, the
signal power being measured over the tones themselves (``sg.add_noise``
without a reference). The same samples go to our ``LineTapDecoder`` and to
SpanDSP's ``dtmf_rx`` (default parameters) in the same run.

Columns, per receiver: ``digits`` the keys it reported that match the number's
(in order; ours: the dialed number's, or the certain keys of an error event),
of all keys sent; ``strings`` the number exactly; ``WRONG`` a digit string
reported as the number that is not the one sent (SpanDSP: any non-empty string
other than the number), which a rep would see as a wrong number; ours also
``error``, an error event with the keys heard, the safe outcome of a burst the
decoder is not sure of. Then talk-off: speech-like and music-like sound
(tests/signalgen.py), clean and under noise, over many seeds: keys our detector
was certain of, events our decoder reported, digits SpanDSP heard. Then, with
``--search N``, a random search for wrong numbers beyond what SpanDSP can send:
our own generator, any digit string of 3-12 keys, tones of 20-90 ms, twist -6 to
+10 dB, offsets up to 4 %, SNR 2-20 dB.
Prints numbers; it is not a pass/fail test.

Run: .venv/bin/python tests/bench/bench_dtmf_spandsp.py [--trials 30] [--snrs 20,15,...]
     [--talkoff-seeds 10] [--search 0]
"""

from __future__ import annotations

import os

# One core for numpy's BLAS too: the machine is shared.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import difflib
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import signalgen as sg
import spandsp_peer as sp

from agent.events import CallerId, Dialed, LineError, LineEvent
from plugins.linetap import dsp
from plugins.linetap.protocol import LineTapDecoder, plausible_dial_string

RATE = sp.RATE
SNRS = (20.0, 15.0, 12.0, 10.0, 9.0, 8.0, 7.0, 6.0)
PREFIXES = ("138", "139", "150", "186", "021", "010", "0755")


def number(rng: np.random.Generator) -> str:
    """A valid CN number: a mobile (11 digits) or a landline with its area code (11-12).

    Drawn again until the numbering plan allows it (a landline's subscriber number never
    starts with 0 or 1), since our decoder checks noisy digits against that plan.
    """
    while True:
        prefix = PREFIXES[int(rng.integers(len(PREFIXES)))]
        length = 12 if prefix == "0755" else 11
        digits = prefix + "".join(str(d) for d in rng.integers(0, 10, length - len(prefix)))
        if plausible_dial_string(digits, "CN"):
            return digits


def decode(x: np.ndarray) -> list[LineEvent]:
    decoder = LineTapDecoder(RATE)
    events: list[LineEvent] = []
    for i in range(0, len(x), 4000):
        events += decoder.feed(x[i : i + 4000])
    return events + decoder.flush()


def right(sent: str, heard: str) -> int:
    """Keys of ``heard`` that match ``sent``'s, in order."""
    return sum(
        b.size for b in difflib.SequenceMatcher(None, sent, heard, autojunk=False).get_matching_blocks()
    )


def ours_heard(events: list[LineEvent]) -> str:
    """What our decoder reported: the dialed number, else an error's certain keys (doubtful: ``k?``)."""
    for e in events:
        if isinstance(e, Dialed):
            return e.digits
    for e in events:
        if isinstance(e, LineError) and e.raw:
            return re.sub(r".\?", "", e.raw)
    return ""


def dialing(trials: int, snrs: tuple[float, ...], rng: np.random.Generator) -> dict[str, int]:
    print(f"dialed digits, SpanDSP dtmf_tx -> white noise -> receiver ({trials} numbers per row)")
    print(f"{'':>6}  {'ours':<35}  {'SpanDSP dtmf_rx':<25}")
    print(
        f"{'SNR dB':>6}  {'digits':>11} {'strings':>7} {'error':>5} {'WRONG':>5}"
        f"   {'digits':>11} {'strings':>7} {'WRONG':>5}"
    )
    wrong = {"ours": 0, "spandsp": 0}
    for snr in snrs:
        ok = err = false = sp_ok = sp_false = keys = digits = sp_digits = 0
        for _ in range(trials):
            num = number(rng)
            on, off = int(rng.integers(40, 71)), int(rng.integers(40, 71))
            x = sp.dtmf_tx(
                num,
                level_dbm0=int(rng.integers(-20, -7)),
                twist_db=int(rng.integers(-2, 3)),
                on_ms=on,
                off_ms=off,
            )
            y = sg.add_noise(np.concatenate([sg.silence(0.3, RATE), x, sg.silence(2.5, RATE)]), snr, rng)
            events = decode(y)
            dialed = [e.digits for e in events if isinstance(e, Dialed)]
            ok += dialed == [num]
            false += any(d != num for d in dialed)
            err += any(isinstance(e, LineError) for e in events)
            keys += len(num)
            digits += right(num, ours_heard(events))
            heard = sp.dtmf_rx(y)
            sp_ok += heard == num
            sp_false += bool(heard) and heard != num
            sp_digits += right(num, heard)
        wrong["ours"] += false
        wrong["spandsp"] += sp_false
        print(
            f"{snr:>6g}  {digits:>5}/{keys:<5} {ok:>3}/{trials:<3} {err:>5} {false:>5}"
            f"   {sp_digits:>5}/{keys:<5} {sp_ok:>3}/{trials:<3} {sp_false:>5}",
            flush=True,
        )
    return wrong


def search(trials: int, rng: np.random.Generator) -> int:
    """Random bursts across and beyond Q.24's limits, in heavy noise; returns the wrong numbers found."""
    ok = err = wrong = 0
    for _ in range(trials):
        num = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(3, 13))))
        burst = sg.dtmf(
            num,
            RATE,
            on=float(rng.uniform(0.02, 0.09)),
            off=float(rng.uniform(0.03, 0.09)),
            level_dbfs=float(rng.uniform(-35, -6)),
            deviation=float(rng.uniform(-0.04, 0.04)),
            twist_db=float(rng.uniform(-6, 10)),
        )
        x = np.concatenate([sg.silence(0.3, RATE), burst, sg.silence(2.5, RATE)])
        events = decode(sg.add_noise(x, float(rng.uniform(2, 20)), rng))
        numbers = [e.digits for e in events if isinstance(e, Dialed)]
        numbers += [e.number for e in events if isinstance(e, CallerId) and e.number is not None]
        ok += numbers == [num]
        wrong += any(n != num for n in numbers)
        err += any(isinstance(e, LineError) for e in events)
    print(f"wrong-number search: {trials} bursts, {ok} decoded, {err} error events, {wrong} WRONG")
    return wrong


def talk_off(seeds: int, seconds: float = 20.0) -> None:
    print(f"talk-off: {seeds} seeds x {seconds:g} s of each sound, level -30 to -8 dBFS")
    print(f"{'sound':<7} {'noise':>6}  {'ours keys':>9} {'events':>6}   {'SpanDSP digits':>14}")
    for kind, make in (("speech", sg.speech_like), ("music", sg.music_like)):
        for snr in (None, 20.0, 10.0, 6.0):
            keys = events = theirs = 0
            for seed in range(seeds):
                rng = np.random.default_rng(10_000 + seed)
                x = make(seconds, RATE, rng, level_dbfs=float(rng.uniform(-30, -8)))
                if snr is not None:
                    x = sg.add_noise(x, snr, rng)
                det = dsp.DtmfDetector(RATE)
                keys += sum(h.key != "CAS" for h in det.process(x) + det.flush())
                events += sum(isinstance(e, (Dialed, CallerId, LineError)) for e in decode(x))
                theirs += len(sp.dtmf_rx(x))
            noise = "clean" if snr is None else f"{snr:g} dB"
            print(f"{kind:<7} {noise:>6}  {keys:>9} {events:>6}   {theirs:>14}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--snrs", default=",".join(f"{s:g}" for s in SNRS))
    parser.add_argument("--talkoff-seeds", type=int, default=10)
    parser.add_argument("--search", type=int, default=0, help="bursts of the random wrong-number search")
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    snrs = tuple(float(s) for s in args.snrs.split(","))
    wrong = dialing(args.trials, snrs, np.random.default_rng(args.seed))
    print(f"wrong numbers in total: ours {wrong['ours']}, SpanDSP {wrong['spandsp']}")
    if args.talkoff_seeds:
        talk_off(args.talkoff_seeds)
    if args.search:
        search(args.search, np.random.default_rng(args.seed + 1))


if __name__ == "__main__":
    main()
