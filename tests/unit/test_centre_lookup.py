"""Team-wide customer lookups: the centre's query and route, and the seat's cached ``centre`` plugin."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from factories import T0, ended, make_call
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.testclient import TestClient

from agent import hookimpl
from agent.centre.api import SeatApiContext, seat_api_routes
from agent.centre.api.context import SeatApiMetrics
from agent.config import Config
from agent.events import Customer
from agent.plugins import make_plugin_manager
from agent.seat.centre_client import CentreClient, CentreRefused, CentreUnavailable
from agent.seat.centre_lookup import (
    CACHE_NAME,
    CardCache,
    CardError,
    CentreLookup,
    ownership,
    register_centre_lookup,
    team_calls,
)
from storage.db import make_engine, upgrade
from storage.lookup import LookupScope, customer_for_number, last_calls
from storage.models import CustomerPhone, CustomerRecord, Rep, Team
from storage.plugin import SqlStore
from storage.repository import save_note, upsert_call
from storage.seats import add_seat, revoke_seat

NUMBER = "+8613812345678"
OTHER = "+8613900001111"
UUID = "2b1f0c7e-aaaa-4bbb-8ccc-{:012d}"


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    upgrade(eng)
    yield eng
    eng.dispose()


def _floor(engine: Engine) -> None:
    """Two teams, a customer of each, one in the pool; calls of the number from seats of both teams."""
    with Session(engine) as session, session.begin():
        north, south = Team(name="north"), Team(name="south")
        session.add_all([north, south])
        session.flush()
        session.add_all([Rep(name="alice", team_id=north.id), Rep(name="bob", team_id=south.id)])
        for name, owner, number in [
            ("Zhang San", "alice", NUMBER),
            ("Li Si", "bob", OTHER),
            ("Wang Wu", None, "+8613700002222"),
            ("Zhao Liu", "ghost", "+8613600003333"),  # an owner the centre has no rep row for
        ]:
            customer = CustomerRecord(name=name, company=f"{name} Ltd", owner_rep=owner)
            customer.phones.append(CustomerPhone(number_e164=number, number_raw=number[3:]))
            session.add(customer)
        calls = [
            # (n, seat, team, rep, minutes after T0)
            (1, "seat-7", "north", "alice", 0),
            (2, "seat-8", "north", "carol", 10),
            (3, "seat-9", "south", "bob", 20),  # another team's: never shown to north
            (4, "seat-7", "north", "alice", 30),
            (5, "seat-8", "north", "carol", 40),
            (6, "seat-8", "north", "carol", 50),
            (7, "seat-7", "north", "alice", 60),
            (8, "seat-9", "south", "bob", 70),
        ]
        for n, seat, team, rep, minutes in calls:
            call = make_call(
                UUID.format(n), seat=seat, team=team, rep=rep, started_at=T0 + timedelta(minutes=minutes)
            )
            upsert_call(session, ended(call, talk=float(n)))
        save_note(session, UUID.format(7), "回电 next week", None)
        # A call of another number: never in this number's card.
        upsert_call(session, ended(make_call(UUID.format(9), seat="seat-7", number_e164=OTHER)))


# -- storage/lookup.py --------------------------------------------------------------------------


def test_a_team_sees_its_own_calls_newest_first_at_most_five(engine: Engine) -> None:
    _floor(engine)
    with Session(engine) as session:
        calls = last_calls(session, NUMBER, LookupScope(seat="seat-7", team="north"))
    assert [c.uuid for c in calls] == [UUID.format(n) for n in (7, 6, 5, 4, 2)]
    assert {c.seat for c in calls} == {"seat-7", "seat-8"}
    assert calls[0].notes == "回电 next week"
    assert calls[0].talk_seconds == 7.0
    assert calls[0].started_at.tzinfo is not None


def test_another_teams_calls_never_appear(engine: Engine) -> None:
    _floor(engine)
    with Session(engine) as session:
        south = last_calls(session, NUMBER, LookupScope(seat="seat-9", team="south"))
        north = last_calls(session, NUMBER, LookupScope(seat="seat-7", team="north"), limit=50)
    assert [c.uuid for c in south] == [UUID.format(8), UUID.format(3)]
    assert not {c.uuid for c in north} & {UUID.format(3), UUID.format(8)}


def test_a_seat_without_a_team_sees_its_own_seats_calls_only(engine: Engine) -> None:
    _floor(engine)
    with Session(engine) as session:
        calls = last_calls(session, NUMBER, LookupScope(seat="seat-7", team=None))
    assert [c.uuid for c in calls] == [UUID.format(n) for n in (7, 4, 1)]


def test_customers_of_the_team_and_the_pool_are_visible_no_others(engine: Engine) -> None:
    _floor(engine)
    north = LookupScope(seat="seat-7", team="north")
    lone = LookupScope(seat="seat-7", team=None)
    with Session(engine) as session:
        mine = customer_for_number(session, NUMBER, north)
        assert mine is not None
        assert (mine.name, mine.company, mine.owner_rep, mine.status) == (
            "Zhang San",
            "Zhang San Ltd",
            "alice",
            "owned",
        )
        assert customer_for_number(session, OTHER, north) is None  # south's customer
        pool = customer_for_number(session, "+8613700002222", north)
        assert pool is not None
        assert (pool.owner_rep, pool.status) == (None, "pool")
        assert customer_for_number(session, "+8613600003333", north) is None  # owner in no team
        assert customer_for_number(session, NUMBER, lone) is None
        assert customer_for_number(session, "+8613700002222", lone) is not None
        assert customer_for_number(session, "+8613199999999", north) is None


def test_each_part_is_one_query_on_an_index(engine: Engine) -> None:
    _floor(engine)
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    scope = LookupScope(seat="seat-7", team="north")
    with Session(engine) as session:
        customer_for_number(session, NUMBER, scope)
        assert len(statements) == 1
        last_calls(session, NUMBER, scope)
        assert len(statements) == 2
    event.remove(engine, "before_cursor_execute", record)
    with engine.connect() as conn:
        plans = [
            " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
            for sql, params in statements
        ]
    assert "customer_phones USING INDEX" in plans[0]
    assert "number_e164" in plans[0]
    assert "calls USING INDEX ix_calls_number_e164" in plans[1]


# -- GET /api/v1/lookup -------------------------------------------------------------------------


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def centre(engine: Engine, registry: CollectorRegistry) -> TestClient:
    ctx = SeatApiContext(engine=engine, metrics=SeatApiMetrics(registry), region="CN")
    return TestClient(Starlette(routes=seat_api_routes(ctx)), base_url="http://centre.test")


def _token(engine: Engine, name: str = "seat-7", team: str | None = "north") -> str:
    with Session(engine) as session, session.begin():
        return add_seat(session, name, team)[1]


def _get(client: TestClient, token: str | None, number: str | None) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    params = {"number": number} if number is not None else {}
    return client.get("/api/v1/lookup", params=params, headers=headers)


def test_the_route_answers_the_card_within_the_seats_team(
    engine: Engine, centre: TestClient, registry: CollectorRegistry
) -> None:
    _floor(engine)
    answer = _get(centre, _token(engine), NUMBER)
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    card = answer.json()
    assert card["number"] == NUMBER
    assert card["customer"] == {
        "id": card["customer"]["id"],
        "name": "Zhang San",
        "company": "Zhang San Ltd",
        "owner_rep": "alice",
        "status": "owned",
    }
    assert [c["uuid"] for c in card["calls"]] == [UUID.format(n) for n in (7, 6, 5, 4, 2)]
    assert set(card["calls"][0]) == {
        "uuid", "started_at", "direction", "seat", "rep", "talk_seconds", "disposition", "notes",
        "has_recording",
    }  # fmt: skip
    assert card["calls"][0]["notes"] == "回电 next week"
    assert card["calls"][0]["disposition"] == "answered"
    assert card["as_of"].endswith("+00:00")
    assert registry.get_sample_value("cti_centre_lookups_total", {"result": "found"}) == 1.0


def test_another_teams_seat_gets_its_own_view(engine: Engine, centre: TestClient) -> None:
    _floor(engine)
    card = _get(centre, _token(engine, "seat-9", "south"), NUMBER).json()
    assert card["customer"] is None  # alice's customer, team north
    assert [c["uuid"] for c in card["calls"]] == [UUID.format(8), UUID.format(3)]
    assert all(c["seat"] == "seat-9" for c in card["calls"])


def test_a_national_number_is_read_in_the_centres_region(
    engine: Engine, centre: TestClient, registry: CollectorRegistry
) -> None:
    _floor(engine)
    token = _token(engine)
    assert _get(centre, token, "138 1234 5678").json()["number"] == NUMBER
    assert _get(centre, token, "+86 139 0000 1111").json()["customer"] is None
    assert registry.get_sample_value("cti_centre_lookups_total", {"result": "not_found"}) == 1.0


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        (None, "give the number"),
        ("", "give the number"),
        ("12345", "not a valid phone number"),
        ("call me", "not a valid phone number"),
        ("+1" + "2" * 80, "too long"),
    ],
)
def test_a_number_that_is_not_one_is_400_with_its_reason(
    engine: Engine, centre: TestClient, number: str | None, reason: str
) -> None:
    answer = _get(centre, _token(engine), number)
    assert answer.status_code == 400
    assert reason in answer.json()["error"]


def test_a_revoked_wrong_or_missing_token_is_401(
    engine: Engine, centre: TestClient, registry: CollectorRegistry
) -> None:
    _floor(engine)
    token = _token(engine)
    assert _get(centre, token, NUMBER).status_code == 200
    with Session(engine) as session, session.begin():
        revoke_seat(session, "seat-7")
    assert _get(centre, token, NUMBER).status_code == 401
    assert _get(centre, "cti_seat_nope", NUMBER).status_code == 401
    missing = _get(centre, None, NUMBER)
    assert missing.status_code == 401
    assert "customer" not in missing.json()
    assert registry.get_sample_value("cti_centre_auth_failures_total", {"reason": "unknown"}) == 2.0


def test_the_seats_client_reads_the_card(engine: Engine, centre: TestClient) -> None:
    _floor(engine)
    client = CentreClient("http://centre.test", _token(engine), client=centre)
    card = client.lookup(NUMBER, timeout=5.0)
    assert card["customer"]["name"] == "Zhang San"
    revoked = CentreClient("http://centre.test", "cti_seat_nope", client=centre)
    with pytest.raises(CentreRefused):
        revoked.lookup(NUMBER)


# -- agent/seat/centre_lookup.py ----------------------------------------------------------------


def _card(number: str, name: str | None = "Zhang San", owner: str | None = "alice") -> dict[str, Any]:
    customer = None
    if name is not None:
        customer = {"id": 41, "name": name, "company": "Acme", "owner_rep": owner, "status": "owned"}
    return {"number": number, "customer": customer, "calls": [], "as_of": "2026-12-03T09:00:00+00:00"}


class FakeCentre:
    """A :class:`~agent.seat.centre_lookup.LookupClient` whose answers a test sets, counting requests."""

    def __init__(self) -> None:
        self.cards: dict[str, dict[str, Any]] = {}
        self.down = False
        self.delay = 0.0
        self.asked: list[str] = []
        self.release = threading.Event()

    def lookup(self, number: str, *, timeout: float | None = None) -> dict[str, Any]:
        self.asked.append(number)
        if self.delay:
            self.release.wait(self.delay)
        if self.down:
            raise CentreUnavailable("the centre at http://centre.test is unreachable: refused")
        return self.cards.get(number) or _card(number, None)


class Clock:
    def __init__(self) -> None:
        self.now = 1_780_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeCentre:
    centre = FakeCentre()
    centre.cards[NUMBER] = _card(NUMBER)
    return centre


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_plugin(tmp_path: Path, fake: FakeCentre, clock: Clock) -> Iterator[Callable[..., CentreLookup]]:
    made: list[CentreLookup] = []

    def make(**kwargs: Any) -> CentreLookup:
        cache = kwargs.pop("cache", None)
        if cache is None:  # not `or`: an empty cache is falsy (it has a length)
            cache = CardCache(tmp_path / CACHE_NAME)
        cache.load()
        plugin = CentreLookup(kwargs.pop("client", fake), cache, clock=clock, **kwargs)
        made.append(plugin)
        return plugin

    yield make
    for plugin in made:
        plugin.close()


def _wait(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_miss_asks_the_centre_and_a_hit_answers_without_it(
    make_plugin: Callable[..., CentreLookup], fake: FakeCentre
) -> None:
    plugin = make_plugin()
    customer = plugin.lookup_customer(NUMBER, "13812345678")
    assert customer == Customer(
        id=41, name="Zhang San", company="Acme", owner_rep="alice", status="owned", source="centre"
    )
    assert fake.asked == [NUMBER]
    fake.down = True  # a hit must not touch the network at all
    assert plugin.lookup_customer(NUMBER, "13812345678") == customer
    assert fake.asked == [NUMBER]
    assert plugin.stats.hits == 1


def test_a_raw_number_is_normalised_and_an_unreadable_one_is_not_asked(
    make_plugin: Callable[..., CentreLookup], fake: FakeCentre
) -> None:
    plugin = make_plugin(region="CN")
    assert plugin.lookup_customer(None, "13812345678") is not None
    assert plugin.lookup_customer(None, "0") is None
    assert fake.asked == [NUMBER]


def test_a_stale_card_answers_at_once_and_is_refreshed_behind(
    make_plugin: Callable[..., CentreLookup], fake: FakeCentre, clock: Clock
) -> None:
    plugin = make_plugin(ttl=60.0)
    assert plugin.lookup_customer(NUMBER, "") is not None
    clock.now += 61
    fake.cards[NUMBER] = _card(NUMBER, owner="carol")
    fake.delay = 5.0  # the refresh is slow: the pop must not wait for it
    started = time.monotonic()
    stale = plugin.lookup_customer(NUMBER, "")
    assert time.monotonic() - started < 0.1
    assert stale is not None
    assert stale.owner_rep == "alice"
    fake.release.set()
    _wait(lambda: len(fake.asked) == 2 and not plugin._in_flight)
    refreshed = plugin.lookup_customer(NUMBER, "")
    assert refreshed is not None
    assert refreshed.owner_rep == "carol"


def test_centre_down_answers_the_last_known_card(
    make_plugin: Callable[..., CentreLookup], fake: FakeCentre, clock: Clock
) -> None:
    plugin = make_plugin(ttl=60.0)
    assert plugin.lookup_customer(NUMBER, "") is not None
    fake.down = True
    clock.now += 3600
    card = plugin.lookup_customer(NUMBER, "")
    assert card is not None
    assert card.name == "Zhang San"
    _wait(lambda: plugin.stats.failures == 1)


def test_centre_down_and_no_card_lets_the_next_plugin_answer(
    make_plugin: Callable[..., CentreLookup], fake: FakeCentre, engine: Engine
) -> None:
    fake.down = True
    plugin = make_plugin()
    assert plugin.lookup_customer(NUMBER, "") is None
    pm = make_plugin_manager(load_entrypoints=False, builtins=False)
    pm.register(plugin, name="centre")

    class Local:
        @hookimpl
        def lookup_customer(self, number_e164: str | None, number_raw: str) -> Customer | None:
            return Customer(name="Local", source="sql")

    pm.register(Local(), name="sql")
    assert pm.hook.lookup_customer(number_e164=OTHER, number_raw="").name == "Local"


def test_a_failure_quiets_the_centre_for_a_while(
    make_plugin: Callable[..., CentreLookup], fake: FakeCentre, clock: Clock
) -> None:
    fake.down = True
    plugin = make_plugin(retry_after=10.0)
    assert plugin.lookup_customer(NUMBER, "") is None
    assert plugin.lookup_customer(OTHER, "") is None  # not asked: the centre just failed
    assert fake.asked == [NUMBER]
    clock.now += 11
    fake.down = False
    assert plugin.lookup_customer(NUMBER, "") is not None


def test_the_wait_for_the_centre_is_bounded_and_a_late_answer_is_kept(
    make_plugin: Callable[..., CentreLookup], fake: FakeCentre
) -> None:
    fake.delay = 10.0
    plugin = make_plugin(timeout=0.2)
    started = time.monotonic()
    assert plugin.lookup_customer(NUMBER, "") is None
    waited = time.monotonic() - started
    assert 0.15 < waited < 0.5
    assert plugin.stats.timeouts == 1
    fake.release.set()  # the answer arrives late: the next call has it
    _wait(lambda: len(plugin.cache) == 1)
    card = plugin.lookup_customer(NUMBER, "")
    assert card is not None
    assert card.name == "Zhang San"


def test_an_answer_for_another_number_is_never_shown(
    make_plugin: Callable[..., CentreLookup], fake: FakeCentre
) -> None:
    fake.cards[NUMBER] = _card(OTHER)
    plugin = make_plugin()
    assert plugin.lookup_customer(NUMBER, "") is None
    assert len(plugin.cache) == 0


def test_a_malformed_customer_is_not_kept(make_plugin: Callable[..., CentreLookup], fake: FakeCentre) -> None:
    fake.cards[NUMBER] = {"number": NUMBER, "customer": {"id": "7", "name": "X"}}
    plugin = make_plugin()
    assert plugin.lookup_customer(NUMBER, "") is None
    assert len(plugin.cache) == 0


def test_no_customer_is_remembered_but_asked_again_when_stale(
    make_plugin: Callable[..., CentreLookup], fake: FakeCentre, clock: Clock
) -> None:
    plugin = make_plugin(ttl=60.0)
    assert plugin.lookup_customer(OTHER, "") is None
    assert plugin.lookup_customer(OTHER, "") is None
    assert fake.asked == [OTHER]
    clock.now += 61
    fake.cards[OTHER] = _card(OTHER, "Li Si")
    card = plugin.lookup_customer(OTHER, "")
    assert card is not None
    assert card.name == "Li Si"


def test_the_cache_is_bounded(
    tmp_path: Path, make_plugin: Callable[..., CentreLookup], fake: FakeCentre
) -> None:
    numbers = [f"+86138000000{n:02d}" for n in range(10)]
    for number in numbers:
        fake.cards[number] = _card(number, f"Customer {number[-2:]}")
    cache = CardCache(tmp_path / CACHE_NAME, max_entries=4)
    plugin = make_plugin(cache=cache)
    for number in numbers:
        assert plugin.lookup_customer(number, "") is not None
    plugin.lookup_customer(numbers[6], "")  # used again: the last to go
    assert len(cache) == 4
    plugin.close()
    kept = json.loads((tmp_path / CACHE_NAME).read_text(encoding="utf-8"))["cards"]
    assert [c["number"] for c in kept] == [numbers[n] for n in (7, 8, 9, 6)]


def test_the_cache_survives_a_restart(
    tmp_path: Path, make_plugin: Callable[..., CentreLookup], fake: FakeCentre
) -> None:
    first = make_plugin()
    assert first.lookup_customer(NUMBER, "") is not None
    first.close()
    path = tmp_path / CACHE_NAME
    assert path.stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob(".*.tmp"))
    fake.down = True
    second = make_plugin(cache=CardCache(path))
    card = second.lookup_customer(NUMBER, "")
    assert card is not None
    assert (card.name, card.owner_rep, card.status) == ("Zhang San", "alice", "owned")


def test_a_damaged_cache_file_is_ignored_and_bad_entries_skipped(tmp_path: Path) -> None:
    path = tmp_path / CACHE_NAME
    path.write_text("{not json", encoding="utf-8")
    assert CardCache(path).load() == 0
    good = {"number": NUMBER, "fetched_at": 1.0, "customer": {"id": 1, "name": "Zhang San"}}
    bad = [
        {"number": "13812345678", "fetched_at": 1.0, "customer": None},  # not E.164
        {"number": OTHER, "fetched_at": "yesterday", "customer": None},
        {"number": OTHER, "fetched_at": 1.0, "customer": {"name": 5}},
        "nothing",
    ]
    path.write_text(json.dumps({"version": 1, "cards": [good, *bad]}), encoding="utf-8")
    cache = CardCache(path)
    assert cache.load() == 1
    card = cache.get(NUMBER)
    assert card is not None
    assert card.customer is not None
    assert card.customer.name == "Zhang San"
    path.write_text(json.dumps({"version": 99, "cards": [good]}), encoding="utf-8")
    assert CardCache(path).load() == 0


def test_the_centre_answers_before_the_seats_own_customers(tmp_path: Path, engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        local = CustomerRecord(name="Local Name", owner_rep="alice")
        local.phones.append(CustomerPhone(number_e164=NUMBER, number_raw="13812345678"))
        session.add(local)
    fake = FakeCentre()
    fake.cards[NUMBER] = _card(NUMBER, "Centre Name")
    config = Config.model_validate(
        {
            "agent": {"data_dir": str(tmp_path / "seat"), "lookup_timeout": 3.0},
            "central": {"lookup_timeout": 0.3},
        }
    )
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(SqlStore(engine), name="sql")  # registered first, as the runner does
    plugin = register_centre_lookup(pm, config, fake)
    assert plugin is not None
    try:
        assert plugin.timeout == 0.3
        assert plugin.cache.path == tmp_path / "seat" / CACHE_NAME
        found = pm.hook.lookup_customer(number_e164=NUMBER, number_raw="13812345678")
        assert (found.name, found.source) == ("Centre Name", "centre")
    finally:
        plugin.close()


def test_the_centre_first_whichever_registers_first(tmp_path: Path, engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        local = CustomerRecord(name="Local Name")
        local.phones.append(CustomerPhone(number_e164=OTHER, number_raw="13900001111"))
        session.add(local)
    fake = FakeCentre()
    fake.cards[NUMBER] = _card(NUMBER, "Centre Name")
    config = Config.model_validate({"agent": {"data_dir": str(tmp_path)}})
    pm = make_plugin_manager(load_entrypoints=False)
    plugin = register_centre_lookup(pm, config, fake)
    assert plugin is not None
    pm.register(SqlStore(engine), name="sql")  # registered after the centre
    try:
        assert pm.hook.lookup_customer(number_e164=NUMBER, number_raw="").source == "centre"
        # The centre knows no customer for OTHER: the seat's own customers answer it.
        assert pm.hook.lookup_customer(number_e164=OTHER, number_raw="").name == "Local Name"
        assert fake.asked == [NUMBER, OTHER]
    finally:
        plugin.close()


def test_a_blocked_plugin_is_not_registered_and_a_long_wait_is_held_down(tmp_path: Path) -> None:
    config = Config.model_validate(
        {"agent": {"data_dir": str(tmp_path), "lookup_timeout": 1.0}, "central": {"lookup_timeout": 2.0}}
    )
    blocked = make_plugin_manager(load_entrypoints=False, builtins=False, disabled=["centre"])
    assert register_centre_lookup(blocked, config, FakeCentre()) is None
    pm = make_plugin_manager(load_entrypoints=False, builtins=False)
    plugin = register_centre_lookup(pm, config, FakeCentre())
    assert plugin is not None
    assert plugin.timeout == 0.5
    plugin.close()


def test_the_sql_ids_of_a_centre_card_are_not_stored(engine: Engine) -> None:
    """The centre's customer id is not a row of the seat's ``customers``: the call keeps the name only."""
    customer = Customer(id=41, name="Zhang San", source="centre", status="owned")
    call = make_call(UUID.format(1)).with_customer(customer)
    assert call.customer_id is None
    assert call.customer is not None
    assert (call.customer_name, call.customer.status) == ("Zhang San", "owned")
    with Session(engine) as session, session.begin():
        upsert_call(session, call)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT customer_id FROM calls")).scalar_one() is None


def test_a_seat_registered_with_an_empty_team_sees_only_its_own_calls(
    engine: Engine, centre: TestClient
) -> None:
    """Teamless seats write ``team = ""`` into their calls; an empty team must not gather them all."""
    with Session(engine) as session, session.begin():
        for n, seat in ((1, "seat-a"), (2, "seat-b")):
            upsert_call(session, ended(make_call(UUID.format(n), seat=seat, team="")))
    card = _get(centre, _token(engine, "seat-a", ""), NUMBER).json()
    assert [c["uuid"] for c in card["calls"]] == [UUID.format(1)]


def test_an_empty_owner_is_the_pool(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        customer = CustomerRecord(name="Nobody's yet", owner_rep="")
        customer.phones.append(CustomerPhone(number_e164=NUMBER, number_raw="13812345678"))
        session.add(customer)
    with Session(engine) as session:
        found = customer_for_number(session, NUMBER, LookupScope(seat="seat-7", team="north"))
    assert found is not None
    assert (found.owner_rep, found.status) == (None, "pool")
    assert CardCache(None)  # an empty cache is still a cache


def _team_call(n: int, **fields: Any) -> dict[str, Any]:
    call = {
        "uuid": UUID.format(n),
        "started_at": f"2026-12-03T0{n}:00:00+00:00",
        "direction": "in",
        "seat": "seat-9",
        "rep": "bob",
        "talk_seconds": 61.5,
        "disposition": "answered",
        "notes": "asked for a quote",
        "has_recording": True,
    }
    call.update(fields)
    return call


def test_the_teams_calls_are_kept_with_the_card_and_survive_a_restart(
    tmp_path: Path, make_plugin: Callable[..., CentreLookup], fake: FakeCentre
) -> None:
    fake.cards[NUMBER]["calls"] = [_team_call(1), _team_call(3), _team_call(2, talk_seconds=None)]
    first = make_plugin()
    assert first.team_calls(NUMBER) == ()  # nothing asked yet: the card's calls come with the card
    assert first.lookup_customer(NUMBER, "") is not None
    calls = first.team_calls(NUMBER)
    assert [c.uuid for c in calls] == [UUID.format(n) for n in (3, 2, 1)]  # newest first
    assert (calls[0].seat, calls[0].rep, calls[0].talk_seconds, calls[0].has_recording) == (
        "seat-9",
        "bob",
        61.5,
        True,
    )
    assert calls[1].talk_seconds is None
    assert first.team_calls(OTHER) == ()
    first.close()
    fake.down = True
    second = make_plugin(cache=CardCache(tmp_path / CACHE_NAME))
    assert second.team_calls(NUMBER) == calls


def test_new_calls_alone_are_worth_a_write_of_the_cache(tmp_path: Path) -> None:
    cache = CardCache(tmp_path / CACHE_NAME)
    customer = Customer(id=1, name="Zhang San", source="centre")
    assert cache.put(NUMBER, customer, 1.0) is True
    assert cache.put(NUMBER, customer, 2.0) is False
    assert cache.put(NUMBER, customer, 3.0, team_calls([_team_call(1)])) is True


def test_a_malformed_team_call_is_skipped_and_the_rest_kept() -> None:
    calls = team_calls(
        [
            _team_call(1),
            _team_call(2, started_at="2026-12-03T02:00:00"),  # no zone: which day is it?
            _team_call(3, started_at="yesterday"),
            _team_call(4, uuid=""),
            _team_call(5, talk_seconds="long"),
            _team_call(6, notes="x" * 5000),
            "nothing",
        ]
    )
    assert [c.uuid for c in calls] == [UUID.format(6), UUID.format(1)]
    assert calls[0].notes is not None
    assert len(calls[0].notes) == 2000
    assert team_calls(None) == ()


def test_a_cache_written_before_cards_kept_calls_still_loads(tmp_path: Path) -> None:
    path = tmp_path / CACHE_NAME
    old = {"number": NUMBER, "fetched_at": 1.0, "customer": {"id": 1, "name": "Zhang San"}}
    path.write_text(json.dumps({"version": 1, "cards": [old]}), encoding="utf-8")
    cache = CardCache(path)
    assert cache.load() == 1
    card = cache.get(NUMBER)
    assert card is not None
    assert card.calls == ()


def test_the_numbers_owner_is_kept_with_its_card_and_survives_a_restart(
    make_plugin: Callable[..., CentreLookup], fake: FakeCentre, tmp_path: Path
) -> None:
    owner = {"state": "protected", "owner_rep": "cai", "owner_team": "south",
             "until": "2026-12-30T00:00:00+00:00", "may_claim": False}  # fmt: skip
    fake.cards[OTHER] = {**_card(OTHER, name=None), "ownership": owner}
    plugin = make_plugin()
    assert plugin.lookup_customer(OTHER, "") is None  # another team's customer: hidden
    assert plugin.ownership(OTHER) == owner  # who owns it: shown
    plugin.close()
    again = make_plugin(cache=CardCache(plugin.cache.path))
    again.cache.load()
    assert again.ownership(OTHER) == owner


@pytest.mark.parametrize(
    "bad",
    [
        {"state": "mine"},
        {"state": "owned", "owner_rep": 7},
        {"state": "owned", "until": "2026-12-30"},
        "owned",
    ],
)
def test_an_ownership_that_is_not_one_is_refused(bad: object) -> None:
    with pytest.raises(CardError):
        ownership(bad)
