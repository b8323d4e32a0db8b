"""The seat page's languages: English and Simplified Chinese, from JSON catalogs in ``locales/``.

Every catalog has the same keys (a test checks it). A missing key shows as the
key itself rather than failing the page.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

LANGUAGES: tuple[str, ...] = ("en", "zh-CN")
DEFAULT_LANGUAGE = "en"


def normalize(tag: str | None) -> str | None:
    """Map a language tag to a supported one: any ``zh`` to ``zh-CN``, any ``en`` to ``en``, else None."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    if primary == "zh":
        return "zh-CN"
    if primary == "en":
        return "en"
    return None


def _accept_language(header: str) -> list[tuple[float, int, str]]:
    ranked = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranked.append((quality, -position, tag.strip()))
    return sorted(ranked, reverse=True)


def negotiate(requested: str | None, accept_language: str | None, default: str | None = None) -> str:
    """Pick the page's language.

    :param requested: the ``?lang=`` query value, which wins when supported.
    :param accept_language: the browser's ``Accept-Language`` header.
    :param default: the seat's configured language; it wins over the header
        (a browser always sends one, so otherwise a configured language would never apply).
    """
    for choice in (requested, default):
        language = normalize(choice)
        if language is not None:
            return language
    for quality, _, tag in _accept_language(accept_language or ""):
        language = normalize(tag)
        if quality > 0 and language is not None:
            return language
    return DEFAULT_LANGUAGE


@functools.cache
def catalog(language: str, package: str) -> dict[str, str]:
    """The strings of a supported language (``LANGUAGES``) from ``package``'s ``locales/``, loaded once."""
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}")
    text = resources.files(package).joinpath("locales", f"{language}.json").read_text(encoding="utf-8")
    strings = json.loads(text)
    if not isinstance(strings, dict) or not all(isinstance(v, str) for v in strings.values()):
        raise ValueError(f"{package} locale {language} must be a JSON object of strings")
    return strings


class Translator:
    """``t(key)``: the string for ``key`` in one language, the key itself when missing."""

    def __init__(self, language: str, package: str) -> None:
        self.language = language
        self.strings = catalog(language, package)

    def __call__(self, key: str) -> str:
        """The string for ``key``, or the key itself."""
        return self.strings.get(key, key)
