"""The seat page's JSON API: the caller card, the rep's note, today's follow-ups and counts, click-to-dial.

Reads and writes go to the database in a worker thread. Every POST needs the
page's CSRF token in ``X-CSRF-Token`` (the listener is on loopback, but any
web page the rep visits could otherwise post to it), and a request whose
``Origin`` is not this page's own is refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import anyio
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from agent.config import DailyTarget
from agent.errors import AgentError, DeviceError
from agent.numbers import clean
from agent.seat.web.bus import SeatBus
from agent.seat.web.repstate import RepStateChange

logger = logging.getLogger(__name__)

CSRF_HEADER = "x-csrf-token"
MAX_NOTE = 10_000
MAX_BODY = 64 * 1024
HISTORY_LIMIT = 10
#: A call UUID as the agent writes them (8-4-4-4-12 hex digits); nothing else goes into a console link.
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class Dialer(Protocol):
    """What click-to-dial needs from the runtime (:class:`agent.seat.runner.Agent` is one)."""

    def dialable_lines(self) -> list[str]:
        """The ids of the lines whose device can dial."""

    async def dial(self, line_id: str, number: str) -> None:
        """Dial ``number`` on ``line_id``; raises LookupError (no such line) or DeviceError."""


def local_now() -> datetime:
    """The wall clock in this machine's time zone (a rep's day starts at local midnight)."""
    return datetime.now().astimezone()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def play_url(console_url: str | None, call_uuid: str) -> str | None:
    """The console's page of a call (``{console_url}/calls/{uuid}``), where its recording plays.

    None without a console or when ``call_uuid`` is not a UUID (it then cannot
    smuggle a path, query or script into the link). ``console_url`` is the
    validated ``[web] console_url``, without a trailing slash.
    """
    if console_url is None or not UUID_RE.fullmatch(call_uuid):
        return None
    return f"{console_url}/calls/{call_uuid}"


def display_number(key: str) -> str:
    """A stored number for people: ``+862212345678;ext=8001`` → ``+862212345678 ext. 8001``."""
    number, sep, ext = key.partition(";ext=")
    return f"{number} ext. {ext}" if sep else number


class SeatApi:
    """The API routes; built by :func:`agent.seat.web.app.make_seat_app`.

    :param engine: the database; without it the card shows only what the bus knows.
    :param dialer: click-to-dial; without it no number is dialable.
    :param rep: whose follow-ups and counts the page shows.
    :param targets: the rep's daily targets (None: none known).
    :param console_url: the supervisor console's base URL; with it each earlier call on the
        card that has a recording carries a ``play_url`` to the console's page of that call.
    """

    def __init__(
        self,
        bus: SeatBus,
        *,
        engine: Engine | None,
        dialer: Dialer | None,
        rep: str,
        targets: DailyTarget | None,
        effective_call_seconds: float = 60.0,
        now: Callable[[], datetime] = local_now,
        csrf_token: str | None = None,
        json_response: Callable[..., Response],
        protection_days: int = 30,
        daily_claim_limit: int = 20,
        console_url: str | None = None,
    ) -> None:
        self.bus = bus
        self.console_url = console_url
        self.engine = engine
        self.dialer = dialer
        self.rep = rep
        self.targets = targets
        self.effective_call_seconds = effective_call_seconds
        self.now = now
        self.csrf_token = csrf_token or secrets.token_urlsafe(32)
        self._json = json_response
        self.protection = timedelta(days=protection_days)
        self.daily_claim_limit = daily_claim_limit
        self._writes: set[asyncio.Future[Any]] = set()
        if engine is not None:
            bus.rep_listeners.append(self._store_rep_state)

    def routes(self) -> list[BaseRoute]:
        """The API's routes."""
        return [
            Route("/api/card/{uuid}", self.card, methods=["GET"], name="card"),
            Route("/api/calls/{uuid}/note", self.save_note, methods=["POST"], name="note"),
            Route("/api/today", self.today, methods=["GET"], name="today"),
            Route("/api/dial", self.dial, methods=["POST"], name="dial"),
            Route("/api/customers/{customer_id:int}/claim", self.claim, methods=["POST"], name="claim"),
            Route("/api/rep-state", self.rep_state, methods=["POST"], name="rep_state"),
        ]

    # -- helpers --------------------------------------------------------------------

    def _error(self, status: int, message: str) -> Response:
        return self._json({"error": message}, status_code=status)

    def _refused(self, request: Request) -> Response | None:
        """A 403 for a POST without the page's token or from another origin, else None."""
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            return self._error(403, "cross-origin request refused")
        token = request.headers.get(CSRF_HEADER, "")
        if not secrets.compare_digest(token.encode(), self.csrf_token.encode()):
            return self._error(403, "missing or wrong CSRF token; reload the page")
        return None

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return self._error(413, "request too large")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return self._error(400, "expected a JSON object")
        if not isinstance(body, dict):
            return self._error(400, "expected a JSON object")
        return body

    async def _db(self, work: Callable[[Session], Any]) -> Any:
        assert self.engine is not None
        engine = self.engine

        def run() -> Any:
            with Session(engine) as session, session.begin():
                return work(session)

        return await anyio.to_thread.run_sync(run)

    def _day(self) -> tuple[datetime, datetime]:
        now = self.now()
        start = datetime.combine(now.date(), time(), tzinfo=now.tzinfo)
        return start, start + timedelta(days=1)

    def _dial_lines(self) -> list[str]:
        return self.dialer.dialable_lines() if self.dialer is not None else []

    # -- the card -------------------------------------------------------------------

    async def card(self, request: Request) -> Response:
        """``GET /api/card/{uuid}``: the customer behind a call, their last calls and this call's note."""
        uuid = request.path_params["uuid"]
        call = self.bus.call(uuid)
        if call is None:
            return self._error(404, "no such recent call")
        customer = dict(call.get("customer") or {})
        customer_id = customer.get("id") or call.get("customer_id")
        out: dict[str, Any] = {
            "uuid": uuid,
            "customer": customer or None,
            "history": [],
            "note": {"notes": "", "follow_up": ""},
            "dial_lines": self._dial_lines(),
            "rep": self.rep,
        }
        if self.engine is not None:
            try:
                out.update(await self._db(lambda s: self._card_from_db(s, uuid, call, customer_id)))
            except AgentError as exc:
                logger.warning("seat page: card for call %s: %s", uuid, exc)
                out["error"] = "database unavailable"
        owner = (out["customer"] or {}).get("owner_rep")
        out["owned_by_other"] = bool(owner and self.rep and owner != self.rep)
        return self._json(out, headers={"Cache-Control": "no-store"})

    def _card_from_db(
        self, session: Session, uuid: str, call: dict[str, Any], customer_id: int | None
    ) -> dict[str, Any]:
        from storage.repository import calls_with, calls_with_recordings, get_call, get_customer

        out: dict[str, Any] = {}
        if customer_id is not None:
            record = get_customer(session, int(customer_id))
            if record is not None:
                out["customer"] = {
                    "id": record.id,
                    "name": record.name,
                    "company": record.company,
                    "owner_rep": record.owner_rep,
                    "tags": [t for t in (record.tags or "").split(",") if t],
                    "notes": record.notes,
                    "phones": [display_number(p.number_e164) for p in record.phones],
                    "source": "sql",
                }
        history = calls_with(
            session,
            customer_id=int(customer_id) if customer_id is not None else None,
            number_e164=call.get("number_e164"),
            exclude_uuid=uuid,
            limit=HISTORY_LIMIT,
        )
        recorded = calls_with_recordings(session, [h.uuid for h in history])
        out["history"] = [
            {
                "uuid": h.uuid,
                "has_recording": h.uuid in recorded,
                # The console checks the user's role itself; the seat only offers the link.
                "play_url": play_url(self.console_url, h.uuid) if h.uuid in recorded else None,
                "started_at": _iso(h.started_at),
                "direction": h.direction,
                "disposition": h.disposition,
                "talk_seconds": h.talk_seconds,
                "rep": h.rep,
                "notes": h.notes or "",
                "follow_up": h.follow_up_at.astimezone(self.now().tzinfo).date().isoformat()
                if h.follow_up_at
                else "",
            }
            for h in history
        ]
        customer_row = out.get("customer")
        if customer_row and customer_row.get("id") is not None and self.rep:
            out["claim"] = self._claim_view(self._claim_status(session, int(customer_row["id"])))
        row = get_call(session, uuid)
        if row is not None:
            out["note"] = {
                "notes": row.notes or "",
                "follow_up": row.follow_up_at.astimezone(self.now().tzinfo).date().isoformat()
                if row.follow_up_at
                else "",
            }
        return out

    # -- the rep's note ---------------------------------------------------------------

    async def save_note(self, request: Request) -> Response:
        """``POST /api/calls/{uuid}/note`` with ``{"notes": str, "follow_up": "YYYY-MM-DD" or ""}``."""
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        if self.engine is None:
            return self._error(503, "no database")
        notes = body.get("notes", "")
        follow_up = body.get("follow_up", "")
        if not isinstance(notes, str) or not isinstance(follow_up, str):
            return self._error(400, "notes and follow_up are strings")
        if len(notes) > MAX_NOTE:
            return self._error(400, f"the note is longer than {MAX_NOTE} characters")
        follow_up_at: datetime | None = None
        if follow_up.strip():
            try:
                day = date.fromisoformat(follow_up.strip())
            except ValueError:
                return self._error(400, "follow_up is a date, YYYY-MM-DD")
            follow_up_at = datetime.combine(day, time(), tzinfo=self.now().tzinfo)
        uuid = request.path_params["uuid"]
        from storage.repository import save_note

        try:
            saved = await self._db(lambda s: save_note(s, uuid, notes.strip() or None, follow_up_at))
        except AgentError as exc:
            logger.warning("seat page: saving the note of call %s: %s", uuid, exc)
            return self._error(503, "the database is unavailable; the note was not saved")
        if not saved:
            return self._error(404, "no such call in the database yet")
        return self._json({"saved": True, "uuid": uuid})

    # -- today ------------------------------------------------------------------------

    async def today(self, request: Request) -> Response:
        """``GET /api/today``: due follow-ups, today's counts and the rep's targets."""
        targets = self.targets.model_dump() if self.targets is not None else {}
        out: dict[str, Any] = {
            "rep": self.rep,
            "follow_ups": [],
            "counts": None,
            "targets": targets,
            "dial_lines": self._dial_lines(),
        }
        if self.engine is None:
            return self._json(out, headers={"Cache-Control": "no-store"})
        start, end = self._day()
        try:
            out.update(await self._db(lambda s: self._today_from_db(s, start, end)))
        except AgentError as exc:
            logger.warning("seat page: today's figures: %s", exc)
            out["error"] = "database unavailable"
        return self._json(out, headers={"Cache-Control": "no-store"})

    def _today_from_db(self, session: Session, start: datetime, end: datetime) -> dict[str, Any]:
        from storage.repository import day_counts, due_follow_ups, get_customer

        due = due_follow_ups(session, rep=self.rep, until=end - timedelta(microseconds=1))
        names: dict[int, str] = {}
        for call in due:
            if call.customer_id is not None and call.customer_id not in names:
                record = get_customer(session, call.customer_id)
                names[call.customer_id] = record.name if record is not None else ""
        return {
            "follow_ups": [
                {
                    "uuid": call.uuid,
                    "due": call.follow_up_at.astimezone(start.tzinfo).date().isoformat()
                    if call.follow_up_at
                    else "",
                    "overdue": bool(call.follow_up_at and call.follow_up_at < start),
                    "number": call.number_raw or "",
                    "number_e164": call.number_e164 or "",
                    "name": names.get(call.customer_id or 0) or call.cid_name or "",
                    "notes": call.notes or "",
                }
                for call in due
            ],
            "counts": day_counts(
                session, rep=self.rep, since=start, effective_seconds=self.effective_call_seconds
            ),
        }

    # -- lead ownership ------------------------------------------------------------------

    def _claim_args(self) -> dict[str, Any]:
        now = self.now()
        start, _ = self._day()
        return {
            "now": now,
            "day_start": start,
            "protection": self.protection,
            "daily_limit": self.daily_claim_limit,
        }

    def _claim_status(self, session: Session, customer_id: int) -> Any:
        from storage.repository import claim_status

        return claim_status(session, customer_id, self.rep, **self._claim_args())

    @staticmethod
    def _claim_view(status: Any) -> dict[str, Any]:
        return {
            "reason": status.reason,
            "claimable": status.claimable,
            "owner_rep": status.owner_rep,
            "protected_until": _iso(status.protected_until),
            "claims_left": status.claims_left,
        }

    async def claim(self, request: Request) -> Response:
        """``POST /api/customers/{id}/claim``: the rep takes an unowned or unprotected customer (audited)."""
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        if self.engine is None:
            return self._error(503, "no database")
        if not self.rep:
            return self._error(409, "this seat has no rep configured")
        customer_id = int(request.path_params["customer_id"])
        remote = request.client.host if request.client else None
        from storage.repository import claim_customer

        try:
            status = await self._db(
                lambda s: claim_customer(s, customer_id, self.rep, remote_addr=remote, **self._claim_args())
            )
        except AgentError as exc:
            logger.warning("seat page: claiming customer %d: %s", customer_id, exc)
            return self._error(503, "the database is unavailable")
        view = self._claim_view(status)
        if status.reason == "not_found":
            return self._error(404, "no such customer")
        if status.reason in ("ok", "yours"):
            return self._json({**view, "owner_rep": self.rep, "claimed": status.reason == "ok"})
        return self._json({**view, "error": status.reason}, status_code=409)

    # -- rep state -------------------------------------------------------------------------

    async def rep_state(self, request: Request) -> Response:
        """``POST /api/rep-state`` with ``{"state": "available" | "paused", "reason": code}``."""
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        state, reason = body.get("state"), body.get("reason")
        if not isinstance(state, str) or (reason is not None and not isinstance(reason, str)):
            return self._error(400, "state (and reason) are strings")
        try:
            self.bus.choose_rep_state(state, reason, self.now())
        except ValueError as exc:
            return self._error(409, str(exc))
        if self._writes:
            # Answer once the change is stored: the rep's confirmation means it is on record.
            await asyncio.wait(set(self._writes))
        assert self.bus.rep_state is not None
        return self._json(self.bus.rep_state.snapshot())

    def _store_rep_state(self, change: RepStateChange) -> None:
        """Write a change to the database off the event loop; a failure is logged, never raised."""
        engine = self.engine
        assert engine is not None

        def write() -> None:
            from storage.repository import record_rep_state

            with Session(engine) as session, session.begin():
                record_rep_state(
                    session,
                    rep=change.rep,
                    state=change.state,
                    reason=change.reason,
                    at=change.since,
                    previous=change.previous,
                    previous_reason=change.previous_reason,
                    previous_seconds=change.previous_seconds,
                )

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            write()  # called outside the event loop (tests, tools)
            return
        future = loop.run_in_executor(None, write)
        self._writes.add(future)
        future.add_done_callback(self._written)

    def _written(self, future: asyncio.Future[Any]) -> None:
        self._writes.discard(future)
        if not future.cancelled() and future.exception() is not None:
            logger.warning("rep state not stored: %s", future.exception())

    # -- click-to-dial -------------------------------------------------------------------

    async def dial(self, request: Request) -> Response:
        """``POST /api/dial`` with ``{"line": id, "number": str}``: the line's device dials."""
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        line, number = body.get("line"), body.get("number")
        if not isinstance(line, str) or not isinstance(number, str):
            return self._error(400, "line and number are strings")
        digits = clean(number.partition(" ext")[0])
        if not digits or len(digits) > 32:
            return self._error(400, "not a dialable number")
        if self.dialer is None or line not in self.dialer.dialable_lines():
            return self._error(409, f"line {line} cannot dial")
        try:
            await self.dialer.dial(line, digits)
        except LookupError:
            return self._error(404, f"no line {line}")
        except DeviceError as exc:
            logger.warning("seat page: dialing on line %s failed: %s", line, exc)
            return self._error(502, f"the device could not dial: {exc}")
        return self._json({"dialing": True, "line": line, "number": digits})
