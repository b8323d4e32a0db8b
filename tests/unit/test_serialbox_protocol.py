"""The serialbox parsers, replaying transcripts of each box family (pure, no port)."""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.callerid import encode_mdmf, encode_sdmf
from agent.errors import ConfigError
from agent.events import ALL_LINES, Absence, CallerId, Dialed, LineError, OffHook, OnHook, Ring
from agent.plugins import make_plugin_manager
from agent.seat.devices import DeviceRegistry
from plugins import serialbox
from plugins.serialbox.config import SerialBoxConfig
from plugins.serialbox.device import SerialBoxDevice
from plugins.serialbox.protocol import (
    Format,
    Item,
    Kind,
    ParsedRecord,
    ParseError,
    Parser,
    detect,
    parse_tci_line,
    to_events,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "serialbox"
AT = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


@dataclass
class Transcript:
    name: str
    format: Format
    # Chunks as the box sent them; None is the box going quiet (flush).
    chunks: list[bytes | None] = field(default_factory=list)
    expected: list[tuple[str, dict[str, str]]] = field(default_factory=list)


def _load(path: Path) -> Transcript:
    transcript = Transcript(path.name, Format.AUTO)
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("format:"):
            transcript.format = Format(line.split(":", 1)[1].strip())
        elif line.startswith("x "):
            transcript.chunks.append(bytes.fromhex(line[2:]))
        elif line.startswith("t "):
            text = codecs.decode(line[2:], "unicode_escape")
            transcript.chunks.append(text.encode("latin-1"))
        elif line == "flush":
            transcript.chunks.append(None)
        elif line.startswith("= "):
            kind, *pairs = (part.strip() for part in line[2:].split("|"))
            expect: dict[str, str] = {}
            for pair in pairs:
                key, sep, value = pair.partition("~" if "~" in pair and "=" not in pair else "=")
                expect[key + ("~" if sep == "~" else "")] = value
            transcript.expected.append((kind, expect))
        else:
            raise AssertionError(f"{path.name}: cannot read {line!r}")
    return transcript


TRANSCRIPTS = [_load(p) for p in sorted(FIXTURES.glob("*.txt"))]


def _run(transcript: Transcript, fmt: Format, *, bytewise: bool = False) -> list[Item]:
    parser = Parser(fmt)
    out: list[Item] = []
    for chunk in transcript.chunks:
        if chunk is None:
            out.extend(parser.flush())
        elif bytewise:
            for byte in chunk:
                out.extend(parser.feed(bytes([byte])))
        else:
            out.extend(parser.feed(chunk))
    return out


def _check(items: list[Item], expected: list[tuple[str, dict[str, str]]]) -> None:
    got = [("error" if isinstance(i, ParseError) else i.kind.value) for i in items]
    assert got == [kind for kind, _ in expected], items
    for item, (kind, expect) in zip(items, expected, strict=True):
        if isinstance(item, ParseError):
            assert expect["reason~"] in item.reason, item
            assert item.raw, "an error keeps the offending text"
            continue
        if kind == "caller_id":
            # Whatever is not expected must be empty: never a number from nowhere.
            for key in ("number", "name", "absence", "name_absence"):
                expect.setdefault(key, "")
        for key, value in expect.items():
            actual = getattr(item, key)
            if isinstance(actual, Absence):
                actual = actual.value
            assert str(actual if actual is not None else "") == value, (key, item)


def test_transcripts_are_loaded() -> None:
    assert {t.format for t in TRANSCRIPTS} == {Format.BINARY, Format.NETCALLERID, Format.TCI}
    assert all(t.expected for t in TRANSCRIPTS)


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=lambda t: t.name)
def test_transcript(transcript: Transcript) -> None:
    _check(_run(transcript, transcript.format), transcript.expected)


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=lambda t: t.name)
def test_transcript_byte_by_byte(transcript: Transcript) -> None:
    """However the serial reads slice the stream, the records are the same."""
    _check(_run(transcript, transcript.format, bytewise=True), transcript.expected)


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=lambda t: t.name)
def test_transcript_auto_detected(transcript: Transcript) -> None:
    parser = Parser(Format.AUTO)
    out: list[Item] = []
    for chunk in transcript.chunks:
        out.extend(parser.flush() if chunk is None else parser.feed(chunk))
    assert parser.format is transcript.format
    _check(out, transcript.expected)


def test_detect() -> None:
    assert detect(b"\x55\x55" + encode_sdmf("5551234", "01151230")) is Format.BINARY
    assert detect(b"junk\r\n###DATE01151230...NMBR") is Format.NETCALLERID
    assert detect(b"01 R     09/26 11:28:02\r\n") is Format.TCI
    assert detect(b"01 R     09/26 11:2") is None
    assert detect(b"hello world\r\n") is None


def test_auto_gives_up_on_unknown_data_and_starts_over() -> None:
    parser = Parser("auto")
    out = parser.feed(b"Z" * 1100)
    assert len(out) == 1
    assert isinstance(out[0], ParseError)
    assert parser.format is Format.AUTO
    out = parser.feed(b"01 R     09/26 11:28:02\r\n")
    assert [i.kind for i in out if isinstance(i, ParsedRecord)] == [Kind.RING]
    assert parser.format is Format.TCI


def test_tci_overlong_line_is_an_error() -> None:
    parser = Parser("tci")
    out = parser.feed(b"x" * 200)
    assert len(out) == 1
    assert isinstance(out[0], ParseError)
    assert parser.pending == 0
    assert parse_tci_line("   \r") is None


def test_to_events() -> None:
    def one(item: Item, line: str = "1") -> object:
        events = to_events(item, device_id="box", at=AT, line=line)
        assert len(events) <= 1
        return events[0] if events else None

    cid = one(parse_tci_line("02 I S 0000 G A1 09/26 11:28 AM 800-240-4637 CallerID.com"))
    assert isinstance(cid, CallerId)
    assert (cid.line, cid.number, cid.name, cid.device_time) == (
        "2",
        "800-240-4637",
        "CallerID.com",
        "09/26 11:28 AM",
    )
    assert isinstance(one(parse_tci_line("01 R     09/26 11:28:02")), Ring)
    assert isinstance(one(parse_tci_line("01 F     09/26 11:28:02")), OffHook)
    assert isinstance(one(parse_tci_line("01 N     09/26 11:28:02")), OnHook)
    assert one(parse_tci_line("01 H     09/26 11:28:02")) is None
    end = one(parse_tci_line("01 I E 0012 B A2 09/26 11:28 AM 800-240-4637 X"))
    assert isinstance(end, OnHook), "a bad checksum on an end record still ends the call"
    dialed = one(parse_tci_line("03 O S 0000 G A0 09/26 11:40 AM 770-263-7111"))
    assert isinstance(dialed, Dialed)
    assert (dialed.line, dialed.digits, dialed.complete) == ("3", "770-263-7111", True)
    error = one(ParseError("bad checksum", "80 01"))
    assert isinstance(error, LineError)
    assert (error.line, error.error, error.raw) == (ALL_LINES, "bad checksum", "80 01")
    (record,) = Parser("binary").feed(encode_mdmf(number="5551234567", absence=Absence.PRIVATE))
    event = one(record, line="7")
    assert isinstance(event, CallerId)
    assert (event.line, event.number, event.absence) == ("7", "5551234567", None)
    notice = Parser("netcallerid").feed(b"###DATE...NMBR...NAME   -MSG ON-+++\r")
    assert [one(i) for i in notice] == [None]


@given(st.binary(max_size=300), st.sampled_from(list(Format)))
def test_random_bytes_never_crash_or_invent_numbers(data: bytes, fmt: Format) -> None:
    parser = Parser(fmt)
    items = parser.feed(data) + parser.flush()
    for item in items:
        assert isinstance(item, ParsedRecord | ParseError)
        if isinstance(item, ParsedRecord) and item.number is not None:
            # A number only ever comes from a record that carries it verbatim.
            assert item.number.encode("latin-1") in data
    assert parser.pending == 0


@given(st.integers(0, 255), st.integers(1, 255), st.booleans())
def test_corrupted_binary_message_never_gives_a_wrong_number(position: int, delta: int, sdmf: bool) -> None:
    good = encode_sdmf("6095551212", "09301224") if sdmf else encode_mdmf(number="6095551212", name="J")
    corrupted = bytearray(good)
    corrupted[position % len(good)] = (corrupted[position % len(good)] + delta) % 256
    parser = Parser("binary")
    items = parser.feed(b"\x55" * 8 + bytes(corrupted) + b"\x55" * 8 + encode_sdmf("4155550100", "01151230"))
    numbers = [i.number for i in items if isinstance(i, ParsedRecord)]
    assert numbers == ["4155550100"], "the corrupted call is lost, the next one is not"


def test_config_and_registration() -> None:
    with pytest.raises(ValueError, match="port"):
        SerialBoxConfig()
    with pytest.raises(ValueError, match="VID:PID"):
        SerialBoxConfig(usb="0403-6001")
    assert SerialBoxConfig(port="/dev/ttyS0", format="netcallerid").speed() == 4800
    assert SerialBoxConfig(port="/dev/ttyS0", format="tci").speed() == 9600
    assert SerialBoxConfig(usb="0403:6001", format="tci", baudrate=19200).speed() == 19200
    tci = SerialBoxDevice("box", SerialBoxConfig(port="/dev/null", format="tci", lines=["1", "2"]))
    binary = SerialBoxDevice("box", SerialBoxConfig(port="/dev/null", format="binary", line="A"))
    assert (tci.reports_hook, tci.lines()) == (True, ["1", "2"])
    assert (binary.reports_hook, binary.lines()) == (False, ["A"])
    pm = make_plugin_manager(load_entrypoints=False)
    if not pm.is_registered(serialbox):
        pm.register(serialbox, "serialbox")
    registry = DeviceRegistry.from_plugins(pm)
    assert registry.get("serialbox") is SerialBoxDevice
    with pytest.raises(ConfigError):
        DeviceRegistry().get("serialbox")
