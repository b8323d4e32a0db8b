"""Console log-ins: password hashing, users, signed session cookies, CSRF tokens, log-in rate limits.

Passwords are hashed with scrypt (``hashlib.scrypt``, a memory-hard KDF in the
standard library: N=2**14, r=8, p=1 takes 16 MiB and tens of milliseconds per
guess), stored as ``scrypt$N$r$p$salt$hash`` so the cost can be raised later
without invalidating old hashes.

Sessions are a cookie holding a small JSON payload signed with HMAC-SHA256
(:class:`SessionSigner`). Neither ``itsdangerous`` nor Starlette's
``SessionMiddleware`` (which needs it) is installed, and a signed payload is a
dozen lines of ``hmac``; the payload also carries a fingerprint of the user's
password hash, so ``cti-agent users passwd`` ends every session of that user,
and the user row is read on every request, so ``users disable`` does too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import ROLES, Rep, Team, User

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_DKLEN = 32
#: scrypt needs 128 * N * r bytes; OpenSSL refuses above its default 32 MiB unless told.
SCRYPT_MAXMEM = 64 * 1024 * 1024
MIN_PASSWORD_LENGTH = 8

#: A hash of a random password: verified against when the log-in is unknown, so timing does not tell.
_DUMMY_SALT = b"cti-agent-dummy!"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$N$r$p$salt$hash`` for ``password`` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=SCRYPT_DKLEN
    )
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a hash from :func:`hash_password` (False for anything malformed)."""
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode("utf-8"),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=SCRYPT_MAXMEM,
            dklen=len(_unb64(expected)),
        )
        return hmac.compare_digest(digest, _unb64(expected))
    except (ValueError, binascii.Error):
        return False


def password_fingerprint(password_hash: str) -> str:
    """A short digest of a stored hash, put in the session so a new password ends old sessions."""
    return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()[:16]


def check_password_strength(password: str) -> None:
    """:raises ValueError: the password is too short to be set."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")


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
        hashlib.scrypt(
            password.encode("utf-8"),
            salt=_DUMMY_SALT,
            n=SCRYPT_N,
            r=SCRYPT_R,
            p=SCRYPT_P,
            maxmem=SCRYPT_MAXMEM,
            dklen=SCRYPT_DKLEN,
        )
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


def disable_user(session: Session, login: str) -> None:
    """Stop a user logging in; their open sessions end at their next request.

    :raises UserError: no such user.
    """
    _user(session, login).disabled = True


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
        body = _b64(json.dumps({**payload, "iat": int(self._clock())}, separators=(",", ":")).encode())
        return f"{body}.{_b64(self._mac(body.encode('ascii')))}"

    def unsign(self, value: str | None) -> dict[str, Any] | None:
        """The payload of a value this signer issued and that has not expired, else None."""
        if not value or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        try:
            if not hmac.compare_digest(_unb64(mac), self._mac(body.encode("ascii"))):
                return None
            payload = json.loads(_unb64(body))
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


# -- log-in rate limit ----------------------------------------------------------------


class LoginRateLimiter:
    """Failed log-ins allowed per log-in name and per client address within a sliding window.

    A guesser trying one account from many addresses hits the per-user limit; one
    address trying many accounts hits the per-address limit. A success clears the
    user's failures (not the address's). Memory is bounded: a key's timestamps
    are at most its limit, and empty keys are dropped.
    """

    def __init__(
        self,
        *,
        per_user: int = 5,
        per_address: int = 20,
        window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_user = per_user
        self.per_address = per_address
        self.window = window
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, login: str, address: str) -> float | None:
        """Seconds until another attempt is allowed, or None when one is allowed now."""
        now = self._clock()
        waits = []
        for key, limit in ((("user", login.lower()), self.per_user), (("addr", address), self.per_address)):
            times = self._recent(key, now)
            if len(times) >= limit:
                waits.append(times[0] + self.window - now)
        return max(waits) if waits else None

    def failed(self, login: str, address: str) -> None:
        """Count a failed attempt against the log-in and the address."""
        now = self._clock()
        for key, limit in ((("user", login.lower()), self.per_user), (("addr", address), self.per_address)):
            times = self._recent(key, now)
            times.append(now)
            while len(times) > limit:
                times.popleft()
            self._failures[key] = times

    def succeeded(self, login: str) -> None:
        """Forget the log-in's failures."""
        self._failures.pop(("user", login.lower()), None)
