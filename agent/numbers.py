"""Phone-number normalisation (pure; ``phonenumbers`` does the numbering-plan work)."""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

import phonenumbers

DEFAULT_REGION = "CN"


def clean(raw: str) -> str:
    """Fold full-width characters (``１３８``) to ASCII and strip what is not part of a dial string."""
    folded = unicodedata.normalize("NFKC", raw).strip()
    return re.sub(r"[^\d+*#]", "", folded)


@functools.cache
def _cn_mobile() -> re.Pattern[str]:
    # phonenumbers' own pattern for mainland mobiles, so the fast path cannot disagree with it. None
    # of its prefixes is one the CN national-prefix-for-parsing rule strips (11x, 12x, 179xx).
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("CN")
    mobile = metadata.mobile if metadata is not None else None
    if mobile is None or mobile.national_number_pattern is None:
        return re.compile(r"(?!)")  # no metadata: never fast, always phonenumbers
    return re.compile(mobile.national_number_pattern)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What phonenumbers' CN metadata says a fixed-line number is, and which prefixes it strips."""

    fixed: re.Pattern[str]
    fixed_lengths: frozenset[int]
    general: re.Pattern[str]
    general_lengths: frozenset[int]
    #: The national prefix (trunk ``0``) or carrier code phonenumbers would strip from the front.
    strips: re.Pattern[str]


@functools.cache
def _cn_plan() -> _Plan | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("CN")
    if metadata is None:
        return None
    fixed, general = metadata.fixed_line, metadata.general_desc
    if (
        fixed is None
        or general is None
        or not fixed.national_number_pattern
        or not general.national_number_pattern
        or not metadata.national_prefix_for_parsing
    ):
        return None
    return _Plan(
        fixed=re.compile(fixed.national_number_pattern),
        fixed_lengths=frozenset(fixed.possible_length or general.possible_length),
        general=re.compile(general.national_number_pattern),
        general_lengths=frozenset(general.possible_length),
        strips=re.compile(metadata.national_prefix_for_parsing),
    )


def _cn_fixed_line(national: str) -> str | None:
    """``+86`` and ``national`` when it is a valid mainland fixed-line number by the metadata, else None."""
    plan = _cn_plan()
    if (
        plan is None
        or len(national) not in plan.fixed_lengths
        or len(national) not in plan.general_lengths
        or plan.strips.match(national)
        or not plan.general.fullmatch(national)
        or not plan.fixed.fullmatch(national)
    ):
        return None
    return "+86" + national


def _fast_cn_mobile(cleaned: str, region: str) -> str | None:
    """The E.164 form of a mainland mobile number in its common spellings, or None to ask phonenumbers.

    Telesales numbers are mostly mobiles (``13812345678``, ``+86 138...``, ``0086 138...``);
    parsing each with phonenumbers costs ~80 µs, this ~1 µs. Anything else goes the slow way.
    """
    if cleaned.startswith("+86"):
        national = cleaned[3:]
    elif region != "CN":
        return None
    elif len(cleaned) == 11:
        national = cleaned
    elif cleaned.startswith("0086"):
        national = cleaned[4:]
    elif cleaned.startswith("86") and len(cleaned) == 13:
        national = cleaned[2:]
    else:
        return None
    if len(national) == 11 and national[0] == "1" and _cn_mobile().fullmatch(national):
        return "+86" + national
    return None


def _fast_cn_landline(cleaned: str, region: str) -> str | None:
    """The E.164 form of a mainland fixed-line number in its common spellings, or None to ask phonenumbers.

    ``022 2345 6789`` (trunk ``0``, area code, subscriber), ``+86 22 ...``, ``0086 22 ...``, and
    with CN as the region ``22 2345 6789`` without the trunk ``0``. The number after the
    prefix must be one phonenumbers' metadata calls fixed-line and one its CN prefix rule
    would leave alone, so the answer is the one phonenumbers gives (a property test checks).
    Anything else (a carrier code, a ``0`` after ``+86``, ``400``/``800`` numbers) goes the slow way.
    """
    if cleaned.startswith("+86"):
        national = cleaned[3:]
    elif region != "CN":
        return None
    elif cleaned.startswith("0086"):
        national = cleaned[4:]
    elif cleaned.startswith("0"):
        # The trunk prefix; phonenumbers strips one, and a second 0 is an international prefix.
        national = cleaned[1:]
        if national.startswith("0"):
            return None
    elif cleaned[0] in "23456789" and not cleaned.startswith("86"):
        # Without the trunk 0. A leading 86 might be read as the country code: the slow way.
        national = cleaned
    else:
        return None
    return _cn_fixed_line(national)


@functools.lru_cache(maxsize=65536)
def to_e164(raw: str | None, region: str = DEFAULT_REGION) -> str | None:
    """The E.164 form of ``raw`` (``+8613812345678``), or None when it is not a valid number.

    ``raw`` may be national (``13812345678``, ``022-1234 5678``), international
    (``+86 138...``, ``0086 138...``) or full-width. Short codes and numbers that
    are not valid in the numbering plan give None: the raw string is kept beside
    it by the caller, so nothing is lost.
    """
    if not raw:
        return None
    cleaned = raw if raw.isascii() and raw.isdigit() else clean(raw)
    if not cleaned or "*" in cleaned or "#" in cleaned:
        return None
    fast = _fast_cn_mobile(cleaned, region) or _fast_cn_landline(cleaned, region)
    if fast is not None:
        return fast
    return _parsed_e164(cleaned, region)


def _parsed_e164(cleaned: str, region: str) -> str | None:
    """What phonenumbers makes of a cleaned dial string: E.164 when valid, else None (the slow way)."""
    try:
        parsed = phonenumbers.parse(cleaned, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def national(number_e164: str | None, region: str = DEFAULT_REGION) -> str | None:
    """How people of ``region`` write a stored number: ``136 1332 3868``, ``010 6552 9988``.

    A number of another country is written internationally (``+1 650-253-0000``);
    None when ``number_e164`` is missing or not a number (show the raw digits then).
    """
    if not number_e164:
        return None
    try:
        parsed = phonenumbers.parse(number_e164, None)
    except phonenumbers.NumberParseException:
        return None
    form = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if phonenumbers.region_code_for_number(parsed) == region
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return phonenumbers.format_number(parsed, form)


def display_key(key: str) -> str:
    """A stored number key for people: ``+862212345678;ext=8001`` → ``+862212345678 ext. 8001``.

    The key is what ``customer_phones.number_e164`` holds (E.164, RFC 3966
    ``;ext=`` for an extension); the display form imports back to the same key.
    """
    number, sep, ext = key.partition(";ext=")
    return f"{number} ext. {ext}" if sep else number
