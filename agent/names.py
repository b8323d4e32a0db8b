"""The one rule for reading a caller's name from the bytes a device sent (pure: no I/O).

Caller-ID standards (Bellcore GR-30-CORE, ETSI EN 300 659-3) say "8-bit
characters" and leave the character set open; in practice a line carries
ASCII, Latin-1, UTF-8 (modems and PBXs configured for it) or GB18030/GBK
(exchanges, boxes and NCID gateways in China). Every device and decoder that
reads a name calls :func:`decode_name` on that name's bytes alone: a
fixed-column record is sliced on bytes first, and each line or message is
judged on its own, so one odd name never changes how another is read.

A device's ``name_encoding`` setting (:data:`NameEncoding`, on every device
table) is ``"auto"`` or any text codec Python knows (``"gbk"``, ``"big5"``,
``"cp1252"``, ...), which then overrides the guess.
"""

from __future__ import annotations

import codecs
from typing import Annotated

from pydantic import AfterValidator

#: the setting that asks for the guess (UTF-8, else plausible GB18030, else Latin-1)
AUTO = "auto"
#: the encodings a name is usually in; any other text codec is accepted too
NAME_ENCODINGS = (AUTO, "utf-8", "gb18030", "latin-1")

_CJK_RANGES = (
    (0x3000, 0x303F),  # CJK symbols and punctuation
    (0x3400, 0x4DBF),  # CJK unified ideographs extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF00, 0xFFEF),  # half-width and full-width forms
    (0x20000, 0x2FA1F),  # extensions B-F and compatibility supplement
)


def check_encoding(name: str) -> str:
    """``name`` as the canonical name of a text codec (or ``"auto"``).

    :raises ValueError: ``name`` is no codec Python knows, or a codec that does
        not turn bytes into text (``base64``, ``zlib``, ...).
    """
    if name.strip().lower() == AUTO:
        return AUTO
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise ValueError(
            f"unknown name encoding {name!r} (use {', '.join(NAME_ENCODINGS)} or another Python codec)"
        ) from None
    # CodecInfo marks bytes-to-bytes (base64, zlib) and str-to-str (rot13) codecs,
    # which bytes.decode refuses, as not text encodings.
    if not getattr(info, "_is_text_encoding", True):
        raise ValueError(f"{name!r} is not a text encoding")
    return "latin-1" if info.name == "iso8859-1" else info.name


#: the type of a ``name_encoding`` option: validated (and canonicalised) by :func:`check_encoding`
NameEncoding = Annotated[str, AfterValidator(check_encoding)]


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in _CJK_RANGES)


def _strict(value: bytes, encoding: str, cut: bool) -> str | None:
    """``value`` decoded, or None when it is not valid in ``encoding``.

    With ``cut`` (the bytes were sliced from a fixed-width column) a character
    cut in half at the very end is dropped rather than failing the whole name.
    """
    try:
        return value.decode(encoding)
    except UnicodeDecodeError as exc:
        if not cut or exc.end < len(value) or len(value) - exc.start > 3:
            return None
        try:
            text = value[: exc.start].decode(encoding)
        except UnicodeDecodeError:
            return None
        # Only a name that is multibyte elsewhere was cut in a character; a
        # Latin-1 "José" ends in a byte that merely looks like a lead byte.
        return text if not text.isascii() else None


def _gb2312_shaped(value: bytes, cut: bool) -> bytes | None:
    """``value`` when its non-ASCII bytes pair up as GB2312 characters (both bytes 0xA1-0xFE).

    Common Chinese text is GB2312 (GB18030's core); Latin-1 text with an accent
    before an ASCII letter (``Mé`` + ``l``) does not pair up that way. With
    ``cut``, a lone lead byte at the end is dropped.
    """
    i = 0
    while i < len(value):
        if value[i] < 0x80:
            i += 1
            continue
        if i + 1 == len(value) and cut and i > 0 and 0xA1 <= value[i] <= 0xF7:
            return value[:i]
        if i + 1 >= len(value) or not (0xA1 <= value[i] <= 0xF7 and 0xA1 <= value[i + 1] <= 0xFE):
            return None
        i += 2
    return value


def decode_name(value: bytes, encoding: str = AUTO, *, cut: bool = False) -> str:
    """The text of a caller's name as a device sent its bytes.

    ``auto``: UTF-8 when the bytes are valid UTF-8 (no other encoding in use
    produces valid multibyte UTF-8 by accident); else GB18030 when that gives
    plausible Chinese text (the bytes pair up as GB2312 characters and every
    non-ASCII character is CJK, so a Latin-1 ``Müller`` is not read as Chinese;
    a rare character outside GB2312 needs ``name_encoding = "gb18030"``); else
    Latin-1, which maps every byte, so nothing is lost and ``auto`` never fails.
    Any other ``encoding`` (a device's ``name_encoding``) forces that codec.

    :param cut: the bytes are a fixed-width column, which may end in half a
        character (dropped).
    :raises ValueError: ``encoding`` is not a text codec, or the bytes are not
        valid in a forced encoding (the caller reports an error event with the
        raw bytes; a wrong name is never made up).
    """
    encoding = check_encoding(encoding)
    value = bytes(value)
    if encoding == "latin-1" or (value.isascii() and encoding in NAME_ENCODINGS):
        return value.decode("latin-1")
    if encoding != AUTO:
        text = _strict(value, encoding, cut)
        if text is None:
            raise ValueError(f"not valid {encoding}")
        return text
    text = _strict(value, "utf-8", cut)
    if text is not None:
        return text
    shaped = _gb2312_shaped(value, cut)
    text = _strict(shaped, "gb18030", False) if shaped is not None else None
    if text is not None:
        wide = [ch for ch in text if not ch.isascii()]
        if wide and all(_is_cjk(ch) for ch in wide):
            return text
    return value.decode("latin-1")


def name_from_text(text: str, encoding: str = AUTO, *, cut: bool = False) -> str:
    """:func:`decode_name` of a field a parser holds as Latin-1 text (one character per byte).

    Line-oriented parsers (Hayes, NCID, Whozz, TCI) read each line as Latin-1,
    which maps every byte to one character and back, so their fields are sliced
    on bytes; this turns such a field back into its bytes and reads the name.
    """
    return decode_name(text.encode("latin-1"), encoding, cut=cut)


__all__ = ["AUTO", "NAME_ENCODINGS", "NameEncoding", "check_encoding", "decode_name", "name_from_text"]
