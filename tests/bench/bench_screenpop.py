"""Customer import rate and lookup time with a million customers (SQLite file, as on a seat).

Writes a CSV of N rows (mixed number formats, 1 % duplicates, 0.1 % broken rows),
imports it through the same code as ``cti-agent import-customers``, then times
``find_customer`` for national and E.164 forms against the full table.

Run: .venv/bin/python tests/bench/bench_customers.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session

from agent.config import load_config
from agent.events import CallerId, LineEvent, OnHook
from agent.plugins import make_plugin_manager
from agent.seat.devices import Device, DeviceRegistry
from agent.seat.runner import Agent
from storage.customers import import_customers, read_rows
from storage.db import make_engine, upgrade
from storage.plugin import SqlStore


def write_file(path: Path, rows: int, seed: int = 1) -> list[str]:
    """A messy customer file; returns the national forms of the mobile numbers written."""
    rng = random.Random(seed)
    mobiles: list[str] = []
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["姓名", "手机", "电话", "公司", "备注"])
        for i in range(rows):
            mobile = f"13{i % 10}{i:08d}"
            mobiles.append(mobile)
            written = rng.choice(
                [
                    mobile,
                    f"+86 {mobile[:3]} {mobile[3:7]} {mobile[7:]}",
                    f"{mobile[:3]}-{mobile[3:7]}-{mobile[7:]}",
                ]
            )
            landline = f"022-{20000000 + i:08d}" if i % 3 == 0 else ""
            if i % 1000 == 999:
                written = "n/a"  # broken
            if i % 100 == 50:
                written = mobiles[i - 1]  # a duplicate of the row before
            writer.writerow([f"客户{i}", written, landline, f"公司{i % 5000}", ""])
    return mobiles


def bench_import(rows_wanted: int, lookups: int) -> None:
    """Import ``rows_wanted`` rows into a fresh SQLite file, then time lookups against it."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "customers.csv"
        started = time.perf_counter()
        mobiles = write_file(source, rows_wanted)
        size = source.stat().st_size / 1e6
        print(f"wrote {rows_wanted} rows ({size:.0f} MB) in {time.perf_counter() - started:.1f} s")
        engine = make_engine(f"sqlite:///{Path(tmp) / 'cti.db'}")
        upgrade(engine)
        started = time.perf_counter()
        _, rows = read_rows(source)
        with Session(engine) as session, session.begin():
            report = import_customers(session, rows)
        seconds = time.perf_counter() - started
        print(
            f"import: {report.rows} rows in {seconds:.1f} s = {report.rows / seconds:,.0f} rows/s; "
            f"{report.imported} customers, {report.phones} numbers, {report.not_imported} not imported "
            f"({report.count('duplicate_in_file')} duplicates, {report.count('rejected')} rejected)"
        )
        store = SqlStore(engine)
        rng = random.Random(2)
        for label, form in (("national", lambda m: (None, m)), ("e164", lambda m: ("+86" + m, m))):
            times = []
            for _ in range(lookups):
                e164, raw = form(rng.choice(mobiles))
                t0 = time.perf_counter()
                store.lookup_customer(number_e164=e164, number_raw=raw)
                times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            print(
                f"lookup ({label} form, {report.imported} customers): p50 {statistics.median(times):.3f} ms, "
                f"p99 {times[int(len(times) * 0.99)]:.3f} ms"
            )
        engine.dispose()


class PopInjector(Device):
    """Emits whatever the benchmark puts in its queue, on any line label."""

    type = "pop-injector"
    reports_hook = True
    queue: ClassVar[asyncio.Queue[LineEvent]]

    async def events(self) -> AsyncIterator[LineEvent]:
        while True:
            yield await PopInjector.queue.get()


#: Records when a call row showing a given number is first in the page (wall clock, ms).
WATCH_JS = r"""() => {
  window.__seen = {};
  const calls = document.getElementById("calls");
  new MutationObserver(() => {
    const t = performance.timeOrigin + performance.now();
    for (const row of calls.querySelectorAll(".call-number")) {
      const n = row.textContent.replace(/\D/g, "");  // shown as 139 0000 0001
      if (!(n in window.__seen)) window.__seen[n] = t;
    }
  }).observe(calls, { childList: true, subtree: true, characterData: true });
}"""


async def bench_pop(rounds: int) -> None:
    """Caller ID injected → the call rendered in Chromium, with 1 and with 8 lines ringing at once."""
    from playwright.async_api import async_playwright

    PopInjector.queue = asyncio.Queue()
    with tempfile.TemporaryDirectory() as data:
        engine = make_engine(f"sqlite:///{Path(data) / 'cti-agent.db'}")
        upgrade(engine)
        source = Path(data) / "callers.csv"
        with source.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["name", "phone"])
            writer.writerows([f"caller {n}", f"1390{n:07d}"] for n in range(rounds * 8 * 2))
        _, rows = read_rows(source)
        with Session(engine) as session, session.begin():
            import_customers(session, rows)
        engine.dispose()
        pm = make_plugin_manager(load_entrypoints=False)
        registry = DeviceRegistry.from_plugins(pm)
        registry.add(PopInjector, "bench")
        config = load_config(
            None,
            registry,
            overrides={
                "agent": {"seat": "bench", "rep": "rep01", "data_dir": data},
                "web": {"listen": "127.0.0.1:0"},
                "metrics": {"enabled": False},
                "devices": [{"id": "inj", "type": "pop-injector"}],
            },
        )
        agent = Agent(config, pm, devices=registry, registry=CollectorRegistry())
        stop = asyncio.Event()
        run = asyncio.create_task(agent.run(stop))
        await agent.started.wait()
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                ],
            )
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{agent.web_port}/")
            await page.wait_for_selector('#connection[data-state="live"]')
            await page.evaluate(WATCH_JS)
            serial = 0
            for lines in (1, 8):
                latencies: list[float] = []
                for _ in range(rounds):
                    sent: dict[str, float] = {}
                    for line in range(1, lines + 1):
                        number = f"1390{serial:07d}"
                        serial += 1
                        sent[number] = time.time() * 1000
                        PopInjector.queue.put_nowait(
                            CallerId(device_id="inj", line=str(line), at=datetime.now(UTC), number=number)
                        )
                    await page.wait_for_function(
                        "numbers => numbers.every(n => n in window.__seen)", arg=list(sent), timeout=10_000
                    )
                    seen = await page.evaluate("window.__seen")
                    latencies += [seen[n] - t for n, t in sent.items()]
                    for line in range(1, lines + 1):
                        PopInjector.queue.put_nowait(
                            OnHook(device_id="inj", line=str(line), at=datetime.now(UTC))
                        )
                    await asyncio.sleep(0.3)
                latencies.sort()
                p99 = latencies[max(int(len(latencies) * 0.99) - 1, 0)]
                print(
                    f"pop latency, {lines} line(s) ringing at once ({len(latencies)} calls): "
                    f"p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms"
                )
            await browser.close()
        stop.set()
        await run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", nargs="?", choices=["pop", "import", "all"], default="all")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    if args.what in ("pop", "all"):
        asyncio.run(bench_pop(args.rounds))
    if args.what in ("import", "all"):
        bench_import(args.rows, args.lookups)


if __name__ == "__main__":
    main()
