"""Callers' names in whatever encoding the device sends them (issue 18, item 4).

Every decoder reads a name's bytes with :func:`agent.callerid.decode_name`:
UTF-8 when valid, else GB18030 when that gives plausible Chinese, else
Latin-1; a device's ``name_encoding`` forces one. Fixed-column formats are
sliced on bytes first, and each line of a stream is judged on its own.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.callerid import CallerIdError, decode_message, decode_name, encode_mdmf
from agent.events import CallerId, LineError
from plugins.hayes.protocol import HayesParser
from plugins.serialbox.protocol import Format, ParsedRecord, ParseError, Parser
from plugins.whozz.protocol import parse_datagram, parse_record

NOW = datetime(2026, 1, 15, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ("张三".encode(), "张三"),
        ("张三".encode("gb18030"), "张三"),
        ("ZHANG 张三丰".encode("gb18030"), "ZHANG 张三丰"),
        ("Müller".encode("latin-1"), "Müller"),
        ("José".encode("latin-1"), "José"),
        ("Mélénchon".encode("latin-1"), "Mélénchon"),  # é + l would pair up as GBK: not GB2312
        (b"ZHANG SAN", "ZHANG SAN"),
        ("Zoë Ω".encode(), "Zoë Ω"),
    ],
)
def test_auto_reads_utf8_then_gb18030_then_latin1(data: bytes, text: str) -> None:
    assert decode_name(data) == text


def test_forced_encoding_and_cut_columns() -> None:
    assert decode_name("张三".encode("gb18030"), "gb18030") == "张三"
    assert decode_name("Ôô".encode(), "latin-1") == "Ã\x94Ã´"  # what was asked for
    with pytest.raises(ValueError, match="utf-8"):
        decode_name(b"\xd5\xc5\xc8", "utf-8")
    with pytest.raises(ValueError, match="unknown name encoding"):
        decode_name(b"x", "ebcdic")
    # A 15-byte column that cuts the last character in half keeps the rest of the name.
    assert decode_name("王小明".encode()[:8], cut=True) == "王小"
    assert decode_name("王小明".encode("gb18030")[:5], cut=True) == "王小"
    assert decode_name("José".encode("latin-1"), cut=True) == "José"  # not cut: a Latin-1 é


@given(st.text(min_size=1, max_size=20))
def test_any_utf8_name_reads_back(text: str) -> None:
    assert decode_name(text.encode()) == text


def test_mdmf_name_in_utf8_and_gb18030() -> None:
    for raw in ("王小明".encode(), "王小明".encode("gb18030")):
        message = decode_message(encode_mdmf(number="13812345678", extra=[(0x07, raw)]))
        assert (message.number, message.name) == ("13812345678", "王小明")
    message = decode_message(encode_mdmf(number="13812345678", name="王小明"))  # encodes UTF-8
    assert message.name == "王小明"
    # Forced Latin-1, UTF-8 bytes give C1 control characters: an error, not a garbled name.
    with pytest.raises(CallerIdError, match="bad name"):
        decode_message(encode_mdmf(number="1", extra=[(0x07, "王".encode())]), name_encoding="latin-1")


def test_hayes_formatted_name_is_not_mojibake() -> None:
    parser = HayesParser("modem")
    data = "RING\r\nDATE = 0115\r\nTIME = 1230\r\nNMBR = 13812345678\r\nNAME = 张三\r\n\r\n".encode()
    events = parser.feed(data, NOW)
    (cid,) = [e for e in events if isinstance(e, CallerId)]
    assert (cid.number, cid.name) == ("13812345678", "张三")
    gb = HayesParser("modem", name_encoding="gb18030")
    events = gb.feed(b"NMBR = 13812345678\r\nNAME = " + "李四".encode("gb18030") + b"\r\n\r\n", NOW)
    assert [e.name for e in events if isinstance(e, CallerId)] == ["李四"]
    with pytest.raises(ValueError, match="unknown name encoding"):
        HayesParser("modem", name_encoding="koi8")


def test_hayes_name_not_valid_in_the_forced_encoding_is_an_error_not_a_guess() -> None:
    parser = HayesParser("modem", name_encoding="utf-8")
    events = parser.feed(b"NMBR = 13812345678\r\nNAME = \xd5\xc5\r\n\r\n", NOW)
    assert [type(e) for e in events] == [LineError]


TCI_PLAIN = b"01 I S 0276 G B3 09/26 11:28 AM 800-240-4637   CallerID.com   \r\n"
TCI_UTF8 = "02 I S 0000 G A1 09/26 11:29 AM 13812345678    王小明\r\n".encode()
TCI_BAD = b"03 I S 0000 G A1 09/26 11:30 AM 13812345678    BAD\x01NAME\r\n"


def test_tci_multibyte_name_and_plain_lines_each_judged_alone() -> None:
    parser = Parser(Format.TCI)
    items = parser.feed(TCI_PLAIN + TCI_UTF8 + TCI_BAD + TCI_PLAIN)
    assert [type(i) for i in items] == [ParsedRecord, ParsedRecord, ParseError, ParsedRecord]
    assert isinstance(items[1], ParsedRecord)
    assert (items[1].number, items[1].name, items[1].line) == ("13812345678", "王小明", "2")


def test_tci_auto_detects_a_file_whose_first_line_has_a_multibyte_name() -> None:
    items = Parser(Format.AUTO).feed(TCI_UTF8 + TCI_PLAIN)
    assert [i.name for i in items if isinstance(i, ParsedRecord)] == ["王小明", "CallerID.com"]


def test_fixed_columns_are_bytes_and_a_cut_character_is_dropped() -> None:
    # 15-byte name column, the last character cut after 2 of its 3 bytes.
    name = "王小明六五".encode()[:14]
    record = parse_record("01 I S 0000 G A1 09/26 11:29 AM 13812345678    " + name.decode("latin-1"))
    assert (record.number, record.name) == ("13812345678", "王小明六")


def test_whozz_datagram_gb18030_name_per_device_setting() -> None:
    data = b"01 I S 0000 G A1 09/26 11:29 AM 13812345678    " + "陈东".encode("gb18030")
    assert parse_datagram(data).record.name == "陈东"
    forced = parse_datagram(
        b"01 I S 0000 G A1 09/26 11:29 AM 13812345678    \xb3\xc2", name_encoding="gb18030"
    )
    assert forced.record.name == "陈"


def test_netcallerid_utf8_name() -> None:
    items = Parser(Format.NETCALLERID).feed("###DATE01151230...NMBR13812345678...NAME张三+++\r".encode())
    assert [(i.number, i.name) for i in items if isinstance(i, ParsedRecord)] == [("13812345678", "张三")]
