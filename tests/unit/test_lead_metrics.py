"""The lead gauges (打透) on a fresh registry: per list and team, bounded labels, cached reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from coverage_factories import seed_coverage
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from agent.centre.lead_metrics import GAUGES, register_lead_metrics
from storage.db import make_engine, upgrade


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    upgrade(eng)
    seed_coverage(eng)
    yield eng
    eng.dispose()


def samples(registry: CollectorRegistry) -> dict[tuple[str, str, str], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, s.labels["list"], s.labels["team"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("cti_leads_")
    }


def test_the_gauges_are_per_list_and_team(engine: Engine) -> None:
    registry = CollectorRegistry()
    collector = register_lead_metrics(registry, engine)
    collector.untouched_days = 365.0
    found = samples(registry)
    assert found[("cti_leads_assigned", "spring", "north")] == 4
    assert found[("cti_leads_dialed", "spring", "north")] == 2
    assert found[("cti_leads_reached", "spring", "north")] == 1
    assert found[("cti_leads_attempts", "spring", "north")] == 3
    assert found[("cti_leads_untouched", "spring", "north")] == 0
    assert found[("cti_leads_passed_undialed", "spring", "north")] == 1
    assert found[("cti_leads_passed_undialed", "spring", "south")] == 1
    assert {name for name, _, _ in found} == {name for name, _, _ in GAUGES}


def test_the_labels_are_list_and_team_only(engine: Engine) -> None:
    registry = CollectorRegistry()
    register_lead_metrics(registry, engine)
    text = generate_latest(registry).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert set(sample.labels) == {"list", "team"}
    assert "+86" not in text
    assert "amy" not in text


def test_a_scrape_within_max_age_reads_the_cache(engine: Engine) -> None:
    registry = CollectorRegistry()
    register_lead_metrics(registry, engine)
    first = samples(registry)
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM leads")
    assert samples(registry) == first


def test_the_centre_serves_them_on_its_metrics(engine: Engine, tmp_path: Path) -> None:
    import warnings

    from agent.centre.context import ConsoleSettings
    from agent.centre.server import make_centre_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    settings = ConsoleSettings(secret=b"m" * 32, recordings_dir=tmp_path)
    app = make_centre_app(engine, settings, registry=CollectorRegistry(), hosts=["127.0.0.1"])
    text = TestClient(app, base_url="http://127.0.0.1").get("/metrics").text
    assert 'cti_leads_assigned{list="spring",team="north"} 4.0' in text
    assert 'cti_leads_passed_undialed{list="spring",team="south"} 1.0' in text
