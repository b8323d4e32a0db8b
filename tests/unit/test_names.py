"""One rule for callers' names, in every device and decoder (issue 18, item 4).

:mod:`agent.names` reads a name's bytes as UTF-8 when valid, else GB18030 when
that gives plausible Chinese, else Latin-1; a device's ``name_encoding`` (any
Python text codec, on every device table) overrides it. These tests drive each
parser that reads names with the same names in GBK/GB18030, UTF-8 and Latin-1,
and with bytes that no encoding reads, which must give a name or an error
event with what was heard, never a crash and never a wrong number.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import signalgen as sg
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.callerid import encode_mdmf
from agent.events import CallerId, LineError, LineEvent
from agent.names import check_encoding, decode_name, name_from_text
from agent.plugins import make_plugin_manager
from agent.seat.devices import DeviceRegistry
from plugins.hayes.protocol import HayesParser
from plugins.linetap.protocol import LineTapDecoder
from plugins.ncid.protocol import NcidSession
from plugins.serialbox.hid import Frame, HidFrameParser
from plugins.serialbox.protocol import Format, ParsedRecord, ParseError, Parser
from plugins.whozz.protocol import WhozzParseError, parse_datagram, parse_record

NOW = datetime(2026, 1, 15, 12, 30, tzinfo=UTC)
NUMBER = "13812345678"

#: (bytes on the wire, what a rep must see), in the encodings lines carry
NAMES = [
    pytest.param("王小明".encode("gbk"), "王小明", id="gbk"),
    pytest.param("陈东 Ltd".encode("gb18030"), "陈东 Ltd", id="gb18030"),
    pytest.param("王小明".encode(), "王小明", id="utf-8"),
    pytest.param("Zoë Ω".encode(), "Zoë Ω", id="utf-8-latin-greek"),
    pytest.param("Müller".encode("latin-1"), "Müller", id="latin-1"),
    pytest.param("Mélénchon".encode("latin-1"), "Mélénchon", id="latin-1-gbk-shaped"),
    pytest.param(b"ZHANG SAN", "ZHANG SAN", id="ascii"),
]
#: bytes that are valid in no multibyte encoding: Latin-1 under auto, an error when one is forced
UNREADABLE = b"\xff\xfeXY"


# -- the rule ------------------------------------------------------------------------


def test_any_python_text_codec_is_a_setting_and_is_canonicalised() -> None:
    assert check_encoding("auto") == "auto"
    assert check_encoding("AUTO") == "auto"
    assert check_encoding("UTF8") == "utf-8"
    assert check_encoding("GBK") == "gbk"
    assert check_encoding("latin1") == "latin-1"
    assert check_encoding("iso-8859-1") == "latin-1"
    assert check_encoding("big5") == "big5"
    assert check_encoding("cp1252") == "cp1252"
    with pytest.raises(ValueError, match="unknown name encoding"):
        check_encoding("klingon")
    with pytest.raises(ValueError, match="not a text encoding"):
        check_encoding("base64")


def test_a_forced_codec_beyond_the_usual_three() -> None:
    assert decode_name("陳大文".encode("big5"), "big5") == "陳大文"
    assert decode_name("Café €5".encode("cp1252"), "cp1252") == "Café €5"
    assert decode_name("山田".encode("shift_jis"), "shift_jis") == "山田"
    with pytest.raises(ValueError, match="not valid gbk"):
        decode_name(UNREADABLE, "gbk")
    assert name_from_text("王".encode("gbk").decode("latin-1")) == "王"


@given(st.binary(max_size=40))
def test_auto_never_fails_and_keeps_every_byte(data: bytes) -> None:
    text = decode_name(data)
    # Whatever it chose, it chose an encoding that gives the same bytes back.
    assert any(_round_trips(text, data, enc) for enc in ("utf-8", "gb18030", "latin-1"))


def _round_trips(text: str, data: bytes, encoding: str) -> bool:
    try:
        return text.encode(encoding) == data
    except UnicodeEncodeError:
        return False


# -- every device table accepts name_encoding -----------------------------------------


def _device_configs() -> list[tuple[str, type]]:
    registry = DeviceRegistry.from_plugins(make_plugin_manager(load_entrypoints=False))
    return [(name, registry.get(name).Config) for name in registry.names()]


@pytest.mark.parametrize(("name", "config"), _device_configs())
def test_every_device_table_accepts_and_checks_name_encoding(name: str, config: type) -> None:
    fields = config.model_fields  # type: ignore[attr-defined]
    assert "name_encoding" in fields, name
    assert fields["name_encoding"].default == "auto"
    required = {k: _sample(v.annotation) for k, v in fields.items() if v.is_required()}
    required |= MINIMAL.get(name, {})
    model = config.model_validate({**required, "name_encoding": "GBK"})  # type: ignore[attr-defined]
    assert model.name_encoding == "gbk"
    with pytest.raises(ValidationError, match="unknown name encoding"):
        config.model_validate({**required, "name_encoding": "klingon"})  # type: ignore[attr-defined]


#: what a table of these types needs beyond its required fields (one of port/usb)
MINIMAL = {"hayes": {"port": "/dev/ttyS0"}, "serialbox": {"port": "/dev/ttyS0"}}


def _sample(annotation: object) -> object:
    return 1 if annotation in (int, float) else "x"


# -- each parser ------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "name"), NAMES)
def test_ncid_name_field(raw: bytes, name: str) -> None:
    session = NcidSession("ncid")
    events = session.feed(
        b"CID: *DATE*01152026*TIME*1230*LINE*1*NMBR*" + NUMBER.encode() + b"*MESG*NONE*NAME*" + raw + b"*",
        NOW,
    )
    (cid,) = events
    assert isinstance(cid, CallerId)
    assert (cid.number, cid.name) == (NUMBER, name)


def test_ncid_lines_are_judged_each_on_their_own_and_a_forced_codec_errs_not_guesses() -> None:
    session = NcidSession("ncid", name_encoding="gbk")
    lines = [
        b"CID: *DATE*01152026*TIME*1230*LINE*1*NMBR*13812345678*MESG*NONE*NAME*"
        + "李四".encode("gbk")
        + b"*",
        b"CID: *DATE*01152026*TIME*1231*LINE*2*NMBR*13900000000*MESG*NONE*NAME*" + UNREADABLE + b"*",
        b"CID: *DATE*01152026*TIME*1232*LINE*1*NMBR*13700000000*MESG*NONE*NAME*PLAIN*",
    ]
    out = [e for line in lines for e in session.feed(line, NOW)]
    assert [type(e) for e in out] == [CallerId, LineError, CallerId]
    assert [(e.number, e.name) for e in out if isinstance(e, CallerId)] == [
        ("13812345678", "李四"),
        ("13700000000", "PLAIN"),
    ]
    error = out[1]
    assert isinstance(error, LineError)
    assert "13900000000" in (error.raw or "")  # what was heard is kept
    # Under auto the same bytes are a Latin-1 name, and the number is not lost.
    (cid,) = NcidSession("ncid").feed(lines[1], NOW)
    assert isinstance(cid, CallerId)
    assert (cid.number, cid.name) == ("13900000000", UNREADABLE.decode("latin-1"))


def test_ncid_text_input_is_taken_as_decoded() -> None:
    (cid,) = NcidSession("ncid").feed("CID: *DATE*01152026*TIME*1230*NMBR*13812345678*NAME*王小明*", NOW)
    assert isinstance(cid, CallerId)
    assert cid.name == "王小明"


@pytest.mark.parametrize(("raw", "name"), NAMES)
def test_hayes_formatted_name(raw: bytes, name: str) -> None:
    events = HayesParser("modem").feed(
        b"RING\r\nDATE = 0115\r\nNMBR = 13812345678\r\nNAME = " + raw + b"\r\n\r\n", NOW
    )
    assert [(e.number, e.name) for e in events if isinstance(e, CallerId)] == [(NUMBER, name)]


@pytest.mark.parametrize(("raw", "name"), NAMES)
def test_hayes_unformatted_mdmf_name(raw: bytes, name: str) -> None:
    message = encode_mdmf(datetime="01151230", number=NUMBER, extra=[(0x07, raw)])
    events = HayesParser("modem").feed(b"RING\r\n" + message.hex().upper().encode() + b"\r\nRING\r\n", NOW)
    assert [(e.number, e.name) for e in events if isinstance(e, CallerId)] == [(NUMBER, name)]


def test_hayes_unformatted_mdmf_name_with_a_forced_codec() -> None:
    message = encode_mdmf(number=NUMBER, extra=[(0x07, "陳大文".encode("big5"))])
    hexline = b"RING\r\n" + message.hex().encode() + b"\r\nRING\r\n"
    events = HayesParser("modem", name_encoding="big5").feed(hexline, NOW)
    assert [e.name for e in events if isinstance(e, CallerId)] == ["陳大文"]
    bad = encode_mdmf(number=NUMBER, extra=[(0x07, UNREADABLE)])
    events = HayesParser("modem", name_encoding="big5").feed(b"RING\r\n" + bad.hex().encode() + b"\r\n", NOW)
    events += HayesParser("modem", name_encoding="big5").flush(NOW)
    assert not [e for e in events if isinstance(e, CallerId)]


def _tci(line: int, raw: bytes) -> bytes:
    return f"{line:02d} I S 0000 G A1 09/26 11:29 AM {NUMBER}    ".encode() + raw + b"\r\n"


@pytest.mark.parametrize(("raw", "name"), NAMES)
def test_tci_and_whozz_name_column(raw: bytes, name: str) -> None:
    (item,) = Parser(Format.TCI).feed(_tci(1, raw))
    assert isinstance(item, ParsedRecord)
    assert (item.number, item.name) == (NUMBER, name)
    record = parse_datagram(_tci(1, raw).rstrip(b"\r\n")).record
    assert (record.number, record.name) == (NUMBER, name)


def test_tci_forced_codec_fails_one_line_only() -> None:
    items = Parser(Format.TCI, name_encoding="gbk").feed(
        _tci(1, "李四".encode("gbk")) + _tci(2, UNREADABLE) + _tci(3, b"PLAIN")
    )
    assert [type(i) for i in items] == [ParsedRecord, ParseError, ParsedRecord]
    assert [i.name for i in items if isinstance(i, ParsedRecord)] == ["李四", "PLAIN"]
    with pytest.raises(WhozzParseError):
        parse_record(_tci(2, UNREADABLE).decode("latin-1"), name_encoding="gbk")


def _frame(raw: bytes) -> bytes:
    return b"A" + encode_mdmf(datetime="01151230", number=NUMBER, extra=[(0x07, raw)])


@pytest.mark.parametrize(("raw", "name"), NAMES)
def test_serialbox_binary_and_hid_frames(raw: bytes, name: str) -> None:
    items = Parser(Format.BINARY).feed(encode_mdmf(datetime="01151230", number=NUMBER, extra=[(0x07, raw)]))
    assert [(i.number, i.name) for i in items if isinstance(i, ParsedRecord)] == [(NUMBER, name)]
    frames = HidFrameParser().feed(_frame(raw))
    assert [(f.message.number, f.message.name) for f in frames if isinstance(f, Frame)] == [(NUMBER, name)]


def test_hid_forced_codec() -> None:
    frames = HidFrameParser("big5").feed(_frame("陳大文".encode("big5")) + _frame(UNREADABLE))
    assert [f.message.name for f in frames if isinstance(f, Frame)] == ["陳大文"]
    assert len(frames) == 2  # the second is an error with its bytes, not a guess


def _fsk_events(decoder: LineTapDecoder, message: bytes) -> list[LineEvent]:
    x = np.concatenate([sg.silence(0.2, 8000), sg.fsk_callerid(message, 8000), sg.silence(0.5, 8000)])
    return decoder.feed((x * 32767).astype(np.int16)) + decoder.flush()


@pytest.mark.parametrize(
    ("raw", "name"),
    [NAMES[0], NAMES[2], NAMES[4]],
)
def test_linetap_fsk_mdmf_name(raw: bytes, name: str) -> None:
    events = _fsk_events(
        LineTapDecoder(8000), encode_mdmf(datetime="01151230", number=NUMBER, extra=[(0x07, raw)])
    )
    assert [(e.number, e.name) for e in events if isinstance(e, CallerId)] == [(NUMBER, name)]


def test_linetap_fsk_forced_codec_error_keeps_what_was_heard() -> None:
    message = encode_mdmf(datetime="01151230", number=NUMBER, extra=[(0x07, UNREADABLE)])
    events = _fsk_events(LineTapDecoder(8000, name_encoding="gbk"), message)
    assert not [e for e in events if isinstance(e, CallerId)]
    (error,) = [e for e in events if isinstance(e, LineError)]
    assert "bad name" in error.error
    assert NUMBER.encode().hex() in (error.raw or "")  # the bytes heard, number included


# -- no name, however odd, crashes a parser or changes a number ---------------------------


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=30).filter(lambda b: not set(b) & set(b"*\r\n")))
def test_any_name_bytes_give_a_name_or_an_error_in_every_parser(raw: bytes) -> None:
    for encoding in ("auto", "gbk"):
        ncid = NcidSession("n", name_encoding=encoding).feed(
            b"CID: *NMBR*13812345678*NAME*" + raw + b"*", NOW
        )
        hayes = HayesParser("m", name_encoding=encoding).feed(
            b"NMBR = 13812345678\r\nNAME = " + raw + b"\r\n\r\n", NOW
        )
        mdmf = encode_mdmf(number=NUMBER, extra=[(0x07, raw)])
        box = Parser(Format.BINARY, name_encoding=encoding).feed(mdmf)
        hid = HidFrameParser(encoding).feed(b"A" + mdmf)
        for event in [*ncid, *hayes]:
            if isinstance(event, CallerId):
                assert event.number == NUMBER
        for item in [*box, *hid]:
            number = getattr(item, "number", None) or getattr(getattr(item, "message", None), "number", None)
            assert number in (None, NUMBER)
