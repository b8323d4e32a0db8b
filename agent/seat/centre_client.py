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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from agent.errors import AgentError, ConfigError
from agent.seatapi import API_PREFIX, BatchAnswer, DispositionResult, EntryResult

logger = logging.getLogger(__name__)

#: Seconds to connect, and to wait for an answer to one request.
CONNECT_SECONDS = 5.0
READ_SECONDS = 30.0
#: Seconds an upload may stall (no byte moving either way) before it is given up and retried.
UPLOAD_SECONDS = 120.0
#: Bytes read from a recording per chunk of an upload.
CHUNK = 256 * 1024


class CentreError(AgentError):
    """Talking to the centre failed."""


class CentreUnavailable(CentreError):
    """The centre could not be reached or could not answer now; a retry may succeed."""


class CentreRefused(CentreError):
    """The centre refused the seat's credential (401) or its claim to be this seat (403)."""


class BatchRefused(CentreError):
    """The centre refused a whole batch for what it is or for this seat (a 4xx).

    Sending it again as it is will not help, but it must not hold up the rest of the outbox.
    """


class RecordingRefused(CentreError):
    """The centre will not take this recording: not yet (``final`` False: it lacks the call) or never."""

    def __init__(self, message: str, *, final: bool) -> None:
        super().__init__(message)
        self.final = final


@dataclass(frozen=True, slots=True)
class RecordingCopy:
    """A recording as the centre holds it: its store key, SHA-256 and size."""

    key: str
    sha256: str
    bytes: int
    stored: bool = False

    @classmethod
    def of(cls, data: object, *, stored: bool = False) -> RecordingCopy:
        """From the centre's JSON answer.

        :raises CentreError: the answer is not a recording's.
        """
        if not isinstance(data, dict):
            raise CentreError("the centre's answer is not a recording")
        try:
            return cls(str(data["key"]), str(data["sha256"]), int(data["bytes"]), stored)
        except (KeyError, TypeError, ValueError):
            raise CentreError("the centre's answer is not a recording") from None


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

    def _request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        try:
            response = self._client.request(method, path, headers=self._headers | (headers or {}), **kwargs)
        except httpx.HTTPError as exc:
            raise CentreUnavailable(f"the centre at {self.base_url} is unreachable: {exc}") from None
        if response.status_code == 401:
            raise CentreRefused(f"the centre refused this seat: {_message(response)}")
        if response.status_code >= 500 or response.status_code == 429:
            raise CentreUnavailable(f"the centre answered {response.status_code}: {_message(response)}")
        return response

    def whoami(self) -> dict[str, Any]:
        """The seat the centre takes this token for (``{"seat": ..., "team": ...}``)."""
        response = self._request("GET", f"{API_PREFIX}/whoami")
        _refused_as_seat(response)
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
        body = {
            "seat": seat,
            "backlog": backlog,
            "sent_at": datetime.now(UTC).isoformat(),
            "calls": list(entries),
        }
        response = self._request("POST", f"{API_PREFIX}/calls", json=body)
        _refused_as_seat(response)
        if response.status_code != 200:
            raise CentreError(f"the centre refused the batch ({response.status_code}): {_message(response)}")
        try:
            answer = BatchAnswer.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise CentreError(f"the centre's answer is not a batch answer: {exc}") from None
        if len(answer.results) != len(entries):
            raise CentreError(f"the centre answered {len(answer.results)} entries for {len(entries)} sent")
        return answer.results

    def send_dispositions(self, seat: str, entries: Sequence[dict[str, Any]]) -> list[DispositionResult]:
        """Send the rep's dispositions; one result per entry, in order.

        :raises CentreUnavailable: retry later.
        :raises CentreRefused: the credential is not accepted.
        :raises CentreError: any other refusal of the whole batch (a seat without a rep: 409).
        """
        response = self._request(
            "POST", f"{API_PREFIX}/dispositions", json={"seat": seat, "dispositions": list(entries)}
        )
        _refused_as_seat(response)
        if 400 <= response.status_code < 500:
            raise BatchRefused(
                f"the centre refused the dispositions ({response.status_code}): {_message(response)}"
            )
        if response.status_code != 200:
            raise CentreError(f"the centre answered {response.status_code}: {_message(response)}")
        try:
            results = [DispositionResult.model_validate(r) for r in response.json()["results"]]
        except (ValueError, ValidationError, KeyError, TypeError) as exc:
            raise CentreError(f"the centre's answer is not a disposition answer: {exc}") from None
        if len(results) != len(entries):
            raise CentreError(f"the centre answered {len(results)} dispositions for {len(entries)} sent")
        return results

    def worklist(self, until: datetime, *, timeout: float | None = None) -> dict[str, Any]:
        """The seat's rep's worklist (``GET /api/v1/worklist``), follow-ups due by ``until``.

        :raises CentreUnavailable: the centre cannot be reached or is failing.
        :raises CentreRefused: the credential is not accepted.
        :raises CentreError: anything else (a seat without a rep at the centre: 409).
        """
        response = self._request(
            "GET", f"{API_PREFIX}/worklist", params={"until": until.isoformat()}, timeout=timeout
        )
        _refused_as_seat(response)
        if response.status_code != 200:
            raise CentreError(f"the centre answered {response.status_code}: {_message(response)}")
        data = response.json()
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            raise CentreError("the centre's answer is not a worklist")
        return data

    def recording_status(self, call_uuid: str) -> RecordingCopy | None:
        """What the centre holds of this call's recording (its store checked now), or None.

        :raises CentreUnavailable: the centre or its store cannot answer now.
        :raises CentreError: the centre refused the question (e.g. another seat's call).
        """
        response = self._request("GET", f"{API_PREFIX}/recordings/{call_uuid}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise CentreError(f"the centre answered {response.status_code}: {_message(response)}")
        return RecordingCopy.of(response.json())

    def put_recording(
        self, call_uuid: str, source: Path, sha256: str, facts: dict[str, str]
    ) -> RecordingCopy:
        """Stream the file ``source`` to the centre, which stores it only if its SHA-256 is ``sha256``.

        ``facts``: the recording's row as query parameters (``ext``, ``codec``, ``sample_rate``,
        ``channels``, ``seconds``, ``status``, ``flags``).

        :raises CentreUnavailable: retry later (also when the body arrived damaged: 422).
        :raises RecordingRefused: the centre cannot take it now (409: it has no such call yet)
            or ever (400, 403, 411, 413); ``final`` says which.
        """
        size = source.stat().st_size
        response = self._request(
            "PUT",
            f"{API_PREFIX}/recordings/{call_uuid}",
            params=facts,
            content=_chunks(source),
            headers={"content-length": str(size), "x-content-sha256": sha256},
            timeout=httpx.Timeout(UPLOAD_SECONDS, connect=CONNECT_SECONDS),
        )
        if response.status_code in (200, 201):
            return RecordingCopy.of(response.json(), stored=response.status_code == 201)
        if response.status_code == 422:
            raise CentreUnavailable(f"the centre received a damaged copy: {_message(response)}")
        # 409: the centre has no such call yet; 404/405: a centre too old to take recordings.
        # Both pass once the centre has the call or is upgraded; the rest never do.
        raise RecordingRefused(
            f"the centre refused the recording ({response.status_code}): {_message(response)}",
            final=response.status_code in (400, 403, 411, 413),
        )

    def lookup(self, number: str, *, timeout: float | None = None) -> dict[str, Any]:
        """The centre's card of ``number`` (``GET /api/v1/lookup``), as the seat may see it.

        :param number: E.164 (or national, read in the centre's region).
        :param timeout: seconds each of connecting, sending and reading may take (the
            screen-pop's short wait); None: the client's own.
        :return: the answer's JSON object: ``number``, ``customer`` (or None), ``calls``, ``as_of``.
        :raises CentreUnavailable: the centre is unreachable, too slow, or answered 5xx.
        :raises CentreRefused: the credential is not accepted (401, 403).
        :raises CentreError: the centre refused the number (400) or answered something that is not a card.
        """
        response = self._request(
            "GET",
            f"{API_PREFIX}/lookup",
            params={"number": number},
            timeout=httpx.Timeout(timeout) if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        _refused_as_seat(response)
        if response.status_code != 200:
            raise CentreError(f"the centre refused the lookup ({response.status_code}): {_message(response)}")
        try:
            data = response.json()
        except ValueError:
            raise CentreError("the centre's lookup answer is not JSON") from None
        if not isinstance(data, dict):
            raise CentreError("the centre's lookup answer is not a card")
        return data


def _refused_as_seat(response: httpx.Response) -> None:
    """403 on a seat's own route: the credential is another seat's (a config error, not a row's)."""
    if response.status_code == 403:
        raise CentreRefused(f"the centre refused this seat: {_message(response)}")


def _chunks(source: Path) -> Iterator[bytes]:
    with source.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])[:200]
    return response.text[:200]
