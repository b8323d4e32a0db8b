"""The TOML config: defaults, validation, and error messages that point into the file."""

from __future__ import annotations

import socket
import textwrap
import typing
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.calls import TrackerConfig
from agent.config import (
    Config,
    DailyTarget,
    LineSection,
    RankKey,
    TargetsSection,
    default_data_dir,
    device_options,
    load_config,
    locate,
    parse_listen,
)
from agent.errors import ConfigError
from agent.seat.devices import DeviceRegistry
from storage.kpis import RANK_KEYS
from storage.teams import StoredTargets

Writer = Callable[[str], Path]


@pytest.fixture
def write(tmp_path: Path) -> Writer:
    """``write(text)`` puts dedented TOML in ``agent.toml`` and returns its path."""

    def _write(text: str) -> Path:
        path = tmp_path / "agent.toml"
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write


def error_of(path: Path, registry: DeviceRegistry | None = None) -> str:
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, registry)
    return str(excinfo.value)


# -- defaults and a full file -----------------------------------------------------------------


def test_defaults_load_with_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CTI_AGENT_DATABASE_URL", raising=False)
    config = load_config(None)
    assert config.agent.seat == socket.gethostname()
    assert (config.agent.rep, config.agent.team, config.agent.region) == ("", "", "CN")
    assert config.agent.data_dir == default_data_dir()
    assert config.agent.disabled_plugins == []
    assert config.agent.lookup_timeout == 3.0
    assert config.storage.url is None
    assert (config.web.enabled, config.web.listen) == (True, "127.0.0.1:8330")
    assert (config.metrics.enabled, config.metrics.listen) == (True, "127.0.0.1:9330")
    assert config.metrics.effective_call_seconds == 60.0
    assert (config.tracker.ring_timeout, config.tracker.dial_timeout) == (8.0, 4.0)
    assert config.tracker.no_number_calls is False
    assert (config.devices, config.lines) == ([], [])
    assert config.database_url == f"sqlite:///{default_data_dir() / 'cti-agent.db'}"


def test_default_data_dir_is_the_platform_data_dir(session_data_home: Path) -> None:
    # The session conftest points XDG_DATA_HOME at a temporary directory.
    assert default_data_dir() == session_data_home / "cti-agent"


FULL = """
# seat 7 of the north team
[agent]
seat = "seat-7"
rep = "wang"
team = "north"
region = "us"            # upper-cased
data_dir = "/var/lib/cti-agent"
disabled_plugins = ["notify_desktop"]
lookup_timeout = 1.5

[storage]
url = "postgresql+psycopg://cti@db.example/cti"

[web]
enabled = false
listen = "[::1]:8080"

[metrics]
listen = "0.0.0.0:9100"
effective_call_seconds = 30

[tracker]
ring_timeout = 6.5
dial_timeout = 3
no_number_calls = true

[[devices]]
id = "modem0"
type = "tiny"
port = "/dev/ttyACM0"
baud = 115200

[[devices]]
id = "box"
type = "tiny"
enabled = false
port = "/dev/ttyUSB0"

[[lines]]
id = "desk-1"
device = "modem0"
rep = "li"

[[lines]]
id = "box-2"
device = "box"
port = "2"
"""


def test_a_full_file(write: Writer, tiny_registry: DeviceRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CTI_AGENT_DATABASE_URL", raising=False)
    config = load_config(write(FULL), tiny_registry)
    agent = config.agent
    assert (agent.seat, agent.rep, agent.team, agent.region) == ("seat-7", "wang", "north", "US")
    assert agent.data_dir == Path("/var/lib/cti-agent")
    assert agent.disabled_plugins == ["notify_desktop"]
    assert agent.lookup_timeout == 1.5
    assert config.database_url == "postgresql+psycopg://cti@db.example/cti"
    assert (config.web.enabled, config.web.listen) == (False, "[::1]:8080")
    assert (config.metrics.listen, config.metrics.effective_call_seconds) == ("0.0.0.0:9100", 30.0)

    assert [(d.id, d.type, d.enabled) for d in config.devices] == [
        ("modem0", "tiny", True),
        ("box", "tiny", False),
    ]
    assert config.devices[0].options == {"port": "/dev/ttyACM0", "baud": 115200}
    options = device_options(config, tiny_registry, config.devices[1])
    assert (options.port, options.baud) == ("/dev/ttyUSB0", 9600)

    assert config.tracker_config(reports_hook=False, reports_connect=True) == TrackerConfig(
        ring_timeout=6.5,
        dial_timeout=3.0,
        reports_hook=False,
        reports_connect=True,
        no_number_calls=True,
        region="US",
    )
    assert config.tracker_config(reports_hook=False, reports_connect=False, reports_end=True).reports_end

    assert config.line_for("modem0", "1") == LineSection(id="desk-1", device="modem0", port="1", rep="li")
    assert config.line_for("box", "2").id == "box-2"
    # Ports without a [[lines]] table get a line named after the device.
    assert config.line_for("box", "1") == LineSection(id="box", device="box", port="1")
    assert config.line_for("modem0", "3") == LineSection(id="modem0:3", device="modem0", port="3")


def test_overrides_merge_over_the_file(write: Writer) -> None:
    path = write('[agent]\nseat = "seat-7"\nrep = "wang"\n')
    config = load_config(path, overrides={"agent": {"rep": "demo"}, "web": {"listen": "127.0.0.1:0"}})
    assert (config.agent.seat, config.agent.rep) == ("seat-7", "demo")
    assert config.web.listen == "127.0.0.1:0"


# -- mistakes point at the file, the line and the key -------------------------------------------

UNKNOWN_KEYS = [
    ("top level", 'colour = "blue"\n[agent]\nseat = "s"\n', 1, "colour"),
    ("agent", '[agent]\nseat = "s"\ncolour = "blue"\n', 3, "agent.colour"),
    ("storage", "[storage]\n\npool_size = 5\n", 3, "storage.pool_size"),
    ("web", "[agent]\n[web]\nenabled = true\nport = 80\n", 4, "web.port"),
    ("metrics", "[metrics]  # exporter\n  prefix = 'x'\n", 2, "metrics.prefix"),
    ("tracker", "[tracker]\nring_timeout = 5\ndial_time = 3\n", 3, "tracker.dial_time"),
    ("unknown table", "[agent]\n\n[recorder]\nformat = 'flac'\n", 3, "recorder"),
    (
        "second line",
        '[[devices]]\nid = "m0"\ntype = "tiny"\n[[lines]]\nid = "a"\ndevice = "m0"\n'
        '[[lines]]\nid = "b"\ndevice = "m0"\ncolour = 1\n',
        10,
        "lines[1].colour",
    ),
    ("inline table", 'agent = { seat = "s", colour = 2 }\n', 1, "agent.colour"),
    ("dotted key", "tracker.ring_timeout = 3\ntracker.colour = 1\n", 2, "tracker.colour"),
]


@pytest.mark.parametrize(
    ("text", "line", "key"), [u[1:] for u in UNKNOWN_KEYS], ids=[u[0] for u in UNKNOWN_KEYS]
)
def test_an_unknown_key_names_file_line_and_key(write: Writer, text: str, line: int, key: str) -> None:
    path = write(text)
    assert error_of(path) == f"{path}:{line}: {key}: unknown key"


WRONG_VALUES = [
    ("bool", "[web]\nenabled = 'maybe'\n", 2, "web.enabled", "valid boolean"),
    ("number", "[tracker]\nring_timeout = 'soon'\n", 2, "tracker.ring_timeout", "valid number"),
    ("not positive", "[tracker]\n\ndial_timeout = 0\n", 3, "tracker.dial_timeout", "greater than 0"),
    ("negative", "[metrics]\neffective_call_seconds = -1\n", 2, "metrics.effective_call_seconds", "greater"),
    ("list", "[agent]\ndisabled_plugins = 'simulator'\n", 2, "agent.disabled_plugins", "valid list"),
    ("region", "[agent]\nregion = 'XX'\n", 2, "agent.region", "unknown region 'XX'"),
    ("listen", "[web]\nlisten = '8330'\n", 2, "web.listen", "expected HOST:PORT"),
    ("port range", "[metrics]\nlisten = '127.0.0.1:70000'\n", 2, "metrics.listen", "out of range"),
    ("empty seat", "[agent]\nseat = ''\n", 2, "agent.seat", "at least 1 character"),
    ("device id", "[[devices]]\nid = 'modem 0'\ntype = 'tiny'\n", 2, "devices[0].id", "pattern"),
    ("missing device type", "[[devices]]\nid = 'm0'\n", 1, "devices[0].type", "Field required"),
    ("table, not a value", "web = 3\n", 1, "web", "valid dictionary"),
]


@pytest.mark.parametrize(
    ("text", "line", "key", "words"), [w[1:] for w in WRONG_VALUES], ids=[w[0] for w in WRONG_VALUES]
)
def test_a_wrong_value_names_file_line_and_key(
    write: Writer, text: str, line: int, key: str, words: str
) -> None:
    path = write(text)
    message = error_of(path)
    assert message.startswith(f"{path}:{line}: {key}: ")
    assert words in message
    assert "Traceback" not in message


def test_every_mistake_is_reported_at_once(write: Writer) -> None:
    path = write("[agent]\ncolour = 1\n[web]\nenabled = 'maybe'\n")
    assert error_of(path).splitlines() == [
        f"{path}:2: agent.colour: unknown key",
        f"{path}:4: web.enabled: Input should be a valid boolean, unable to interpret input",
    ]


def test_invalid_toml_names_the_line(write: Writer) -> None:
    path = write('[agent]\nseat = "seat-7"\nrep = \n')
    message = error_of(path)
    assert message.startswith(f"{path}: not valid TOML: ")
    assert "line 3" in message


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert error_of(path).startswith(f"{path}: cannot read the config file: ")


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes('[agent]\nrep = "王"\n'.encode("gb18030"))
    assert error_of(path) == f"{path}: the config file is not UTF-8 text"


def test_duplicate_device_ids(write: Writer) -> None:
    path = write("[[devices]]\nid = 'm0'\ntype = 'tiny'\n[[devices]]\nid = 'm0'\ntype = 'tiny'\n")
    message = error_of(path)
    assert message.startswith(f"{path}:5: devices[1].id: ")
    assert "device id 'm0' is used twice" in message


def test_duplicate_line_ids(write: Writer) -> None:
    path = write(
        "[[devices]]\nid = 'm0'\ntype = 'tiny'\n"
        "[[lines]]\nid = 'desk'\ndevice = 'm0'\n[[lines]]\nid = 'desk'\ndevice = 'm0'\nport = '2'\n"
    )
    message = error_of(path)
    assert message.startswith(f"{path}:8: lines[1].id: ")
    assert "line id 'desk' is used twice" in message


def test_a_port_mapped_twice(write: Writer) -> None:
    path = write(
        "[[devices]]\nid = 'm0'\ntype = 'tiny'\n"
        "[[lines]]\nid = 'a'\ndevice = 'm0'\n[[lines]]\nid = 'b'\ndevice = 'm0'\nport = '1'\n"
    )
    message = error_of(path)
    assert message.startswith(f"{path}:10: lines[1].port: ")
    assert "mapped twice" in message


def test_a_line_naming_a_missing_device(write: Writer) -> None:
    path = write("[[devices]]\nid = 'm0'\ntype = 'tiny'\n[[lines]]\nid = 'desk'\ndevice = 'm9'\n")
    message = error_of(path)
    assert message.startswith(f"{path}:6: lines[0].device: ")
    assert "names device 'm9', which is not configured" in message


# -- device options, validated by the device type's Config -------------------------------------

DEVICES = """
[agent]
seat = "seat-7"

[[devices]]
id = "m0"
type = "tiny"
port = "/dev/ttyACM0"

[[devices]]    # the second device
id = "m1"
type = "tiny"
port = "/dev/ttyACM1"
{extra}
"""


@pytest.mark.parametrize(
    ("extra", "line", "error"),
    [
        ("bauds = 9600", 13, "devices[1].bauds: unknown key"),
        ("baud = 'fast'", 13, "devices[1].baud: Input should be a valid integer"),
    ],
)
def test_device_options_are_validated_by_the_device_type(
    write: Writer,
    tiny_registry: DeviceRegistry,
    extra: str,
    line: int,
    error: str,
) -> None:
    path = write(DEVICES.format(extra=extra))
    # Without a registry, device options are not checked...
    load_config(path)
    # ...with one, they are, and the error points into the right [[devices]] table.
    assert error_of(path, tiny_registry).startswith(f"{path}:{line}: {error}")


def test_a_missing_device_option_points_at_its_table(write: Writer, tiny_registry: DeviceRegistry) -> None:
    path = write(
        "[[devices]]\nid = 'm0'\ntype = 'tiny'\nport = 'x'\n\n[[devices]]\nid = 'm1'\ntype = 'tiny'\n"
    )
    assert error_of(path, tiny_registry) == f"{path}:6: devices[1].port: Field required"


def test_an_unknown_device_type(write: Writer, tiny_registry: DeviceRegistry) -> None:
    path = write(
        "[[devices]]\nid = 'm0'\ntype = 'tiny'\nport = 'x'\n[[devices]]\nid = 'm1'\ntype = 'modem'\n"
    )
    assert error_of(path, tiny_registry) == (
        f"{path}:7: devices[1].type: unknown device type 'modem' (known: tiny)"
    )


# -- parse_listen and database_url -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8330", ("127.0.0.1", 8330)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("localhost:9330", ("localhost", 9330)),
        (" seat-7.example:1 ", ("seat-7.example", 1)),
        (":8330", ("127.0.0.1", 8330)),  # no host: loopback, never every interface
        ("[::1]:8330", ("::1", 8330)),
        ("[::]:0", ("::", 0)),
        ("[fe80::1%eth0]:65535", ("fe80::1%eth0", 65535)),
    ],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    "value", ["8330", "127.0.0.1", "::1:8330", "[::1]", "[::1]8330", "host:port", "host:65536", "a:b:1", ""]
)
def test_parse_listen_rejects(value: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT|out of range"):
        parse_listen(value)


def test_database_url_precedence(write: Writer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CTI_AGENT_DATABASE_URL", raising=False)
    data_dir = tmp_path / "data"
    bare = load_config(write(f"[agent]\ndata_dir = '{data_dir}'\n"))
    assert bare.database_url == f"sqlite:///{data_dir}/cti-agent.db"

    with_url = load_config(
        write(f"[agent]\ndata_dir = '{data_dir}'\n[storage]\nurl = 'sqlite:///other.db'\n")
    )
    assert with_url.database_url == "sqlite:///other.db"

    monkeypatch.setenv("CTI_AGENT_DATABASE_URL", "postgresql+psycopg://cti@central/cti")
    assert with_url.database_url == "postgresql+psycopg://cti@central/cti"
    assert bare.database_url == "postgresql+psycopg://cti@central/cti"

    # An empty variable is as good as unset.
    monkeypatch.setenv("CTI_AGENT_DATABASE_URL", "")
    assert with_url.database_url == "sqlite:///other.db"


# -- locate -----------------------------------------------------------------------------------

LOCATE_TEXT = """\
[agent]
seat = "s"
"quoted" = 1

[[devices]]
id = "a"

[[ devices ]]  # spaced header
id = "b"
options.speed = 3
"""


@pytest.mark.parametrize(
    ("loc", "line"),
    [
        (("agent",), 1),
        (("agent", "seat"), 2),
        (("agent", "quoted"), 3),
        (("agent", "missing"), 1),
        (("devices", 0, "id"), 6),
        (("devices", 1), 8),
        (("devices", 1, "id"), 9),
        (("devices", 1, "options", "speed"), 10),
        (("devices", 2, "id"), None),
        (("web", "listen"), None),
        ((), None),
    ],
)
def test_locate(loc: tuple[str | int, ...], line: int | None) -> None:
    assert locate(LOCATE_TEXT, loc) == line


def test_locate_in_no_text() -> None:
    assert locate("", ("agent", "seat")) is None


def test_a_disabled_device_of_a_type_not_installed_is_accepted(
    write: Writer, tiny_registry: DeviceRegistry
) -> None:
    path = write("[[devices]]\nid = 'old'\ntype = 'gone-vendor'\nenabled = false\nspeed = 3\n")
    config = load_config(path, tiny_registry)
    assert [d.id for d in config.devices] == ["old"]
    enabled = write("[[devices]]\nid = 'old'\ntype = 'gone-vendor'\n")
    assert "unknown device type 'gone-vendor'" in error_of(enabled, tiny_registry)


# -- [web] console_url and [recording] team_retention_days ---------------------------------------


def test_console_url_is_an_http_base_without_its_trailing_slash(write: Writer) -> None:
    assert load_config(None).web.console_url is None
    config = load_config(write('[web]\nconsole_url = "https://console.example:8340/cti/"\n'))
    assert config.web.console_url == "https://console.example:8340/cti"


@pytest.mark.parametrize(
    "value",
    [
        "javascript:alert(1)",
        "ftp://console.example",
        "http://",
        "console.example:8340",
        "http://h/?x=1",
        "http://h:99999",
    ],
)
def test_console_url_rejects(write: Writer, value: str) -> None:
    assert "web.console_url" in error_of(write(f'[web]\nconsole_url = "{value}"\n'))


def test_team_retention_days(write: Writer) -> None:
    config = load_config(write('[recording]\nteam_retention_days = { north = 30, "东区" = 365 }\n'))
    assert config.recording.team_retention_days == {"north": 30, "东区": 365}
    assert config.recording.retention_days is None
    assert "team_retention_days.north" in error_of(
        write("[recording]\nteam_retention_days = { north = 0 }\n")
    )


# -- the centre's statistics settings and the teams' stored targets ---------------------------


def test_centre_statistics_settings(write: Writer) -> None:
    assert Config().centre.reps_see_team_ranking is False
    assert Config().centre.rank_by == "talk_seconds"
    config = load_config(write('[centre]\nreps_see_team_ranking = true\nrank_by = "effective"\n'))
    assert config.centre.reps_see_team_ranking is True
    assert config.centre.rank_by == "effective"
    assert "centre.rank_by" in error_of(write('[centre]\nrank_by = "mood"\n'))


def test_the_rank_keys_the_config_accepts_are_those_the_kpis_rank_by() -> None:
    assert set(typing.get_args(RankKey)) == set(RANK_KEYS)


def test_the_teams_stored_targets_lie_over_the_files_team_tables_but_under_a_reps() -> None:
    book = TargetsSection(
        calls=80,
        talk_seconds=3600,
        teams={"north": DailyTarget(calls=100, effective_calls=20)},
        reps={"alice": DailyTarget(calls=150)},
    )
    stored = book.with_teams(
        {"north": StoredTargets(calls=120), "south": StoredTargets(talk_seconds=5400, effective_calls=10)}
    )
    # north: the database's calls over the file's, the file's effective calls kept.
    assert stored.for_rep("bob", "north") == DailyTarget(calls=120, talk_seconds=3600, effective_calls=20)
    # A rep's own target wins over both.
    assert stored.for_rep("alice", "north").calls == 150
    # A team only the database knows, and a team nobody knows (the floor's defaults).
    assert stored.for_rep("carol", "south") == DailyTarget(calls=80, talk_seconds=5400, effective_calls=10)
    assert stored.for_rep("dave", "east") == DailyTarget(calls=80, talk_seconds=3600)
    # The section itself is left as it was.
    assert book.for_rep("bob", "north").calls == 100
    assert book.with_teams({}) == book
