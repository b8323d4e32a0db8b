"""How a seat's outbox reaches the centre: the :class:`Transport` contract and the rows it carries.

:class:`storage.outbox.CentralSync` decides *what* to send and keeps the local
books; a transport only carries rows and files upstream. The one transport is
the centre's seat API over HTTP (:class:`agent.seat.transport.HttpTransport`);
the contract lives here, beside the outbox, because storage may not import the
seat runtime. The older direct-database team mode (a seat writing straight
into the central PostgreSQL and copying recordings to a shared directory) is
gone: one way to do each thing.

Calls are answered per row (:class:`~storage.ingest.Outcome`): a row the centre
refuses is refused alone and the rest of the batch is stored. A transport
reports a fault a retry may fix as :class:`~storage.faults.SyncError` and a
recording it can never take as :class:`~storage.faults.Rejected`. Everything
here is blocking: call it from a worker thread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from agent.events import Call, RecordingFacts
from storage.ingest import Outcome
from storage.worklist import DispositionIn, DispositionOutcome


@dataclass(frozen=True, slots=True)
class CallRow:
    """A call as it travels upstream: the snapshot (without the local customer id) and the rep's note."""

    call: Call
    notes: str | None
    follow_up_at: datetime | None


class Transport(Protocol):
    """What carries the outbox upstream (the seat API over HTTP)."""

    def ensure_ready(self) -> None:
        """Make sure the centre takes rows from this seat (its credential); cheap after the first success.

        :raises SyncError: the centre cannot be reached, or refuses this seat's credential.
        """

    def send_calls(self, rows: Sequence[CallRow], backlog: int | None) -> list[Outcome]:
        """Store these calls and notes upstream; one outcome per row, in order; idempotent by call UUID.

        ``backlog``: how many outbox entries wait behind this batch (the centre shows it per seat).

        :raises SyncError: a fault a retry may fix; nothing was stored.
        """

    def send_dispositions(self, rows: Sequence[DispositionIn]) -> list[DispositionOutcome]:
        """Send a rep's dispositions; one outcome per row, in order (``conflict`` rows are kept too).

        :raises SyncError: the centre could not be reached or could not store them.
        """

    def send_recording(self, facts: RecordingFacts, call: Call | None, source: Path) -> bool:
        """Store the file ``source`` (its SHA-256 in ``facts``, verified) and its row upstream.

        Returns True when the file was sent, False when the centre already had it.

        :raises SyncError: a fault a retry may fix.
        :raises Rejected: the centre cannot take this recording.
        """

    def has_copy(self, call_uuid: str, path: str, sha256: str) -> bool:
        """Whether the centre holds this recording now with exactly this SHA-256 (asked again, not cached).

        ``cti-agent purge`` deletes a local file only when this is True.

        :raises SyncError: the centre (or its store) cannot be asked now.
        """

    def close(self) -> None:
        """Release connections."""


def with_sha(facts: RecordingFacts, digest: str) -> RecordingFacts:
    """``facts`` with the SHA-256 the file was verified by."""
    return dataclasses.replace(facts, sha256=digest)


__all__ = ["CallRow", "Outcome", "Transport", "with_sha"]
