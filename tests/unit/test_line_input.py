"""The input boundary: every line event cleans its text, and any line label maps to a valid line id."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import LINE_ID_PATTERN, derived_line_id, line_label_problem, load_config
from agent.events import (
    MAX_LABEL,
    MAX_NUMBER,
    MAX_RAW,
    MAX_TEXT,
    CallerId,
    DeviceDown,
    Dialed,
    LineError,
    LineEvent,
    Ring,
)

AT = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
CONTROLS = "".join(chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)])


def test_controls_leave_every_text_field_and_stay_in_raw() -> None:
    event = CallerId(
        device_id="ncid",
        line="Home\x00Line",
        at=AT,
        number="13812345678\r\n",
        name="ZHANG\x1b[31m SAN\x85",
        device_time="0506\x070900",
        raw="CID: *NMBR*13812345678\r*NAME*ZHANG\x1b[31m SAN*",
    )
    assert (event.line, event.number, event.name, event.device_time) == (
        "HomeLine",
        "13812345678",
        "ZHANG[31m SAN",
        "05060900",
    )
    assert event.raw == "CID: *NMBR*13812345678\r*NAME*ZHANG\x1b[31m SAN*"


def test_a_control_inside_a_number_drops_the_number_never_joins_it() -> None:
    # "138\x00 12345678" joined would be a number nobody dialled.
    event = CallerId(device_id="d", line="1", at=AT, number="138\x0012345678", name="LI")
    assert event.number is None
    assert event.name == "LI"
    assert event.raw == "number=138\\x0012345678"
    dialed = Dialed(device_id="d", line="1", at=AT, digits="138\x1b1234")
    assert dialed.digits == ""


def test_lengths_are_bounded_and_a_long_number_is_dropped_not_cut() -> None:
    event = CallerId(
        device_id="d", line="L" * 500, at=AT, number="1" * (MAX_NUMBER + 1), name="N" * 5000, raw="R" * 99_999
    )
    assert len(event.line) == MAX_LABEL
    assert event.number is None
    assert event.name is not None
    assert len(event.name) == MAX_TEXT
    assert event.raw is not None
    assert len(event.raw) == MAX_RAW
    assert CallerId(device_id="d", line="1", at=AT, number="1" * MAX_NUMBER).number == "1" * MAX_NUMBER


def test_clean_events_are_left_as_they_are() -> None:
    event = CallerId(device_id="d", line="POTS", at=AT, number="+1 650 253 0000", name="雷芳", raw=r"a\b")
    assert (event.number, event.name, event.raw) == ("+1 650 253 0000", "雷芳", r"a\b")
    assert Ring(device_id="d", line="1", at=AT).cadence is None


def test_an_error_event_keeps_what_was_cleaned() -> None:
    error = LineError(device_id="d", line="1", at=AT, error="bad\x00 frame")
    assert (error.error, error.raw) == ("bad frame", "error=bad\\x00 frame")
    down = DeviceDown(device_id="d", line="*", at=AT, reason="gone\n")
    assert down.reason == "gone"


@given(
    text=st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(CONTROLS), max_size=400),
    cls=st.sampled_from([CallerId, LineError]),
)
def test_any_text_makes_a_clean_event(text: str, cls: type[LineEvent]) -> None:
    kwargs: dict[str, object] = {"device_id": "d", "line": text, "at": AT, "raw": text}
    if cls is CallerId:
        kwargs.update(number=text, name=text, device_time=text)
    else:
        kwargs.update(error=text)
    event = cls(**kwargs)  # type: ignore[arg-type]
    for name in ("line", "number", "name", "device_time", "error", "raw"):
        value = getattr(event, name, None)
        if value is None:
            continue
        if name == "raw":
            assert len(value) <= MAX_RAW
            continue
        assert not any(ch in CONTROLS for ch in value), name
        assert len(value) <= MAX_TEXT
    number = getattr(event, "number", None)
    if number is not None:
        assert number in text  # never altered inside, only trimmed at its ends


# -- line labels -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "port", "expected"),
    [
        ("modem", "1", "modem"),
        ("ncid", "POTS", "ncid:POTS"),
        ("ncid", "2", "ncid:2"),
    ],
)
def test_valid_labels_keep_their_plain_ids(device: str, port: str, expected: str) -> None:
    assert derived_line_id(device, port) == expected
    assert line_label_problem(device, port) is None


@pytest.mark.parametrize("port", ["Home Line", "Home/Line", "家里", "a" * 200, "x\ty"])
def test_invalid_labels_get_a_safe_distinct_id_and_a_reason(port: str) -> None:
    line_id = derived_line_id("ncid", port)
    assert LINE_ID_PATTERN.match(line_id)
    assert len(line_id) <= 100
    assert line_id != derived_line_id("ncid", port + "!")
    problem = line_label_problem("ncid", port)
    assert problem is not None
    assert line_id in problem


def test_line_for_never_raises_and_a_configured_port_is_no_problem() -> None:
    config = load_config(
        None,
        overrides={
            "devices": [{"id": "ncid", "type": "ncid"}],
            "lines": [{"id": "home", "device": "ncid", "port": "Home Line"}],
        },
    )
    assert config.line_for("ncid", "Home Line").id == "home"
    assert config.line_problem("ncid", "Home Line") is None
    other = config.line_for("ncid", "Office Line")
    assert other.id == derived_line_id("ncid", "Office Line")
    assert other.port == "Office Line"
    assert config.line_problem("ncid", "Office Line") is not None


@given(st.text(max_size=120))
def test_any_label_maps_to_a_valid_id(port: str) -> None:
    assert LINE_ID_PATTERN.match(derived_line_id("dev", port))
