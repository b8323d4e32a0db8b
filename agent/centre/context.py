"""What every console view runs with: the settings and one frozen context built from them at start-up.

:func:`make_context` builds a :class:`ConsoleContext` once (engine, settings,
templates, session signer, log-in rate limiter, zone); the views take it as
their first argument, so a unit test calls a view with a context of its own
(an in-memory database, a fixed secret) and a Starlette ``Request``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, TypeVar

import phonenumbers
from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from agent.centre.auth import LoginRateLimiter, Principal, SessionSigner
from agent.centre.relay import ListenRelay
from agent.centre.uploads import UploadStore
from agent.config import DailyTarget, DispositionCode, TargetsSection, TargetValues, default_dispositions
from agent.web import format_duration
from storage.blobconfig import RECORDINGS_DIR
from storage.blobstore import DirectoryBlobStore, RecordingBlobStore
from storage.kpis import percent_text
from storage.repository import add_audit
from storage.sheets import ExportGate

T = TypeVar("T")

SESSION_COOKIE = "cti_console"


@dataclass(frozen=True)
class ConsoleSettings:
    """How the console runs.

    :param secret: the session-signing key (32+ bytes); keep it across restarts or everyone logs in again.
    :param recordings_dir: where legacy recording paths (``recordings/YYYY/...``, from the old
        direct-database team mode) are resolved; files outside it are never served.
    :param recordings_store: the centre's recording store (``[centre.recordings]``), where the
        seats' uploads are kept; None: a directory store in ``recordings_dir/recordings``.
    :param zone: the floor's time zone (search dates, statistics days and hours).
    :param mask_roles: roles that see numbers masked (``138****5678``) in pages, exports and file names.
    :param secure_cookies: mark the session cookie ``Secure`` (set it when served over HTTPS).
    :param language: a fixed page language; None lets the user's setting or the browser decide.
    :param region: the floor's region (``[agent] region``): a wildcard number search is
        matched against the national number after its country code.
    :param seats: seat name → the seat page's base URL, for live listen-in (:mod:`agent.centre.listen`).
    :param listen_token: the seats' ``[web] listen_token``; None turns listen-in off.
    :param effective_seconds: talk time from which an answered call is effective (``[metrics]``).
    :param targets: the daily targets of ``[targets]``; each team's targets stored in the
        database are laid over them when the figures are read (:mod:`storage.teams`).
    :param reps_see_team_ranking: ``[centre] reps_see_team_ranking``: a rep's log-in sees their
        team ranked (True) or only their own figures (False).
    :param rank_by: ``[centre] rank_by``: the KPI reps are ranked by (:data:`storage.kpis.RANK_KEYS`).
    :param uploads_dir: the upload area, where a manager's lead file waits between its preview and
        its import (:mod:`agent.centre.uploads`); None: ``recordings_dir/uploads``.
    :param upload_max_bytes: the largest lead file the console takes (a larger one is refused
        before it is read whole; ``cti-agent leads import`` has no limit).
    :param upload_seconds: how long an upload and its reject and changes files are kept.
    """

    secret: bytes
    recordings_dir: Path
    zone: tzinfo = UTC
    mask_roles: frozenset[str] = frozenset({"rep"})
    secure_cookies: bool = False
    session_seconds: float = 12 * 3600
    language: str | None = None
    region: str = "CN"
    effective_seconds: float = 60.0
    targets: TargetsSection = field(default_factory=TargetsSection)
    login_per_user: int = 5
    login_per_address: int = 20
    login_window: float = 300.0
    wallboard_interval: float = 5.0
    reps_see_team_ranking: bool = False
    rank_by: str = "talk_seconds"
    #: ``[leads] protection_days``: how long an owner keeps a customer before others may claim it.
    protection_days: int = 30
    #: ``[[centre.dispositions]]``: what a rep may say a call to a lead came to.
    dispositions: list[DispositionCode] = field(default_factory=default_dispositions)
    seats: dict[str, str] = field(default_factory=dict)
    listen_token: str | None = None
    recordings_store: RecordingBlobStore | None = None
    uploads_dir: Path | None = None
    upload_max_bytes: int = 20 * 1024 * 1024
    upload_seconds: float = 3600.0

    def store(self) -> RecordingBlobStore:
        """The recording store: ``recordings_store``, else the directory store under ``recordings_dir``."""
        if self.recordings_store is not None:
            return self.recordings_store
        return DirectoryBlobStore(self.recordings_dir / RECORDINGS_DIR)


@dataclass(frozen=True)
class ConsoleContext:
    """Everything a view needs, built once per app (:func:`make_context`).

    :param country_code: the calling code of ``settings.region`` (a wildcard number search's prefix).
    :param listen_seats: the seats listen-in may reach (none while no listen token is set).
    :param store: the recording store the console plays the seats' uploads from.
    """

    engine: Engine
    settings: ConsoleSettings
    templates: Environment
    signer: SessionSigner
    limiter: LoginRateLimiter
    zone: tzinfo
    country_code: str
    listen_seats: dict[str, str]
    #: Exports each user may run at once (an export holds a worker thread and its rows).
    exports: ExportGate = field(default_factory=ExportGate)
    #: Seats that dialled in for listen-in (shared with the seat API of the same centre process).
    relay: ListenRelay = field(default_factory=ListenRelay)
    store: RecordingBlobStore | None = None
    #: Lead files between their preview and their import (:mod:`agent.centre.uploads`).
    uploads: UploadStore | None = None

    def upload_store(self) -> UploadStore:
        """The upload area: :attr:`uploads`, else one over the settings' folder."""
        if self.uploads is not None:
            return self.uploads
        root = self.settings.uploads_dir or self.settings.recordings_dir / "uploads"
        return UploadStore(root, ttl=self.settings.upload_seconds)

    def masked_for(self, who: Principal) -> bool:
        """Whether ``who``'s role sees numbers masked."""
        return who.role in self.settings.mask_roles

    def target_for(self, rep: str, team: str) -> DailyTarget:
        """A rep's daily target from ``[targets]`` alone (their own, else their team's, else the floor's)."""
        return self.settings.targets.for_rep(rep, team)

    def targets(self, stored: Mapping[str, TargetValues]) -> TargetsSection:
        """``[targets]`` with the teams' targets from the database laid over them.

        ``stored``: :func:`storage.teams.team_targets`; see :meth:`agent.config.TargetsSection.with_teams`.
        """
        return self.settings.targets.with_teams(stored) if stored else self.settings.targets

    async def read(self, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``query(session, *args, **kwargs)`` in a worker thread, in a session of its own (read only)."""

        def run() -> T:
            with Session(self.engine) as session:
                return query(session, *args, **kwargs)

        return await run_in_threadpool(run)

    async def write(self, change: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``change(session, *args, **kwargs)`` in a worker thread, in one transaction (committed)."""

        def run() -> T:
            with Session(self.engine) as session, session.begin():
                return change(session, *args, **kwargs)

        return await run_in_threadpool(run)

    async def audit(
        self,
        user: str | None,
        action: str,
        target: str | None = None,
        detail: str | None = None,
        addr: str | None = None,
    ) -> None:
        """Write one audit row (:func:`storage.repository.add_audit`) in its own transaction."""
        await self.write(add_audit, action, user=user, target=target, detail=detail, remote_addr=addr)


def _count(value: float | None) -> str:
    return "" if value is None else str(int(value))


def make_templates(zone: tzinfo) -> Environment:
    """The console's Jinja environment: autoescaped, strict, with its filters (durations, times, KPIs)."""
    env = Environment(
        loader=PackageLoader("agent.centre", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = format_duration
    # KPIs (storage.kpis): a share as "66.7%" (half up), a count without a trailing ".0".
    env.filters["percent"] = percent_text
    env.filters["count"] = _count
    # The same two as functions, for the tables' macros (templates/_kpis.html).
    env.globals["duration"] = format_duration
    env.globals["count"] = _count

    def local(moment: datetime | None) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if moment else ""

    env.filters["local"] = local
    return env


def make_context(
    engine: Engine, settings: ConsoleSettings, relay: ListenRelay | None = None
) -> ConsoleContext:
    """The context of one console app over ``engine`` (already migrated)."""
    return ConsoleContext(
        relay=relay or ListenRelay(),
        engine=engine,
        settings=settings,
        templates=make_templates(settings.zone),
        signer=SessionSigner(settings.secret, max_age=settings.session_seconds),
        limiter=LoginRateLimiter(
            per_user=settings.login_per_user,
            per_address=settings.login_per_address,
            window=settings.login_window,
        ),
        zone=settings.zone,
        country_code=str(phonenumbers.country_code_for_region(settings.region) or ""),
        listen_seats=dict(settings.seats) if settings.listen_token else {},
        store=settings.store(),
        uploads=UploadStore(
            settings.uploads_dir or settings.recordings_dir / "uploads", ttl=settings.upload_seconds
        ),
    )


def load_or_create_secret(path: Path) -> bytes:
    """The session secret kept in ``path`` (created 0600 with 32 random bytes the first time)."""
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return data
