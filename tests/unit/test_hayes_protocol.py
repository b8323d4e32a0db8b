"""The hayes plugin's pure parts: line splitting, caller-ID transcripts, the init plan, USB lookup, config."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pluggy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

import plugins.hayes as hayes_plugin
from agent import hookspecs
from agent.decode import Decoder, collect_decoders, decode, pick_decoder
from agent.errors import DeviceError
from agent.events import CallerId, LineError, LineEvent, OffHook, OnHook, Ring
from agent.plugins import PROJECT
from agent.seat.devices import DeviceRegistry
from plugins.hayes.config import DEFAULT_CID_COMMANDS, HayesConfig
from plugins.hayes.device import HayesModem
from plugins.hayes.protocol import HayesParser, InitPlan, LineSplitter, Reply, sniff_capture
from plugins.hayes.transport import find_usb_port

FIXTURES = Path(__file__).parent.parent / "fixtures" / "hayes"
T0 = datetime(2024, 1, 15, 12, 30, tzinfo=UTC)


# -- transcripts ------------------------------------------------------------------


@dataclass
class Expected:
    kind: str
    exact: dict[str, Any]
    contains: dict[str, str]
    where: str


def _value(text: str) -> Any:
    return None if text == "null" else text.replace("\\n", "\n")


def _modem_line(text: str) -> bytes:
    """A transcript line as the modem's bytes (``DLE:X`` is the shielded code 0x10 'X')."""
    if text.startswith("DLE:") and len(text) == 5:
        return b"\x10" + text[4].encode()
    return text.encode("latin-1") + b"\r\n"


def load_transcript(path: Path) -> tuple[list[tuple[str, Any]], list[Expected]]:
    """Steps (``("line", bytes)`` or ``("wait", seconds)``) and the expected events."""
    steps: list[tuple[str, Any]] = []
    expected: list[Expected] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        where = f"{path.name}:{number}"
        if raw.startswith("#") or not raw.strip():
            continue
        if raw == "<" or raw.startswith("< "):
            steps.append(("line", _modem_line(raw[2:])))
        elif raw.startswith("! wait "):
            steps.append(("wait", float(raw.split()[2])))
        elif raw.startswith("> "):
            kind, *pairs = shlex.split(raw[2:])
            exact: dict[str, Any] = {}
            contains: dict[str, str] = {}
            for pair in pairs:
                key, _, value = pair.partition("=")
                if key.endswith("~"):
                    contains[key[:-1]] = _value(value)
                else:
                    exact[key] = _value(value)
            expected.append(Expected(kind, exact, contains, where))
        else:
            raise AssertionError(f"{where}: unreadable transcript line {raw!r}")
    return steps, expected


def replay(steps: list[tuple[str, Any]], *, chunk: int | None = None) -> list[LineEvent]:
    """Feed the transcript to a fresh parser; ``chunk`` splits the bytes into pieces of that size."""
    parser = HayesParser("modem", "1", block_timeout=2.0)
    now = T0
    events: list[LineEvent] = []
    for what, value in steps:
        if what == "wait":
            now += timedelta(seconds=value)
            out = parser.flush(now)
        elif chunk is None:
            out = parser.feed(value, now)
        else:
            out = []
            for i in range(0, len(value), chunk):
                out += parser.feed(value[i : i + chunk], now)
        events += [o for o in out if isinstance(o, LineEvent)]
    events += [o for o in parser.flush(now + timedelta(seconds=60)) if isinstance(o, LineEvent)]
    return events


def check(events: list[LineEvent], expected: list[Expected]) -> None:
    kinds = [e.kind for e in events]
    assert kinds == [x.kind for x in expected], f"{[x.where for x in expected]}\n{events}"
    for event, want in zip(events, expected, strict=True):
        got = event.to_dict()
        for key, value in want.exact.items():
            assert got[key] == value, f"{want.where}: {key}={got[key]!r}, expected {value!r}"
        for key, value in want.contains.items():
            assert value in (got[key] or ""), f"{want.where}: {key}={got[key]!r} lacks {value!r}"


TRANSCRIPTS = sorted(FIXTURES.glob("*.txt"))


def test_every_style_has_a_transcript() -> None:
    names = {p.stem for p in TRANSCRIPTS}
    assert {"usr_5637", "zoom_no_spaces", "conexant", "runtogether", "absent", "unformatted_hex"} <= names
    for path in TRANSCRIPTS:
        assert "Source:" in path.read_text(encoding="utf-8"), f"{path.name} cites no source"


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_transcript(path: Path) -> None:
    steps, expected = load_transcript(path)
    assert expected, f"{path.name} expects nothing"
    check(replay(steps), expected)


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
@pytest.mark.parametrize("chunk", [1, 7])
def test_transcript_in_pieces(path: Path, chunk: int) -> None:
    """Reads split anywhere (a CR in one read, its LF in the next) change nothing."""
    steps, expected = load_transcript(path)
    check(replay(steps, chunk=chunk), expected)


# -- the splitter ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"RING\r\n", ["RING"]),
        (b"RING\n", ["RING"]),
        (b"RING\r", ["RING"]),
        (b"RING\n\r", ["RING"]),
        (b"\r\nOK\r\n", ["", "OK"]),
        (b"A\r\n\r\nB\r\n", ["A", "", "B"]),
        (b"A\r\rB\n", ["A", "", "B"]),
        (b"A\x00B\x11\x13\r\n", ["AB"]),
        (b"AB\x10RCD\r\n", ["\x10R", "ABCD"]),
        (b"A\x10\x10B\r\n", ["AB"]),
    ],
)
def test_splitter(data: bytes, lines: list[str]) -> None:
    assert LineSplitter().feed(data) == lines


def test_splitter_keeps_a_half_line_and_caps_runaway_lines() -> None:
    splitter = LineSplitter(max_line=10)
    assert splitter.feed(b"NMBR = 5") == []
    assert splitter.pending == "NMBR = 5"
    assert splitter.feed(b"5555\r") == ["NMBR = 555", "55"]
    assert splitter.flush() == []
    assert splitter.feed(b"half") == []
    assert splitter.flush() == ["half"]


def test_cr_lf_split_across_reads_is_one_break() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"RING\r") == ["RING"]
    assert splitter.feed(b"\nDATE = 0115\r") == ["DATE = 0115"]
    assert splitter.feed(b"\n\r") == [""]


# -- replies and echo -------------------------------------------------------------------


def test_echo_and_replies_while_a_command_is_pending() -> None:
    parser = HayesParser("m")
    parser.command_sent()
    out = parser.feed(b"AT+VCID=1\r\r\nOK\r\n", T0)
    assert out == [Reply("OK", final=True, ok=True)]
    parser.command_sent()
    out = parser.feed(b"ATI3\r\r\nU.S. Robotics 56K FAX EXT V1.2.23\r\n\r\nOK\r\n", T0)
    assert out == [
        Reply("U.S. Robotics 56K FAX EXT V1.2.23", final=False, ok=True),
        Reply("OK", final=True, ok=True),
    ]
    parser.command_sent()
    assert parser.feed(b"\r\nERROR\r\n", T0) == [Reply("ERROR", final=True, ok=False)]
    assert not parser.command_pending


def test_result_codes_that_mean_hook_changes() -> None:
    parser = HayesParser("m", "7")
    parser.command_sent()
    out = parser.feed(b"NO DIALTONE\r\n", T0)
    assert out == [Reply("NO DIALTONE", final=True, ok=False)]
    out = parser.feed(b"NO CARRIER\r\nLINE IN USE\r\n", T0)
    assert [type(o) for o in out] == [Reply, OnHook, Reply, OffHook]
    assert all(o.line == "7" for o in out if isinstance(o, LineEvent))


def test_block_ends_on_the_time_out_and_deadline_says_when() -> None:
    parser = HayesParser("m", block_timeout=2.0)
    assert parser.deadline() is None
    assert parser.feed(b"DATE = 0115\r\nNMBR = 5551234\r\n", T0) == []
    assert parser.deadline() == T0 + timedelta(seconds=2)
    assert parser.flush(T0 + timedelta(seconds=1)) == []
    (event,) = parser.flush(T0 + timedelta(seconds=2))
    assert isinstance(event, CallerId)
    assert event.number == "5551234"
    assert event.at == T0
    assert parser.deadline() is None


def test_reset_forgets_partial_input() -> None:
    parser = HayesParser("m")
    parser.feed(b"DATE = 0115\r\nNMBR = 55", T0)
    parser.reset()
    assert parser.feed(b"\r\n", T0) == []
    assert parser.flush(T0 + timedelta(seconds=10)) == []


# -- property tests ---------------------------------------------------------------------

_FIELDISH = st.sampled_from(
    [
        "DATE",
        "TIME",
        "NMBR",
        "NAME",
        "MESG",
        "DDN_NMBR",
        "DDN",
        "NBR",
        "RING",
        "DATE TIME",
        "=",
        " = ",
        "O",
        "P",
    ]
)
_LINE = st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(_FIELDISH, st.text(alphabet="0123456789 ABCDEF#*+-", max_size=12)), max_size=8).map(
        "".join
    ),
)


@given(st.lists(_LINE, max_size=25), st.lists(st.integers(min_value=0, max_value=5), max_size=25))
def test_random_lines_never_crash_nor_invent_numbers(lines: list[str], waits: list[int]) -> None:
    parser = HayesParser("m")
    now = T0
    sent = ""
    events: list[Any] = []
    for index, line in enumerate(lines):
        data = line.encode("utf-8", "replace") + b"\r\n"
        sent += data.decode("latin-1")
        events += parser.feed(data, now)
        if index < len(waits):
            now += timedelta(seconds=waits[index])
            events += parser.flush(now)
    events += parser.flush(now + timedelta(seconds=60))
    for event in events:
        assert isinstance(event, Reply | Ring | CallerId | LineError | OnHook | OffHook)
        if isinstance(event, CallerId) and event.number is not None:
            assert event.number in sent


@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    parser = HayesParser("m")
    out = parser.feed(data, T0) + parser.flush(T0 + timedelta(seconds=60))
    for event in out:
        if isinstance(event, CallerId) and event.number is not None:
            assert event.number in data.decode("latin-1")


@given(st.sampled_from([0x04, 0x80]), st.binary(max_size=80), st.integers(min_value=1, max_value=70))
def test_random_hex_messages_are_errors_or_true_decodes(kind: int, body: bytes, wrap: int) -> None:
    """Hex dumps of random, truncated or corrupted messages: a LineError, never an invented number."""
    message = bytes([kind, len(body) & 0xFF]) + body
    digits = message.hex().upper()
    lines = "\r\n".join(digits[i : i + wrap] for i in range(0, len(digits), wrap))
    parser = HayesParser("m")
    out = parser.feed(f"RING\r\n{lines}\r\nRING\r\n".encode(), T0) + parser.flush(T0 + timedelta(minutes=1))
    assert [o.kind for o in out if isinstance(o, Ring)] == ["ring", "ring"]
    for event in out:
        if isinstance(event, CallerId) and event.number is not None:
            assert event.number.encode() in body


# -- the init plan ------------------------------------------------------------------------


def run_plan(plan: InitPlan, answers: dict[str, str]) -> list[str]:
    sent: list[str] = []
    while (command := plan.next_command()) is not None:
        sent.append(command)
        answer = answers.get(command, "ERROR")
        plan.reply(answer == "OK", answer)
    return sent


def test_plan_first_accepted_cid_command_wins() -> None:
    plan = InitPlan(["ATZ", "ATE0"], list(DEFAULT_CID_COMMANDS))
    sent = run_plan(plan, {"ATZ": "OK", "ATE0": "OK", "AT+VCID=1": "OK", "AT#CID=1": "OK"})
    assert sent == ["ATZ", "ATE0", "AT+VCID=1"]
    assert plan.cid_command == "AT+VCID=1"
    assert plan.done


def test_plan_falls_back_in_order() -> None:
    plan = InitPlan(["ATZ"], list(DEFAULT_CID_COMMANDS))
    sent = run_plan(plan, {"ATZ": "OK", "AT%CCID=1": "OK"})
    assert sent == ["ATZ", "AT+VCID=1", "AT#CID=1", "AT%CCID=1"]
    assert plan.cid_command == "AT%CCID=1"
    assert plan.refused == [("AT+VCID=1", "ERROR"), ("AT#CID=1", "ERROR")]


def test_plan_names_every_refused_cid_command() -> None:
    plan = InitPlan(["ATZ", "ATE0"], list(DEFAULT_CID_COMMANDS))
    with pytest.raises(DeviceError) as caught:
        run_plan(plan, {"ATZ": "OK", "ATE0": "OK"})
    message = str(caught.value)
    for command in DEFAULT_CID_COMMANDS:
        assert f"{command} (ERROR)" in message


def test_plan_stops_at_a_refused_init_command() -> None:
    plan = InitPlan(["ATZ", "AT&F1", "ATE0"], ["AT+VCID=1"])
    with pytest.raises(DeviceError, match="AT&F1"):
        run_plan(plan, {"ATZ": "OK", "ATE0": "OK", "AT+VCID=1": "OK"})


def test_plan_without_cid_commands_and_reply_with_nothing_outstanding() -> None:
    plan = InitPlan(["ATZ"], [])
    assert run_plan(plan, {"ATZ": "OK"}) == ["ATZ"]
    assert plan.cid_command is None
    with pytest.raises(DeviceError, match="no command outstanding"):
        plan.reply(True, "OK")


# -- USB lookup and config ----------------------------------------------------------------


@dataclass
class FakePort:
    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None = None


PORTS = [
    FakePort("/dev/ttyS0", None, None),
    FakePort("/dev/ttyACM0", 0x0803, 0x3095, "A1"),
    FakePort("/dev/ttyACM1", 0x0803, 0x3095, "B2"),
    FakePort("/dev/ttyACM2", 0x0572, 0x1329, None),
]


def test_find_usb_port() -> None:
    assert find_usb_port("0572:1329", None, PORTS) == "/dev/ttyACM2"
    assert find_usb_port("0803:3095", "B2", PORTS) == "/dev/ttyACM1"
    with pytest.raises(DeviceError, match="set serial_number"):
        find_usb_port("0803:3095", None, PORTS)
    with pytest.raises(DeviceError, match=r"no USB serial port 0803:3095 serial C3.*ttyACM0 \(0803:3095\)"):
        find_usb_port("0803:3095", "C3", PORTS)


def test_config_defaults_and_checks() -> None:
    config = HayesConfig(port="/dev/ttyACM0")
    assert config.baud == 115200
    assert config.init == ["ATZ", "ATE0"]
    assert config.cid_commands == ["AT+VCID=1", "AT#CID=1", "AT%CCID=1", "AT+CID=1"]
    assert config.line == "1"
    assert config.dial_pickup_delay == 4.0
    assert HayesConfig(usb="0803:3095", serial_number="A1").usb == "0803:3095"
    for bad in (
        {},
        {"port": "/dev/ttyACM0", "usb": "0803:3095"},
        {"usb": "803:3095"},
        {"port": "/dev/ttyACM0", "serial_number": "A1"},
        {"port": "/dev/ttyACM0", "init": ["ATZ\rATE0"]},
        {"port": "/dev/ttyACM0", "cid_commands": ["+VCID=1"]},
        {"port": "/dev/ttyACM0", "speed": 9600},
    ):
        with pytest.raises(ValidationError):
            HayesConfig(**bad)


# -- the plugin: device type and decoder ------------------------------------------------------


def test_plugin_registers_the_device_type_and_the_decoder() -> None:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(hayes_plugin, name="hayes")
    pm.check_pending()
    registry = DeviceRegistry.from_plugins(pm)
    assert registry.get("hayes") is HayesModem
    assert registry.owner("hayes") == "hayes"
    assert (HayesModem.reports_hook, HayesModem.can_dial, HayesModem.can_hangup) == (False, True, True)
    device = HayesModem("modem", HayesConfig(port="/nonexistent/tty", line="L2"))
    assert device.lines() == ["L2"]  # constructing it touched no port
    decoders = collect_decoders(pm)
    assert pick_decoder(decoders, b"\r\nRING\r\nDATE = 0115\r\nNMBR = 5551234\r\n") is decoders["hayes"]


def test_decoder_reads_a_terminal_log_with_commands() -> None:
    log = (
        b"ATZ\r\r\nOK\r\nAT+VCID=1\r\r\nOK\r\n\r\nRING\r\n\r\nDATE = 0115\r\nTIME = 1230\r\n"
        b"NMBR = 13812345678\r\nNAME = ZHANG SAN\r\n\r\nRING\r\nNMBR = 5552\x01\r\n"
    )
    records = list(decode(collect_decoders_for_hayes()["hayes"], log, region="CN"))
    assert [r["kind"] for r in records] == ["ring", "caller_id", "ring", "error"]
    assert records[1]["number"] == "13812345678"
    assert records[1]["number_e164"] == "+8613812345678"
    assert records[1]["name"] == "ZHANG SAN"
    assert records[1]["datetime"] == "01151230"
    assert "5552" in records[3]["raw"]
    assert sniff_capture(b"\x04\x12garbage") == 0.0
    assert sniff_capture(b"\r\nRING\r\n") == 0.5


def collect_decoders_for_hayes() -> dict[str, Decoder]:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(hayes_plugin, name="hayes")
    return collect_decoders(pm)
