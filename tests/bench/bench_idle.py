"""The agent's resident memory and CPU with 4 simulated lines at a floor's usual pace.

Starts ``cti-agent demo --lines 4`` (real time, 2 calls per minute per line),
lets it settle, then samples /proc for a measuring window.

Run: .venv/bin/python tests/bench/bench_idle.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent.cli",
                "--log-level",
                "warning",
                "demo",
                "--lines",
                "4",
                "--rate",
                "2",
                "--seed",
                "1",
                "--data-dir",
                data,
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(args.warmup)
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            peak = 0.0
            while time.monotonic() - t0 < args.seconds:
                time.sleep(0.5)
                peak = max(peak, rss_mib(proc.pid))
            cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
            rss = rss_mib(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    print(f"agent with 4 simulated lines over {t1 - t0:.0f} s:")
    print(f"  CPU: {100 * (cpu1 - cpu0) / (t1 - t0):.2f} % of one core")
    print(f"  RSS: {rss:.1f} MiB (peak {peak:.1f} MiB)")


if __name__ == "__main__":
    main()
