"""Phone-number normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.numbers import DEFAULT_REGION, clean, to_e164


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        # mobiles
        ("13812345678", "+8613812345678"),
        ("138 1234 5678", "+8613812345678"),
        ("138-1234-5678", "+8613812345678"),
        # landlines with area codes: Beijing (2-digit code), Tianjin, Shenzhen (3-digit code)
        ("010-65529988", "+861065529988"),
        ("(010) 6552 9988", "+861065529988"),
        ("022-2345 6789", "+862223456789"),
        ("0755-86013388", "+8675586013388"),
        ("0755 8601 3388", "+8675586013388"),
        # international forms
        ("+86 138 1234 5678", "+8613812345678"),
        ("+86-10-6552-9988", "+861065529988"),
        ("0086 13812345678", "+8613812345678"),
        ("0086-755-86013388", "+8675586013388"),
        ("8613812345678", "+8613812345678"),
        # full-width digits, as some Chinese input methods and CRMs produce them
        ("１３８１２３４５６７８", "+8613812345678"),
        ("＋８６ １３８－１２３４－５６７８", "+8613812345678"),
        ("００８６１３８１２３４５６７８", "+8613812345678"),
        # a foreign number given in international form
        ("+1 650 253 0000", "+16502530000"),
        ("+44 20 7946 0018", "+442079460018"),
        ("  13812345678\r\n", "+8613812345678"),
    ],
)
def test_to_e164_in_china(raw: str, e164: str) -> None:
    assert DEFAULT_REGION == "CN"
    assert to_e164(raw) == e164


@pytest.mark.parametrize(
    "raw",
    [
        "10086",  # carrier service number
        "110",  # emergency
        "95588",  # bank hotline
        "12345",
        "1381234567",  # a digit short
        "138123456789",  # a digit long
        "abc",
        "",
        "   ",
        "-",
        "*67#",  # feature codes are dial strings, not numbers
        "13812345678#",
        "P",  # what a modem prints for a withheld number
        "O",
    ],
)
def test_to_e164_gives_none_for_what_is_not_a_number(raw: str) -> None:
    assert to_e164(raw) is None


def test_to_e164_of_none_is_none() -> None:
    assert to_e164(None) is None


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("(650) 253-0000", "US", "+16502530000"),
        ("650.253.0000", "US", "+16502530000"),
        ("1 650 253 0000", "US", "+16502530000"),
        ("011 86 138 1234 5678", "US", "+8613812345678"),  # the US international prefix
        ("020 7946 0018", "GB", "+442079460018"),
        ("13812345678", "US", None),  # a Chinese mobile is no US number
        ("(650) 253-0000", "CN", None),
    ],
)
def test_to_e164_in_other_regions(raw: str, region: str, e164: str | None) -> None:
    assert to_e164(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("１３８ １２３４－５６７８", "13812345678"),
        ("+86 (10) 6552-9988", "+861065529988"),
        ("*67#", "*67#"),
        ("tel: 10086", "10086"),
        ("", ""),
    ],
)
def test_clean(raw: str, cleaned: str) -> None:
    assert clean(raw) == cleaned


# -- the fast path for mainland mobiles agrees with phonenumbers ----------------------------------


def _slow(raw: str, region: str) -> str | None:
    import phonenumbers

    try:
        parsed = phonenumbers.parse(clean(raw), region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


_digits = st.text(alphabet="0123456789", min_size=0, max_size=14)
_mobile_like = st.builds(
    lambda a, b: "1" + a + b, st.sampled_from("0123456789"), st.text("0123456789", min_size=8, max_size=10)
)
_spellings = st.sampled_from(["{}", "+86{}", "0086{}", "86{}", "+86 {}", "{} ", "１{}"])


@settings(max_examples=3000, deadline=None)
@given(
    number=st.one_of(_mobile_like, _digits), spelling=_spellings, region=st.sampled_from(["CN", "US", "GB"])
)
def test_the_fast_path_gives_what_phonenumbers_gives(number: str, spelling: str, region: str) -> None:
    raw = spelling.format(number)
    to_e164.cache_clear()
    assert to_e164(raw, region) == (
        None if "*" in raw or "#" in raw or not clean(raw) else _slow(raw, region)
    )


# -- the fast path for mainland landlines agrees with phonenumbers --------------------------------

#: Real area codes (Beijing, the 2x cities, provincial capitals, some prefecture cities) and
#: made-up ones of every length, so the generated numbers are often valid and often not.
_area = st.one_of(
    st.sampled_from(["10", "20", "21", "22", "23", "24", "25", "27", "28", "29", "311", "371", "431"]),
    st.sampled_from(["451", "510", "512", "531", "571", "591", "731", "755", "757", "769", "851", "898"]),
    st.text("0123456789", min_size=1, max_size=4),
)
#: Mostly the 7 or 8 digits a mainland subscriber number has, sometimes any length.
_subscriber = st.one_of(st.text("0123456789", min_size=7, max_size=8), st.text("0123456789", max_size=10))
_landline_spellings = st.sampled_from(
    [
        "0{a}-{s}",
        "0{a} {s}",
        "(0{a}) {s}",
        "0{a}{s}",
        "+86 {a} {s}",
        "+86-{a}-{s}",
        "0086{a}{s}",
        "{a}{s}",
        "86{a}{s}",
        "+86 0{a} {s}",
        "00{a}{s}",
        "１{a}{s}",
    ]
)


@settings(max_examples=4000, deadline=None)
@given(area=_area, subscriber=_subscriber, spelling=_landline_spellings, region=st.sampled_from(["CN", "US"]))
def test_the_landline_fast_path_gives_what_phonenumbers_gives(
    area: str, subscriber: str, spelling: str, region: str
) -> None:
    from agent.numbers import _fast_cn_landline

    raw = spelling.format(a=area, s=subscriber)
    cleaned = clean(raw)
    slow = _slow(raw, region)
    fast = _fast_cn_landline(cleaned, region)
    assert fast is None or fast == slow
    to_e164.cache_clear()
    assert to_e164(raw, region) == slow


@pytest.mark.parametrize(
    "raw",
    [
        "010-65529988",
        "022-2345 6789",
        "0755 8601 3388",
        "+86 21 6123 4567",
        "0086 571 8888 6666",
        "2223456789",
    ],
)
def test_common_landlines_take_the_fast_path(raw: str) -> None:
    from agent.numbers import _fast_cn_landline

    assert _fast_cn_landline(clean(raw), "CN") == _slow(raw, "CN")
    assert _slow(raw, "CN") is not None
