"""The seat's outbox carried to the centre over its seat API: :class:`HttpTransport`, and the factory.

:class:`storage.outbox.CentralSync` keeps the queue and decides what to send; this transport
turns its rows into the seat API's wire format (:mod:`agent.seatapi`) and the centre's answers
back into per-row outcomes, and streams recordings with their SHA-256, which the centre checks
before it keeps a byte. What a retry may fix (the centre down, a 5xx, a body damaged on the
way) is a :class:`~storage.faults.SyncError`; a refused credential is one too (kind
``credential``: the IT person must fix the token, and the seat keeps everything meanwhile); a
recording the centre cannot take is :class:`~storage.faults.Rejected` (parked once final).

:func:`make_transport` builds the transport a config names: the centre over HTTP(S), the one
way a seat reaches the floor. A database URL in ``[central] url`` (the direct-database team mode,
removed) is a :class:`~agent.errors.ConfigError` that says how to move to the centre.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from agent.config import Config, is_centre_url
from agent.errors import ConfigError
from agent.events import Call, RecordingFacts
from agent.seat.centre_client import (
    BatchRefused,
    CentreClient,
    CentreError,
    CentreRefused,
    RecordingRefused,
    read_token,
)
from agent.seatapi import MAX_BATCH, MAX_DISPOSITIONS, CallEntry
from storage.central import CallRow, Outcome, Transport
from storage.faults import Rejected, SyncError
from storage.worklist import DispositionIn, DispositionOutcome

logger = logging.getLogger(__name__)

#: The README section a floor still on the direct-database team mode reads to move to the centre.
MIGRATION_NOTE = "Moving from the direct-database team mode"


class HttpTransport:
    """Carries a seat's outbox to the centre's seat API as seat ``seat``.

    :param client: the seat's client of the centre (its token inside).
    """

    def __init__(self, client: CentreClient, seat: str) -> None:
        self.client = client
        self.seat = seat
        self._ready = False

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()

    def ensure_ready(self) -> None:
        """Ask the centre who this token is (once per process): the wrong seat's token is caught here."""
        if self._ready:
            return
        with _faults("asking the centre who this seat is"):
            answer = self.client.whoami()
        if answer.get("seat") != self.seat:
            raise SyncError(
                f"the token in [central] token_file is seat {answer.get('seat')!r}'s, "
                f"not this seat's ({self.seat!r}): give this seat its own token",
                "credential",
            )
        self._ready = True

    def send_calls(self, rows: Sequence[CallRow], backlog: int | None) -> list[Outcome]:
        """POST the rows in batches the centre takes; one outcome per row."""
        outcomes: list[Outcome] = []
        for start in range(0, len(rows), MAX_BATCH):
            part = rows[start : start + MAX_BATCH]
            entries = [CallEntry.of(row.call, row.notes, row.follow_up_at) for row in part]
            behind = None if backlog is None else backlog + len(rows) - start - len(part)
            with _faults(f"sending {len(part)} call(s)"):
                results = self.client.send_calls(self.seat, entries, behind)
            outcomes.extend(Outcome(result.status, result.reason) for result in results)
        return outcomes

    def send_dispositions(self, rows: Sequence[DispositionIn]) -> list[DispositionOutcome]:
        """POST the rows in batches the centre takes; one outcome per row.

        A batch the centre refuses as a whole (this seat has no rep there, say) is every row
        refused, so the outbox counts and in the end parks them instead of stopping on them.
        """
        outcomes: list[DispositionOutcome] = []
        for start in range(0, len(rows), MAX_DISPOSITIONS):
            part = rows[start : start + MAX_DISPOSITIONS]
            entries = [_disposition_entry(row) for row in part]
            try:
                with _faults(f"sending {len(part)} disposition(s)"):
                    results = self.client.send_dispositions(self.seat, entries)
            except BatchRefused as exc:
                logger.warning("the centre refused %d disposition(s): %s", len(part), exc)
                outcomes.extend(DispositionOutcome(row.uuid, "rejected", str(exc)) for row in part)
                continue
            outcomes.extend(
                DispositionOutcome(row.uuid, result.status, result.reason)
                for row, result in zip(part, results, strict=True)
            )
        return outcomes

    def send_recording(self, facts: RecordingFacts, call: Call | None, source: Path) -> bool:
        """Upload the file unless the centre already holds it with this SHA-256; True when sent."""
        if facts.sha256 is None:
            raise Rejected(f"recording {facts.path} has no SHA-256 to verify its upload by", final=True)
        with _faults(f"asking the centre for recording {facts.call_uuid}"):
            held = self.client.recording_status(facts.call_uuid)
        if held is not None and held.sha256 == facts.sha256:
            return False
        try:
            with _faults(f"uploading recording {facts.call_uuid}"):
                copy = self.client.put_recording(facts.call_uuid, source, facts.sha256, _params(facts))
        except RecordingRefused as exc:
            raise Rejected(str(exc), final=exc.final) from None
        if copy.sha256 != facts.sha256:
            raise SyncError(f"the centre kept recording {facts.call_uuid} with another SHA-256", "centre")
        return copy.stored

    def has_copy(self, call_uuid: str, path: str, sha256: str) -> bool:
        """Whether the centre's store holds this call's recording with this SHA-256 (asked now)."""
        with _faults(f"asking the centre for recording {call_uuid}"):
            held = self.client.recording_status(call_uuid)
        return held is not None and held.sha256 == sha256


def _params(facts: RecordingFacts) -> dict[str, str]:
    """The recording's row as the upload's query parameters."""
    params = {
        "ext": PurePosixPath(facts.path).suffix.lstrip("."),
        "codec": facts.codec,
        "sample_rate": str(facts.sample_rate),
        "channels": str(facts.channels),
        "seconds": repr(facts.seconds),
        "status": facts.status,
    }
    if facts.flags:
        params["flags"] = ",".join(facts.flags)
    return params


def _disposition_entry(row: DispositionIn) -> dict[str, object]:
    return {
        "uuid": row.uuid,
        "code": row.code,
        "at": row.at.isoformat(),
        "lead_id": row.lead_id,
        "customer_id": row.customer_id,
        "note": row.note,
        "follow_up_at": row.follow_up_at.isoformat() if row.follow_up_at else None,
        "call_uuid": row.call_uuid,
    }


@contextmanager
def _faults(doing: str) -> Iterator[None]:
    """Turns the client's errors into the outbox's: :class:`SyncError` (retry) with a kind."""
    try:
        yield
    except (RecordingRefused, BatchRefused):
        raise
    except CentreRefused as exc:
        raise SyncError(f"{doing}: {exc}", "credential") from None
    except CentreError as exc:  # CentreUnavailable and an answer that makes no sense
        raise SyncError(f"{doing}: {exc}", "centre") from None


@dataclass(frozen=True)
class CentreAccess:
    """How this seat reaches the centre: its URL, its token and how TLS is verified."""

    url: str
    token: str
    verify: bool | str

    def __repr__(self) -> str:
        return f"CentreAccess(url={self.url!r})"  # never the token


def centre_access(config: Config) -> CentreAccess:
    """The centre this config names, with the seat's token read from ``[central] token_file``.

    :raises ConfigError: no centre URL, or the token file is missing or too open.
    """
    url = config.central_url
    if not url or not is_centre_url(url):
        raise ConfigError("[central] url does not name a centre (https://centre.example:8340)")
    token_file = config.central.token_file
    if token_file is None:
        raise ConfigError("[central] token_file is not set (the seat's token from cti-agent seats add)")
    verify: bool | str = str(config.central.ca_file) if config.central.ca_file else True
    return CentreAccess(url.rstrip("/"), read_token(token_file), verify)


def make_client(config: Config) -> CentreClient:
    """The seat's (blocking) client of the centre its config names.

    :raises ConfigError: see :func:`centre_access`.
    """
    access = centre_access(config)
    return CentreClient(access.url, access.token, verify=access.verify)


def make_transport(config: Config) -> Transport | None:
    """The transport of this config's team mode (the centre), or None on a single machine.

    No connection is made here: an unreachable centre only delays the sync.

    :raises ConfigError: the URL is not the centre's (a database URL: the direct-database team
        mode is gone), or the centre's token file is missing or readable by others.
    """
    url = config.central_url
    if not url:
        return None
    if not is_centre_url(url):
        raise ConfigError(
            "[central] url (or CTI_AGENT_CENTRAL_URL) is not a centre: the direct-database team mode "
            "is gone, seats reach the floor only through the centre. Run `cti-agent centre` on that "
            'database, then give this seat url = "https://centre.example:8340" and token_file = its '
            f'token from `cti-agent seats add` (README: "{MIGRATION_NOTE}")'
        )
    return HttpTransport(make_client(config), config.agent.seat)


__all__ = [
    "MIGRATION_NOTE",
    "CentreAccess",
    "HttpTransport",
    "centre_access",
    "make_client",
    "make_transport",
]
