"""The seat bus (ids, replay, slow clients, snapshot) and the seat page app (no sockets: in-process only)."""

from __future__ import annotations

import asyncio
import json
import re
import warnings
from collections.abc import Callable, MutableMapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import factories
import pluggy
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from agent import hookspecs
from agent.events import (
    Absence,
    Call,
    CallEvent,
    CallEventKind,
    Direction,
    Disposition,
    LineState,
    LineStatus,
    Message,
)
from agent.hookspecs import hookimpl
from agent.seat.observers import Observer
from agent.seat.web.app import make_seat_app
from agent.seat.web.bus import RESET, SeatBus, SubscriptionEnded
from agent.seat.web.context import SeatContext
from agent.web import CONTENT_SECURITY_POLICY, format_duration, format_sse, i18n, parse_last_event_id, to_json

with warnings.catch_warnings():
    # Starlette 1.x warns once at import that it prefers httpx2 for its test client.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
XSS = "<script>alert(1)</script>"


def make_call(uuid: str = "c1", **changes: Any) -> Call:
    fields = {"seat": "seat-7", "line": "L1", "started_at": T0, "number_e164": None, "cid_name": "Zhang San"}
    return factories.make_call(uuid, **(fields | changes))


def started(call: Call) -> CallEvent:
    return CallEvent(CallEventKind.STARTED, call, call.started_at)


def finished(call: Call, talk: float = 75.0) -> CallEvent:
    done = replace(
        call,
        answered_at=call.started_at + timedelta(seconds=5),
        ended_at=call.started_at + timedelta(seconds=5 + talk),
        ring_seconds=5.0,
        talk_seconds=talk,
        disposition=Disposition.ANSWERED,
    )
    return CallEvent(CallEventKind.ENDED, done, done.ended_at or T0)


def line(state: LineState, name: str = "L1") -> LineStatus:
    return LineStatus("seat-7", name, "modem0", "alice", "north", state, T0)


# -- the bus ------------------------------------------------------------------------------------


def test_bus_is_an_observer() -> None:
    bus = SeatBus()
    assert isinstance(bus, Observer)
    assert (bus.name, bus.must_deliver) == ("seat-page", False)


async def test_messages_get_increasing_ids_in_publish_order() -> None:
    bus = SeatBus()
    with bus.subscribe() as sub:
        messages: list[Message] = [started(make_call("a")), line(LineState.RINGING), finished(make_call("a"))]
        for message in messages:
            await bus.notify(message)
        received = [await sub.get(timeout=1) for _ in messages]
    # A call's payload is its event's, its number also as written here (none sent: None).
    shown = [m.to_dict() | {"call": m.to_dict()["call"] | {"number_display": None}} for m in messages[::2]]
    assert received == [
        (1, "call", shown[0]),
        (2, "line", messages[1].to_dict()),
        (3, "call", shown[1]),
    ]
    assert bus.last_id == 3


@pytest.mark.parametrize(
    ("number", "region", "shown"),
    [
        ("+8613613323868", "CN", "136 1332 3868"),
        ("+861065529988", "CN", "010 6552 9988"),
        ("+16502530000", "CN", "+1 650-253-0000"),  # another country's number: international
        ("+16502530000", "US", "(650) 253-0000"),
        (None, "CN", None),  # no valid number: the page shows the digits as sent
    ],
)
def test_the_page_gets_numbers_as_people_of_the_region_write_them(
    number: str | None, region: str, shown: str | None
) -> None:
    bus = SeatBus(region=region)
    bus.publish(started(make_call("c", number_e164=number, number_raw="13613323868")))
    (call,) = bus.snapshot()["calls"]
    assert call["number_display"] == shown
    assert call["number_e164"] == number  # data keeps E.164


def test_seeded_calls_come_before_live_ones_and_send_nothing() -> None:
    bus = SeatBus(max_calls=3)
    bus.publish(started(make_call("live", started_at=T0 + timedelta(hours=2))))
    earlier = [make_call(f"e{n}", started_at=T0 + timedelta(minutes=n)) for n in (3, 1, 2)]
    # A restarted agent's calls of the day; the live one is known already and keeps its snapshot.
    assert bus.seed([*earlier, make_call("live", cid_name="stale")]) == 3
    assert bus.last_id == 1  # nothing was sent to the pages
    snapshot = bus.snapshot()
    assert [c["uuid"] for c in snapshot["calls"]] == ["live", "e3", "e2"]  # newest first, max_calls kept
    live = bus.call("live")
    assert live is not None
    assert live.cid_name == "Zhang San"
    assert bus.call("e1") is None


async def test_subscribe_without_last_id_gets_only_live_messages() -> None:
    bus = SeatBus()
    bus.publish(line(LineState.IDLE))
    with bus.subscribe(None) as sub:
        assert await sub.get(timeout=0.01) is None
        bus.publish(line(LineState.RINGING))
        item = await sub.get(timeout=1)
    assert item is not None
    assert item[0] == 2


async def test_replay_from_last_event_id_then_live() -> None:
    bus = SeatBus()
    for n in range(5):
        bus.publish(started(make_call(f"c{n}")))
    with bus.subscribe(2) as sub:
        bus.publish(line(LineState.TALKING))
        ids = [item[0] for item in [await sub.get(timeout=1) for _ in range(4)] if item]
        assert await sub.get(timeout=0.01) is None
    assert ids == [3, 4, 5, 6]


async def test_up_to_date_client_gets_nothing_replayed() -> None:
    bus = SeatBus()
    bus.publish(line(LineState.IDLE))
    with bus.subscribe(1) as sub:
        assert await sub.get(timeout=0.01) is None


@pytest.mark.parametrize("last_id", [1, 99])
async def test_reset_when_last_id_is_out_of_the_buffer_or_from_an_earlier_run(last_id: int) -> None:
    bus = SeatBus(replay_size=3)
    for n in range(6):
        bus.publish(started(make_call(f"c{n}")))
    with bus.subscribe(last_id) as sub:
        item = await sub.get(timeout=1)
        assert item == (6, RESET, {"last_id": 6})
        assert await sub.get(timeout=0.01) is None


async def test_oldest_buffered_position_still_replays() -> None:
    bus = SeatBus(replay_size=3)
    for n in range(6):
        bus.publish(started(make_call(f"c{n}")))
    # Buffer holds ids 4..6: a client that saw id 3 misses nothing.
    with bus.subscribe(3) as sub:
        ids = [(await sub.get(timeout=1) or (0,))[0] for _ in range(3)]
    assert ids == [4, 5, 6]


async def test_slow_client_is_dropped_without_blocking_others() -> None:
    bus = SeatBus(client_queue=3)
    slow = bus.subscribe()
    fast = bus.subscribe()
    received: list[int] = []

    async def read_fast() -> None:
        async for item in fast:
            received.append(item[0])
            if item[0] == 10:
                return

    reader = asyncio.create_task(read_fast())
    for n in range(10):
        bus.publish(started(make_call(f"c{n}")))  # synchronous: never waits for a client
        await asyncio.sleep(0)
    await asyncio.wait_for(reader, 1)

    assert received == list(range(1, 11))
    assert slow.dropped
    assert not fast.dropped
    assert bus.clients == 1
    with pytest.raises(SubscriptionEnded):
        await slow.get(timeout=1)  # ends at once: what was queued is dropped, not delivered late
    # The dropped client reconnects from the last id it saw and replays what it missed.
    with bus.subscribe(0) as again:
        assert [(await again.get(timeout=1) or (0,))[0] for _ in range(10)] == list(range(1, 11))
    fast.close()
    assert bus.clients == 0


async def test_timeout_loses_no_message() -> None:
    bus = SeatBus()
    with bus.subscribe() as sub:
        for _ in range(3):
            assert await sub.get(timeout=0.001) is None
        bus.publish(line(LineState.IDLE))
        assert (await sub.get(timeout=1) or (0,))[0] == 1


async def test_close_ends_every_stream() -> None:
    bus = SeatBus()
    sub = bus.subscribe()
    waiting = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    bus.close()
    with pytest.raises(SubscriptionEnded):
        await asyncio.wait_for(waiting, 1)
    assert [item async for item in bus.subscribe(0)] == []
    assert bus.clients == 0


def test_snapshot_keeps_latest_state_newest_first() -> None:
    bus = SeatBus(max_calls=3)
    for n in range(4):
        bus.publish(started(make_call(f"c{n}")))
    bus.publish(finished(make_call("c2")))  # updated in place, keeps its position
    bus.publish(line(LineState.RINGING, "L1"))
    bus.publish(line(LineState.IDLE, "L2"))
    bus.publish(line(LineState.TALKING, "L1"))

    snapshot = bus.snapshot()
    assert snapshot["last_id"] == 8
    assert [call["uuid"] for call in snapshot["calls"]] == ["c3", "c2", "c1"]
    assert snapshot["calls"][1]["disposition"] == "answered"
    assert [(s["line"], s["state"]) for s in snapshot["lines"]] == [("L1", "talking"), ("L2", "idle")]
    json.dumps(snapshot)  # JSON-ready


def test_publish_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        SeatBus().publish("ring")  # type: ignore[arg-type]


# -- formatting helpers ------------------------------------------------------------------------


def test_sse_frame_is_one_event_even_with_newlines_in_data() -> None:
    frame = format_sse(7, "call", {"cid_name": "evil\n\nid: 99\ndata: x\r\n", "tag": XSS}).decode()
    assert frame.endswith("\n\n")
    lines = frame[:-2].split("\n")
    assert lines[0] == "id: 7"
    assert lines[1] == "event: call"
    assert len(lines) == 3
    assert lines[2].startswith("data: ")
    assert "\r" not in frame
    assert XSS not in frame
    assert json.loads(lines[2][len("data: ") :]) == {"cid_name": "evil\n\nid: 99\ndata: x\r\n", "tag": XSS}


def test_to_json_escapes_html_characters() -> None:
    text = to_json({"a": "</script><b>&amp;"})
    assert "<" not in text
    assert ">" not in text
    assert "&" not in text
    assert json.loads(text) == {"a": "</script><b>&amp;"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, None), ("12", 12), (" 3 ", 3), ("", None), ("-1", None), ("x", None), ("٣", None)],
)
def test_parse_last_event_id(raw: str | None, expected: int | None) -> None:
    assert parse_last_event_id(raw) == expected


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, ""), (0, "0:00"), (5.9, "0:05"), (75, "1:15"), (3600, "1:00:00"), (-3, "0:00")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


# -- languages ---------------------------------------------------------------------------------


def _locale(name: str) -> dict[str, str]:
    text = resources.files("agent.seat.web").joinpath("locales", f"{name}.json").read_text(encoding="utf-8")
    data: dict[str, str] = json.loads(text)
    return data


def test_locales_have_the_same_keys() -> None:
    catalogs = {language: _locale(language) for language in i18n.LANGUAGES}
    keys = {language: set(catalog) for language, catalog in catalogs.items()}
    assert keys["en"] == keys["zh-CN"]
    for catalog in catalogs.values():
        assert all(isinstance(v, str) and v.strip() for v in catalog.values())


def test_locales_cover_every_state_direction_and_disposition() -> None:
    needed = (
        {f"state.{s.value}" for s in LineState}
        | {f"direction.{d.value}" for d in Direction}
        | {f"disposition.{d.value}" for d in Disposition}
        | {f"lang.{code}" for code in i18n.LANGUAGES}
    )
    for language in i18n.LANGUAGES:
        assert needed <= set(i18n.catalog(language, "agent.seat.web")), language


def test_every_key_used_by_the_page_and_script_exists() -> None:
    web = resources.files("agent.seat.web")
    template = web.joinpath("templates", "seat.html").read_text(encoding="utf-8")
    script = web.joinpath("static", "seat.js").read_text(encoding="utf-8")
    used = set(re.findall(r'\bt\("([a-zA-Z_.-]+)"\)', template + script))
    assert {"lines", "calls", "ring", "talk", "number.withheld"} <= used
    assert used <= set(i18n.catalog("en", "agent.seat.web"))


@pytest.mark.parametrize(
    ("requested", "header", "default", "expected"),
    [
        (None, None, None, "en"),
        (None, "zh-CN,zh;q=0.9,en;q=0.8", None, "zh-CN"),
        (None, "zh-TW", None, "zh-CN"),
        (None, "en-US,en;q=0.9,zh;q=0.8", None, "en"),
        (None, "fr-FR, zh;q=0.5, en;q=0.3", None, "zh-CN"),
        (None, "zh;q=0, en", None, "en"),
        (None, "de, fr", None, "en"),
        ("en", "zh-CN", None, "en"),
        ("zh", None, None, "zh-CN"),
        ("klingon", "zh", None, "zh-CN"),
        (None, "en", "zh-CN", "zh-CN"),
        ("en", None, "zh-CN", "en"),
    ],
)
def test_negotiate(requested: str | None, header: str | None, default: str | None, expected: str) -> None:
    assert i18n.negotiate(requested, header, default) == expected


# -- the app -----------------------------------------------------------------------------------


@pytest.fixture
def bus() -> SeatBus:
    bus = SeatBus()
    bus.publish(line(LineState.TALKING, "L1"))
    bus.publish(line(LineState.DOWN, "L2"))
    bus.publish(finished(make_call("c-answered", cid_name=XSS, customer_name=XSS, number_raw="<b>138</b>")))
    bus.publish(started(make_call("c-withheld", number_raw=None, cid_name=None, absence=Absence.PRIVATE)))
    bus.publish(
        started(make_call("c-unavailable", number_raw=None, cid_name=None, absence=Absence.UNAVAILABLE))
    )
    return bus


@pytest.fixture
def client(bus: SeatBus) -> TestClient:
    return TestClient(make_seat_app(SeatContext(bus=bus, seat="seat-7")), base_url="http://127.0.0.1")


def test_page_renders_in_english(client: TestClient) -> None:
    response = client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<html lang="en">' in html
    assert "seat-7" in html
    for text in ("Lines", "Calls", "Talking", "Down", "Answered", "Withheld", "Unavailable", "Ringing"):
        assert text in html, text
    assert 'href="?lang=zh-CN"' in html  # the language switch
    assert 'data-last-id="5"' in html
    assert html.index('data-uuid="c-unavailable"') < html.index('data-uuid="c-answered"')  # newest first


@pytest.mark.parametrize(
    ("url", "headers"),
    [("/", {"Accept-Language": "zh-CN,zh;q=0.9"}), ("/?lang=zh-CN", {"Accept-Language": "en"})],
)
def test_page_renders_in_chinese(client: TestClient, url: str, headers: dict[str, str]) -> None:
    html = client.get(url, headers=headers).text
    assert '<html lang="zh-CN">' in html
    for text in ("线路", "通话中", "离线", "已接听", "号码隐藏", "号码不可用"):
        assert text in html, text
    assert 'href="?lang=en"' in html


def test_configured_language_wins_over_the_browser(bus: SeatBus) -> None:
    client = TestClient(
        make_seat_app(SeatContext(bus=bus, seat="seat-7", language="zh-CN")), base_url="http://127.0.0.1"
    )
    assert '<html lang="zh-CN">' in client.get("/", headers={"Accept-Language": "en"}).text
    assert '<html lang="en">' in client.get("/?lang=en").text


def test_caller_text_is_escaped_in_every_response(client: TestClient) -> None:
    page = client.get("/")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "&lt;b&gt;138&lt;/b&gt;" in page.text
    for path in ("/", "/api/state", "/healthz", "/?lang=zh-CN"):
        body = client.get(path).text
        assert XSS not in body, path
        assert "<b>138" not in body, path
    state = client.get("/api/state").json()
    assert state["calls"][-1]["cid_name"] == XSS  # the JSON still carries the exact text


def test_page_has_no_inline_script(client: TestClient) -> None:
    html = client.get("/").text
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
    executable = [attrs for attrs, body in scripts if 'type="application/json"' not in attrs]
    assert executable
    assert all("src=" in attrs for attrs in executable)
    assert all(not body.strip() for attrs, body in scripts if "src=" in attrs)
    assert " style=" not in html
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", html, flags=re.I)  # no inline event handlers


def test_script_never_parses_data_as_html() -> None:
    script = resources.files("agent.seat.web").joinpath("static", "seat.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
    assert "textContent" in script


@pytest.mark.parametrize(
    "path", ["/", "/api/state", "/healthz", "/static/seat.js", "/static/seat.css", "/nope"]
)
def test_security_headers_on_every_response(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_static_files_are_served_from_the_package(client: TestClient) -> None:
    js = client.get("/static/seat.js")
    assert js.status_code == 200
    assert "javascript" in js.headers["content-type"]
    assert "EventSource" in js.text
    assert client.get("/static/seat.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/../app.py").status_code == 404


def test_state_and_health(client: TestClient, bus: SeatBus) -> None:
    state = client.get("/api/state")
    assert state.headers["cache-control"] == "no-store"
    body = state.json()
    assert body["seat"] == "seat-7"
    assert body["last_id"] == bus.last_id == 5
    assert [c["uuid"] for c in body["calls"]] == ["c-unavailable", "c-withheld", "c-answered"]
    assert [s["state"] for s in body["lines"]] == ["talking", "down"]
    assert client.get("/healthz").json() == {"status": "ok", "seat": "seat-7", "clients": 0}


# -- plugin routes -----------------------------------------------------------------------------


class _Errors:
    def __init__(self) -> None:
        self.counted: list[tuple[str, str]] = []

    def plugin_error(self, plugin: str, hook: str) -> None:
        self.counted.append((plugin, hook))


def _pm(*plugins: tuple[object, str]) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("cti_agent")
    pm.add_hookspecs(hookspecs)
    for plugin, name in plugins:
        pm.register(plugin, name=name)
    return pm


def test_hook_register_routes() -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello from a plugin")

    class Good:
        @hookimpl
        def register_routes(self, register: Callable[[Any], None]) -> None:
            register(Route("/plugins/good/hello", hello))

    class Broken:
        @hookimpl
        def register_routes(self, register: Callable[[Any], None]) -> None:
            register(Route("/plugins/broken/half", hello))
            raise RuntimeError("boom")

    class Wrong:
        @hookimpl
        def register_routes(self, register: Callable[[Any], None]) -> None:
            register("/plugins/wrong")

    errors = _Errors()
    pm = _pm((Good(), "good"), (Broken(), "broken"), (Wrong(), "wrong"))
    client = TestClient(
        make_seat_app(SeatContext(bus=SeatBus(), seat="s", pm=pm, errors=errors)), base_url="http://127.0.0.1"
    )

    response = client.get("/plugins/good/hello")
    assert response.text == "hello from a plugin"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    # A plugin that fails contributes nothing, not even what it registered before failing.
    assert client.get("/plugins/broken/half").status_code == 404
    assert sorted(errors.counted) == [("broken", "register_routes"), ("wrong", "register_routes")]
    assert client.get("/").status_code == 200


# -- the event stream, driven in-process through ASGI --------------------------------------------


async def test_event_stream_frames_heartbeat_and_disconnect() -> None:
    bus = SeatBus()
    bus.publish(line(LineState.IDLE))
    app = make_seat_app(SeatContext(bus=bus, seat="s", heartbeat=0.05))
    sent: list[MutableMapping[str, Any]] = []
    body_arrived = asyncio.Event()
    disconnect = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not sent:
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)
        body_arrived.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/events",
        "raw_path": b"/events",
        "root_path": "",
        "query_string": b"last_event_id=0",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    task = asyncio.create_task(app(scope, receive, send))

    def text() -> str:
        return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body").decode()

    async def until(predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(2):
            while not predicate():
                body_arrived.clear()
                await body_arrived.wait()

    await until(lambda: "id: 1\n" in text())
    assert bus.clients == 1
    bus.publish(started(make_call("c9", cid_name=XSS)))
    await until(lambda: "id: 2\n" in text())
    await until(lambda: ": heartbeat\n\n" in text())
    disconnect.set()
    await asyncio.wait_for(task, 2)

    start = sent[0]
    assert start["status"] == 200
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-store"
    assert "content-length" not in headers
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    stream = text()
    assert stream.startswith("retry: ")
    assert f"id: 1\nevent: line\ndata: {to_json(line(LineState.IDLE).to_dict())}\n\n" in stream
    assert "id: 2\nevent: call\ndata: " in stream
    assert XSS not in stream
    assert bus.clients == 0  # the subscription is gone with the client
