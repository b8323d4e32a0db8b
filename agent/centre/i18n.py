"""The console's languages: the seat page's negotiation and catalogs, with the console's own ``locales/``."""

from __future__ import annotations

from agent.web import i18n
from agent.web.i18n import LANGUAGES, negotiate

__all__ = ["LANGUAGES", "Translator", "catalog", "negotiate"]

PACKAGE = "agent.centre"


def catalog(language: str) -> dict[str, str]:
    """The console's strings in a supported language (``LANGUAGES``), loaded once from the package."""
    return i18n.catalog(language, PACKAGE)


class Translator(i18n.Translator):
    """``t(key)``: the console string for ``key`` in one language, the key itself when missing."""

    def __init__(self, language: str) -> None:
        super().__init__(language, PACKAGE)
