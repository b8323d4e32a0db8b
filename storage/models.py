"""SQLAlchemy 2 models: one schema for the embedded SQLite database and the central PostgreSQL.

Times are stored in UTC and always come back tz-aware (:class:`UTCDateTime`).
Phone numbers are text: the normalised E.164 form beside the raw string a device
or an import gave. ``calls.rep`` and ``calls.team`` are names, not foreign keys,
so a seat can write its calls before the centre knows the rep.

The first Alembic revision (``storage/migrations/versions``) creates exactly these
tables; a test checks that the migrated schema and these models agree.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from agent.events import Absence, Call, Direction, Disposition, EndReason, RecordingFacts

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES: tuple[str, ...] = ("rep", "lead", "manager", "admin")
RECORDING_STATUSES: tuple[str, ...] = ("complete", "recovered", "partial", "failed")

#: PostgreSQL-only pg_trgm GIN indexes for number and notes searches (migration 0004).
#: They are not in the models (SQLite has no trigram index), so schema comparisons skip them.
SEARCH_INDEXES: tuple[str, ...] = (
    "ix_calls_number_e164_trgm",
    "ix_calls_number_raw_trgm",
    "ix_calls_notes_trgm",
)


def include_in_schema(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic ``include_object`` for comparing the database with the models: skips :data:`SEARCH_INDEXES`.

    Used by the migrations' autogenerate (so it never proposes dropping them) and by the schema tests.
    """
    return not (type_ == "index" and name in SEARCH_INDEXES)


def utcnow() -> datetime:
    """The current time, tz-aware UTC (the default for ``created_at`` / ``updated_at``)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC that always comes back tz-aware UTC.

    PostgreSQL keeps it as ``timestamp with time zone``; SQLite, which has no
    time zones, keeps the naive UTC wall time. Naive datetimes are refused on
    the way in: guessing their zone is how call times end up hours off.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """UTC on the way in; naive UTC for SQLite."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given: times must be tz-aware")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Tz-aware UTC on the way out, whatever the database kept."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


_E = TypeVar("_E")


def _enum(kind: Callable[[str], _E], value: str | None) -> _E | None:
    return kind(value) if value is not None else None


class Base(DeclarativeBase):
    """Declarative base: the naming convention gives every constraint and index a stable name."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime()}


class Team(Base):
    """A sales team and its daily targets per rep (None: no target)."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    target_calls: Mapped[int | None] = mapped_column(Integer)
    target_talk_seconds: Mapped[int | None] = mapped_column(Integer)
    target_effective_calls: Mapped[int | None] = mapped_column(Integer)


class Rep(Base):
    """A sales rep; ``name`` is what seats write into ``calls.rep``."""

    __tablename__ = "reps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class User(Base):
    """A console log-in. ``role`` decides what they may see (rep < lead < manager < admin)."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    rep_id: Mapped[int | None] = mapped_column(ForeignKey("reps.id", ondelete="SET NULL"))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    language: Mapped[str] = mapped_column(String(16), default="en", server_default="en")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("CURRENT_TIMESTAMP"))
    #: Carried in every session cookie; raising it (log-out, a new password) ends the user's sessions.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class CustomerRecord(Base):
    """A customer (a lead or an account). ``owner_rep`` is the rep name that works them."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    company: Mapped[str | None] = mapped_column(String(200))
    owner_rep: Mapped[str | None] = mapped_column(String(100))
    notes: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("CURRENT_TIMESTAMP"))
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=text("CURRENT_TIMESTAMP")
    )

    phones: Mapped[list[CustomerPhone]] = relationship(
        back_populates="customer",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="CustomerPhone.id",
    )


class CustomerPhone(Base):
    """One number of a customer. ``number_e164`` is unique: a number has one owner."""

    __tablename__ = "customer_phones"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    number_e164: Mapped[str] = mapped_column(String(32), unique=True)
    # Indexed because a lookup falls back to the raw form when normalisation fails.
    number_raw: Mapped[str | None] = mapped_column(String(64), index=True)
    label: Mapped[str | None] = mapped_column(String(50))

    customer: Mapped[CustomerRecord] = relationship(back_populates="phones")


class CallRecord(Base):
    """One call, as the latest :class:`agent.events.Call` snapshot left it, plus the rep's note.

    ``notes`` and ``follow_up_at`` belong to the rep, not to the snapshot: call
    writes never touch them. The column names are read by reports and outside
    tools; keep them.
    """

    __tablename__ = "calls"
    __table_args__ = (
        CheckConstraint("direction IN ('in', 'out')", name="direction"),
        CheckConstraint("absence IS NULL OR absence IN ('P', 'O')", name="absence"),
        Index(None, "rep", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    seat: Mapped[str] = mapped_column(String(100))
    device_id: Mapped[str] = mapped_column(String(100))
    line: Mapped[str] = mapped_column(String(100))
    rep: Mapped[str] = mapped_column(String(100))
    team: Mapped[str] = mapped_column(String(100))
    direction: Mapped[str] = mapped_column(String(3))
    number_e164: Mapped[str | None] = mapped_column(String(32), index=True)
    number_raw: Mapped[str | None] = mapped_column(String(64))
    cid_name: Mapped[str | None] = mapped_column(String(200))
    absence: Mapped[str | None] = mapped_column(String(1))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    started_at: Mapped[datetime] = mapped_column(index=True)
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    ring_seconds: Mapped[float | None] = mapped_column(Float)
    talk_seconds: Mapped[float | None] = mapped_column(Float)
    disposition: Mapped[str | None] = mapped_column(String(16), index=True)
    end_reason: Mapped[str | None] = mapped_column(String(16))
    rings: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    waiting: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    notes: Mapped[str | None] = mapped_column(Text)
    follow_up_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("CURRENT_TIMESTAMP"))
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=text("CURRENT_TIMESTAMP")
    )

    def to_call(self, *, with_customer: bool = True) -> Call:
        """The row as a :class:`Call` snapshot (the rep's note is not part of one).

        :param with_customer: keep ``customer_id``; False for a row leaving this
            database, whose customer ids mean nothing elsewhere.
        :raises ValueError: a stored enum value this version does not know.
        """
        return Call(
            uuid=self.uuid,
            seat=self.seat,
            device_id=self.device_id,
            line=self.line,
            rep=self.rep,
            team=self.team,
            direction=Direction(self.direction),
            started_at=self.started_at,
            number_raw=self.number_raw,
            number_e164=self.number_e164,
            cid_name=self.cid_name,
            absence=_enum(Absence, self.absence),
            answered_at=self.answered_at,
            ended_at=self.ended_at,
            ring_seconds=self.ring_seconds,
            talk_seconds=self.talk_seconds,
            disposition=_enum(Disposition, self.disposition),
            end_reason=_enum(EndReason, self.end_reason),
            rings=self.rings,
            waiting=self.waiting,
            customer_id=self.customer_id if with_customer else None,
        )


class Recording(Base):
    """An audio file of a call. ``status`` says whether the file was closed cleanly or repaired."""

    __tablename__ = "recordings"
    __table_args__ = (CheckConstraint(_in("status", RECORDING_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_uuid: Mapped[str] = mapped_column(ForeignKey("calls.uuid"), index=True)
    path_or_uri: Mapped[str] = mapped_column(Text)
    codec: Mapped[str | None] = mapped_column(String(32))
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[int | None] = mapped_column(Integer)
    seconds: Mapped[float | None] = mapped_column(Float)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    #: Comma-separated findings of the completeness checks (``silent``, ``one_sided``, ``short``, ...).
    flags: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("CURRENT_TIMESTAMP"))

    def to_facts(self) -> RecordingFacts:
        """The row as the :class:`RecordingFacts` the recorder reported (unknown numbers as 0)."""
        return RecordingFacts(
            call_uuid=self.call_uuid,
            path=self.path_or_uri,
            codec=self.codec or "",
            sample_rate=self.sample_rate or 0,
            channels=self.channels or 0,
            seconds=self.seconds or 0.0,
            bytes=self.bytes or 0,
            sha256=self.sha256,
            status=self.status,
            flags=tuple(f for f in (self.flags or "").split(",") if f),
        )


class AuditEntry(Base):
    """Who did what to which call or recording (every play and download is one row)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("CURRENT_TIMESTAMP"), index=True)
    user_login: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    remote_addr: Mapped[str | None] = mapped_column(String(64))


# -- team mode: the seat's outbox towards the central database (see storage/outbox.py) ---------


class OutboxEntry(Base):
    """A local change to send upstream: ``kind`` ``call`` (``ref`` = uuid) or ``recording`` (``ref`` = id).

    Rows are written by SQLite triggers in the same transaction as the change
    itself (see :mod:`storage.outbox`); the sync deletes them once the central
    database has the row. ``parked`` entries failed for a reason a retry cannot
    fix (the local file is gone or does not match its checksum, or the centre
    refused the row ``rejections`` times for a permanent reason) and wait for a
    person (``cti-agent sync --retry-parked``). ``attempts`` counts every failed try.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index(None, "kind", "ref"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("CURRENT_TIMESTAMP"))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    parked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    last_error: Mapped[str | None] = mapped_column(Text)
    rejections: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    parked_at: Mapped[datetime | None]


class RecordingUpload(Base):
    """A recording copied to the central store and verified there by SHA-256 (the purge guard reads it)."""

    __tablename__ = "recording_uploads"

    recording_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    verified_at: Mapped[datetime] = mapped_column(default=utcnow)


class SyncState(Base):
    """Small facts of the sync, by name: ``enabled``, ``last_success_at``, ``last_error``, ..."""

    __tablename__ = "sync_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# -- the centre: the seats it knows (see storage/seats.py) --------------------------------------


class Seat(Base):
    """A seat the centre accepts, with the SHA-256 of its credential (the token itself is never kept).

    ``revoked_at`` set: the credential no longer opens anything. ``last_seen_at`` and
    ``backlog`` are what the seat last reported (for the centre's metrics and ``seats list``).
    """

    __tablename__ = "seats"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    team: Mapped[str | None] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("CURRENT_TIMESTAMP"))
    revoked_at: Mapped[datetime | None] = mapped_column()
    last_seen_at: Mapped[datetime | None] = mapped_column()
    backlog: Mapped[int | None] = mapped_column(Integer)
    #: The rep working at this seat: whose worklist its credential opens (None: no worklist).
    rep: Mapped[str | None] = mapped_column(String(100))


# -- the centre: lead lists, who holds each lead, and every move (see storage/leads.py) ----------

#: What a transfer-log row records.
TRANSFER_ACTIONS: tuple[str, ...] = ("import", "to_team", "to_rep", "recall", "move")


class LeadList(Base):
    """A list of leads (数据) as the company handed it over: its name and whether it is premium."""

    __tablename__ = "lead_lists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    premium: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("CURRENT_TIMESTAMP"))
    created_by: Mapped[str | None] = mapped_column(String(100))


class Lead(Base):
    """A customer on a lead list, and the team and rep it is handed to (None: not yet).

    A customer is a lead of one list at most (``customer_id`` unique). The rep a lead is
    handed to is also its customer's ``owner_rep``: both change in one transaction, each
    conditional on being free, so two seats or two team leads cannot both take one.
    """

    __tablename__ = "leads"
    __table_args__ = (Index(None, "list_id", "team", "rep"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lead_lists.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), unique=True)
    team: Mapped[str | None] = mapped_column(String(100))
    rep: Mapped[str | None] = mapped_column(String(100), index=True)
    team_at: Mapped[datetime | None] = mapped_column()
    rep_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("CURRENT_TIMESTAMP"))
    #: The holder's last disposition of it (its code and when the rep made it).
    last_code: Mapped[str | None] = mapped_column(String(32))
    last_at: Mapped[datetime | None] = mapped_column()
    #: When the holder is to call again (a disposition's follow-up time).
    next_at: Mapped[datetime | None] = mapped_column(index=True)
    #: When a final disposition (deal, not interested, wrong number) took it off the worklist.
    closed_at: Mapped[datetime | None] = mapped_column()


class DispositionRecord(Base):
    """What a rep said a call to a lead came to: a code the floor configures, a note, the next call.

    Written on the seat first (where the outbox sends it, by ``uuid``, idempotently) and kept at
    the centre as sent, whatever became of the lead meanwhile: ``conflict`` says why it did not
    change the lead (the lead was moved to another rep while the seat was offline, say).
    ``lead_id`` and ``customer_id`` are the centre's ids; there are no foreign keys, because a
    seat's database holds dispositions but no leads.
    """

    __tablename__ = "dispositions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    seat: Mapped[str | None] = mapped_column(String(64))
    rep: Mapped[str | None] = mapped_column(String(100))
    lead_id: Mapped[int | None] = mapped_column(Integer, index=True)
    customer_id: Mapped[int | None] = mapped_column(Integer, index=True)
    code: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    follow_up_at: Mapped[datetime | None] = mapped_column()
    call_uuid: Mapped[str | None] = mapped_column(String(36))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    received_at: Mapped[datetime | None] = mapped_column()
    conflict: Mapped[str | None] = mapped_column(Text)


class DoNotCall(Base):
    """A number the floor must not call (the customer asked, or the law says so), until ``expires_at``.

    Kept at the centre: the worklist leaves these numbers out, the seat page asks before dialing
    one, and an outbound call to one is flagged after the fact.
    """

    __tablename__ = "do_not_call"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number_e164: Mapped[str] = mapped_column(String(32), unique=True)
    reason: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16), default="manual")
    added_by: Mapped[str | None] = mapped_column(String(100))
    added_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("CURRENT_TIMESTAMP"))
    expires_at: Mapped[datetime | None] = mapped_column()


class Transfer(Base):
    """One move of a customer: imported, handed to a team or a rep, recalled, moved (the transfer log).

    Never updated or deleted: who did it, what, from whom to whom, when and why.
    """

    __tablename__ = "transfers"
    __table_args__ = (CheckConstraint(_in("action", TRANSFER_ACTIONS), name="action"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("CURRENT_TIMESTAMP"), index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    list_id: Mapped[int | None] = mapped_column(ForeignKey("lead_lists.id", ondelete="SET NULL"))
    from_team: Mapped[str | None] = mapped_column(String(100))
    from_rep: Mapped[str | None] = mapped_column(String(100))
    to_team: Mapped[str | None] = mapped_column(String(100))
    to_rep: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
