"""The CRM lookup: one HTTP GET per number, a JSON contact mapped to a :class:`Customer`, cached."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import phonenumbers

from agent import hookimpl
from agent.events import Customer
from plugins.crm_http.config import CrmHttpConfig

logger = logging.getLogger(__name__)

Fetch = Callable[[str, dict[str, str], float], tuple[int, bytes]]
"""``fetch(url, headers, timeout) -> (HTTP status, body)``; raises OSError when the CRM cannot be reached."""


def urllib_fetch(url: str, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    """GET ``url`` with the standard library; 4xx/5xx come back as a status, not an exception."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (scheme checked in config)
            return int(response.status), response.read(1_000_000)
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def dig(document: Any, path: str) -> Any:
    """The value at a dotted path (``data.0.name``; digits index lists), or None when absent."""
    value = document
    for part in filter(None, path.split(".")):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _text(value: Any, limit: int = 200) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text[:limit] or None


class CrmHttp:
    """Answers ``lookup_customer`` from a CRM's HTTP API; registered by ``agent_configured``.

    Tried last (``trylast``): the local customers table answers first. Answers,
    found or not, are cached for ``cache_ttl`` / ``not_found_ttl`` seconds; a
    failure is not cached but makes the plugin skip the CRM for ``retry_after``
    seconds, so a CRM that is down costs one timeout, not one per call.

    :param fetch: the HTTP GET (the standard library's by default; tests pass a fake).
    :param clock: monotonic seconds (tests pass a fake).
    """

    def __init__(
        self,
        config: CrmHttpConfig,
        *,
        region: str = "CN",
        fetch: Fetch = urllib_fetch,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.region = region
        self._fetch = fetch
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, Customer | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._down_until = 0.0

    def url_for(self, number_e164: str | None, number_raw: str) -> str:
        """The request URL for a number (every placeholder URL-quoted)."""
        national = number_raw
        if number_e164:
            try:
                parsed = phonenumbers.parse(number_e164, None)
                national = phonenumbers.national_significant_number(parsed)
                if phonenumbers.region_code_for_number(parsed) == "CN" and len(national) < 11:
                    national = "0" + national  # a landline's trunk prefix, as Chinese CRMs store them
            except phonenumbers.NumberParseException:
                national = number_raw
        values = {"e164": number_e164 or number_raw, "national": national, "raw": number_raw}
        return self.config.url.format_map({k: quote(v, safe="") for k, v in values.items()})

    def _cached(self, key: str) -> tuple[bool, Customer | None]:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return False, None
            expires, customer = entry
            if expires <= self._clock():
                del self._cache[key]
                return False, None
            self._cache.move_to_end(key)
            return True, customer

    def _store(self, key: str, customer: Customer | None) -> None:
        ttl = self.config.cache_ttl if customer is not None else self.config.not_found_ttl
        if ttl <= 0:
            return
        with self._lock:
            self._cache[key] = (self._clock() + ttl, customer)
            self._cache.move_to_end(key)
            while len(self._cache) > self.config.cache_size:
                self._cache.popitem(last=False)

    def to_customer(self, document: Any) -> Customer | None:
        """Map a JSON response to a customer (``source="crm_http"``), or None when it holds no contact."""
        contact = dig(document, self.config.result) if self.config.result else document
        if isinstance(contact, list):
            contact = contact[0] if contact else None
        if not isinstance(contact, dict):
            return None
        values = {field: _text(dig(contact, path)) for field, path in self.config.fields.items()}
        if not values.get("name"):
            return None
        return Customer(
            name=values.get("name"),
            company=values.get("company"),
            owner_rep=values.get("owner_rep"),
            source="crm_http",
        )

    @hookimpl(trylast=True)
    def lookup_customer(self, number_e164: str | None, number_raw: str) -> Customer | None:
        """Ask the CRM (or the cache). Blocks for at most ``timeout``; runs in a worker thread."""
        key = number_e164 or number_raw
        hit, customer = self._cached(key)
        if hit:
            return customer
        if self._clock() < self._down_until:
            return None
        url = self.url_for(number_e164, number_raw)
        try:
            status, body = self._fetch(url, self.config.headers, self.config.timeout)
        except (OSError, ValueError) as exc:
            self._failed(f"unreachable: {exc}")
            return None
        if status == 404:
            self._store(key, None)
            return None
        if status >= 500 or status == 429:
            self._failed(f"HTTP {status}")
            return None
        if status >= 400:
            logger.warning("crm_http: HTTP %d for a lookup; check the URL and headers", status)
            return None
        try:
            document = json.loads(body.decode("utf-8")) if body.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._failed(f"not JSON: {exc}")
            return None
        customer = self.to_customer(document)
        self._store(key, customer)
        return customer

    def _failed(self, why: str) -> None:
        self._down_until = self._clock() + self.config.retry_after
        logger.warning("crm_http: %s; not asking again for %.0f s", why, self.config.retry_after)
