"""The seat's ``centre`` lookup plugin against a real ``cti-agent centre`` process over real HTTP.

The centre is started as the IT person would (``cti-agent centre --data-dir``, seats added with
``cti-agent seats add``); the seat's client is built from its config (``[central] url`` and a
token file) as the seat builds it. The seat's card comes from the centre, within the seat's team;
then the centre is stopped, and the card still comes from the cache, also after a restart of
the seat's plugin.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from factories import ended, make_call
from sqlalchemy.orm import Session
from test_centre_process import cli, start_centre, stop

from agent.config import Config, load_config
from agent.plugins import make_plugin_manager
from agent.seat.centre_lookup import CACHE_NAME, PLUGIN_NAME, CardCache, CentreLookup, register_centre_lookup
from agent.seat.transport import make_client
from agent.seatapi import CallEntry
from storage.db import make_engine, upgrade
from storage.models import CustomerPhone, CustomerRecord, Rep, Team
from storage.plugin import SqlStore

UUID = "5d2e0c7e-aaaa-4bbb-8ccc-{:012d}"
NUMBER = "+8613812345678"  # alice's customer (team north)
SOUTH = "+8613900001111"  # bob's customer (team south)


def _token(centre_dir: Path, seat: str, team: str) -> str:
    added = cli("seats", "add", seat, "--team", team, "--data-dir", str(centre_dir))
    assert added.returncode == 0, added.stderr
    return added.stdout.strip()


def _customers(centre_dir: Path) -> None:
    """The centre's customer base and reps (written as an import would, into its own database)."""
    engine = make_engine(load_config(None, overrides={"agent": {"data_dir": str(centre_dir)}}).database_url)
    try:
        with Session(engine) as session, session.begin():
            north, south = Team(name="north"), Team(name="south")
            session.add_all([north, south])
            session.flush()
            session.add_all([Rep(name="alice", team_id=north.id), Rep(name="bob", team_id=south.id)])
            for name, owner, number in (("Zhang San", "alice", NUMBER), ("Li Si", "bob", SOUTH)):
                customer = CustomerRecord(name=name, company=f"{name} Ltd", owner_rep=owner)
                customer.phones.append(CustomerPhone(number_e164=number, number_raw=number[3:]))
                session.add(customer)
    finally:
        engine.dispose()


def _send_calls(address: str, token: str, seat: str, team: str, rep: str, first: int) -> None:
    start = datetime.now(UTC) - timedelta(hours=2)
    entries = [
        CallEntry.of(
            ended(
                make_call(
                    UUID.format(first + n),
                    seat=seat,
                    team=team,
                    rep=rep,
                    started_at=start + timedelta(minutes=10 * (first + n)),
                )
            ),
            f"note {first + n}",
            None,
        )
        for n in range(3)
    ]
    with httpx.Client(base_url=address, headers={"authorization": f"Bearer {token}"}) as client:
        answer = client.post("/api/v1/calls", json={"seat": seat, "backlog": 0, "calls": entries})
    assert answer.status_code == 200, answer.text
    assert {r["status"] for r in answer.json()["results"]} == {"accepted"}


def _seat_config(seat_dir: Path, address: str, token: str) -> Config:
    seat_dir.mkdir(parents=True, exist_ok=True)
    token_file = seat_dir / "seat.token"
    token_file.write_text(token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    return load_config(
        None,
        overrides={
            "agent": {"data_dir": str(seat_dir), "seat": "seat-7"},
            "central": {"url": address, "token_file": str(token_file), "lookup_timeout": 0.3},
        },
    )


def test_the_card_comes_from_the_centre_and_from_the_cache_once_it_is_down(tmp_path: Path) -> None:
    centre_dir, seat_dir = tmp_path / "centre", tmp_path / "seat"
    process, address = start_centre(centre_dir)
    stopped = False
    try:
        north = _token(centre_dir, "seat-7", "north")
        south = _token(centre_dir, "seat-9", "south")
        _customers(centre_dir)
        _send_calls(address, north, "seat-7", "north", "alice", 0)
        _send_calls(address, south, "seat-9", "south", "bob", 3)

        config = _seat_config(seat_dir, address, north)
        seat_engine = make_engine(config.database_url)
        upgrade(seat_engine)
        client = make_client(config)
        pm = make_plugin_manager(load_entrypoints=False)
        pm.register(SqlStore(seat_engine), name="sql")  # as the runner registers it, first
        plugin = register_centre_lookup(pm, config, client)
        assert plugin is not None
        try:
            # Over the real HTTP: the team's card and calls, never the other team's.
            card = client.lookup("138 1234 5678", timeout=5.0)
            assert card["number"] == NUMBER
            assert card["customer"]["owner_rep"] == "alice"
            assert [c["uuid"] for c in card["calls"]] == [UUID.format(n) for n in (2, 1, 0)]
            found = pm.hook.lookup_customer(number_e164=NUMBER, number_raw="13812345678")
            assert found is not None
            assert (found.name, found.owner_rep, found.status, found.source) == (
                "Zhang San",
                "alice",
                "owned",
                "centre",
            )
            # South's customer is not north's to see; the seat's own customers have none either.
            assert pm.hook.lookup_customer(number_e164=SOUTH, number_raw="13900001111") is None

            assert stop(process) == 0
            stopped = True
            started = time.monotonic()
            again = pm.hook.lookup_customer(number_e164=NUMBER, number_raw="13812345678")
            assert time.monotonic() - started < 0.1  # a cache hit: no network at all
            assert again == found
            # A number never looked up: the centre is down, so nothing (within the short wait).
            started = time.monotonic()
            assert pm.hook.lookup_customer(number_e164="+8613700002222", number_raw="") is None
            assert time.monotonic() - started < config.central.lookup_timeout + 0.2
        finally:
            plugin.close()
            pm.unregister(name=PLUGIN_NAME)

        # The seat restarts with the centre still down: the card comes from the cache file.
        assert (seat_dir / CACHE_NAME).exists()
        cache = CardCache(seat_dir / CACHE_NAME)
        assert cache.load() == 2  # the card, and "no customer" for south's number
        restarted = CentreLookup(client, cache, ttl=0.0, timeout=0.3)  # stale at once: it still answers
        try:
            card_after = restarted.lookup_customer(NUMBER, "13812345678")
            assert card_after == found
        finally:
            restarted.close()
            client.close()
            seat_engine.dispose()
    finally:
        if not stopped:
            stop(process)


def test_a_seats_card_carries_the_calls_other_seats_of_its_team_made(tmp_path: Path) -> None:
    """Seat-7 has never called the number; seat-8 (same team) has, and seat-9 (south) too."""
    centre_dir, seat_dir = tmp_path / "centre", tmp_path / "seat"
    process, address = start_centre(centre_dir)
    try:
        north = _token(centre_dir, "seat-7", "north")
        other = _token(centre_dir, "seat-8", "north")
        south = _token(centre_dir, "seat-9", "south")
        _customers(centre_dir)
        _send_calls(address, other, "seat-8", "north", "alice", 0)
        _send_calls(address, south, "seat-9", "south", "bob", 3)

        config = _seat_config(seat_dir, address, north)
        client = make_client(config)
        plugin = CentreLookup(client, CardCache(seat_dir / CACHE_NAME), ttl=60.0, timeout=5.0)
        try:
            assert plugin.team_calls(NUMBER) == ()  # nothing asked yet: nothing made up
            found = plugin.lookup_customer(NUMBER, "13812345678")
            assert found is not None
            assert found.name == "Zhang San"
            calls = plugin.team_calls(NUMBER)
            # Seat-8's three calls, newest first, with its rep and notes; south's never.
            assert [c.uuid for c in calls] == [UUID.format(n) for n in (2, 1, 0)]
            assert {(c.seat, c.rep) for c in calls} == {("seat-8", "alice")}
            assert [c.notes for c in calls] == ["note 2", "note 1", "note 0"]
            assert all(c.started_at.tzinfo is not None and not c.has_recording for c in calls)
        finally:
            plugin.close()
        # The calls were kept with the card: the seat restarted offline still shows them.
        assert stop(process) == 0
        cache = CardCache(seat_dir / CACHE_NAME)
        assert cache.load() == 1
        restarted = CentreLookup(client, cache, ttl=0.0, timeout=0.3)
        try:
            assert [c.uuid for c in restarted.team_calls(NUMBER)] == [UUID.format(n) for n in (2, 1, 0)]
        finally:
            restarted.close()
            client.close()
    finally:
        if process.poll() is None:
            stop(process)
