"""The rep's worklist on the seat: fetched from the centre, kept for when it is away.

The centre decides what is on a rep's worklist (:mod:`storage.worklist`); the seat fetches it
(``GET /api/v1/worklist``) every ``interval`` seconds and soon after each disposition, and keeps
the last answer in ``worklist.json`` in its data directory (mode 0600: names and numbers), so a
seat that starts or stays offline still shows the last list. A disposition is written locally
(:func:`storage.worklist.add_local_disposition`) and sent by the outbox like a call; until the
next fetch the page leaves out the leads the rep has dispositioned since the list was made, so
the next lead comes up at once, online or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from agent.seat.centre_client import CentreClient, CentreError
from storage.worklist import local_dispositions_since, pending_dispositions

logger = logging.getLogger(__name__)

CACHE_FILE = "worklist.json"
#: Seconds between fetches while nothing happens.
INTERVAL = 60.0
#: Seconds a fetch may take before the seat keeps its last list.
TIMEOUT = 5.0


def end_of_day(now: datetime) -> datetime:
    """The end of ``now``'s local day (the worklist shows follow-ups due by then)."""
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return start + timedelta(days=1) - timedelta(microseconds=1)


class SeatWorklist:
    """The last worklist the centre gave this seat, and how to show it now.

    :param client: the seat's centre client.
    :param engine: the seat's database (where its dispositions are written first).
    :param data_dir: where ``worklist.json`` is kept.
    :param now: the local wall clock (aware).
    """

    def __init__(
        self,
        client: CentreClient,
        engine: Engine,
        data_dir: Path,
        *,
        now: Callable[[], datetime],
        interval: float = INTERVAL,
    ) -> None:
        self.client = client
        self.engine = engine
        self.path = data_dir / CACHE_FILE
        self.now = now
        self.interval = interval
        self.error: str | None = None
        self.fetched_at: float | None = None
        self._data: dict[str, Any] | None = self._load()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _load(self) -> dict[str, Any] | None:
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logger.warning("worklist cache %s unreadable, starting without it: %s", self.path, exc)
            return None
        if not isinstance(saved, dict) or not isinstance(saved.get("data"), dict):
            logger.warning("worklist cache %s is not a worklist; ignored", self.path)
            return None
        self.fetched_at = float(saved.get("fetched_at") or 0.0)
        data: dict[str, Any] = saved["data"]
        return data

    def _save(self, data: dict[str, Any]) -> None:
        part = self.path.with_suffix(".part")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"fetched_at": self.fetched_at, "data": data}, out, ensure_ascii=False)
        os.replace(part, self.path)

    def refresh(self) -> bool:
        """Fetch the worklist now (blocking); False when the centre could not give it (the last one stays)."""
        try:
            data = self.client.worklist(end_of_day(self.now()), timeout=TIMEOUT)
        except CentreError as exc:
            if self.error != str(exc):
                logger.warning("worklist: the centre could not give it, showing the last one: %s", exc)
            self.error = str(exc)
            return False
        self.fetched_at = time.time()
        self._data = data
        self.error = None
        try:
            self._save(data)
        except OSError as exc:
            logger.warning("worklist: cannot keep it in %s: %s", self.path, exc)
        return True

    def snapshot(self) -> dict[str, Any]:
        """The worklist as the page shows it (blocking: reads the seat's database).

        ``items`` leaves out leads dispositioned on this seat since the list was made;
        ``offline`` says the centre did not answer the last fetch (``error`` why); ``pending``
        counts dispositions not yet at the centre; ``conflicts`` those the centre kept without
        changing the lead (it had moved to someone else).
        """
        data = self._data or {}
        as_of = _time(data.get("as_of"))
        with Session(self.engine) as session:
            since = local_dispositions_since(session, as_of)
            pending = pending_dispositions(session)
        done = {row.lead_id for row in since if row.lead_id is not None}
        items = [i for i in data.get("items", []) if isinstance(i, dict) and i.get("lead_id") not in done]
        conflicts = [
            {"lead_id": row.lead_id, "code": row.code, "at": row.at.isoformat(), "conflict": row.conflict}
            for row in since
            if row.conflict
        ]
        return {
            "available": self._data is not None,
            "rep": data.get("rep"),
            "rep_active": data.get("rep_active", True),
            "as_of": data.get("as_of"),
            "dispositions": data.get("dispositions", []),
            "items": items,
            "offline": self.error is not None,
            "error": self.error,
            "pending": pending,
            "conflicts": conflicts,
        }

    def codes(self) -> dict[str, dict[str, Any]]:
        """The floor's dispositions as last fetched, by code."""
        listed = (self._data or {}).get("dispositions", [])
        return {d["code"]: d for d in listed if isinstance(d, dict) and isinstance(d.get("code"), str)}

    def poke(self) -> None:
        """Fetch again soon (a disposition was made or sent)."""
        self._wake.set()

    def start(self) -> None:
        """Fetch now and then every ``interval`` seconds, in the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="worklist")

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            await asyncio.to_thread(self.refresh)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            # Let a burst of dispositions reach the centre before asking again.
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        """Stop fetching (idempotent)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


__all__ = ["CACHE_FILE", "SeatWorklist", "end_of_day"]
