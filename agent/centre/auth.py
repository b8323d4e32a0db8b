"""Console log-ins: users, signed session cookies that the server can end, CSRF tokens.

Hashing and the log-in throttle live in :mod:`agent.web.passwords` (the seat
page's rep log-in uses the same) and are re-exported here.

Sessions are a cookie holding a small JSON payload signed with HMAC-SHA256
(:class:`SessionSigner`). Neither ``itsdangerous`` nor Starlette's
``SessionMiddleware`` (which needs it) is installed, and a signed payload is a
dozen lines of ``hmac``. The payload carries the user's id, a fingerprint of
their password hash and their *session generation*; the user row is read on
every request (:func:`session_user`), so a session ends server-side when the
user is disabled, gets a new password, or logs out (:func:`end_sessions`
raises the generation, which ends every session of that user, on every
browser: a signed cookie cannot be told apart from its copies).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.web.passwords import (
    MIN_PASSWORD_LENGTH,
    LoginRateLimiter,
    b64,
    check_password_strength,
    hash_password,
    unb64,
    verify_password,
    waste_a_hash,
)
from storage.models import ROLES, Rep, Team, User

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "LoginRateLimiter",
    "Principal",
    "SessionSigner",
    "UserError",
    "authenticate",
    "check_password_strength",
    "create_user",
    "csrf_ok",
    "disable_user",
    "enable_user",
    "end_sessions",
    "end_sessions_of",
    "hash_password",
    "list_users",
    "login_session",
    "new_csrf_token",
    "password_fingerprint",
    "principal_of",
    "session_user",
    "set_password",
    "update_user",
    "verify_password",
]


def password_fingerprint(password_hash: str) -> str:
    """A short digest of a stored hash, put in the session so a new password ends old sessions."""
    return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()[:16]


# -- who is logged in -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Principal:
    """A logged-in user as the console sees them: their role and the team and rep names it scopes to."""

    user_id: int
    login: str
    role: str
    team: str | None
    rep: str | None
    language: str

    def at_least(self, role: str) -> bool:
        """Whether the user's role is ``role`` or above it in rep < lead < manager < admin."""
        return ROLES.index(self.role) >= ROLES.index(role)


def principal_of(session: Session, user: User) -> Principal:
    """The :class:`Principal` of a user row (team and rep resolved to the names calls carry)."""
    team = session.get(Team, user.team_id) if user.team_id is not None else None
    rep = session.get(Rep, user.rep_id) if user.rep_id is not None else None
    team_name = team.name if team is not None else None
    if team_name is None and rep is not None and rep.team_id is not None:
        rep_team = session.get(Team, rep.team_id)
        team_name = rep_team.name if rep_team is not None else None
    return Principal(
        user_id=user.id,
        login=user.login,
        role=user.role,
        team=team_name,
        rep=rep.name if rep is not None else None,
        language=user.language,
    )


def authenticate(session: Session, login: str, password: str) -> User | None:
    """The enabled user with this log-in and password, else None (same work either way)."""
    user = session.scalar(select(User).where(User.login == login))
    if user is None or user.disabled:
        waste_a_hash(password)
        return None
    return user if verify_password(password, user.password_hash) else None


# -- managing users (``cti-agent users``) ---------------------------------------------


class UserError(ValueError):
    """A user cannot be created or changed as asked (unknown role, taken log-in, ...)."""


def _team(session: Session, name: str) -> Team:
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        team = Team(name=name)
        session.add(team)
        session.flush()
    return team


def _assignment(
    session: Session, role: str, team: str | None, rep: str | None
) -> tuple[Team | None, Rep | None]:
    """The team and rep rows a user of ``role`` is given (created when new): the rules of create_user."""
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    team_row = _team(session, team) if team else None
    rep_row = None
    if rep:
        rep_row = session.scalar(select(Rep).where(Rep.name == rep))
        if rep_row is None:
            rep_row = Rep(name=rep, team_id=team_row.id if team_row else None)
            session.add(rep_row)
            session.flush()
        if team_row is None and rep_row.team_id is not None:
            team_row = session.get(Team, rep_row.team_id)
    if role == "rep" and rep_row is None:
        raise UserError("a rep user needs --rep (the rep name their seat writes into calls)")
    if role == "lead" and team_row is None:
        raise UserError("a lead user needs --team")
    return team_row, rep_row


def create_user(
    session: Session,
    login: str,
    password: str,
    *,
    role: str,
    team: str | None = None,
    rep: str | None = None,
    language: str = "auto",
) -> User:
    """Add a user; the team and rep are created when the database does not know them yet.

    ``language`` is ``en``, ``zh-CN`` or ``auto`` (the browser decides).
    A ``rep`` user must name their rep (their calls are those with ``calls.rep``
    equal to it); a ``lead`` must name a team (or a rep that has one).

    :raises UserError: unknown role, log-in taken, missing rep/team, or a weak password.
    """
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    login = login.strip()
    if not login:
        raise UserError("the log-in is empty")
    if session.scalar(select(User.id).where(User.login == login)) is not None:
        raise UserError(f"user {login!r} exists already")
    try:
        check_password_strength(password)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    team_row, rep_row = _assignment(session, role, team, rep)
    user = User(
        login=login,
        password_hash=hash_password(password),
        role=role,
        team_id=team_row.id if team_row else None,
        rep_id=rep_row.id if rep_row else None,
        language=language,
    )
    session.add(user)
    session.flush()
    return user


def _user(session: Session, login: str) -> User:
    user = session.scalar(select(User).where(User.login == login))
    if user is None:
        raise UserError(f"no user {login!r}")
    return user


def set_password(session: Session, login: str, password: str) -> None:
    """Give a user a new password (which ends their sessions) and enable them again.

    :raises UserError: no such user or a weak password.
    """
    try:
        check_password_strength(password)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    user = _user(session, login)
    user.password_hash = hash_password(password)
    user.session_generation += 1


def login_session(session: Session, login: str, password: str) -> dict[str, Any] | None:
    """The session payload (``uid``, ``pw``, ``gen``) for a right log-in and password, else None."""
    user = authenticate(session, login, password)
    if user is None:
        return None
    return {"uid": user.id, "pw": password_fingerprint(user.password_hash), "gen": user.session_generation}


def session_user(session: Session, payload: dict[str, Any]) -> Principal | None:
    """The user of a session payload, None when it names no enabled user or the session was ended.

    Ended means: the user was disabled, their password changed, or they logged out
    since the payload was issued (its ``gen`` is below theirs). A cookie issued
    before generations existed counts as generation 0, so the user's next
    log-out or new password ends it like any other.
    """
    uid, fingerprint, generation = payload.get("uid"), payload.get("pw"), payload.get("gen", 0)
    if not (isinstance(uid, int) and isinstance(fingerprint, str) and isinstance(generation, int)):
        return None
    user = session.get(User, uid)
    if user is None or user.disabled or user.session_generation != generation:
        return None
    if not hmac.compare_digest(password_fingerprint(user.password_hash), fingerprint):
        return None
    return principal_of(session, user)


def end_sessions(session: Session, user_id: int) -> None:
    """End every session of the user (log-out): cookies issued before no longer let them in."""
    user = session.get(User, user_id)
    if user is not None:
        user.session_generation += 1


def end_sessions_of(session: Session, login: str) -> None:
    """End every session of the user ``login`` (``cti-agent users logout``: a lost laptop).

    :raises UserError: no such user.
    """
    _user(session, login).session_generation += 1


def disable_user(session: Session, login: str) -> None:
    """Stop a user logging in; their open sessions end at their next request.

    :raises UserError: no such user.
    """
    _user(session, login).disabled = True


def enable_user(session: Session, login: str) -> None:
    """Let a disabled user log in again (with the password they had).

    :raises UserError: no such user.
    """
    _user(session, login).disabled = False


def update_user(session: Session, login: str, *, role: str, team: str | None, rep: str | None) -> None:
    """Give a user another role, team or rep, by the rules of :func:`create_user`.

    :raises UserError: no such user, unknown role, or a rep without a rep name, a lead without a team.
    """
    user = _user(session, login)
    team_row, rep_row = _assignment(session, role, team or None, rep or None)
    user.role = role
    user.team_id = team_row.id if team_row else None
    user.rep_id = rep_row.id if rep_row else None


def list_users(session: Session) -> list[dict[str, Any]]:
    """Every user: log-in, role, team, rep, language, disabled, created_at (ISO 8601)."""
    out = []
    for user in session.scalars(select(User).order_by(User.login)):
        who = principal_of(session, user)
        out.append(
            {
                "login": user.login,
                "role": user.role,
                "team": who.team,
                "rep": who.rep,
                "language": user.language,
                "disabled": user.disabled,
                "created_at": user.created_at.isoformat(),
            }
        )
    return out


# -- sessions and CSRF ----------------------------------------------------------------


class SessionSigner:
    """Signs and checks session cookie values: ``base64(json).base64(hmac-sha256)``.

    :param secret: the key (at least 32 bytes); anyone holding it can forge sessions.
    :param max_age: seconds after issue when a value stops being accepted.
    """

    def __init__(self, secret: bytes, *, max_age: float, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 32:
            raise ValueError("the session secret must be at least 32 bytes")
        self._secret = secret
        self.max_age = max_age
        self._clock = clock

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()

    def sign(self, payload: dict[str, Any]) -> str:
        """A cookie value carrying ``payload`` and the time it was issued."""
        body = b64(json.dumps({**payload, "iat": int(self._clock())}, separators=(",", ":")).encode())
        return f"{body}.{b64(self._mac(body.encode('ascii')))}"

    def unsign(self, value: str | None) -> dict[str, Any] | None:
        """The payload of a value this signer issued and that has not expired, else None."""
        if not value or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        try:
            if not hmac.compare_digest(unb64(mac), self._mac(body.encode("ascii"))):
                return None
            payload = json.loads(unb64(body))
        except (ValueError, binascii.Error, UnicodeError):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("iat"), int):
            return None
        if self._clock() - payload["iat"] > self.max_age:
            return None
        return payload


def new_csrf_token() -> str:
    """A fresh random token for one session's forms."""
    return secrets.token_urlsafe(24)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    """Whether a form's token is the session's (constant time; False when either is missing)."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))
