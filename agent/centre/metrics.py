"""The centre's team metrics: the floor's day per rep and team, and each seat's last call-in and backlog.

One scrape of the centre watches a floor whose seats sit behind NAT, from what the seats sent. The
figures come from the centre's database at scrape time (cached for ``max_age`` seconds, so a
dashboard refreshing every few seconds costs one query, not one per panel). Labels are reps,
teams, seats, directions and dispositions: never a number or a name from a caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, tzinfo

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from agent.web.exposition import Prefixes, gauge_metric
from storage.teamstats import RepDay, SeatState, rep_days, seat_states

logger = logging.getLogger(__name__)


class TeamCollector(Collector):
    """Today's calls, talk time and effective calls per rep (gauges: they restart at midnight)."""

    def __init__(
        self,
        engine: Engine,
        zone: tzinfo,
        effective_seconds: float,
        *,
        max_age: float = 5.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.engine = engine
        self.zone = zone
        self.effective_seconds = effective_seconds
        self.max_age = max_age
        self._clock = clock or (lambda: datetime.now(zone))
        self._lock = threading.Lock()
        self._cached: tuple[float, list[RepDay], list[SeatState]] | None = None
        # Each series' label text is written once and kept (agent.web.exposition).
        self._prefixes = {
            "up": Prefixes("cti_centre_database_up", ()),
            "calls": Prefixes("cti_team_calls_today", ("rep", "team", "direction", "disposition")),
            "talk": Prefixes("cti_team_talk_seconds_today", ("rep", "team")),
            "effective": Prefixes("cti_team_effective_calls_today", ("rep", "team")),
            "seen": Prefixes("cti_seat_last_seen_timestamp_seconds", ("seat", "team")),
            "backlog": Prefixes("cti_seat_reported_backlog", ("seat", "team")),
            "active": Prefixes("cti_seat_active", ("seat", "team")),
        }

    def _day(self) -> tuple[datetime, datetime]:
        now = self._clock().astimezone(self.zone)
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)

    def _read(self) -> tuple[list[RepDay], list[SeatState]] | None:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.max_age:
                return self._cached[1], self._cached[2]
            start, end = self._day()
            try:
                with Session(self.engine) as session:
                    days = rep_days(session, start, end, self.effective_seconds)
                    seats = seat_states(session)
            except SQLAlchemyError as exc:
                logger.warning("team metrics: the database cannot be read: %s", exc)
                return None
            self._cached = (time.monotonic(), days, seats)
            return days, seats

    def collect(self) -> Iterator[Metric]:
        """The team figures as of now (one cached database read)."""
        read = self._read()
        yield gauge_metric(
            "cti_centre_database_up",
            "Whether the centre's database answered this scrape.",
            self._prefixes["up"],
            [((), 0.0 if read is None else 1.0)],
        )
        if read is None:
            return
        days, seats = read
        talk_by_rep: dict[tuple[str, str], float] = {}
        effective_by_rep: dict[tuple[str, str], float] = {}
        calls: list[tuple[tuple[str, ...], float]] = []
        for day in days:
            calls.append(((day.rep, day.team, day.direction, day.disposition), float(day.calls)))
            key = (day.rep, day.team)
            talk_by_rep[key] = talk_by_rep.get(key, 0.0) + day.talk_seconds
            effective_by_rep[key] = effective_by_rep.get(key, 0) + day.effective
        owners = sorted(talk_by_rep)
        yield gauge_metric(
            "cti_team_calls_today",
            "Ended calls today (the floor's time zone) per rep, from every seat.",
            self._prefixes["calls"],
            calls,
        )
        yield gauge_metric(
            "cti_team_talk_seconds_today",
            "Talk time of today's answered calls per rep.",
            self._prefixes["talk"],
            [(key, talk_by_rep[key]) for key in owners],
        )
        yield gauge_metric(
            "cti_team_effective_calls_today",
            "Today's answered calls at least as long as the effective-call threshold, per rep.",
            self._prefixes["effective"],
            [(key, effective_by_rep[key]) for key in owners],
        )
        seen: list[tuple[tuple[str, ...], float]] = []
        backlog: list[tuple[tuple[str, ...], float]] = []
        active: list[tuple[tuple[str, ...], float]] = []
        for seat in seats:
            labels = (seat.name, seat.team or "")
            active.append((labels, 1.0 if seat.active else 0.0))
            if seat.last_seen_at is not None:
                seen.append((labels, seat.last_seen_at.timestamp()))
            if seat.backlog is not None:
                backlog.append((labels, float(seat.backlog)))
        yield gauge_metric(
            "cti_seat_last_seen_timestamp_seconds",
            "When each seat last sent the centre a batch (Unix time).",
            self._prefixes["seen"],
            seen,
        )
        yield gauge_metric(
            "cti_seat_reported_backlog",
            "Rows each seat said it still had to send.",
            self._prefixes["backlog"],
            backlog,
        )
        yield gauge_metric(
            "cti_seat_active",
            "Whether the seat's credential is accepted (0: revoked).",
            self._prefixes["active"],
            active,
        )


def register_team_metrics(
    registry: CollectorRegistry, engine: Engine, zone: tzinfo, effective_seconds: float
) -> TeamCollector:
    """Add the team collector to ``registry`` and return it."""
    collector = TeamCollector(engine, zone, effective_seconds)
    registry.register(collector)
    return collector
