"""The seat's client of the centre's seat API: its credential, its batches, its answers.

Blocking (httpx's sync client): the sync runs it in a worker thread. What a retry can fix (the
centre unreachable, a 5xx, a time-out) raises :class:`CentreUnavailable`; a refused credential
raises :class:`CentreRefused` (no retry fixes it: the IT person must give the seat a valid token,
and the seat keeps everything meanwhile); the per-entry answers of a batch come back as
:class:`~agent.seatapi.EntryResult`, so a rejected entry is parked and the rest flow on.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from agent.errors import AgentError, ConfigError
from agent.seatapi import API_PREFIX, BatchAnswer, EntryResult

logger = logging.getLogger(__name__)

#: Seconds to connect, and to wait for an answer to one request.
CONNECT_SECONDS = 5.0
READ_SECONDS = 30.0


class CentreError(AgentError):
    """Talking to the centre failed."""


class CentreUnavailable(CentreError):
    """The centre could not be reached or could not answer now; a retry may succeed."""


class CentreRefused(CentreError):
    """The centre refused the seat's credential (401) or its claim to be this seat (403)."""


def read_token(path: Path) -> str:
    """The seat's token from ``[central] token_file``, which only its owner may read.

    :raises ConfigError: the file is missing, empty, or readable by group or others.
    """
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the seat token: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the seat token file is not text") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path}: the seat token file is readable by others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run: chmod 600 {path}"
        )
    if not text or any(c.isspace() for c in text):
        raise ConfigError(f"{path}: does not hold a seat token (one line, from `cti-agent seats add`)")
    return text


class CentreClient:
    """The seat API over HTTP(S) with this seat's token.

    :param base_url: the centre, e.g. ``https://centre.example:8340``.
    :param verify: TLS verification: True (the system's CAs), a CA bundle's path (a self-signed
        centre's certificate), or False only for tests.
    :param client: an httpx client to use instead of making one (tests pass an in-process one).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        verify: bool | str = True,
        client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS),
            verify=verify,
        )
        self._owns_client = client is None
        self._headers = {"authorization": f"Bearer {token}", "user-agent": f"cti-agent-seat/{os.getpid()}"}

    def close(self) -> None:
        """Close the connections (not an injected client's)."""
        if self._owns_client:
            self._client.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, headers=self._headers, **kwargs)
        except httpx.HTTPError as exc:
            raise CentreUnavailable(f"the centre at {self.base_url} is unreachable: {exc}") from None
        if response.status_code in (401, 403):
            raise CentreRefused(f"the centre refused this seat: {_message(response)}")
        if response.status_code >= 500 or response.status_code == 429:
            raise CentreUnavailable(f"the centre answered {response.status_code}: {_message(response)}")
        return response

    def whoami(self) -> dict[str, Any]:
        """The seat the centre takes this token for (``{"seat": ..., "team": ...}``)."""
        response = self._request("GET", f"{API_PREFIX}/whoami")
        if response.status_code != 200:
            raise CentreError(f"the centre answered {response.status_code}: {_message(response)}")
        data = response.json()
        return data if isinstance(data, dict) else {}

    def send_calls(
        self, seat: str, entries: Sequence[dict[str, Any]], backlog: int | None
    ) -> list[EntryResult]:
        """Send a batch; one result per entry, in order.

        :raises CentreUnavailable: retry the whole batch later.
        :raises CentreRefused: the credential is not accepted.
        :raises CentreError: the centre answered something that is not a batch answer.
        """
        response = self._request(
            "POST", f"{API_PREFIX}/calls", json={"seat": seat, "backlog": backlog, "calls": list(entries)}
        )
        if response.status_code != 200:
            raise CentreError(f"the centre refused the batch ({response.status_code}): {_message(response)}")
        try:
            answer = BatchAnswer.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise CentreError(f"the centre's answer is not a batch answer: {exc}") from None
        if len(answer.results) != len(entries):
            raise CentreError(f"the centre answered {len(answer.results)} entries for {len(entries)} sent")
        return answer.results


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])[:200]
    return response.text[:200]
