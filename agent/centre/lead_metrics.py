"""The centre's lead metrics (打透): each list's held leads per team, dialed, reached, untouched, 过数据.

Gauges labelled ``list`` and ``team`` only (the team the leads are handed to; empty: none), so the
series stay as few as the floor's lists times its teams: never a rep, a number or a customer. The
figures are :func:`storage.coverage.coverage_by_list`'s, one aggregated query (and one over the
transfer log) at scrape time, cached for ``max_age`` seconds: a list of a million leads costs one
query a minute, not one per scrape and panel.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from storage.coverage import ListCoverage, coverage_by_list

logger = logging.getLogger(__name__)

#: name, help, the :class:`ListCoverage` field it reads.
GAUGES: tuple[tuple[str, str, str], ...] = (
    ("cti_leads_assigned", "Leads of the list held by a rep, per team the leads are handed to.", "assigned"),
    ("cti_leads_dialed", "Of those, leads their rep dialed at least once since receiving them.", "dialed"),
    ("cti_leads_reached", "Of those, leads with an answered call from their rep.", "reached"),
    ("cti_leads_attempts", "Outbound calls by the holding reps to their leads' numbers.", "attempts"),
    ("cti_leads_untouched", "Leads held longer than the untouched days without a dial.", "untouched"),
    (
        "cti_leads_passed_undialed",
        "Leads recalled, moved or handed on undialed by their rep (过数据), by the rep's team.",
        "passed_undialed",
    ),
)


class LeadCollector(Collector):
    """The :data:`GAUGES` per list and team, from one cached read of the centre's database."""

    def __init__(self, engine: Engine, *, untouched_days: float = 3.0, max_age: float = 60.0) -> None:
        self.engine = engine
        self.untouched_days = untouched_days
        self.max_age = max_age
        self._lock = threading.Lock()
        self._cached: tuple[float, list[ListCoverage]] | None = None

    def _read(self) -> list[ListCoverage] | None:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.max_age:
                return self._cached[1]
            try:
                with Session(self.engine) as session:
                    rows = coverage_by_list(session, untouched_days=self.untouched_days)
            except SQLAlchemyError as exc:
                logger.warning("lead metrics: the database cannot be read: %s", exc)
                return None
            self._cached = (time.monotonic(), rows)
            return rows

    def collect(self) -> Iterator[Metric]:
        """The lead gauges as of the last read (nothing when the database does not answer)."""
        rows = self._read()
        if rows is None:
            return
        for name, documentation, attribute in GAUGES:
            family = GaugeMetricFamily(name, documentation, labels=["list", "team"])
            for row in rows:
                family.add_metric([row.list_name, row.team], float(getattr(row, attribute)))
            yield family


def register_lead_metrics(registry: CollectorRegistry, engine: Engine) -> LeadCollector:
    """Add the lead collector to ``registry`` and return it."""
    collector = LeadCollector(engine)
    registry.register(collector)
    return collector
