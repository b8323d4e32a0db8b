"""Options of the ``crm_http`` plugin: the ``[plugins.crm_http]`` table of the config file."""

from __future__ import annotations

import string
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: What a URL template may use: the E.164 number (``+8613812345678``), its national
#: digits (``13812345678``) and the number as the device sent it. Each is URL-quoted.
PLACEHOLDERS: frozenset[str] = frozenset({"e164", "national", "raw"})


class CrmHttpConfig(BaseModel):
    """How to ask a CRM over HTTP who is behind a number.

    Example::

        [plugins.crm_http]
        url = "https://crm.example.com/api/contacts?phone={e164}"
        timeout = 2.0
        headers = { Authorization = "Bearer ..." }
        result = "data.0"                  # where the contact is in the JSON (dotted; digits index lists)
        fields = { name = "full_name", company = "org.name", owner_rep = "owner" }
    """

    model_config = ConfigDict(extra="forbid")

    url: str
    timeout: float = Field(default=2.0, gt=0, le=30)
    headers: dict[str, str] = {}
    #: Dotted path to the contact object in the response ("" = the whole document).
    result: str = ""
    #: Customer field -> dotted path inside the contact object.
    fields: dict[str, str] = {"name": "name", "company": "company", "owner_rep": "owner_rep"}
    #: Seconds a found (or not found) answer is reused.
    cache_ttl: float = Field(default=300.0, ge=0)
    not_found_ttl: float = Field(default=60.0, ge=0)
    cache_size: int = Field(default=10_000, ge=1)
    #: After a failure (timeout, refused, 5xx) the CRM is not asked again for this long.
    retry_after: float = Field(default=30.0, ge=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"bad URL template {value!r}: {exc}") from None
        unknown = names - PLACEHOLDERS
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {', '.join(sorted(unknown))} in the URL; "
                "use {e164}, {national}, {raw}"
            )
        if not names:
            raise ValueError("the URL has no {e164}, {national} or {raw} placeholder for the number")
        return value

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = set(value) - {"name", "company", "owner_rep"}
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}; use name, company, owner_rep")
        if "name" not in value:
            raise ValueError("fields must say where the name is")
        return value
