"""Random input through the text devices into a running agent: it stays up, and no caller is lost or doubled.

For each seed, a stream of random bytes (NUL, control bytes, invalid UTF-8,
stray line endings) is interleaved with well-formed caller-ID messages for
distinct numbers (with random names and line labels, some with spaces), sent
to a real agent over its real transport: the NCID device over TCP (the NCID
server emulator), the Whozz device over UDP, and over pseudo-terminals the
Hayes modem (the modem emulator) and a NetCallerID serial box. The agent must keep the device
open throughout, and every well-formed caller ID must end up as exactly one
row of the calls table with its number. Seeds are fixed, so a failure repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from modem_emulator import ModemEmulator
from ncid_emulator import NcidEmulator, fields
from prometheus_client import CollectorRegistry
from whozz_emulator import WhozzSender, build_packet, call_record

from agent.config import load_config
from agent.plugins import make_plugin_manager
from agent.seat.runner import Agent
from plugins.whozz.device import WhozzDevice

SEEDS = [1, 2, 3]
MESSAGES = 12
NAMES = ["ZHANG SAN", "雷芳", "O'BRIEN\x00", "A\x1b[31mB", "-", "NO NAME", "x" * 40, ""]
LABELS = ["POTS", "Home Line", "-", "VOIP 2", "家里"]


def garbage(rng: random.Random) -> bytes:
    """Random bytes of any value, some lines long."""
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 120)))


def numbers(rng: random.Random, count: int) -> list[str]:
    """Distinct mainland mobile numbers."""
    picked: set[str] = set()
    while len(picked) < count:
        picked.add("13" + "".join(rng.choice("0123456789") for _ in range(9)))
    return sorted(picked, key=lambda _: rng.random())


def ended_numbers(db: Path) -> list[str]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("SELECT number_raw FROM calls WHERE ended_at IS NOT NULL")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


async def run_agent(
    data: Path, device: dict[str, Any], body: Callable[[Agent], Awaitable[None]], expected: list[str]
) -> list[str]:
    """Run the agent with one device, let ``body`` send, and return the ended calls' numbers."""
    pm = make_plugin_manager(load_entrypoints=False)
    config = load_config(
        None,
        None,
        overrides={
            "agent": {"seat": "prop", "rep": "rep01", "data_dir": str(data)},
            "web": {"enabled": False},
            "metrics": {"enabled": False},
            "tracker": {"ring_timeout": 0.4},
            "devices": [device],
        },
    )
    agent = Agent(config, pm, registry=CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    db = data / "cti-agent.db"
    try:
        await asyncio.wait_for(agent.started.wait(), 20)
        await body(agent)
        async with asyncio.timeout(20):
            while len(ended_numbers(db)) < len(expected):
                assert not task.done(), "the agent stopped"
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # anything more would be a duplicate
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    return ended_numbers(db)


@pytest.fixture
async def emulator() -> AsyncIterator[NcidEmulator]:
    async with NcidEmulator(call_log=()) as emu:
        yield emu


@pytest.mark.parametrize("seed", SEEDS)
async def test_ncid_random_bytes_and_caller_ids(seed: int, tmp_path: Path, emulator: NcidEmulator) -> None:
    rng = random.Random(seed)
    wanted = numbers(rng, MESSAGES)

    async def body(agent: Agent) -> None:
        await emulator.wait_clients(1)
        for number in wanted:
            for _ in range(rng.randrange(0, 3)):
                # latin-1 maps each byte to one character; the emulator sends it as UTF-8 text.
                text = garbage(rng).decode("latin-1").replace("\n", "").replace("\r", "")
                await emulator.send_raw(text)
            now = datetime.now()
            line = fields(
                DATE=now.strftime("%m%d%Y"),
                TIME=now.strftime("%H%M"),
                LINE=rng.choice(LABELS),
                NMBR=number,
                MESG="NONE",
                NAME=rng.choice(NAMES).replace("*", ""),
            )
            await emulator.send_raw(f"CID: {line}")
            await asyncio.sleep(rng.choice([0.0, 0.01, 0.05]))
        assert emulator.connections == 1

    got = await run_agent(
        tmp_path, {"id": "ncid", "type": "ncid", "port": emulator.port}, body, expected=wanted
    )
    assert sorted(got) == sorted(wanted)
    assert emulator.connections == 1  # the device never dropped the connection


@pytest.mark.parametrize("seed", SEEDS)
async def test_whozz_random_datagrams_and_caller_ids(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    wanted = numbers(rng, MESSAGES)

    async def body(agent: Agent) -> None:
        device = agent.devices["wc"]
        assert isinstance(device, WhozzDevice)
        async with asyncio.timeout(10):
            while device.address is None:
                await asyncio.sleep(0.02)
        assert device.address is not None
        async with WhozzSender(device.address, repeats=2) as unit:
            for number in wanted:
                for _ in range(rng.randrange(0, 3)):
                    await unit.send_raw(garbage(rng), repeats=1)
                # The unit's name field is 15 printable characters (the parser refuses
                # a record with control characters in it as not well-formed).
                name = rng.choice([n for n in NAMES if n.isascii() and n.isprintable()])[:15]
                record = call_record(rng.randrange(1, 5), when=datetime.now(), number=number, name=name)
                await unit.send_raw(build_packet(record))
                await asyncio.sleep(rng.choice([0.0, 0.01, 0.05]))

    device = {"id": "wc", "type": "whozz", "listen": "127.0.0.1:0", "detail_records": False}
    got = await run_agent(tmp_path, device, body, expected=wanted)
    assert sorted(got) == sorted(wanted)


@pytest.mark.pty
@pytest.mark.parametrize("seed", SEEDS)
async def test_hayes_random_bytes_and_caller_ids_over_a_pty(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    wanted = numbers(rng, MESSAGES)
    emulator = ModemEmulator("usr").start()

    async def body(agent: Agent) -> None:
        await asyncio.to_thread(emulator.wait_for, lambda sent: any("VCID" in c for c in sent), 10.0)
        for number in wanted:
            for _ in range(rng.randrange(0, 3)):
                emulator.send(garbage(rng) + b"\r\n")
            emulator.ring()
            name = rng.choice([n for n in NAMES if n.isascii() and n.isprintable()])
            emulator.caller_id(number, name or "O", style=rng.choice(["usr", "zoom"]))
            await asyncio.sleep(rng.choice([0.02, 0.05, 0.1]))

    device = {"id": "modem", "type": "hayes", "port": emulator.path, "read_timeout": 0.05, "cid_timeout": 0.5}
    try:
        got = await run_agent(tmp_path, device, body, expected=wanted)
    finally:
        emulator.vanish()
    assert sorted(got) == sorted(wanted)


@pytest.mark.pty
@pytest.mark.parametrize("seed", SEEDS)
async def test_serialbox_random_bytes_and_caller_ids_over_a_pty(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    wanted = numbers(rng, MESSAGES)
    master, slave = os.openpty()

    async def body(agent: Agent) -> None:
        await asyncio.sleep(0.5)  # the device opens the port
        for number in wanted:
            for _ in range(rng.randrange(0, 3)):
                # "###" starts a record: junk that ends in "#" would shift the next record's frame.
                os.write(master, garbage(rng).replace(b"#", b"") + b"\r")
            name = rng.choice([n for n in NAMES if n.isascii() and n.isprintable()]).replace("+", "")
            stamp = datetime.now().strftime("%m%d%H%M")
            os.write(master, f"###DATE{stamp}...NMBR{number}...NAME{name}+++\r".encode())
            await asyncio.sleep(rng.choice([0.02, 0.05, 0.1]))

    device = {
        "id": "box",
        "type": "serialbox",
        "port": os.ttyname(slave),
        "format": "netcallerid",
        "read_timeout": 0.05,
        "idle_flush": 0.3,
    }
    try:
        got = await run_agent(tmp_path, device, body, expected=wanted)
    finally:
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)
    assert sorted(got) == sorted(wanted)
