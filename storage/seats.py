"""The centre's seats and their credentials.

Each seat gets its own random token (``cti-agent seats add``), shown once and kept by the centre
only as its SHA-256: the token is 256 random bits, so a plain hash is as strong as a slow one
and a lookup by hash needs no constant-time compare (the hash of a guess reveals nothing about
the stored ones). A revoked seat's token opens nothing; its calls stay.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from agent.errors import StorageError
from storage.models import Seat, utcnow

#: What a seat name may look like (it is written into every call row of the seat).
SEAT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: The prefix that tells a cti-agent seat token from other secrets in a file or a log.
TOKEN_PREFIX = "cti_seat_"  # noqa: S105 - a label, not a secret


class SeatError(StorageError):
    """A seat command that cannot be done (unknown seat, name taken, bad name)."""


@dataclass(frozen=True, slots=True)
class SeatInfo:
    """A seat as ``seats list`` and the seat API see it."""

    name: str
    team: str | None
    created_at: datetime
    revoked_at: datetime | None
    last_seen_at: datetime | None
    backlog: int | None
    #: The rep working at this seat, whose worklist its credential opens (None: none).
    rep: str | None = None

    @property
    def active(self) -> bool:
        """Whether the seat's credential is still accepted."""
        return self.revoked_at is None


def token_hash(token: str) -> str:
    """The SHA-256 (hex) under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh seat token: the prefix and 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _info(row: Seat) -> SeatInfo:
    return SeatInfo(
        name=row.name,
        team=row.team,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_seen_at=row.last_seen_at,
        backlog=row.backlog,
        rep=row.rep,
    )


def add_seat(
    session: Session, name: str, team: str | None = None, rep: str | None = None
) -> tuple[SeatInfo, str]:
    """Register a seat; returns it and its token (the only time the token is seen).

    A revoked seat's name may be added again: it gets a new token and keeps its history.

    :raises SeatError: the name is not a valid seat name, or an active seat has it.
    """
    if not SEAT_NAME.match(name):
        raise SeatError(f"not a seat name: {name!r} (letters, digits, . _ -, up to 64)")
    token = new_token()
    row = session.scalar(select(Seat).where(Seat.name == name))
    if row is not None and row.revoked_at is None:
        raise SeatError(f"seat {name!r} already exists; revoke it first to give it a new token")
    if row is None:
        row = Seat(name=name, team=team, rep=rep, token_hash=token_hash(token))
        session.add(row)
    else:
        row.token_hash = token_hash(token)
        row.team = team if team is not None else row.team
        row.rep = rep if rep is not None else row.rep
        row.revoked_at = None
        row.created_at = utcnow()
    session.flush()
    return _info(row), token


def set_seat_rep(session: Session, name: str, rep: str | None) -> SeatInfo:
    """Say which rep works at seat ``name`` (None: nobody); the seat's worklist is theirs from now on.

    :raises SeatError: no such seat.
    """
    row = session.scalar(select(Seat).where(Seat.name == name))
    if row is None:
        raise SeatError(f"no seat {name!r}")
    row.rep = rep
    session.flush()
    return _info(row)


def revoke_seat(session: Session, name: str, now: datetime | None = None) -> SeatInfo:
    """Stop accepting a seat's token (its calls and recordings stay).

    :raises SeatError: no such seat.
    """
    row = session.scalar(select(Seat).where(Seat.name == name))
    if row is None:
        raise SeatError(f"no seat {name!r}")
    if row.revoked_at is None:
        row.revoked_at = now or utcnow()
        session.flush()
    return _info(row)


def list_seats(session: Session) -> list[SeatInfo]:
    """Every seat the centre knows, by name."""
    return [_info(row) for row in session.scalars(select(Seat).order_by(Seat.name))]


def seat_for_token(session: Session, token: str) -> SeatInfo | None:
    """The active seat whose token this is, or None (unknown, malformed or revoked)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = session.scalar(select(Seat).where(Seat.token_hash == token_hash(token)))
    if row is None or row.revoked_at is not None:
        return None
    return _info(row)


def seen_since(session: Session, since: datetime) -> set[str]:
    """The active seats that called in (a batch or a listen-in poll) since ``since``."""
    return set(
        session.scalars(select(Seat.name).where(Seat.revoked_at.is_(None), Seat.last_seen_at >= since))
    )


def seat_seen(session: Session, name: str, backlog: int | None, now: datetime | None = None) -> None:
    """Note that a seat called in now, and the backlog it reported (None: it did not say).

    One ``UPDATE`` and nothing read first: called first in a seat's write transaction, it takes
    the write lock at the start (see :func:`agent.centre.api.calls.post_calls`).
    """
    values: dict[str, object] = {"last_seen_at": now or utcnow()}
    if backlog is not None:
        values["backlog"] = backlog
    session.execute(update(Seat).where(Seat.name == name).values(**values))
