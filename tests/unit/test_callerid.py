"""The shared caller-ID message decoder: spec corpus, stream scanning, properties."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from agent.callerid import (
    CallerIdError,
    CallerIdMessage,
    checksum,
    decode_message,
    encode_mdmf,
    encode_sdmf,
    find_messages,
    to_event,
)
from agent.events import Absence, CallerId

FIXTURES = Path(__file__).parent.parent / "fixtures" / "callerid"


@dataclass(frozen=True)
class Case:
    file: str
    fields: dict[str, str]

    @property
    def id(self) -> str:
        return f"{self.file}:{self.fields['case']}"

    @property
    def data(self) -> bytes:
        return bytes.fromhex(self.fields["hex"])


def _load_cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(FIXTURES.glob("*.txt")):
        block: dict[str, str] = {}
        for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
            if line.startswith("#"):
                continue
            if not line.strip():
                if block:
                    cases.append(Case(path.name, block))
                    block = {}
                continue
            key, _, value = line.partition(":")
            block[key.strip()] = value.strip()
    return cases


CASES = _load_cases()
GOOD = [c for c in CASES if "error" not in c.fields]
BAD = [c for c in CASES if "error" in c.fields]


def test_corpus_is_loaded() -> None:
    files = {c.file for c in CASES}
    assert {"gr30_sdmf.txt", "gr30_mdmf.txt", "etsi_en300659.txt", "errors.txt"} <= files
    assert len(GOOD) >= 10
    assert len(BAD) >= 7
    assert all(c.fields.get("source") for c in CASES), "every case cites its source"


@pytest.mark.parametrize("case", GOOD, ids=lambda c: c.id)
def test_corpus_decodes(case: Case) -> None:
    message = decode_message(case.data)
    expect = case.fields
    assert message.format == expect["format"]
    assert message.number == expect.get("number")
    assert message.name == expect.get("name")
    assert message.datetime == expect.get("datetime")
    assert message.redirecting == expect.get("redirecting")
    assert (message.absence.value if message.absence else None) == expect.get("absence")
    assert (message.name_absence.value if message.name_absence else None) == expect.get("name_absence")
    expected_call_type = int(expect["call_type"]) if "call_type" in expect else None
    assert message.call_type == expected_call_type
    if "params" in expect:
        assert [t for t, _ in message.params] == [int(x, 16) for x in expect["params"].split()]
    assert message.raw == case.data
    assert sum(case.data) % 256 == 0


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.id)
def test_corpus_rejects(case: Case) -> None:
    with pytest.raises(CallerIdError) as info:
        decode_message(case.data)
    assert case.fields["error"] in info.value.reason
    assert info.value.raw == case.data
    assert case.fields["error"] in str(info.value)


def test_unknown_parameters_are_kept() -> None:
    data = encode_mdmf(number="5551234567", extra=[(0x2F, b"\x01\x02\x03"), (0xE0, b"")])
    message = decode_message(data)
    assert message.number == "5551234567"
    assert (0x2F, b"\x01\x02\x03") in message.params
    assert (0xE0, b"") in message.params


def test_repeated_number_is_an_error() -> None:
    data = encode_mdmf(number="5551234567", extra=[(0x02, b"5559999999")])
    with pytest.raises(CallerIdError, match="repeated"):
        decode_message(data)


def test_unknown_reason_for_absence_maps_to_nothing() -> None:
    message = decode_message(encode_mdmf(extra=[(0x04, b"C")]))
    assert message.absence is None
    assert message.number is None
    assert (0x04, b"C") in message.params


def test_to_event() -> None:
    at = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
    message = decode_message(encode_mdmf(datetime="05060900", number="13812345678", name="LI LEI"))
    event = to_event(message, device_id="box", line="1", at=at)
    assert isinstance(event, CallerId)
    assert (event.device_id, event.line, event.at) == ("box", "1", at)
    assert (event.number, event.name, event.device_time) == ("13812345678", "LI LEI", "05060900")
    assert event.absence is None
    assert bytes.fromhex(event.raw or "") == message.raw
    blocked = to_event(
        decode_message(encode_sdmf(None, "05060900", Absence.PRIVATE)), device_id="box", line="1", at=at
    )
    assert blocked.number is None
    assert blocked.absence is Absence.PRIVATE


def test_encoders_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="8 digits"):
        encode_sdmf("5551234", "1/15 12:30")
    with pytest.raises(ValueError, match="number"):
        encode_sdmf(None, "01151230")
    with pytest.raises(ValueError, match="digits"):
        encode_mdmf(number="555-1234")
    with pytest.raises(ValueError, match="at least one"):
        encode_mdmf()


# -- find_messages -----------------------------------------------------------------

SDMF_EXAMPLE = bytes.fromhex("04 12 30 39 33 30 31 32 32 34 36 30 39 35 35 35 31 32 31 32 51")
MDMF_EXAMPLE = encode_mdmf(datetime="09301224", number="6095551212", name="JOHN DOE")


def _numbers(found: list[CallerIdMessage | CallerIdError]) -> list[str | None]:
    return [m.number for m in found if isinstance(m, CallerIdMessage)]


def test_find_skips_channel_seizure_and_marks() -> None:
    stream = b"\x55" * 30 + b"\xff" * 18 + MDMF_EXAMPLE + b"\x55" * 30 + b"\xff" * 10 + SDMF_EXAMPLE
    found, consumed = find_messages(stream)
    assert consumed == len(stream)
    assert _numbers(found) == ["6095551212", "6095551212"]
    assert all(isinstance(m, CallerIdMessage) for m in found), "preamble alone is not an error"


def test_find_keeps_incomplete_tail() -> None:
    stream = b"\x55" * 4 + MDMF_EXAMPLE + SDMF_EXAMPLE[:7]
    found, consumed = find_messages(stream)
    assert _numbers(found) == ["6095551212"]
    assert stream[consumed:] == SDMF_EXAMPLE[:7]
    found, consumed = find_messages(stream[consumed:] + SDMF_EXAMPLE[7:])
    assert _numbers(found) == ["6095551212"]
    assert consumed == len(SDMF_EXAMPLE)


def test_find_reports_noise_and_bad_checksum_then_recovers() -> None:
    corrupted = bytearray(MDMF_EXAMPLE)
    corrupted[16] ^= 0x01  # a digit of the number
    stream = b"hello\r\n" + bytes(corrupted) + b"\x55" * 8 + SDMF_EXAMPLE
    found, consumed = find_messages(stream)
    assert consumed == len(stream)
    errors = [m for m in found if isinstance(m, CallerIdError)]
    assert errors, "garbage and the corrupted message are reported"
    assert any("bad checksum" in e.reason for e in errors)
    assert b"hello" in b"".join(e.raw for e in errors)
    assert _numbers(found) == ["6095551212"]
    assert isinstance(found[-1], CallerIdMessage)


def test_find_does_not_wait_behind_a_false_header() -> None:
    # 0x80 0xF0 looks like the start of a 243-byte message; a whole good message follows.
    stream = b"\x80\xf0\x01" + SDMF_EXAMPLE
    found, consumed = find_messages(stream)
    assert consumed == len(stream)
    assert _numbers(found) == ["6095551212"]
    assert isinstance(found[0], CallerIdError)


# -- properties --------------------------------------------------------------------

digits = st.text(alphabet="0123456789", min_size=1, max_size=15)
stamps = st.text(alphabet="0123456789", min_size=8, max_size=8)
names = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=15)
absences = st.none() | st.sampled_from(list(Absence))


@st.composite
def mdmf_messages(draw: st.DrawFn) -> tuple[bytes, dict[str, object]]:
    fields: dict[str, object] = {
        "datetime": draw(st.none() | stamps),
        "number": draw(st.none() | digits),
        "name": draw(st.none() | names),
        "absence": draw(absences),
        "name_absence": draw(absences),
        "redirecting": draw(st.none() | digits),
        "call_type": draw(st.none() | st.integers(0, 255)),
    }
    assume(any(v is not None for v in fields.values()))
    return encode_mdmf(**fields), fields  # type: ignore[arg-type]


@st.composite
def any_message(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(mdmf_messages())[0]
    number = draw(st.none() | st.text(alphabet="0123456789", min_size=1, max_size=10))
    absence = None if number is not None else draw(st.sampled_from(list(Absence)))
    return encode_sdmf(number, draw(stamps), absence)


@given(mdmf_messages())
def test_mdmf_round_trip(item: tuple[bytes, dict[str, object]]) -> None:
    data, fields = item
    message = decode_message(data)
    assert message.format == "mdmf"
    for key, value in fields.items():
        assert getattr(message, key) == value


@given(st.text(alphabet="0123456789", min_size=1, max_size=10), stamps)
def test_sdmf_round_trip(number: str, stamp: str) -> None:
    message = decode_message(encode_sdmf(number, stamp))
    assert (message.format, message.number, message.datetime) == ("sdmf", number, stamp)


@given(st.binary(max_size=80))
def test_random_bytes_never_crash(data: bytes) -> None:
    try:
        message = decode_message(data)
    except CallerIdError:
        return
    # Random bytes that happen to form a valid message must really be one.
    assert sum(data) % 256 == 0
    assert message.raw == data


@given(st.binary(max_size=200))
def test_find_on_random_bytes_never_crashes(data: bytes) -> None:
    found, consumed = find_messages(data)
    assert 0 <= consumed <= len(data)
    for item in found:
        assert isinstance(item, CallerIdMessage | CallerIdError)


@given(any_message(), st.data())
def test_truncation_is_an_error(data: bytes, draw: st.DataObject) -> None:
    cut = draw.draw(st.integers(0, len(data) - 1))
    with pytest.raises(CallerIdError):
        decode_message(data[:cut])


@given(any_message(), st.data())
def test_single_byte_corruption_is_an_error(data: bytes, draw: st.DataObject) -> None:
    position = draw.draw(st.integers(0, len(data) - 1))
    delta = draw.draw(st.integers(1, 255))
    corrupted = bytearray(data)
    corrupted[position] = (corrupted[position] + delta) % 256
    with pytest.raises(CallerIdError):
        decode_message(bytes(corrupted))


@given(any_message(), st.data())
def test_corruption_in_a_stream_never_yields_a_wrong_number(data: bytes, draw: st.DataObject) -> None:
    original = decode_message(data).number
    position = draw.draw(st.integers(0, len(data) - 1))
    corrupted = bytearray(data)
    corrupted[position] ^= draw.draw(st.integers(1, 255))
    stream = b"\x55" * 10 + bytes(corrupted) + b"\x55" * 10 + SDMF_EXAMPLE
    found, _ = find_messages(stream)
    for item in found:
        if isinstance(item, CallerIdMessage):
            assert item.raw == SDMF_EXAMPLE or item.number == original
    assert _numbers(found)[-1] == "6095551212", "the next message still decodes"


def test_checksum_rule() -> None:
    body = bytes.fromhex("04 12 30 39 33 30 31 32 32 34 36 30 39 35 35 35 31 32 31 32")
    assert checksum(body) == 0x51
    assert (sum(body) + checksum(body)) % 256 == 0
