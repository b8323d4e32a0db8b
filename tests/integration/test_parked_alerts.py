"""The parking alerts (``CtiStorageParked``, ``CtiSyncParked``) under promtool's rule unit tests.

The rules are in deploy/prometheus/rules/cti-alerts.yml; their unit tests in
deploy/prometheus/tests/parked_rules_test.yml (a seat that parks a call and
clears it with ``sync --retry-parked``, one that keeps a parked outbox entry,
one with nothing parked).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from prom_fixture import DEPLOY

from agent.seat.metrics import Metrics

TESTS = DEPLOY / "tests" / "parked_rules_test.yml"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: run `make test` (tests/system-deps.sh installs prometheus)")
    return found


def run_tests(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), "test", "rules", str(path)], capture_output=True, text=True, check=False
    )


def test_the_parking_alerts_fire_while_something_is_parked_and_resolve_after() -> None:
    result = run_tests(TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_the_parking_alert_tests_can_fail(tmp_path: Path) -> None:
    shutil.copytree(DEPLOY, tmp_path / "prometheus")
    tests = tmp_path / "prometheus" / "tests" / TESTS.name
    original = tests.read_text()
    broken = original.replace("              seat: s2\n", "              seat: s3\n", 1)
    assert broken != original
    tests.write_text(broken)
    assert run_tests(tests).returncode != 0


def test_the_alerts_watch_gauges_the_seat_exports() -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    Metrics(registry, seat="s1")
    rules = (DEPLOY / "rules" / "cti-alerts.yml").read_text()
    for name in ("cti_storage_parked", "cti_sync_parked"):
        assert f"({name})" in rules
        assert registry.get_sample_value(name) == 0.0  # exported from the start, so the alert has data
