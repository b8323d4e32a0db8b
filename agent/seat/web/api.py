"""The seat page's JSON API: the caller card, the rep's note, today's follow-ups and counts, click-to-dial.

Reads and writes go to the database in a worker thread. Every POST needs the
page's CSRF token in ``X-CSRF-Token`` (the listener is on loopback, but any
web page the rep visits could otherwise post to it), and a request whose
``Origin`` is not this page's own is refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

import anyio
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from agent.errors import AgentError, DeviceError
from agent.events import Call
from agent.numbers import clean, display_key, national, to_e164
from agent.seat.web.context import SeatContext
from storage.repository import (
    CallNote,
    ClaimStatus,
    CustomerCard,
    EarlierCall,
    FollowUp,
    call_note,
    claim_customer,
    claim_status,
    customer_card,
    day_counts,
    earlier_calls,
    follow_ups_due,
    save_note,
)
from storage.worklist import MAX_AHEAD, add_local_disposition

logger = logging.getLogger(__name__)

CSRF_HEADER = "x-csrf-token"
MAX_NOTE = 10_000
MAX_BODY = 64 * 1024
HISTORY_LIMIT = 10
#: A call UUID as the agent writes them (8-4-4-4-12 hex digits); nothing else goes into a console link.
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _history_order(entry: dict[str, Any]) -> datetime:
    """A history entry's start for sorting: ISO strings of different zones do not sort as text."""
    started = datetime.fromisoformat(entry["started_at"]) if entry.get("started_at") else datetime.min
    return started if started.tzinfo is not None else started.replace(tzinfo=UTC)


def play_url(console_url: str | None, call_uuid: str) -> str | None:
    """The console's page of a call (``{console_url}/calls/{uuid}``), where its recording plays.

    None without a console or when ``call_uuid`` is not a UUID (it then cannot
    smuggle a path, query or script into the link). ``console_url`` is the
    validated ``[web] console_url``, without a trailing slash.
    """
    if console_url is None or not UUID_RE.fullmatch(call_uuid):
        return None
    return f"{console_url}/calls/{call_uuid}"


class SeatApi:
    """The API routes, reading everything from the page's :class:`~agent.seat.web.context.SeatContext`.

    Built by :func:`agent.seat.web.app.make_seat_app`; ``json_response`` is the
    response class that escapes ``<``, ``>`` and ``&``.
    """

    def __init__(self, context: SeatContext, *, json_response: Callable[..., Response]) -> None:
        self.context = context
        self.bus = context.bus
        self.engine = context.engine
        self.rep = context.rep
        self.tokens = context.tokens
        self.protection = timedelta(days=context.protection_days)
        self._json = json_response

    def routes(self) -> list[BaseRoute]:
        """The API's routes."""
        return [
            Route("/api/card/{uuid}", self.card, methods=["GET"], name="card"),
            Route("/api/calls/{uuid}/note", self.save_note, methods=["POST"], name="note"),
            Route("/api/today", self.today, methods=["GET"], name="today"),
            Route("/api/dial", self.dial, methods=["POST"], name="dial"),
            Route("/api/customers/{customer_id:int}/claim", self.claim, methods=["POST"], name="claim"),
            Route("/api/rep-state", self.rep_state, methods=["POST"], name="rep_state"),
            Route("/api/worklist", self.worklist, methods=["GET"], name="worklist"),
            Route("/api/dispositions", self.disposition, methods=["POST"], name="disposition"),
        ]

    # -- helpers --------------------------------------------------------------------

    def _error(self, status: int, message: str) -> Response:
        return self._json({"error": message}, status_code=status)

    def _refused(self, request: Request) -> Response | None:
        """A 403 for a POST without the page's token or from another origin, else None."""
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            return self._error(403, "cross-origin request refused")
        if not self.tokens.check(request, request.headers.get(CSRF_HEADER)):
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
        now = self.context.now()
        start = datetime.combine(now.date(), time(), tzinfo=now.tzinfo)
        return start, start + timedelta(days=1)

    def _dial_lines(self) -> list[str]:
        dialer = self.context.dialer
        return dialer.dialable_lines() if dialer is not None else []

    def _local_date(self, value: datetime | None) -> str:
        """A stored tz-aware time as the rep's local date, ``YYYY-MM-DD`` ("" for None)."""
        return value.astimezone(self.context.now().tzinfo).date().isoformat() if value is not None else ""

    # -- the card -------------------------------------------------------------------

    async def card(self, request: Request) -> Response:
        """``GET /api/card/{uuid}``: the customer behind a call, their last calls and this call's note."""
        uuid = request.path_params["uuid"]
        call = self.bus.call(uuid)
        if call is None:
            return self._error(404, "no such recent call")
        out: dict[str, Any] = {
            "uuid": uuid,
            "customer": call.customer.to_dict() if call.customer is not None else None,
            "history": [],
            "note": {"notes": "", "follow_up": ""},
            "dial_lines": self._dial_lines(),
            "rep": self.rep,
        }
        if self.engine is not None:
            try:
                out.update(await self._db(lambda s: self._card_from_db(s, call)))
            except AgentError as exc:
                logger.warning("seat page: card for call %s: %s", uuid, exc)
                out["error"] = "database unavailable"
            else:
                out["history"] = [self._history_view(self._caught_up(earlier)) for earlier in out["history"]]
        out["history"] = self._with_team_calls(call, out["history"])
        owner = (out["customer"] or {}).get("owner_rep")
        out["owned_by_other"] = bool(owner and self.rep and owner != self.rep)
        # Team mode: who owns the number across the floor, even when the customer is another team's.
        found = self.context.ownership
        out["ownership"] = found(call.number_e164) if found is not None and call.number_e164 else None
        if out["ownership"] is not None and out["ownership"].get("owner_rep") not in (None, self.rep):
            out["owned_by_other"] = True
        return self._json(out, headers={"Cache-Control": "no-store"})

    def _card_from_db(self, session: Session, call: Call) -> dict[str, Any]:
        # ``customer_id`` is only ever one of our own rows (see Call.with_customer).
        customer_id = call.customer_id
        out: dict[str, Any] = {}
        card = customer_card(session, customer_id) if customer_id is not None else None
        if card is not None:
            out["customer"] = self._customer_view(card)
        history = earlier_calls(
            session,
            customer_id=customer_id,
            number_e164=call.number_e164,
            exclude_uuid=call.uuid,
            limit=HISTORY_LIMIT,
        )
        out["history"] = history  # shown by card() once caught up with the bus
        if card is not None and self.rep:
            out["claim"] = self._claim_view(self._claim_status(session, card.id))
        note = call_note(session, call.uuid)
        if note is not None:
            out["note"] = self._note_view(note)
        return out

    @staticmethod
    def _customer_view(card: CustomerCard) -> dict[str, Any]:
        return {
            "id": card.id,
            "name": card.name,
            "company": card.company,
            "owner_rep": card.owner_rep,
            "tags": list(card.tags),
            "notes": card.notes,
            "phones": [display_key(phone) for phone in card.phones],
            "source": "sql",
        }

    def _caught_up(self, earlier: EarlierCall) -> EarlierCall:
        """An earlier call with its end from the bus when storage has not written it yet.

        The page hears a call end before its row is written (storage works
        behind the bus), so a call that just ended, looked at on the next
        call's card, would otherwise show no outcome.
        """
        latest = self.bus.call(earlier.uuid)
        if latest is None or not latest.ended or earlier.disposition is not None:
            return earlier
        return dataclasses.replace(
            earlier,
            disposition=latest.disposition.value if latest.disposition is not None else None,
            talk_seconds=latest.talk_seconds,
        )

    def _history_view(self, earlier: EarlierCall) -> dict[str, Any]:
        return {
            "uuid": earlier.uuid,
            "has_recording": earlier.has_recording,
            # The console checks the user's role itself; the seat only offers the link.
            "play_url": play_url(self.context.console_url, earlier.uuid) if earlier.has_recording else None,
            "started_at": _iso(earlier.started_at),
            "direction": earlier.direction,
            "disposition": earlier.disposition,
            "talk_seconds": earlier.talk_seconds,
            "rep": earlier.rep,
            "notes": earlier.notes or "",
            "follow_up": self._local_date(earlier.follow_up_at),
        }

    def _with_team_calls(self, call: Call, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The card's history with the number's calls from the team's other seats, newest first.

        The seat's own rows win (they are fresher than the centre's copy of them); a team call is
        marked with its ``seat`` so the page can say where it was made. Only calls with the same
        number are merged: the centre's customer ids are not this seat's.
        """
        provider = self.context.team_calls
        if provider is None or call.number_e164 is None:
            return history
        seen = {entry["uuid"] for entry in history}
        seen.add(call.uuid)
        merged = list(history)
        for team in provider(call.number_e164):
            if team.uuid in seen:
                continue
            seen.add(team.uuid)
            merged.append(
                {
                    "uuid": team.uuid,
                    "has_recording": team.has_recording,
                    "play_url": play_url(self.context.console_url, team.uuid) if team.has_recording else None,
                    "started_at": _iso(team.started_at),
                    "direction": team.direction,
                    "disposition": team.disposition,
                    "talk_seconds": team.talk_seconds,
                    "rep": team.rep,
                    "seat": team.seat,
                    "notes": team.notes or "",
                    "follow_up": "",
                }
            )
        merged.sort(key=_history_order, reverse=True)
        return merged[:HISTORY_LIMIT]

    def _note_view(self, note: CallNote) -> dict[str, str]:
        return {"notes": note.notes or "", "follow_up": self._local_date(note.follow_up_at)}

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
            follow_up_at = datetime.combine(day, time(), tzinfo=self.context.now().tzinfo)
        uuid = request.path_params["uuid"]
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
        targets = self.context.targets
        out: dict[str, Any] = {
            "rep": self.rep,
            "follow_ups": [],
            "counts": None,
            "targets": targets.model_dump() if targets is not None else {},
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
        due = follow_ups_due(session, rep=self.rep, until=end - timedelta(microseconds=1))
        counts = day_counts(
            session, rep=self.rep, since=start, effective_seconds=self.context.effective_call_seconds
        )
        return {
            "follow_ups": [self._follow_up_view(follow_up, start, self.context.region) for follow_up in due],
            "counts": dataclasses.asdict(counts),
        }

    @staticmethod
    def _follow_up_view(follow_up: FollowUp, day_start: datetime, region: str) -> dict[str, Any]:
        return {
            "uuid": follow_up.uuid,
            "due": follow_up.follow_up_at.astimezone(day_start.tzinfo).date().isoformat(),
            "overdue": follow_up.follow_up_at < day_start,
            "number": follow_up.number_raw or "",
            "number_e164": follow_up.number_e164 or "",
            "number_display": national(follow_up.number_e164, region) or follow_up.number_raw or "",
            "name": follow_up.name or "",
            "notes": follow_up.notes or "",
        }

    # -- lead ownership ------------------------------------------------------------------

    def _claim_args(self) -> dict[str, Any]:
        start, _ = self._day()
        return {
            "now": self.context.now(),
            "day_start": start,
            "protection": self.protection,
            "daily_limit": self.context.daily_claim_limit,
        }

    def _claim_status(self, session: Session, customer_id: int) -> ClaimStatus:
        return claim_status(session, customer_id, self.rep, **self._claim_args())

    @staticmethod
    def _claim_view(status: ClaimStatus) -> dict[str, Any]:
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
        try:
            status: ClaimStatus = await self._db(
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

    # -- the worklist ----------------------------------------------------------------------

    async def worklist(self, request: Request) -> Response:
        """``GET /api/worklist``: the rep's leads to call, as last fetched from the centre.

        ``{"available": false}`` outside team mode; see :meth:`agent.seat.worklist.SeatWorklist.snapshot`.
        """
        source = self.context.worklist
        if source is None:
            return self._json({"available": False, "items": []}, headers={"Cache-Control": "no-store"})
        try:
            view = await anyio.to_thread.run_sync(source.snapshot)
        except AgentError as exc:
            logger.warning("seat page: worklist: %s", exc)
            return self._error(503, "the database is unavailable")
        view["dial_lines"] = self._dial_lines()
        region = self.context.region
        for item in view["items"]:
            numbers = [n for n in item.get("numbers") or [] if isinstance(n, str)]
            item["numbers_display"] = [national(n, region) or n for n in numbers]
        return self._json(view, headers={"Cache-Control": "no-store"})

    async def disposition(self, request: Request) -> Response:
        """``POST /api/dispositions``: what a call to a lead came to (kept here, sent to the centre).

        Body: ``{"code", "lead_id", "customer_id", "note", "follow_up_at" (local or ISO time),
        "call_uuid"}``. The code must be one of the floor's (as last fetched); a follow-up code
        needs its time. Answers ``{"saved": true, "uuid": ...}``.
        """
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        source = self.context.worklist
        if source is None or self.engine is None:
            return self._error(409, "no worklist here: this seat is not in team mode")
        if not self.rep:
            return self._error(409, "this seat has no rep configured")
        try:
            fields = self._disposition_fields(body, source.codes())
        except ValueError as exc:
            return self._error(400, str(exc))
        at = self.context.now()
        try:
            saved = await self._db(
                lambda s: add_local_disposition(s, seat=self.context.seat, rep=self.rep, at=at, **fields)
            )
        except AgentError as exc:
            logger.warning("seat page: disposition not kept: %s", exc)
            return self._error(503, "the database is unavailable")
        source.poke()
        if self.context.wake_sync is not None:
            self.context.wake_sync()
        return self._json({"saved": True, "uuid": saved})

    def _disposition_fields(self, body: dict[str, Any], codes: dict[str, dict[str, Any]]) -> dict[str, Any]:
        code = body.get("code")
        if not isinstance(code, str) or code not in codes:
            raise ValueError(
                f"choose one of the floor's dispositions ({', '.join(codes) or 'none fetched yet'})"
            )
        ids = {}
        for name in ("lead_id", "customer_id"):
            value = body.get(name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} is a positive integer")
            ids[name] = value
        if ids["lead_id"] is None:
            raise ValueError("lead_id is needed: a disposition is of a lead on the worklist")
        note = body.get("note") or None
        if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
            raise ValueError(f"the note is text of at most {MAX_NOTE} characters")
        follow_up = self._follow_up_time(body.get("follow_up_at"))
        if codes[code].get("follow_up") and follow_up is None:
            raise ValueError("say when to call again")
        call_uuid = body.get("call_uuid") or None
        if call_uuid is not None and (not isinstance(call_uuid, str) or not UUID_RE.fullmatch(call_uuid)):
            raise ValueError("call_uuid is a call's UUID")
        return {**ids, "code": code, "note": note, "follow_up_at": follow_up, "call_uuid": call_uuid}

    def _follow_up_time(self, value: object) -> datetime | None:
        """A ``datetime-local`` value (the rep's wall clock) or an ISO time with offset; None for none."""
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            raise ValueError("follow_up_at is a time")
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("follow_up_at is not a time (YYYY-MM-DDTHH:MM)") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=self.context.now().tzinfo)
        if when < self.context.now() - timedelta(minutes=5):
            raise ValueError("the follow-up time is in the past")
        if when > self.context.now() + MAX_AHEAD:
            raise ValueError(f"the follow-up time is more than {MAX_AHEAD.days} days ahead")
        return when

    # -- rep state -------------------------------------------------------------------------

    async def rep_state(self, request: Request) -> Response:
        """``POST /api/rep-state`` with ``{"state": "available" | "paused", "reason": code}``.

        The runtime owns the rep's state; it answers once the change is stored,
        so the rep's confirmation means it is on record.
        """
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        state, reason = body.get("state"), body.get("reason")
        if not isinstance(state, str) or (reason is not None and not isinstance(reason, str)):
            return self._error(400, "state (and reason) are strings")
        desk = self.context.rep_desk
        if desk is None:
            return self._error(409, "rep state is not tracked on this seat")
        try:
            now = await desk.choose_rep_state(state, reason)
        except ValueError as exc:
            return self._error(409, str(exc))
        return self._json(now)

    # -- click-to-dial -------------------------------------------------------------------

    async def dial(self, request: Request) -> Response:
        """``POST /api/dial`` with ``{"line": id, "number": str}``: the line's device dials.

        A number on the floor's do-not-call list (as the centre last told) is answered 409 with
        ``"do_not_call": true`` unless the body says ``"confirm_do_not_call": true``; a confirmed
        dial is logged here, and the centre flags the call when it arrives.
        """
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        line, number = body.get("line"), body.get("number")
        if not isinstance(line, str) or not isinstance(number, str):
            return self._error(400, "line and number are strings")
        digits = clean(number.partition(" ext")[0])
        if not digits or len(digits) > 32:
            return self._error(400, "not a dialable number")
        dialer = self.context.dialer
        if dialer is None or line not in dialer.dialable_lines():
            return self._error(409, f"line {line} cannot dial")
        barred = self.context.do_not_call
        e164 = to_e164(digits, self.context.region) if barred is not None else None
        if barred is not None and e164 is not None and barred(e164):
            if body.get("confirm_do_not_call") is not True:
                return self._json(
                    {"error": "this number is on the do-not-call list", "do_not_call": True}, status_code=409
                )
            logger.warning("seat page: rep %s dials a number on the do-not-call list, confirmed", self.rep)
        try:
            await dialer.dial(line, digits)
        except LookupError:
            return self._error(404, f"no line {line}")
        except DeviceError as exc:
            logger.warning("seat page: dialing on line %s failed: %s", line, exc)
            return self._error(502, f"the device could not dial: {exc}")
        return self._json({"dialing": True, "line": line, "number": digits})
