"""The plugin system: the manager factory, entry points, the device registry, hook isolation.

Two tests keep the hook contract honest (as datasette does): every hook in
agent/hookspecs.py is documented with its exact signature in README.md's
``## Plugin hooks`` section, and every hook has a ``test_hook_<name>`` here.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pluggy
import pytest
from click.testing import CliRunner
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from agent import hookimpl, hookspecs
from agent.calls import CallTracker, LineIdentity
from agent.errors import ConfigError, DeviceError
from agent.events import (
    ALL_LINES,
    Call,
    CallEvent,
    CallEventKind,
    Customer,
    Direction,
    LineState,
    LineStatus,
    OffHook,
    OnHook,
    Ring,
)
from agent.plugins import DEFAULT_PLUGINS, PROJECT, PluginInfo, describe_plugins, make_plugin_manager
from agent.seat.devices import Device, DeviceRegistry
from agent.seat.observers import HookObserver, Observer, notify_each

README = Path(__file__).resolve().parents[2] / "README.md"
T0 = datetime(2024, 5, 6, 9, 0, 0, tzinfo=UTC)


def hook_specs() -> dict[str, Callable[..., Any]]:
    """Every hook specification in agent/hookspecs.py, by name."""
    return {
        name: fn
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, f"{PROJECT}_spec")
    }


def signature(fn: Callable[..., Any]) -> str:
    return f"{fn.__name__}({', '.join(inspect.signature(fn).parameters)})"


def fresh_pm(*plugins: tuple[object, str]) -> pluggy.PluginManager:
    """A bare plugin manager with the hook specs and the given (plugin, name) pairs."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for plugin, name in plugins:
        pm.register(plugin, name=name)
    pm.check_pending()
    return pm


def registered_names(pm: pluggy.PluginManager) -> set[str]:
    return {name for name, plugin in pm.list_name_plugin() if plugin is not None}


# -- contract tests ---------------------------------------------------------------------------


def test_hookspecs_are_found() -> None:
    # Guards the two contract tests below against passing on an empty list.
    assert {"register_devices", "lookup_customer", "call_ended"} <= set(hook_specs())


def readme_hooks_section() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Plugin hooks\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Plugin hooks' section"
    return match.group(1)


@pytest.mark.parametrize("name", sorted(hook_specs()))
def test_hook_is_documented_in_readme(name: str) -> None:
    assert f"`{signature(hook_specs()[name])}`" in readme_hooks_section()


def test_readme_documents_no_hook_that_does_not_exist() -> None:
    documented = set(re.findall(r"^### `(\w+)\(", readme_hooks_section(), re.MULTILINE))
    assert documented == set(hook_specs())


@pytest.mark.parametrize("name", sorted(hook_specs()))
def test_hook_has_a_test(name: str) -> None:
    tests = {n for n, fn in inspect.getmembers(sys.modules[__name__], inspect.isfunction)}
    assert f"test_hook_{name}" in tests


@pytest.mark.parametrize("name", sorted(hook_specs()))
def test_hook_docstring_is_a_contract(name: str) -> None:
    fn = hook_specs()[name]
    doc = inspect.getdoc(fn) or ""
    assert "When called" in doc
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc


# -- make_plugin_manager and entry points ----------------------------------------------------


def _short(module_name: str) -> str:
    return module_name.rsplit(".", 1)[-1]


def test_builtins_are_registered_by_short_name() -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    assert registered_names(pm) == {_short(m) for m in DEFAULT_PLUGINS}
    assert pm.get_plugin("simulator") is importlib.import_module("plugins.simulator")
    # A fresh manager every time: no global state between callers.
    assert make_plugin_manager(load_entrypoints=False) is not pm


@pytest.mark.parametrize("blocked", ["simulator", "plugins.simulator"])
def test_a_builtin_is_blocked_by_name(blocked: str) -> None:
    pm = make_plugin_manager(load_entrypoints=False, disabled=[blocked])
    assert pm.get_plugin("simulator") is None
    assert "simulator" not in {info.name for info in describe_plugins(pm)}
    assert registered_names(pm) == {_short(m) for m in DEFAULT_PLUGINS} - {"simulator"}


FakeInstaller = Callable[..., None]


@pytest.fixture
def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeInstaller]:
    """Install a plugin module with a ``cti_agent`` entry point, as pip would, on a temporary path."""
    modules: list[str] = []

    def install(dist: str, entry: str, module: str, source: str, version: str = "1.2.3") -> None:
        (tmp_path / f"{module}.py").write_text(source, encoding="utf-8")
        info = tmp_path / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
        )
        (info / "entry_points.txt").write_text(f"[cti_agent]\n{entry} = {module}\n", encoding="utf-8")
        modules.append(module)

    monkeypatch.syspath_prepend(str(tmp_path))
    yield install
    for module in modules:
        sys.modules.pop(module, None)


ENDED_PLUGIN = """
from agent import hookimpl

@hookimpl
def call_ended(call):
    pass
"""

LOOKUP_PLUGIN = """
from agent import hookimpl

@hookimpl
def lookup_customer(number_e164, number_raw):
    return None
"""


def test_entry_point_plugins_are_loaded_and_described(
    install_plugin: FakeInstaller, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CTI_AGENT_LOAD_PLUGINS", raising=False)
    install_plugin("cti-fake-ended", "fake_ended", "cti_fake_ended", ENDED_PLUGIN, version="2.0.1")
    pm = make_plugin_manager()
    assert pm.get_plugin("fake_ended") is sys.modules["cti_fake_ended"]

    infos = describe_plugins(pm)
    assert [i.name for i in infos] == sorted(i.name for i in infos)
    by_name = {info.name: info for info in infos}
    assert by_name["fake_ended"] == PluginInfo(
        "fake_ended", "2.0.1", "entry point of cti-fake-ended", ("call_ended",)
    )
    assert by_name["simulator"].source == "built-in"
    assert "register_devices" in by_name["simulator"].hooks


@pytest.mark.parametrize(
    ("only", "loaded"),
    [
        ("", set()),
        ("fake_lookup", {"fake_lookup"}),
        (" fake_lookup , fake_ended ,", {"fake_lookup", "fake_ended"}),
        ("no_such_plugin", set()),
    ],
)
def test_cti_agent_load_plugins_limits_entry_points(
    only: str, loaded: set[str], install_plugin: FakeInstaller, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin("cti-fake-ended", "fake_ended", "cti_fake_ended", ENDED_PLUGIN)
    install_plugin("cti-fake-lookup", "fake_lookup", "cti_fake_lookup", LOOKUP_PLUGIN)
    monkeypatch.setenv("CTI_AGENT_LOAD_PLUGINS", only)
    pm = make_plugin_manager()
    assert registered_names(pm) & {"fake_ended", "fake_lookup"} == loaded
    assert {_short(m) for m in DEFAULT_PLUGINS} <= registered_names(pm)


def test_an_entry_point_plugin_is_blocked_by_name(
    install_plugin: FakeInstaller, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CTI_AGENT_LOAD_PLUGINS", raising=False)
    install_plugin("cti-fake-ended", "fake_ended", "cti_fake_ended", ENDED_PLUGIN)
    pm = make_plugin_manager(disabled=["fake_ended"])
    assert pm.is_blocked("fake_ended")
    assert pm.get_plugin("fake_ended") is None
    assert "fake_ended" not in {info.name for info in describe_plugins(pm)}


def test_a_misspelled_hook_in_an_entry_point_plugin_fails_at_startup(
    install_plugin: FakeInstaller, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CTI_AGENT_LOAD_PLUGINS", raising=False)
    source = "from agent import hookimpl\n\n@hookimpl\ndef call_endd(call):\n    pass\n"
    install_plugin("cti-fake-typo", "fake_typo", "cti_fake_typo", source)
    with pytest.raises(pluggy.PluginValidationError, match="call_endd"):
        make_plugin_manager()


def test_a_misspelled_hook_in_a_plugin_class_fails_check_pending() -> None:
    class Typo:
        @hookimpl
        def call_endd(self, call: Call) -> None:
            raise AssertionError("never called")

    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(Typo(), name="typo")
    with pytest.raises(pluggy.PluginValidationError, match="unknown hook 'call_endd'"):
        pm.check_pending()


def test_a_hook_with_a_wrong_argument_fails_at_registration() -> None:
    class WrongArgument:
        @hookimpl
        def call_ended(self, kall: Call) -> None:
            raise AssertionError("never called")

    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    with pytest.raises(pluggy.PluginValidationError, match="kall"):
        pm.register(WrongArgument(), name="wrong")


def test_describe_plugins_lists_a_plugin_without_hooks() -> None:
    class Quiet:
        pass

    pm = fresh_pm((Quiet(), "quiet"))
    assert describe_plugins(pm)[0].name == "quiet"
    assert describe_plugins(pm)[0].hooks == ()
    assert describe_plugins(pm)[0].source == "built-in"


# -- the device registry --------------------------------------------------------------------


class Registers:
    """A throwaway plugin that registers the device classes it is given."""

    def __init__(self, *device_classes: type[Device]) -> None:
        self.device_classes = device_classes

    @hookimpl
    def register_devices(self, register: Callable[[type[Device]], None]) -> None:
        for cls in self.device_classes:
            register(cls)


def test_hook_register_devices(tiny_device_cls: type[Device]) -> None:
    pm = fresh_pm((Registers(tiny_device_cls), "tiny-plugin"), (Registers(), "empty-plugin"))
    registry = DeviceRegistry.from_plugins(pm)
    assert registry.names() == ["tiny"]
    assert registry.get("tiny") is tiny_device_cls
    assert registry.owner("tiny") == "tiny-plugin"


def test_the_builtin_plugins_register_their_device_types() -> None:
    registry = DeviceRegistry.from_plugins(make_plugin_manager(load_entrypoints=False))
    assert any(registry.owner(name) == "simulator" for name in registry.names())


def test_a_device_type_registered_by_two_plugins_is_a_config_error(tiny_device_cls: type[Device]) -> None:
    class Impostor(tiny_device_cls):  # type: ignore[misc, valid-type]
        pass

    pm = fresh_pm((Registers(tiny_device_cls), "tiny-plugin"), (Registers(Impostor), "copycat"))
    with pytest.raises(ConfigError) as excinfo:
        DeviceRegistry.from_plugins(pm)
    assert "'tiny'" in str(excinfo.value)
    assert "'tiny-plugin'" in str(excinfo.value)
    assert "'copycat'" in str(excinfo.value)


def test_the_same_device_class_registered_twice_is_fine(tiny_device_cls: type[Device]) -> None:
    pm = fresh_pm((Registers(tiny_device_cls, tiny_device_cls), "tiny-plugin"))
    assert DeviceRegistry.from_plugins(pm).names() == ["tiny"]


async def test_a_registered_device_type_builds_from_its_config(tiny_registry: DeviceRegistry) -> None:
    device_cls = tiny_registry.get("tiny")
    device = device_cls("m0", device_cls.Config.model_validate({"port": "/dev/ttyACM0"}))
    async with device as opened:
        assert opened is device
        events = [event async for event in device.events()]
    assert [(e.kind, e.device_id, e.line) for e in events] == [("device_up", "m0", ALL_LINES)]
    assert device.lines() == ["1"]
    # What the hardware cannot do is refused, not pretended.
    with pytest.raises(DeviceError, match="m0: a tiny device cannot dial"):
        await device.dial("1", "13812345678")
    with pytest.raises(DeviceError, match="m0: a tiny device cannot hang up"):
        await device.hangup("1")


def test_an_unknown_device_type_lists_the_known_ones(tiny_registry: DeviceRegistry) -> None:
    with pytest.raises(ConfigError, match=r"unknown device type 'modem' \(known: tiny\)"):
        tiny_registry.get("modem")
    with pytest.raises(ConfigError, match=r"\(known: none\)"):
        DeviceRegistry().get("modem")


# -- customer lookup ------------------------------------------------------------------------


class Directory:
    """A throwaway ``lookup_customer`` plugin answering for the numbers it knows."""

    def __init__(self, source: str, known: dict[str, str] | None) -> None:
        self.source = source
        self.known = known  # None: answers for every number
        self.asked: list[tuple[str | None, str]] = []

    @hookimpl
    def lookup_customer(self, number_e164: str | None, number_raw: str) -> Customer | None:
        self.asked.append((number_e164, number_raw))
        if self.known is None:
            return Customer(name=f"someone at {number_raw}", source=self.source)
        name = self.known.get(number_e164 or "")
        return Customer(id=1, name=name, source=self.source) if name else None


def test_hook_lookup_customer() -> None:
    crm = Directory("crm_http", known=None)
    local = Directory("sql", known={"+8613812345678": "ZHANG SAN"})
    # pluggy calls the plugin registered last first: the local table answers before the CRM.
    pm = fresh_pm((crm, "crm_http"), (local, "sql"))

    found = pm.hook.lookup_customer(number_e164="+8613812345678", number_raw="13812345678")
    assert found == Customer(id=1, name="ZHANG SAN", source="sql")
    assert crm.asked == []  # stops at the first non-None result

    found = pm.hook.lookup_customer(number_e164=None, number_raw="10086")
    assert found == Customer(name="someone at 10086", source="crm_http")
    assert local.asked == [("+8613812345678", "13812345678"), (None, "10086")]
    assert crm.asked == [(None, "10086")]


def test_lookup_customer_gives_none_when_nobody_knows() -> None:
    pm = fresh_pm((Directory("sql", known={}), "sql"))
    assert pm.hook.lookup_customer(number_e164="+8613812345678", number_raw="13812345678") is None


# -- notification hooks through the HookObserver ----------------------------------------------


class Recorder:
    """A throwaway plugin recording every notification it gets."""

    def __init__(self, log: list[tuple[str, str, Call]], name: str, fail: bool = False) -> None:
        self.log = log
        self.name = name
        self.fail = fail

    def _record(self, hook: str, call: Call) -> None:
        self.log.append((self.name, hook, call))
        if self.fail:
            raise RuntimeError(f"{self.name} is broken")

    @hookimpl
    def call_started(self, call: Call) -> None:
        self._record("call_started", call)

    @hookimpl
    def call_identified(self, call: Call) -> None:
        self._record("call_identified", call)

    @hookimpl
    def call_answered(self, call: Call) -> None:
        self._record("call_answered", call)

    @hookimpl
    def call_ended(self, call: Call) -> None:
        self._record("call_ended", call)


class ErrorCounter:
    def __init__(self) -> None:
        self.counted: list[tuple[str, str]] = []

    def plugin_error(self, plugin: str, hook: str) -> None:
        self.counted.append((plugin, hook))


def answered_call_events() -> list[CallEvent]:
    """A real inbound call, answered and hung up, as the tracker reports it."""
    tracker = CallTracker(LineIdentity(seat="seat-7", device_id="modem0", line="1"), new_uuid=lambda: "c-1")
    events: list[CallEvent] = []
    for seconds, cls in ((0, Ring), (5, OffHook), (65, OnHook)):
        now = T0 + timedelta(seconds=seconds)
        events += tracker.feed(cls(device_id="modem0", line="1", at=now), now)
    return events


async def notifications(kind: CallEventKind, hook: str) -> None:
    log: list[tuple[str, str, Call]] = []
    observer = HookObserver(fresh_pm((Recorder(log, "recorder"), "recorder")))
    events = answered_call_events()
    assert [e.kind for e in events] == [CallEventKind.STARTED, CallEventKind.ANSWERED, CallEventKind.ENDED]
    for event in events:
        await observer.notify(event)
    (event,) = [e for e in events if e.kind is kind]
    assert [(name, h) for name, h, _ in log if h == hook] == [("recorder", hook)]
    assert [call for _, h, call in log if h == hook] == [event.call]


async def test_hook_call_started() -> None:
    await notifications(CallEventKind.STARTED, "call_started")


async def test_hook_call_identified() -> None:
    log: list[tuple[str, str, Call]] = []
    observer = HookObserver(fresh_pm((Recorder(log, "recorder"), "recorder")))
    started, answered, _ = answered_call_events()
    identified = CallEvent(
        CallEventKind.IDENTIFIED, replace(started.call, number_raw="13800138000"), started.at
    )
    for message in (started, identified, answered):
        await observer.notify(message)
    assert [(h, c.number_raw) for _, h, c in log if h == "call_identified"] == [
        ("call_identified", "13800138000")
    ]


async def test_hook_call_answered() -> None:
    await notifications(CallEventKind.ANSWERED, "call_answered")


async def test_hook_call_ended() -> None:
    await notifications(CallEventKind.ENDED, "call_ended")


async def test_hook_observer_dispatches_in_order_and_skips_the_rest() -> None:
    log: list[tuple[str, str, Call]] = []
    observer = HookObserver(fresh_pm((Recorder(log, "recorder"), "recorder")))
    assert isinstance(observer, Observer)
    assert (observer.name, observer.must_deliver) == ("plugin-hooks", False)
    started, answered, ended = answered_call_events()
    identified = CallEvent(CallEventKind.IDENTIFIED, started.call, started.at)
    line = LineStatus("seat-7", "1", "modem0", "", "", LineState.RINGING, T0, "c-1")
    for message in (started, identified, line, answered, ended):
        await observer.notify(message)
    assert [hook for _, hook, _ in log] == ["call_started", "call_identified", "call_answered", "call_ended"]
    assert ended.call.talk_seconds == 60.0
    assert log[-1][2] == ended.call


async def test_a_raising_plugin_never_silences_the_others(caplog: pytest.LogCaptureFixture) -> None:
    log: list[tuple[str, str, Call]] = []
    counter = ErrorCounter()
    pm = fresh_pm(
        (Recorder(log, "first"), "first"),
        (Recorder(log, "middle", fail=True), "middle"),
        (Recorder(log, "last"), "last"),
    )
    observer = HookObserver(pm, counter)
    events = answered_call_events()
    with caplog.at_level(logging.ERROR, logger="agent.seat.observers"):
        for event in events:
            await observer.notify(event)

    for hook in ("call_started", "call_answered", "call_ended"):
        assert sorted(name for name, h, _ in log if h == hook) == ["first", "last", "middle"]
    assert counter.counted == [
        ("middle", "call_started"),
        ("middle", "call_answered"),
        ("middle", "call_ended"),
    ]
    failures = [r for r in caplog.records if r.name == "agent.seat.observers"]
    assert [r.getMessage() for r in failures] == [
        "plugin middle failed in call_started",
        "plugin middle failed in call_answered",
        "plugin middle failed in call_ended",
    ]
    assert all(r.exc_info is not None for r in failures)


def test_notify_each_isolates_without_a_counter(caplog: pytest.LogCaptureFixture) -> None:
    log: list[tuple[str, str, Call]] = []
    pm = fresh_pm((Recorder(log, "broken", fail=True), "broken"), (Recorder(log, "fine"), "fine"))
    call = answered_call_events()[-1].call
    with caplog.at_level(logging.ERROR, logger="agent.seat.observers"):
        notify_each(pm, "call_ended", None, call=call)
    assert sorted((name, hook) for name, hook, _ in log) == [("broken", "call_ended"), ("fine", "call_ended")]
    assert "plugin broken failed in call_ended" in caplog.text


def test_notify_each_passes_only_the_arguments_an_implementation_takes() -> None:
    # pluggy lets an implementation take fewer arguments than its spec; so must notify_each.
    seen: list[str] = []

    class Counts:
        @hookimpl
        def call_ended(self) -> None:
            seen.append("ended")

    counter = ErrorCounter()
    pm = fresh_pm((Counts(), "counts"))
    notify_each(pm, "call_ended", counter, call=answered_call_events()[-1].call)
    assert (seen, counter.counted) == (["ended"], [])


# -- contributions: routes and commands -------------------------------------------------------


class Pages:
    @hookimpl
    def register_routes(self, register: Callable[[Any], None]) -> None:
        async def hello(request: Request) -> PlainTextResponse:
            return PlainTextResponse(f"hello {request.query_params['number']}")

        register(Route("/plugins/pages/hello", hello, name="pages-hello"))


async def test_hook_register_routes() -> None:
    pm = fresh_pm((Pages(), "pages"))
    routes: list[Any] = []
    pm.hook.register_routes(register=routes.append)
    (route,) = routes
    assert isinstance(route, Route)
    assert route.path == "/plugins/pages/hello"
    assert route.url_path_for("pages-hello") == "/plugins/pages/hello"

    # Serve one request through the route's ASGI interface (no socket involved).
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/plugins/pages/hello",
        "query_string": b"number=10086",
        "headers": [],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await route.handle(scope, receive, send)
    assert sent[0]["status"] == 200
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"hello 10086"


class Commands:
    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        @cli.command()
        @click.argument("number")
        def greet(number: str) -> None:
            """Say hello to a number."""
            click.echo(f"hello {number}")


def test_hook_register_commands() -> None:
    @click.group()
    def cli() -> None:
        """The test's stand-in for the cti-agent group."""

    pm = fresh_pm((Commands(), "commands"))
    pm.hook.register_commands(cli=cli)
    assert "greet" in cli.commands
    result = CliRunner().invoke(cli, ["greet", "13812345678"])
    assert result.exit_code == 0, result.output
    assert result.output == "hello 13812345678\n"


class Decodes:
    """A plugin contributing a decoder for lines of ``RING`` / ``NMBR=...`` text."""

    @hookimpl
    def register_decoders(self, register: Any) -> None:
        from agent.events import CallerId, Decoder, LineError, Ring

        def decode(data: bytes) -> list[Any]:
            at = datetime(2026, 1, 1, tzinfo=UTC)
            out: list[Any] = []
            for text in data.decode("ascii", "replace").splitlines():
                if text == "RING":
                    out.append(Ring(device_id="file", line="1", at=at))
                elif text.startswith("NMBR="):
                    out.append(CallerId(device_id="file", line="1", at=at, number=text[5:]))
                else:
                    out.append(LineError(device_id="file", line="1", at=at, error="not RING/NMBR", raw=text))
            return out

        register(Decoder("toy", "RING and NMBR= lines", decode, lambda head: 0.9 * head.startswith(b"RING")))


def test_hook_register_decoders() -> None:
    from agent.decode import collect_decoders, decode, pick_decoder

    pm = fresh_pm((Decodes(), "toy-plugin"))
    decoders = collect_decoders(pm)
    assert list(decoders) == ["toy"]
    assert pick_decoder(decoders, b"RING\nNMBR=13800138000\n") is decoders["toy"]
    assert pick_decoder(decoders, b"\x80\x10garbage") is None
    records = list(decode(decoders["toy"], b"RING\nNMBR=13800138000\n??\n", region="CN"))
    assert [r["kind"] for r in records] == ["ring", "caller_id", "error"]
    assert records[1]["number"] == "13800138000"
    assert records[1]["number_e164"] == "+8613800138000"
    assert records[2]["raw"] == "??"
    assert records[2]["error"] == "not RING/NMBR"

    twice = fresh_pm((Decodes(), "toy-plugin"), (Decodes(), "copycat"))
    with pytest.raises(ConfigError, match="'toy-plugin' and 'copycat'"):
        collect_decoders(twice)


# -- agent_configured -----------------------------------------------------------------


class ConfiguredLookup:
    """What a configured plugin returns: an object with its own hook implementations."""

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    @hookimpl
    def lookup_customer(self, number_e164: str | None, number_raw: str) -> Customer | None:
        return Customer(name=f"{self.greeting} {number_raw}", source="configured")


class Configurable:
    """A plugin that is off unless ``[plugins.configurable]`` is in the config."""

    @hookimpl
    def agent_configured(self, config: Any) -> ConfiguredLookup | None:
        section = config.plugins.get("configurable")
        if section is None:
            return None
        if "greeting" not in section:
            raise ConfigError("plugins.configurable.greeting: required")
        return ConfiguredLookup(section["greeting"])


class Broken:
    @hookimpl
    def agent_configured(self, config: Any) -> object:
        raise RuntimeError("broken plugin")


def test_hook_agent_configured() -> None:
    from agent.config import Config
    from agent.seat.observers import configure_plugins

    errors = ErrorCounter()
    pm = fresh_pm((Configurable(), "configurable"), (Broken(), "broken"))
    configure_plugins(pm, Config(), errors)
    assert "configurable.configured" not in registered_names(pm)  # off unless configured
    assert errors.counted == [("broken", "agent_configured")]

    configure_plugins(pm, Config(plugins={"configurable": {"greeting": "hello"}}), None)
    assert "configurable.configured" in registered_names(pm)
    found = pm.hook.lookup_customer(number_e164=None, number_raw="10086")
    assert found == Customer(name="hello 10086", source="configured")

    # Configured again (a restarted agent on the same manager): replaced, not doubled.
    configure_plugins(pm, Config(plugins={"configurable": {"greeting": "hi"}}), None)
    assert pm.hook.lookup_customer(number_e164=None, number_raw="1") == Customer(
        name="hi 1", source="configured"
    )

    with pytest.raises(ConfigError, match="greeting: required"):
        configure_plugins(pm, Config(plugins={"configurable": {}}), None)


def test_hook_recording_finished() -> None:
    from agent.events import RecordingFacts

    got: list[tuple[str, str, str]] = []

    class Archiver:
        @hookimpl
        def recording_finished(self, call: Call, recording: RecordingFacts) -> None:
            got.append((call.uuid, recording.path, recording.status))

    class Broken:
        @hookimpl
        def recording_finished(self, call: Call, recording: RecordingFacts) -> None:
            raise OSError("upload failed")

    errors: list[tuple[str, str]] = []

    class Counter:
        def plugin_error(self, plugin: str, hook: str) -> None:
            errors.append((plugin, hook))

    pm = fresh_pm((Broken(), "broken"), (Archiver(), "archiver"))
    call = Call(
        uuid="c-1",
        seat="s",
        device_id="d",
        line="1",
        rep="r",
        team="t",
        direction=Direction.IN,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    facts = RecordingFacts(
        "c-1", "recordings/2026/01/01/c-1.flac", "flac", 8000, 1, 12.5, 9000, "ab" * 32, "complete"
    )
    notify_each(pm, "recording_finished", Counter(), call=call, recording=facts)
    assert got == [("c-1", "recordings/2026/01/01/c-1.flac", "complete")]
    assert errors == [("broken", "recording_finished")]
