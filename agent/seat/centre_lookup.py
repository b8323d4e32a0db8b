"""The ``centre`` lookup plugin: the team's customer card from the centre, cached so the pop never waits.

:class:`CentreLookup` answers ``lookup_customer`` before the seat's local SQL plugin
(``tryfirst``), in this order:

1. a card in the cache answers at once, with no network; one older than ``ttl`` seconds is
   refreshed in the background for the next call;
2. otherwise the centre is asked (``GET /api/v1/lookup``) and waited for at most ``timeout``
   seconds, well under ``[agent] lookup_timeout`` so the next plugin still has time;
3. when the centre is down, too slow or refuses the seat, the last known card is answered from
   the cache; with no card, None, and the next plugin (the seat's own ``customers``) answers.
   After such a failure the centre is not asked for ``retry_after`` seconds (cached cards
   still answer), so a dead network costs one short wait, not one per call.

"No customer" from the centre is remembered too (the next plugin answers at once), but a stale
"no customer" is asked again rather than trusted: it is not a card worth showing.

The cache (:class:`CardCache`) is a JSON file in the seat's data directory, written under a
temporary name and renamed (a crash leaves the old file or the new one), readable by the
seat's user only, and bounded to ``max_entries`` numbers (least recently used dropped first).
It holds customer cards and the number's last calls team-wide (:class:`CardCall`, which the
seat page's card shows beside the seat's own); the centre's ids in them are not the seat's (the
call keeps the name, not the id: see :meth:`agent.events.Call.with_customer`).

:func:`register_centre_lookup` builds and registers the plugin for a seat in HTTP team mode.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent import hookimpl
from agent.errors import AgentError
from agent.events import Customer
from agent.numbers import DEFAULT_REGION, to_e164
from agent.seat.centre_client import CentreError, CentreRefused, CentreUnavailable
from storage.lookup import CardCall

if TYPE_CHECKING:
    import pluggy

    from agent.config import Config

logger = logging.getLogger(__name__)

#: The plugin's name in the plugin manager (``disabled_plugins = ["centre"]`` turns it off).
PLUGIN_NAME = "centre"
#: The cache's file in the seat's data directory.
CACHE_NAME = "centre-cards.json"
#: The cache file's format; a file of another version is ignored (it is only a cache).
CACHE_VERSION = 1
#: Seconds a card is fresh; an older one still answers, and is refreshed in the background.
TTL = 300.0
#: Numbers the cache keeps (a card is about 200 bytes in the file).
MAX_ENTRIES = 5000
#: Seconds the centre is not asked after it failed (cached cards still answer).
RETRY_AFTER = 10.0
#: Requests to the centre in flight at once (the rest answer from the cache or not at all).
MAX_IN_FLIGHT = 8

_E164 = re.compile(r"^\+[1-9]\d{5,14}$")
#: Longest text kept of a card's fields (the centre's columns are no longer than these).
_LIMITS = {
    "name": 200,
    "company": 200,
    "owner_rep": 100,
    "status": 32,
    "uuid": 64,
    "direction": 16,
    "seat": 100,
    "rep": 100,
    "disposition": 32,
    "notes": 2000,
}
#: Team calls kept per card (the centre sends at most five).
MAX_TEAM_CALLS = 10


class LookupClient(Protocol):
    """What the plugin needs of the centre's client (:class:`agent.seat.centre_client.CentreClient`)."""

    def lookup(self, number: str, *, timeout: float | None = None) -> dict[str, Any]:
        """The centre's card answer for an E.164 number (raises a ``CentreError`` on failure)."""


class CardError(AgentError):
    """The centre's answer is not a card for the number asked (nothing of it is kept)."""


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise CardError(f"the card's {key} is not text")
    return value[: _LIMITS[key]]


def customer_from_card(data: object) -> Customer | None:
    """The customer of a card's ``customer`` object (None for null), with ``source="centre"``.

    :raises CardError: not a customer object.
    """
    if data is None:
        return None
    if not isinstance(data, dict):
        raise CardError("the card's customer is not an object")
    customer_id = data.get("id")
    if customer_id is not None and (not isinstance(customer_id, int) or isinstance(customer_id, bool)):
        raise CardError("the card's customer id is not an integer")
    name = _text(data, "name")
    if not name:
        raise CardError("the card's customer has no name")
    return Customer(
        id=customer_id,
        name=name,
        company=_text(data, "company"),
        owner_rep=_text(data, "owner_rep"),
        status=_text(data, "status"),
        source=PLUGIN_NAME,
    )


def team_call(data: object) -> CardCall:
    """One entry of a card's ``calls``.

    :raises CardError: not a call object (no UUID, no tz-aware start, a field of the wrong type).
    """
    if not isinstance(data, dict):
        raise CardError("a call of the card is not an object")
    uuid, started = _text(data, "uuid"), data.get("started_at")
    if not uuid:
        raise CardError("a call of the card has no uuid")
    try:
        started_at = datetime.fromisoformat(started) if isinstance(started, str) else None
    except ValueError:
        started_at = None
    if started_at is None or started_at.tzinfo is None:
        raise CardError("a call of the card has no tz-aware start")
    talk = data.get("talk_seconds")
    if talk is not None and (not isinstance(talk, int | float) or isinstance(talk, bool)):
        raise CardError("a call's talk_seconds is not a number")
    return CardCall(
        uuid=uuid,
        started_at=started_at,
        direction=_text(data, "direction") or "",
        seat=_text(data, "seat") or "",
        rep=_text(data, "rep") or "",
        talk_seconds=float(talk) if talk is not None else None,
        disposition=_text(data, "disposition"),
        notes=_text(data, "notes"),
        has_recording=data.get("has_recording") is True,
    )


def team_calls(data: object) -> tuple[CardCall, ...]:
    """A card's ``calls``, newest first; an entry that is not a call is skipped and logged (the rest stay)."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise CardError("the card's calls are not a list")
    calls = []
    for entry in data[:MAX_TEAM_CALLS]:
        try:
            calls.append(team_call(entry))
        except CardError as exc:
            logger.warning("centre lookup: a call of the centre's card is skipped: %s", exc)
    return tuple(sorted(calls, key=lambda call: call.started_at, reverse=True))


OWNERSHIP_STATES = frozenset({"yours", "protected", "owned", "pool"})


def ownership(data: object) -> dict[str, Any] | None:
    """A card's ``ownership`` checked field by field (None: no customer has the number).

    :raises CardError: it is not an ownership (an unknown state, a name that is not text, a
        time that is not ISO 8601 with its offset).
    """
    if data is None:
        return None
    if not isinstance(data, dict) or data.get("state") not in OWNERSHIP_STATES:
        raise CardError("the card's ownership is not one")
    out: dict[str, Any] = {"state": data["state"], "may_claim": data.get("may_claim") is True}
    for name in ("owner_rep", "owner_team"):
        value = data.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > 100):
            raise CardError(f"the card's ownership {name} is not a name")
        out[name] = value
    until = data.get("until")
    if until is not None:
        try:
            moment = datetime.fromisoformat(until) if isinstance(until, str) else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise CardError("the card's ownership until is not a time with its offset")
    out["until"] = until
    return out


def parse_answer(number: str, data: dict[str, Any]) -> Customer | None:
    """The customer in the centre's lookup answer for ``number``.

    :raises CardError: the answer is for another number (never shown: it would be the wrong
        customer) or its customer is malformed.
    """
    if data.get("number") != number:
        raise CardError("the centre answered for another number")
    return customer_from_card(data.get("customer"))


@dataclass(slots=True)
class CachedCard:
    """A number's last answer from the centre: its customer (None: none), team calls, when (Unix time)."""

    customer: Customer | None
    fetched_at: float
    calls: tuple[CardCall, ...] = ()
    #: Who owns the number across the floor (:func:`ownership`); None: nobody's customer.
    owner: dict[str, Any] | None = None
    #: The number is on the floor's do-not-call list.
    do_not_call: bool = False

    def to_json(self, number: str) -> dict[str, Any]:
        """The entry as the cache file keeps it."""
        customer = None
        if self.customer is not None:
            c = self.customer
            customer = {
                "id": c.id,
                "name": c.name,
                "company": c.company,
                "owner_rep": c.owner_rep,
                "status": c.status,
            }
        return {
            "number": number,
            "fetched_at": self.fetched_at,
            "customer": customer,
            "calls": [call.to_dict() for call in self.calls],
            "ownership": self.owner,
            "do_not_call": self.do_not_call,
        }


class CardCache:
    """Cards by E.164 number, least recently used first, at most ``max_entries``; thread-safe.

    :param path: the file it is kept in (None: in memory only).
    """

    def __init__(self, path: Path | None, *, max_entries: int = MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.path = path
        self.max_entries = max_entries
        self._cards: OrderedDict[str, CachedCard] = OrderedDict()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()

    def __bool__(self) -> bool:
        """Always true: an empty cache is still a cache (``cache or CardCache(...)`` must keep it)."""
        return True

    def __len__(self) -> int:
        """How many numbers are kept."""
        with self._lock:
            return len(self._cards)

    def get(self, number: str) -> CachedCard | None:
        """The number's card (now the most recently used), or None."""
        with self._lock:
            card = self._cards.get(number)
            if card is not None:
                self._cards.move_to_end(number)
            return card

    def put(
        self,
        number: str,
        customer: Customer | None,
        fetched_at: float,
        calls: tuple[CardCall, ...] = (),
        owner: dict[str, Any] | None = None,
        do_not_call: bool = False,
    ) -> bool:
        """Keep the number's latest answer; True when what the file should hold changed.

        A refresh that brings the same customer and calls only moves its time (not worth a write on its own).
        """
        with self._lock:
            previous = self._cards.get(number)
            self._cards[number] = CachedCard(customer, fetched_at, calls, owner, do_not_call)
            self._cards.move_to_end(number)
            while len(self._cards) > self.max_entries:
                self._cards.popitem(last=False)
            return (
                previous is None
                or previous.customer != customer
                or previous.calls != calls
                or previous.owner != owner
                or previous.do_not_call != do_not_call
            )

    def load(self) -> int:
        """Read the file, if there is one; return how many cards it gave.

        A file that cannot be read or is not a cache of this version is logged and ignored
        (the centre fills the cache again); an entry that is not a valid card is skipped.
        """
        if self.path is None:
            return 0
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            logger.warning(
                "centre lookup: the card cache %s cannot be read (%s); starting empty", self.path, exc
            )
            return 0
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            logger.warning(
                "centre lookup: %s is not a card cache of version %d; starting empty",
                self.path,
                CACHE_VERSION,
            )
            return 0
        entries = data.get("cards")
        loaded: OrderedDict[str, CachedCard] = OrderedDict()
        skipped = 0
        for entry in entries if isinstance(entries, list) else []:
            try:
                number, card = _entry(entry)
            except CardError:
                skipped += 1
                continue
            loaded[number] = card
            loaded.move_to_end(number)
        while len(loaded) > self.max_entries:
            loaded.popitem(last=False)
        with self._lock:
            loaded.update(self._cards)  # what arrived since start-up is newer than the file
            self._cards = loaded
        if skipped:
            logger.warning(
                "centre lookup: %d entr(ies) of %s were not valid cards; skipped", skipped, self.path
            )
        return len(loaded)

    def save(self) -> None:
        """Write the cache to its file: under a temporary name, then renamed (mode 0600).

        :raises OSError: the file cannot be written (the cards stay in memory).
        """
        if self.path is None:
            return
        with self._write_lock:  # one writer at a time: both would use the same temporary name
            with self._lock:
                cards = [card.to_json(number) for number, card in self._cards.items()]
            body = json.dumps({"version": CACHE_VERSION, "cards": cards}, ensure_ascii=False)
            temporary = self.path.with_name(f".{self.path.name}.tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(body)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temporary, self.path)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise


def _entry(data: object) -> tuple[str, CachedCard]:
    if not isinstance(data, dict):
        raise CardError("not an object")
    number, fetched_at = data.get("number"), data.get("fetched_at")
    if not isinstance(number, str) or not _E164.match(number):
        raise CardError("not an E.164 number")
    if not isinstance(fetched_at, int | float) or isinstance(fetched_at, bool):
        raise CardError("no time")
    # A cache written before cards kept calls has none: the next refresh brings them.
    return number, CachedCard(
        customer_from_card(data.get("customer")),
        float(fetched_at),
        team_calls(data.get("calls")),
        ownership(data.get("ownership")),
        data.get("do_not_call") is True,
    )


@dataclass(slots=True)
class LookupStats:
    """What the plugin did since it started (for tests, benchmarks and a log line)."""

    hits: int = 0
    stale_hits: int = 0
    fetched: int = 0
    failures: int = 0
    timeouts: int = 0
    skipped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, name: str) -> None:
        """Add one to a counter."""
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)


class CentreLookup:
    """The ``lookup_customer`` plugin asking the centre, with the card cache in front (see the module).

    :param client: the seat's client of the centre.
    :param cache: where cards are kept (:meth:`CardCache.load` it first to use the last run's).
    :param timeout: seconds a lookup waits for the centre.
    :param ttl: seconds a card is fresh.
    :param retry_after: seconds the centre is left alone after a failure.
    :param region: the seat's region, to normalise a raw number the tracker could not.
    :param clock: Unix time now (the cache's times survive a restart, so wall-clock time).

    No thread starts until the first lookup; :meth:`close` stops them and writes the cache.
    """

    def __init__(
        self,
        client: LookupClient,
        cache: CardCache,
        *,
        timeout: float = 0.3,
        ttl: float = TTL,
        retry_after: float = RETRY_AFTER,
        region: str = DEFAULT_REGION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.client = client
        self.cache = cache
        self.timeout = timeout
        self.ttl = ttl
        self.retry_after = retry_after
        self.region = region
        self.clock = clock
        self.stats = LookupStats()
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight: dict[str, Future[Customer | None]] = {}
        self._quiet_until = 0.0
        self._save_pending = False
        self._closed = False

    @hookimpl(tryfirst=True)
    def lookup_customer(self, number_e164: str | None, number_raw: str) -> Customer | None:
        """The centre's customer for the number: from the cache at once, else the centre within ``timeout``.

        None (the next plugin answers) when the number cannot be normalised, the centre knows
        no customer for it, or the centre cannot answer in time and no card is cached.
        Blocks for at most ``timeout`` seconds; the runtime calls it in a worker thread.
        """
        number = number_e164 or to_e164(number_raw, self.region)
        if number is None:
            return None
        now = self.clock()
        card = self.cache.get(number)
        if card is not None:
            fresh = now - card.fetched_at < self.ttl
            if fresh:
                self.stats.count("hits")
                return card.customer
            if card.customer is not None:
                self.stats.count("stale_hits")
                self._start(number, now)  # for the next call; this one has its card
                return card.customer
        future = self._start(number, now)
        if future is None:
            self.stats.count("skipped")
            return None
        try:
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            self.stats.count("timeouts")
            self._quiet(now)
            logger.warning(
                "centre lookup: no answer from the centre within %.2f s; the next plugin answers",
                self.timeout,
            )
            return None  # the request goes on and fills the cache for the next call

    def _start(self, number: str, now: float) -> Future[Customer | None] | None:
        """The number's request to the centre (one in flight per number), or None when not to ask now."""
        with self._lock:
            if self._closed:
                return None
            running = self._in_flight.get(number)
            # A finished request may linger here until its callback runs: ask again, not it.
            if running is not None and not running.done():
                return running
            if now < self._quiet_until or len(self._in_flight) >= MAX_IN_FLIGHT:
                return None
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=MAX_IN_FLIGHT, thread_name_prefix="centre-lookup"
                )
            future = self._executor.submit(self._fetch, number)
            self._in_flight[number] = future
        future.add_done_callback(lambda done: self._done(number, done))
        return future

    def _done(self, number: str, future: Future[Customer | None]) -> None:
        with self._lock:
            if self._in_flight.get(number) is future:  # not a newer request for the number
                del self._in_flight[number]

    def _quiet(self, now: float) -> None:
        with self._lock:
            self._quiet_until = max(self._quiet_until, now + self.retry_after)

    def _fetch(self, number: str) -> Customer | None:
        """Ask the centre and keep its answer; never raises (a failure is logged and answers None)."""
        try:
            answer = self.client.lookup(number, timeout=self.timeout)
            customer = parse_answer(number, answer)
            calls = team_calls(answer.get("calls"))
            owner = ownership(answer.get("ownership"))
        except (CentreUnavailable, CentreRefused) as exc:
            self.stats.count("failures")
            self._quiet(self.clock())
            logger.warning("centre lookup: %s; cached cards answer for %.0f s", exc, self.retry_after)
            return self._cached(number)
        except (CentreError, CardError) as exc:
            self.stats.count("failures")
            logger.warning("centre lookup: the centre's answer is not used: %s", exc)
            return self._cached(number)
        except Exception:  # a bug must not kill the worker or reach the pop
            self.stats.count("failures")
            logger.exception("centre lookup: asking the centre failed")
            return self._cached(number)
        self.stats.count("fetched")
        if self.cache.put(number, customer, self.clock(), calls, owner, answer.get("do_not_call") is True):
            self._schedule_save()
        return customer

    def team_calls(self, number_e164: str) -> tuple[CardCall, ...]:
        """The number's last calls team-wide as the centre last told (from the cache: never waits)."""
        card = self.cache.get(number_e164)
        return card.calls if card is not None else ()

    def ownership(self, number_e164: str) -> dict[str, Any] | None:
        """Who owns the number across the floor as the centre last told (from the cache: never waits)."""
        card = self.cache.get(number_e164)
        return card.owner if card is not None else None

    def do_not_call(self, number_e164: str) -> bool:
        """Whether the number was on the do-not-call list when the centre last told (never waits)."""
        card = self.cache.get(number_e164)
        return card is not None and card.do_not_call

    def _cached(self, number: str) -> Customer | None:
        card = self.cache.get(number)
        return card.customer if card is not None else None

    def _schedule_save(self) -> None:
        """Write the cache soon, in a worker (many new cards at once make one write)."""
        with self._lock:
            if self._save_pending or self._closed or self._executor is None:
                return
            self._save_pending = True
            self._executor.submit(self._save)

    def _save(self) -> None:
        with self._lock:
            self._save_pending = False
        try:
            self.cache.save()
        except OSError as exc:
            logger.warning("centre lookup: the card cache cannot be written: %s", exc)

    def close(self) -> None:
        """Stop asking the centre (requests in flight finish within ``timeout``) and write the cache."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        self._save()


def register_centre_lookup(
    pm: pluggy.PluginManager, config: Config, client: LookupClient
) -> CentreLookup | None:
    """Build the ``centre`` lookup plugin for this seat, load its cache and register it (None if blocked).

    Call it when the seat is in HTTP team mode (``[central] url`` names a centre), with the
    seat's client of the centre; call the plugin's :meth:`CentreLookup.close` at shutdown.
    The wait for the centre is ``[central] lookup_timeout``, held to half of ``[agent]
    lookup_timeout`` so the seat's own lookup still answers when the centre does not.
    """
    if pm.is_blocked(PLUGIN_NAME):
        return None
    timeout = config.central.lookup_timeout
    ceiling = config.agent.lookup_timeout / 2
    if timeout > ceiling:
        logger.warning(
            "[central] lookup_timeout %.2f s is not well under [agent] lookup_timeout %.2f s; using %.2f s",
            timeout,
            config.agent.lookup_timeout,
            ceiling,
        )
        timeout = ceiling
    config.agent.data_dir.mkdir(parents=True, exist_ok=True)
    cache = CardCache(config.agent.data_dir / CACHE_NAME)
    loaded = cache.load()
    plugin = CentreLookup(client, cache, timeout=timeout, region=config.agent.region)
    pm.register(plugin, name=PLUGIN_NAME)
    logger.info(
        "centre lookup: registered (%d cached card(s), %.2f s to wait for the centre)", loaded, timeout
    )
    return plugin


__all__ = [
    "CACHE_NAME",
    "PLUGIN_NAME",
    "CachedCard",
    "CardCache",
    "CardError",
    "CentreLookup",
    "LookupClient",
    "customer_from_card",
    "parse_answer",
    "register_centre_lookup",
    "team_call",
    "team_calls",
]
