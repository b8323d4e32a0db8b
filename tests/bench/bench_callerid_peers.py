"""Caller ID and DTMF, ours beside SpanDSP, minimodem and multimon-ng: one table from one run.

Standards: dialed DTMF digits, DTMF caller ID (SpanDSP's adsi_tx, framings
A..C, A..#, D..C), Bell 202 and V.23 MDMF (SpanDSP's adsi_tx and our
generator, alternately). Conditions: clean, clipped (+12 dB over a burst near
full scale, hard-clipped at 0 dBFS) and white noise over 0-4 kHz at an SNR
measured over the tones themselves. Per cell: successes (the number exactly)
and false (a number that was not sent: worse than a miss) out of the trials.
minimodem reads Bell 202 only and does not verify checksums; multimon-ng wants
22050 Hz input (resampled with sox). A dash: the peer does not read that standard.
Then decode speed, in multiples of real time of CPU (user + system), on a minute
of line audio with a caller-ID burst every 6 s in 20 dB noise: ours in process
(LineTapDecoder fed arrays, every detector on; and the Bell 202 receiver alone,
what the peers' commands do), ours out of process (`cti-agent
decode FILE --json`, interpreter start-up included), and each peer's command.
Prints numbers; it is not a pass/fail test.

Run: .venv/bin/python tests/bench/bench_callerid_peers.py [--trials 10] [--only bell202,v23]
[--conditions 8,7,6] [--speed-only]
"""

from __future__ import annotations

import os

# One core for numpy's BLAS too: the speed figures are per core.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import re
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import signalgen as sg
import spandsp_peer as sp

from agent.callerid import encode_mdmf
from agent.events import CallerId, Dialed
from plugins.linetap import dsp
from plugins.linetap.protocol import LineTapDecoder, parse_dtmf_callerid

RATE = sp.RATE
PEERS = ("ours", "spandsp", "minimodem", "multimon-ng")
CONDITIONS = ("clean", "clipped", "20", "15", "10", "8", "7", "6")
Reader = Callable[[np.ndarray, Path], list[str]]
Maker = Callable[[str, int], tuple[np.ndarray, dict[str, Reader]]]
PREFIXES = ("138", "139", "150", "186", "021", "010", "0755")


def number(rng: np.random.Generator) -> str:
    prefix = PREFIXES[int(rng.integers(len(PREFIXES)))]
    length = 12 if prefix == "0755" else 11
    return prefix + "".join(str(d) for d in rng.integers(0, 10, length - len(prefix)))


def impair(x: np.ndarray, condition: str, rng: np.random.Generator) -> np.ndarray:
    x = np.concatenate([sg.silence(0.3, RATE), x, sg.silence(2.5, RATE)])
    if condition == "clipped":
        return np.clip(x / np.abs(x).max() * 10 ** (12 / 20), -1, 1)
    if condition == "clean":
        return x
    return sg.add_noise(x, float(condition), rng)


def ours(x: np.ndarray, **kw: object) -> list[str]:
    decoder = LineTapDecoder(RATE, **kw)  # type: ignore[arg-type]
    events = decoder.feed(x) + decoder.flush()
    return [
        e.digits if isinstance(e, Dialed) else e.number
        for e in events
        if isinstance(e, Dialed) or (isinstance(e, CallerId) and e.number)
    ]  # type: ignore[misc]


def _mdmf_number(message: bytes) -> str | None:
    """The calling number (parameter 0x02) of an MDMF message SpanDSP's adsi_rx passed on."""
    body, pos = message[2:-1], 0
    while pos + 2 <= len(body):
        kind, length = body[pos], body[pos + 1]
        if kind == 0x02:
            return body[pos + 2 : pos + 2 + length].decode("latin-1")
        pos += 2 + length
    return None


def _wav(x: np.ndarray, tmp: Path, rate: int = RATE) -> Path:
    path = sg.write_wav(tmp / "in.wav", x, RATE)
    if rate == RATE:
        return path
    out = tmp / f"in{rate}.wav"
    subprocess.run(["sox", str(path), "-r", str(rate), str(out)], check=True, capture_output=True)
    return out


def minimodem(x: np.ndarray, tmp: Path) -> list[str]:
    out = subprocess.run(
        ["minimodem", "--rx", "-q", "-f", str(_wav(x, tmp)), "callerid"],
        capture_output=True,
        text=True,
        errors="replace",
    ).stdout
    return [p.replace("-", "") for p in re.findall(r"^Phone:\s*(\S+)", out, re.MULTILINE)]


def multimon(x: np.ndarray, tmp: Path, mode: str) -> list[str]:
    out = subprocess.run(
        ["multimon-ng", "-q", "-t", "wav", "-a", mode, str(_wav(x, tmp, 22050))],
        capture_output=True,
        text=True,
        errors="replace",
    ).stdout
    if mode == "DTMF":
        return ["".join(re.findall(r"^DTMF: (\S)", out, re.MULTILINE))]
    return re.findall(r"CID=(\d+)", out)


def run(trials: int, only: tuple[str, ...] = (), conditions: tuple[str, ...] = CONDITIONS) -> None:
    rng = np.random.default_rng(18)
    table: dict[tuple[str, str], dict[str, list[int]]] = {}
    wrong_total = {p: 0 for p in PEERS}
    standards: dict[str, Callable[[str, int], tuple[np.ndarray, dict[str, Reader]]]]

    def dialed(num: str, i: int) -> tuple[np.ndarray, dict[str, Reader]]:
        x = sp.dtmf_tx(num) if i % 2 else sg.dtmf(num, RATE, on=0.06, off=0.06, level_dbfs=-16)
        return x, {
            "ours": lambda y, _t: ours(y),
            "spandsp": lambda y, _t: [sp.dtmf_rx(y)],
            "multimon-ng": lambda y, t: multimon(y, t, "DTMF"),
        }

    def dtmf_cid(num: str, i: int) -> tuple[np.ndarray, dict[str, Reader]]:
        keys = (f"A{num}C", f"A{num}#", f"D{num}C")[i % 3]
        return sp.adsi_tx("dtmf", keys.encode()), {
            "ours": lambda y, _t: ours(y),
            "spandsp": lambda y, _t: [
                n for m in sp.adsi_rx("dtmf", y) if (n := parse_dtmf_callerid(m.decode()).number)
            ],
        }

    def fsk(
        standard: str,
    ) -> Callable[[str, int], tuple[np.ndarray, dict[str, Reader]]]:
        def make(num: str, i: int) -> tuple[np.ndarray, dict[str, Reader]]:
            message = encode_mdmf(datetime="11271015", number=num, name="ZHANG SAN")
            x = (
                sp.adsi_tx(standard, message)
                if i % 2
                else sg.fsk_callerid(message, RATE, standard, level_dbfs=-13)
            )
            peers: dict[str, Reader] = {
                "ours": lambda y, _t: ours(y, fsk=(standard,)),
                "spandsp": lambda y, _t: [n for m in sp.adsi_rx(standard, y) if (n := _mdmf_number(m))],
                "multimon-ng": lambda y, t: multimon(y, t, "CLIPFSK"),
            }
            if standard == "bell202":
                peers["minimodem"] = minimodem
            return x, peers

        return make

    standards = {
        "dtmf-dialed": dialed,
        "dtmf-callerid": dtmf_cid,
        "bell202": fsk("bell202"),
        "v23": fsk("v23"),
    }
    with tempfile.TemporaryDirectory(prefix="bench-cid-") as tmpdir:
        tmp = Path(tmpdir)
        for standard, make in standards.items():
            if only and standard not in only:
                continue
            for condition in conditions:
                cell = table.setdefault((standard, condition), {})
                for i in range(trials):
                    num = number(rng)
                    x, peers = make(num, i)
                    y = impair(x, condition, rng)
                    for peer, read in peers.items():
                        got = read(y, tmp)
                        ok, false = cell.setdefault(peer, [0, 0])
                        cell[peer] = [ok + (num in got), false + any(g and g != num for g in got)]
                line = "  ".join(
                    f"{p} {cell[p][0]:>2}/{trials} ({cell[p][1]} false)" if p in cell else f"{p} -"
                    for p in PEERS
                )
                print(f"{standard:<14} {condition:<8} {line}", flush=True)
    for cell in table.values():
        for peer, (_, false) in cell.items():
            wrong_total[peer] += false
    print("wrong numbers in total: " + ", ".join(f"{p} {n}" for p, n in wrong_total.items()))


def cpu_seconds(children: bool = False) -> float:
    """User + system CPU time of this process, or of its finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def speed(seconds: float = 60.0) -> None:
    """Multiples of real time (CPU), best of 3, ours in and out of process and each peer."""
    rng = np.random.default_rng(60)
    parts = []
    while sum(len(p) for p in parts) < seconds * RATE:
        message = encode_mdmf(datetime="11271015", number=number(rng), name="ZHANG SAN")
        parts += [sg.fsk_callerid(message, RATE, "bell202", level_dbfs=-13), sg.silence(5.3, RATE)]
    x = sg.add_noise(np.concatenate(parts), 20.0, rng, reference_dbfs=-13)
    duration = len(x) / RATE
    venv_bin = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="bench-cid-speed-") as tmpdir:
        tmp = Path(tmpdir)
        path = _wav(x, tmp)
        path22 = _wav(x, tmp, 22050)
        pcm = sp._pcm(x)
        helper = sp.helper()

        def in_process() -> None:
            decoder = LineTapDecoder(RATE)
            for i in range(0, len(x), RATE):
                decoder.feed(x[i : i + RATE])
            decoder.flush()

        def fsk_only() -> None:
            rx = dsp.FskReceiver(RATE, dsp.BELL202)
            for i in range(0, len(x), RATE):
                rx.process(x[i : i + RATE])
            rx.flush()

        commands: dict[str, Callable[[], object]] = {
            "ours (in process)": in_process,
            "ours (Bell 202 rx only)": fsk_only,
            "ours (cti-agent decode)": lambda: subprocess.run(
                [str(venv_bin / "cti-agent"), "decode", "--json", str(path)], capture_output=True, check=True
            ),
            "spandsp adsi_rx": lambda: subprocess.run(
                [str(helper), "adsi-rx", "class"], input=pcm, capture_output=True, check=True
            ),
            "minimodem": lambda: subprocess.run(
                ["minimodem", "--rx", "-q", "-f", str(path), "callerid"], capture_output=True
            ),
            "multimon-ng (22050 Hz)": lambda: subprocess.run(
                ["multimon-ng", "-q", "-t", "wav", "-a", "CLIPFSK", str(path22)], capture_output=True
            ),
        }
        print(f"decode speed, {duration:.0f} s of 8 kHz line audio, CPU time, best of 3:")
        for name, command in commands.items():
            child = not name.startswith("ours (in") and not name.startswith("ours (Bell")
            best = float("inf")
            for _ in range(3):
                t0 = cpu_seconds(child)
                command()
                best = min(best, cpu_seconds(child) - t0)
            print(
                f"  {name:<26} {duration / best:>8.0f} x real time  ({best * 1000 / duration:.2f} ms per s)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated standards (default: all)")
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated conditions")
    parser.add_argument("--speed-only", action="store_true", help="only the decode-speed rows")
    args = parser.parse_args()
    if not args.speed_only:
        run(args.trials, tuple(filter(None, args.only.split(","))), tuple(args.conditions.split(",")))
    speed()


if __name__ == "__main__":
    main()
