"""Passwords and log-in throttling shared by both web apps (the console's users, the seat's rep).

Passwords are hashed with scrypt (``hashlib.scrypt``, a memory-hard KDF in the
standard library: N=2**14, r=8, p=1 takes 16 MiB and tens of milliseconds per
guess), stored as ``scrypt$N$r$p$salt$hash`` so the cost can be raised later
without invalidating old hashes.

:class:`LoginRateLimiter` slows guessing without locking anyone out: failures
are counted per log-in *at each address* and per address, and once a count
passes its free allowance every further attempt on that key waits a delay that
doubles from ``base_delay`` up to ``max_delay``. Failures at one address never
delay the same log-in at another, so whoever guesses a rep's password from
elsewhere cannot keep the rep out; a guesser spread over many addresses is
slowed per address, and by scrypt and the minimum length.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_DKLEN = 32
#: scrypt needs 128 * N * r bytes; OpenSSL refuses above its default 32 MiB unless told.
SCRYPT_MAXMEM = 64 * 1024 * 1024
MIN_PASSWORD_LENGTH = 8

#: Hashed against when a log-in is unknown, so the time taken does not tell whether it exists.
_DUMMY_SALT = b"cti-agent-dummy!"


def b64(data: bytes) -> str:
    """URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    """The bytes of :func:`b64` text (:raises binascii.Error: not base64)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$N$r$p$salt$hash`` for ``password`` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=SCRYPT_DKLEN
    )
    return f"scrypt${n}${r}${p}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a hash from :func:`hash_password` (False for anything malformed)."""
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode("utf-8"),
            salt=unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=SCRYPT_MAXMEM,
            dklen=len(unb64(expected)),
        )
        return hmac.compare_digest(digest, unb64(expected))
    except (ValueError, binascii.Error):
        return False


def waste_a_hash(password: str) -> None:
    """Spend what :func:`verify_password` spends, for a log-in that has no hash to check against."""
    hashlib.scrypt(
        password.encode("utf-8"),
        salt=_DUMMY_SALT,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=SCRYPT_MAXMEM,
        dklen=SCRYPT_DKLEN,
    )


def check_password_strength(password: str) -> None:
    """:raises ValueError: the password is too short to be set."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")


@dataclass(slots=True)
class _Failures:
    count: int
    last: float


class LoginRateLimiter:
    """Failed log-ins per log-in at each address and per address, each slowed by a growing delay.

    :param per_user: failures of one log-in from one address before its attempts are delayed.
    :param per_address: failures from one address (any log-in) before its attempts are delayed.
    :param window: seconds without a failure after which a key's failures are forgotten.
    :param base_delay: the first delay; each further failure doubles it ...
    :param max_delay: ... up to this.
    :param max_keys: how many keys are remembered; past it the stalest are forgotten first.

    A success forgets that log-in's failures at that address, never the
    address's own count (one right password must not reset a guesser's tally
    of other accounts). A refused (throttled) attempt is not counted: the
    password was not even checked.
    """

    def __init__(
        self,
        *,
        per_user: int = 5,
        per_address: int = 20,
        window: float = 300.0,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_user = per_user
        self.per_address = per_address
        self.window = window
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_keys = max_keys
        self._clock = clock
        self._failures: dict[tuple[str, ...], _Failures] = {}

    def _keys(self, login: str, address: str) -> tuple[tuple[tuple[str, ...], int], ...]:
        user = ("user", login.strip().lower(), address)
        return ((user, self.per_user), (("addr", address), self.per_address))

    def _current(self, key: tuple[str, ...], now: float) -> _Failures | None:
        entry = self._failures.get(key)
        if entry is not None and now - entry.last >= self.window:
            del self._failures[key]
            return None
        return entry

    def delay_after(self, failures: int, free: int) -> float:
        """The wait after ``failures`` failures on a key allowed ``free`` of them (0 while within)."""
        if failures < free:
            return 0.0
        return float(min(self.base_delay * 2 ** min(failures - free, 32), self.max_delay))

    def retry_after(self, login: str, address: str) -> float | None:
        """Seconds until ``login`` may be tried from ``address`` again, or None when it may be now."""
        now = self._clock()
        waits = []
        for key, free in self._keys(login, address):
            entry = self._current(key, now)
            if entry is None:
                continue
            wait = entry.last + self.delay_after(entry.count, free) - now
            if wait > 0:
                waits.append(wait)
        return max(waits) if waits else None

    def failed(self, login: str, address: str) -> None:
        """Count a failed attempt against the log-in at this address and against the address."""
        now = self._clock()
        for key, _free in self._keys(login, address):
            entry = self._current(key, now)
            if entry is None:
                self._failures[key] = _Failures(1, now)
            else:
                entry.count += 1
                entry.last = now
        if len(self._failures) > self.max_keys:
            self._forget_stalest(now)

    def succeeded(self, login: str, address: str | None = None) -> None:
        """Forget the log-in's failures at ``address`` (at every address when None)."""
        name = login.strip().lower()
        if address is not None:
            self._failures.pop(("user", name, address), None)
            return
        for key in [k for k in self._failures if k[0] == "user" and k[1] == name]:
            del self._failures[key]

    def _forget_stalest(self, now: float) -> None:
        for key in [k for k, entry in self._failures.items() if now - entry.last >= self.window]:
            del self._failures[key]
        excess = len(self._failures) - self.max_keys
        if excess > 0:
            for key in sorted(self._failures, key=lambda k: self._failures[k].last)[:excess]:
                del self._failures[key]
