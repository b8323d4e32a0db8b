"""The console's languages: the seat page's negotiation, the console's own catalogs in ``locales/``."""

from __future__ import annotations

import functools
import json
from importlib import resources

from agent.web.i18n import LANGUAGES, negotiate

__all__ = ["LANGUAGES", "Translator", "catalog", "negotiate"]


@functools.cache
def catalog(language: str) -> dict[str, str]:
    """The console's strings in a supported language (``LANGUAGES``), loaded once from the package."""
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}")
    text = (
        resources.files("agent.console").joinpath("locales", f"{language}.json").read_text(encoding="utf-8")
    )
    strings = json.loads(text)
    if not isinstance(strings, dict) or not all(isinstance(v, str) for v in strings.values()):
        raise ValueError(f"console locale {language} must be a JSON object of strings")
    return strings


class Translator:
    """``t(key)``: the string for ``key`` in one language, the key itself when missing."""

    def __init__(self, language: str) -> None:
        self.language = language
        self.strings = catalog(language)

    def __call__(self, key: str) -> str:
        return self.strings.get(key, key)
