"""The crm_http plugin without sockets: URL templates, JSON mapping, the cache, failures, configuration."""

from __future__ import annotations

import json
from typing import Any

import pluggy
import pytest

from agent import hookspecs
from agent.config import Config
from agent.errors import ConfigError
from agent.events import Customer
from agent.seat.observers import configure_plugins
from plugins import crm_http
from plugins.crm_http.client import CrmHttp, dig
from plugins.crm_http.config import CrmHttpConfig


def fresh_pm(*plugins: tuple[object, str]) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("cti_agent")
    pm.add_hookspecs(hookspecs)
    for plugin, name in plugins:
        pm.register(plugin, name=name)
    return pm


URL = "http://crm.test/api/contacts?phone={e164}&n={national}"


class FakeCrm:
    """A fake ``fetch``: answers from ``responses`` by URL, records every request."""

    def __init__(self, responses: dict[str, tuple[int, Any]] | None = None) -> None:
        self.responses = responses or {}
        self.requests: list[tuple[str, dict[str, str], float]] = []
        self.error: OSError | None = None

    def __call__(self, url: str, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
        self.requests.append((url, headers, timeout))
        if self.error is not None:
            raise self.error
        status, body = self.responses.get(url, (404, None))
        data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
        return status, data


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(fetch: FakeCrm, clock: Clock | None = None, **options: Any) -> CrmHttp:
    config = CrmHttpConfig.model_validate({"url": URL, **options})
    return CrmHttp(config, fetch=fetch, clock=clock or Clock())


ZHANG_URL = "http://crm.test/api/contacts?phone=%2B8613812345678&n=13812345678"


def test_url_template_quotes_every_placeholder() -> None:
    crm = make(FakeCrm())
    assert crm.url_for("+8613812345678", "13812345678") == ZHANG_URL
    assert crm.url_for("+862223456789", "02223456789").endswith("n=02223456789")
    assert (
        crm.url_for(None, "10086&x=<1>")
        == "http://crm.test/api/contacts?phone=10086%26x%3D%3C1%3E&n=10086%26x%3D%3C1%3E"
    )


def test_json_is_mapped_to_a_customer() -> None:
    fetch = FakeCrm(
        {ZHANG_URL: (200, {"data": [{"full_name": "张三", "org": {"name": "天津贸易"}, "owner": "rep02"}]})}
    )
    crm = make(
        fetch,
        result="data",
        fields={"name": "full_name", "company": "org.name", "owner_rep": "owner"},
        headers={"Authorization": "Bearer x"},
        timeout=1.5,
    )
    found = crm.lookup_customer(number_e164="+8613812345678", number_raw="13812345678")
    assert found == Customer(name="张三", company="天津贸易", owner_rep="rep02", source="crm_http")
    assert fetch.requests == [(ZHANG_URL, {"Authorization": "Bearer x"}, 1.5)]


@pytest.mark.parametrize(
    "document", [[], {}, {"name": ""}, {"name": {"first": "x"}}, "just text", None, {"data": []}]
)
def test_a_response_without_a_contact_is_no_customer(document: Any) -> None:
    crm = make(FakeCrm({ZHANG_URL: (200, document)}))
    assert crm.lookup_customer(number_e164="+8613812345678", number_raw="13812345678") is None


def test_answers_are_cached_until_their_ttl() -> None:
    clock = Clock()
    fetch = FakeCrm({ZHANG_URL: (200, {"name": "张三"})})
    crm = make(fetch, clock, cache_ttl=60, not_found_ttl=10)
    for _ in range(3):
        assert crm.lookup_customer(number_e164="+8613812345678", number_raw="13812345678").name == "张三"
    assert len(fetch.requests) == 1
    clock.now += 61
    crm.lookup_customer(number_e164="+8613812345678", number_raw="13812345678")
    assert len(fetch.requests) == 2
    # Not found is cached too, for its own, shorter time.
    other = ("+8613900000000", "13900000000")
    crm.lookup_customer(*other)
    crm.lookup_customer(*other)
    assert len(fetch.requests) == 3
    clock.now += 11
    crm.lookup_customer(*other)
    assert len(fetch.requests) == 4


def test_cache_is_bounded() -> None:
    fetch = FakeCrm()
    crm = make(fetch, cache_size=2)
    for number in ("1", "2", "3", "1"):
        crm.lookup_customer(number_e164=None, number_raw=number)
    assert len(fetch.requests) == 4  # "1" was evicted by "3"


@pytest.mark.parametrize(
    "failure", [OSError("connection refused"), TimeoutError("timed out"), (500, None), (503, b"")]
)
def test_a_failing_crm_is_left_alone_for_a_while(failure: Any) -> None:
    clock = Clock()
    fetch = FakeCrm()
    if isinstance(failure, OSError):
        fetch.error = failure
    else:
        fetch.responses[ZHANG_URL] = failure
    crm = make(fetch, clock, retry_after=30)
    assert crm.lookup_customer(number_e164="+8613812345678", number_raw="13812345678") is None
    assert crm.lookup_customer(number_e164="+8613900000000", number_raw="13900000000") is None
    assert len(fetch.requests) == 1  # not asked again while it is down
    clock.now += 31
    fetch.error = None
    fetch.responses[ZHANG_URL] = (200, {"name": "张三"})
    assert crm.lookup_customer(number_e164="+8613812345678", number_raw="13812345678").name == "张三"


def test_bad_json_is_a_failure() -> None:
    crm = make(FakeCrm({ZHANG_URL: (200, b"<html>login</html>")}))
    assert crm.lookup_customer(number_e164="+8613812345678", number_raw="13812345678") is None


def test_dig() -> None:
    doc = {"a": [{"b": 1}, {"b": 2}]}
    assert dig(doc, "a.1.b") == 2
    assert dig(doc, "a.5.b") is None
    assert dig(doc, "x.y") is None
    assert dig(doc, "") == doc


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "ftp://crm/{e164}"}, "http"),
        ({"url": "http://crm/contacts"}, "no {e164}"),
        ({"url": "http://crm/{phone}"}, "unknown placeholder"),
        ({"url": URL, "fields": {"company": "c"}}, "where the name is"),
        ({"url": URL, "fields": {"name": "n", "birthday": "b"}}, "unknown field"),
        ({"url": URL, "colour": "red"}, "Extra inputs"),
        ({"url": URL, "timeout": 0}, "greater than 0"),
    ],
)
def test_invalid_config_is_a_config_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="plugins.crm_http") as info:
        crm_http.agent_configured(Config(plugins={"crm_http": options}))
    assert message in str(info.value)


def test_off_unless_configured_then_asked_after_the_local_table() -> None:
    class Local:
        @crm_http.agent.hookimpl
        def lookup_customer(self, number_e164: str | None, number_raw: str) -> Customer | None:
            return Customer(id=1, name="local", source="sql") if number_raw == "1" else None

    pm = fresh_pm((crm_http, "crm_http"))
    configure_plugins(pm, Config(), None)
    assert pm.get_plugin("crm_http.configured") is None
    configure_plugins(pm, Config(plugins={"crm_http": {"url": URL}}), None)
    client = pm.get_plugin("crm_http.configured")
    assert isinstance(client, CrmHttp)
    fetch = FakeCrm({"http://crm.test/api/contacts?phone=2&n=2": (200, {"name": "from crm"})})
    client._fetch = fetch
    # Registered after the CRM client, the local table is still asked first: the client is trylast.
    pm.register(Local(), name="sql")
    assert pm.hook.lookup_customer(number_e164=None, number_raw="1").source == "sql"
    assert fetch.requests == []
    assert pm.hook.lookup_customer(number_e164=None, number_raw="2").name == "from crm"
