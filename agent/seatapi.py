"""The seat API's wire format (``/api/v1/``): what a seat sends the centre and what the centre answers.

Both sides import this module, so the seat's sender and the centre's reader cannot drift apart.
The centre validates each entry of a batch on its own: a malformed entry is rejected with a
reason and the rest of the batch goes on (the seat parks what was rejected, never retries it
forever). Unknown fields are ignored, so a newer seat can talk to an older centre.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.events import Absence, Call, Direction, Disposition, EndReason

API_PREFIX = "/api/v1"
#: The most entries one batch may carry (the seat's [central] batch_size is capped by it).
MAX_BATCH = 1000
#: The largest request body of a batch, in bytes (1000 calls with notes fit well within it).
MAX_BATCH_BYTES = 8 * 1024 * 1024
SEAT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_UUID = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"

Status = Literal["accepted", "duplicate", "rejected"]


def _text(max_length: int) -> Any:
    return Field(default=None, max_length=max_length)


class CallEntry(BaseModel):
    """One call as a seat sends it: the call's current snapshot, with the rep's note and follow-up."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    uuid: str = Field(pattern=_UUID)
    seat: str = Field(min_length=1, max_length=64)
    device_id: str = Field(min_length=1, max_length=64)
    line: str = Field(min_length=1, max_length=64)
    rep: str = Field(max_length=100)
    team: str = Field(max_length=100)
    direction: Direction
    started_at: datetime
    number_raw: str | None = _text(64)
    number_e164: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{1,14}$")
    cid_name: str | None = _text(200)
    absence: Absence | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    ring_seconds: float | None = Field(default=None, ge=0, le=86_400)
    talk_seconds: float | None = Field(default=None, ge=0, le=86_400)
    disposition: Disposition | None = None
    end_reason: EndReason | None = None
    rings: int = Field(default=0, ge=0, le=10_000)
    waiting: bool = False
    notes: str | None = _text(10_000)
    follow_up_at: datetime | None = None

    @field_validator("started_at", "answered_at", "ended_at", "follow_up_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("a time must carry its UTC offset")
        return value

    @field_validator("seat")
    @classmethod
    def _seat(cls, value: str) -> str:
        if not SEAT_NAME.match(value):
            raise ValueError("not a seat name")
        return value

    @field_validator("number_raw", "cid_name", "notes", "rep", "team", "line", "device_id")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        # PostgreSQL text cannot hold NUL; reject here with a reason rather than fail the insert.
        if value is not None and "\x00" in value:
            raise ValueError("contains a NUL character")
        return value

    def to_call(self) -> Call:
        """The domain call (without the note, which is written separately)."""
        return Call(
            uuid=self.uuid,
            seat=self.seat,
            device_id=self.device_id,
            line=self.line,
            rep=self.rep,
            team=self.team,
            direction=self.direction,
            started_at=self.started_at,
            number_raw=self.number_raw,
            number_e164=self.number_e164,
            cid_name=self.cid_name,
            absence=self.absence,
            answered_at=self.answered_at,
            ended_at=self.ended_at,
            ring_seconds=self.ring_seconds,
            talk_seconds=self.talk_seconds,
            disposition=self.disposition,
            end_reason=self.end_reason,
            rings=self.rings,
            waiting=self.waiting,
        )

    @classmethod
    def of(cls, call: Call, notes: str | None, follow_up_at: datetime | None) -> dict[str, Any]:
        """The JSON a seat sends for ``call`` (its local ``customer_id`` stays on the seat)."""
        data = {name: value for name, value in call.to_dict().items() if name in cls.model_fields}
        data["notes"] = notes
        data["follow_up_at"] = follow_up_at.isoformat() if follow_up_at else None
        return data


class CallBatch(BaseModel):
    """``POST /api/v1/calls``: a seat's batch of calls, oldest change first.

    ``backlog`` is how many rows the seat still has waiting after this batch (the centre shows
    it per seat); ``sent_at`` the seat's clock, so a seat whose clock is off is seen (its call
    times are the seat's and are stored as sent). Entries stay raw here: each is validated on
    its own (:func:`parse_entry`).
    """

    model_config = ConfigDict(extra="ignore")

    seat: str = Field(min_length=1, max_length=64)
    backlog: int | None = Field(default=None, ge=0)
    #: The seat's clock when it sent the batch: the centre measures the seat's clock skew by it.
    sent_at: datetime | None = None
    calls: list[Any] = Field(max_length=MAX_BATCH)


class EntryResult(BaseModel):
    """The centre's answer for one entry.

    ``accepted`` (stored or moved forward), ``duplicate`` (the centre already had this state or a
    later one), or ``rejected`` with a reason.
    """

    uuid: str | None
    status: Status
    reason: str | None = None


class BatchAnswer(BaseModel):
    """``POST /api/v1/calls``'s answer: one result per entry, in the batch's order."""

    results: list[EntryResult]


def parse_entry(raw: dict[str, Any]) -> CallEntry | EntryResult:
    """An entry validated, or its rejection naming the first fields that are wrong."""
    try:
        return CallEntry.model_validate(raw)
    except ValidationError as exc:
        return EntryResult(uuid=_raw_uuid(raw), status="rejected", reason=_problems(exc))


def _problems(exc: ValidationError) -> str:
    """The first few things wrong with an entry, field by field, in at most 500 characters."""
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'entry'}: {error['msg']}" for error in exc.errors()[:5]
    )[:500]


def _raw_uuid(raw: dict[str, Any]) -> str | None:
    uuid = raw.get("uuid")
    return uuid[:64] if isinstance(uuid, str) and uuid else None


# -- the rep's worklist and dispositions ------------------------------------------------------

#: The most dispositions one ``POST /api/v1/dispositions`` may carry.
MAX_DISPOSITIONS = 500

DispositionStatus = Literal["accepted", "duplicate", "conflict", "rejected"]


class DispositionEntry(BaseModel):
    """One disposition as a seat sends it: what a call to a lead came to, made at ``at`` on the seat."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    uuid: str = Field(pattern=_UUID)
    code: str = Field(min_length=1, max_length=32)
    at: datetime
    lead_id: int | None = Field(default=None, ge=1)
    customer_id: int | None = Field(default=None, ge=1)
    note: str | None = _text(10_000)
    follow_up_at: datetime | None = None
    call_uuid: str | None = Field(default=None, pattern=_UUID)

    @field_validator("at", "follow_up_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("a time with its UTC offset (ISO 8601) is needed")
        return value


class DispositionBatch(BaseModel):
    """``POST /api/v1/dispositions``: the seat's dispositions, oldest first (entries validated one by one)."""

    model_config = ConfigDict(extra="ignore")

    seat: str = Field(min_length=1, max_length=64)
    dispositions: list[Any] = Field(max_length=MAX_DISPOSITIONS)


class DispositionResult(BaseModel):
    """The centre's answer for one disposition (see :class:`storage.worklist.DispositionOutcome`)."""

    uuid: str | None
    status: DispositionStatus
    reason: str | None = None


def parse_disposition(raw: object) -> DispositionEntry | DispositionResult:
    """A disposition validated, or its rejection naming what is wrong."""
    if not isinstance(raw, dict):
        return DispositionResult(uuid=None, status="rejected", reason="not an object")
    try:
        return DispositionEntry.model_validate(raw)
    except ValidationError as exc:
        return DispositionResult(uuid=_raw_uuid(raw), status="rejected", reason=_problems(exc))
