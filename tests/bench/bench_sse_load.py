"""The seat under 2,000 idle connections to its page: pop latency and recording completeness, beside no load.

Two runs of ``cti-agent demo`` (recording on, simulated lines with synthetic audio, a fixed seed,
so both runs see the same calls): one with nobody on the page, one with ``--connections`` idle
connections held open by a separate client process: event streams that are opened and never
read (up to the page's cap; the rest are refused with a 503 and opened again) and sockets that
send half a request and wait. For each run: the agent's own screen-pop latency histogram
(``cti_screen_pop_latency_seconds``, event → page bus), the recorder's overruns and missing
recordings, and each recording's length against its call's (a recording that lost audio to a
busy event loop is shorter than its call).

Run: .venv/bin/python tests/bench/bench_sse_load.py [--seconds 40] [--connections 2000]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

LOAD_CLIENT = textwrap.dedent(
    """
    import socket, sys, time
    host, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    socks = []
    def open_one(i):
        s = socket.create_connection((host, port))
        head = f"Host: {host}:{port}\\r\\n"
        if i % 2:  # an event stream nobody reads
            s.sendall(f"GET /events HTTP/1.1\\r\\n{head}Accept: text/event-stream\\r\\n\\r\\n".encode())
        else:  # half a request, then nothing
            s.sendall(f"GET / HTTP/1.1\\r\\n{head}".encode())
        return s
    for i in range(total):
        socks.append(open_one(i))
    print(f"open {len(socks)}", flush=True)
    while True:  # keep the count: reopen what the server closed (refused streams, time-outs)
        time.sleep(1)
        for i, s in enumerate(socks):
            s.setblocking(False)
            try:
                gone = s.recv(65536) == b""
            except BlockingIOError:
                gone = False
            except OSError:
                gone = True
            if gone:
                s.close()
                try:
                    socks[i] = open_one(i)
                except OSError:  # the agent stopped at the end of the run
                    sys.exit(0)
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pop_quantiles(metrics: str) -> tuple[float, float, int]:
    """p50 and p99 (upper bucket bounds) and the count of the pop-latency histogram."""
    buckets = []
    for match in re.finditer(
        r'cti_screen_pop_latency_seconds_bucket\{[^}]*le="([^"]+)"\} ([0-9.e+]+)', metrics
    ):
        bound = float("inf") if match.group(1) == "+Inf" else float(match.group(1))
        buckets.append((bound, float(match.group(2))))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0

    def quantile(q: float) -> float:
        for bound, count in buckets:
            if total and count >= q * total:
                return bound
        return float("nan")

    return quantile(0.5), quantile(0.99), int(total)


def counter(metrics: str, name: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", metrics, re.M))


def run(seconds: float, connections: int) -> None:
    label = f"{connections} idle connections" if connections else "no load"
    with tempfile.TemporaryDirectory(prefix="cti-bench-sse-") as tmp:
        data = Path(tmp)
        web, metrics_port = free_port(), free_port()
        demo = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "demo", "--data-dir", str(data), "--lines", "2",
             "--rate", "12", "--speed", "5", "--seed", "4", "--listen", f"127.0.0.1:{web}",
             "--metrics-listen", f"127.0.0.1:{metrics_port}", "--duration", str(seconds)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        load = None
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{web}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise SystemExit("the demo did not start") from None
                    time.sleep(0.1)
            if connections:
                load = subprocess.Popen(
                    [sys.executable, "-c", LOAD_CLIENT, "127.0.0.1", str(web), str(connections)],
                    stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                assert load.stdout is not None
                print(f"[{label}] {load.stdout.readline().strip()}", flush=True)
            time.sleep(max(seconds - 6, 1))
            metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
            demo.wait(timeout=60)
        finally:
            if load is not None:
                load.kill()
                load.wait()
            if demo.poll() is None:
                demo.kill()
                demo.wait()
        p50, p99, pops = pop_quantiles(metrics)
        db = sqlite3.connect(data / "cti-agent.db")
        ratios = [
            row[0]
            for row in db.execute(
                "SELECT r.seconds / ((julianday(c.ended_at) - julianday(c.started_at)) * 86400.0) "
                "FROM recordings r JOIN calls c ON c.uuid = r.call_uuid "
                "WHERE c.ended_at IS NOT NULL AND julianday(c.ended_at) > julianday(c.started_at)"
            )
        ]
        calls = db.execute("SELECT count(*) FROM calls WHERE ended_at IS NOT NULL").fetchone()[0]
        db.close()
        print(
            f"[{label}] pops {pops}: p50 <= {p50 * 1000:.1f} ms, p99 <= {p99 * 1000:.1f} ms; "
            f"{calls} calls, {len(ratios)} recordings, length/call median "
            f"{statistics.median(ratios or [0]):.3f} min {min(ratios or [0]):.3f}; "
            f"overruns {counter(metrics, 'cti_recording_overruns_total'):.0f}, "
            f"missing {counter(metrics, 'cti_recording_missing_total'):.0f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--connections", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run(args.seconds, 0)
    run(args.seconds, args.connections)


if __name__ == "__main__":
    main()
