"""Spreadsheet export of generated call rows: time, output size and peak memory, XLSX and CSV.

Run::

    .venv/bin/python tests/bench/bench_export.py                  # 100 000 rows, each format once
    .venv/bin/python tests/bench/bench_export.py --rows 1000000 [--parallel 3] [--naive]

Each measurement runs in its own process (``--child``), so the peak resident set
size (``resource.getrusage``'s ``ru_maxrss``) is that export's alone, the
interpreter and imports included (the "baseline" line is a process that imports
the same and writes nothing). Wall time and CPU time are both printed: on a
shared machine the CPU time is the steadier figure. Generating the rows is
included in both. The rows are the console's 14 export columns, made
lazily like a database cursor gives them: E.164 numbers, Chinese and English
caller names (one in fifty shaped like a formula, one in a hundred with a
control character), notes on a third. ``stream`` is :func:`storage.sheets.iter_sheet`
writing its chunks to a file; ``naive`` (with ``--naive``) is what the console
did before: every row in a list, openpyxl write-only into a ``BytesIO``, the
bytes returned whole. ``--parallel N`` runs N exports of each kind at once, as
several users exporting together. With ``--tracemalloc`` the child also reports
Python's own peak allocation (slower).

Measured 2026-12-03 on a 2-core machine shared with other jobs (so wall times are
about twice the CPU times), rows generated included:

==========  =========  ========  =======  ========  ==============
format      rows       wall s    CPU s    out MiB   peak RSS MB
==========  =========  ========  =======  ========  ==============
baseline    -          -         1.0      -         59.1
csv         200 000    32.6      14.7     26.3      59.7
xlsx        200 000    47.9      24.3     20.0      80.1
xlsx naive  200 000    169.8     94.8     19.9      252.4
csv         1 000 000  93.3      64.5     131.4     59.8
xlsx        1 000 000  312.1     119.5    100.1     80.3
==========  =========  ========  =======  ========  ==============

The CSV's first chunk leaves after 0.03 s; the XLSX's once every row is written.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from storage.sheets import ExportOutcome, headers, iter_sheet  # noqa: E402

COLUMNS = (
    "uuid",
    "started_at",
    "seat",
    "line",
    "rep",
    "team",
    "direction",
    "number",
    "cid_name",
    "disposition",
    "ring_seconds",
    "talk_seconds",
    "has_recording",
    "notes",
)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"
LATIN = ["ACME TRADING", "WIRELESS CALLER", "J SMITH", "OUT OF AREA", ""]
NOTES = ["报价已发", "回访 下周三", "quote sent", "call back", "VIP", "not interested", "发合同", "价格太高"]
FORMULAS = ['=HYPERLINK("http://x.example","点我")', "@SUM(A1:A9)", "+cmd|' /C calc'!A0", "-1+2"]
START = datetime(2026, 1, 1, tzinfo=UTC)


def rows(count: int, seed: int = 11) -> Iterator[list[Any]]:
    """``count`` call rows in the console's export columns, made one at a time."""
    rng = random.Random(seed)
    for n in range(count):
        answered = rng.random() < 0.6
        if rng.random() < 0.02:
            name = rng.choice(FORMULAS)
        elif rng.random() < 0.7:
            name = (
                rng.choice(SURNAMES) + rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.5 else "")
            )
        else:
            name = rng.choice(LATIN)
        if rng.random() < 0.01:
            name += "\x07"
        started = START + timedelta(seconds=n * 7 + rng.randrange(7))
        yield [
            f"{rng.getrandbits(128):032x}",
            started.strftime("%Y-%m-%d %H:%M:%S"),
            f"seat-{rng.randrange(200):03d}",
            f"L{rng.randrange(1, 3)}",
            f"rep{rng.randrange(200):03d}",
            f"team{rng.randrange(17):02d}",
            rng.choice(("in", "out")),
            f"+861{rng.choice('3578')}{rng.randrange(10)}{rng.randrange(10**8):08d}",
            name,
            "answered" if answered else rng.choice(("missed", "abandoned")),
            round(rng.uniform(0, 30), 1),
            round(rng.lognormvariate(4.0, 1.0), 1) if answered else 0.0,
            "yes" if answered and rng.random() < 0.8 else "no",
            " ".join(rng.sample(NOTES, 2)) if rng.random() < 0.33 else "",
        ]


def _naive_xlsx(count: int) -> bytes:
    """The console's export before storage.sheets: all rows in a list, the workbook in memory."""
    from openpyxl import Workbook

    materialised = list(rows(count))
    book = Workbook(write_only=True)
    sheet = book.create_sheet("calls")
    sheet.append(list(COLUMNS))
    for row in materialised:
        sheet.append([str(v).replace("\x07", "") if isinstance(v, str) else v for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def child(fmt: str, mode: str, count: int, trace: bool) -> dict[str, Any]:
    """One measurement, in this process."""
    if trace:
        tracemalloc.start()
    began = time.perf_counter()
    size = 0
    outcome = ExportOutcome()
    if mode == "baseline":
        pass
    elif mode == "naive":
        size = len(_naive_xlsx(count))
    else:
        with tempfile.TemporaryFile() as out:
            first_chunk = None
            for chunk in iter_sheet(
                fmt,  # type: ignore[arg-type]
                rows(count),
                header=headers(COLUMNS, "zh-CN"),
                limit=None,
                sheet_title="calls",
                outcome=outcome,
            ):
                if first_chunk is None:
                    first_chunk = time.perf_counter() - began
                out.write(chunk)
                size += len(chunk)
    seconds = time.perf_counter() - began
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result: dict[str, Any] = {
        "format": fmt,
        "mode": mode,
        "rows": count,
        "seconds": round(seconds, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "bytes": size,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }
    if mode == "stream":
        result["first_chunk_s"] = round(first_chunk or seconds, 2)
        result["written_rows"] = outcome.rows
    if trace:
        result["traced_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    return result


def run_children(specs: list[tuple[str, str]], count: int, parallel: int, trace: bool) -> None:
    for fmt, mode in specs:
        command = [sys.executable, __file__, "--child", fmt, mode, "--rows", str(count)]
        if trace:
            command.append("--tracemalloc")
        began = time.perf_counter()
        procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(parallel)]
        results = []
        for proc in procs:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"{fmt} {mode}: child failed with {proc.returncode}")
            results.append(json.loads(out))
        wall = time.perf_counter() - began
        for result in results:
            extra = "".join(
                f", {key} {result[key]}" for key in ("first_chunk_s", "traced_peak_mb") if key in result
            )
            print(
                f"{fmt:4} {mode:8} {count:>9} rows: {result['seconds']:7.2f} s "
                f"({result['cpu_s']:.1f} s CPU), "
                f"{result['bytes'] / 2**20:7.1f} MiB out, peak RSS {result['peak_rss_mb']:6.1f} MB{extra}"
            )
        if parallel > 1:
            print(f"     {parallel} at once: {wall:.2f} s wall")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--parallel", type=int, default=1, help="exports of each kind at once")
    parser.add_argument("--naive", action="store_true", help="also measure the in-memory XLSX of before")
    parser.add_argument("--formats", default="csv,xlsx")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("FORMAT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.rows, args.tracemalloc)))
        return
    print(
        f"export of {args.rows} generated call rows, each in its own process "
        f"(python {sys.version.split()[0]})"
    )
    specs = [("csv", "baseline")] + [(fmt, "stream") for fmt in args.formats.split(",")]
    if args.naive:
        specs.append(("xlsx", "naive"))
    run_children(specs, args.rows, args.parallel, args.tracemalloc)


if __name__ == "__main__":
    main()
