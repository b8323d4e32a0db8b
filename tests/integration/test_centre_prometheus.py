"""One scrape target for the floor: a real ``cti-agent centre`` scraped by a real Prometheus.

Seats post their calls to the centre over its seat API (as the seats behind NAT do); Prometheus
runs on the repository's ``prometheus.yml`` (job ``cti-centre``, its target written by
``cti-agent deploy prometheus-targets --centre``) and rules; then the recording rules and every
wallboard panel that has a centre source are evaluated and compared with the centre's database,
and the centre's alerts are checked against what they watch. promtool's unit tests of the same
rules (deploy/prometheus/tests/centre_rules_test.yml) cover the alerts firing.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from factories import ended, make_call
from prom_fixture import DEPLOY, Prometheus, prometheus_fixture  # noqa: F401
from sqlalchemy import create_engine, text
from test_centre_process import cli, start_centre, stop
from test_prometheus import dashboards, panel_targets, promtool, substitute

from agent.commands.deploy import deploy
from agent.config import Config
from agent.events import Direction, Disposition
from agent.seatapi import CallEntry

TESTS = DEPLOY / "tests" / "centre_rules_test.yml"
ROOT = DEPLOY.parents[1]
EFFECTIVE = Config().metrics.effective_call_seconds  # what the centre uses with --data-dir only
UUID = "7c1e0d2a-bbbb-4ccc-8ddd-{:012d}"

# (seat, team) -> the calls its reps make: (rep, direction, disposition, talk seconds).
FLOOR: dict[tuple[str, str], list[tuple[str, Direction, Disposition, float]]] = {
    ("seat-1", "north"): [
        ("alice", Direction.IN, Disposition.ANSWERED, 95.0),
        ("alice", Direction.OUT, Disposition.ANSWERED, 30.0),
        ("alice", Direction.IN, Disposition.MISSED, 0.0),
        ("alice", Direction.OUT, Disposition.ANSWERED, 61.5),
    ],
    ("seat-2", "north"): [
        ("bob", Direction.OUT, Disposition.ANSWERED, 12.0),
        ("bob", Direction.OUT, Disposition.ABANDONED, 0.0),
        # alice moved to seat 2 after lunch: her day is both seats'.
        ("alice", Direction.IN, Disposition.ANSWERED, 200.0),
    ],
    ("seat-3", "south"): [
        ("carol", Direction.IN, Disposition.ANSWERED, 300.25),
        ("carol", Direction.IN, Disposition.MISSED, 0.0),
        ("carol", Direction.IN, Disposition.MISSED, 0.0),
    ],
}


def run_promtool(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), "test", "rules", str(path)], capture_output=True, text=True, check=False, timeout=120
    )


def test_promtool_centre_rule_unit_tests() -> None:
    result = run_promtool(TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # A recorded "today" figure, and an alert's labels: a wrong expectation fails.
        ("            value: 900\n", "            value: 1800\n"),
        ("              seat: s4\n", "              seat: s5\n"),
    ],
)
def test_promtool_centre_rule_tests_can_fail(tmp_path: Path, old: str, new: str) -> None:
    shutil.copytree(DEPLOY, tmp_path / "prometheus")
    tests = tmp_path / "prometheus" / "tests" / TESTS.name
    original = tests.read_text()
    broken = original.replace(old, new, 1)
    assert broken != original
    tests.write_text(broken)
    assert run_promtool(tests).returncode != 0


def test_the_centre_target_file_and_the_config(tmp_path: Path) -> None:
    shutil.copytree(DEPLOY, tmp_path / "prometheus")
    target = tmp_path / "prometheus" / "targets" / "centre.json"
    result = CliRunner().invoke(
        deploy, ["prometheus-targets", "--centre", "https://centre.floor3.lan:8340", "-o", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text()) == [
        {"targets": ["centre.floor3.lan:8340"], "labels": {"__scheme__": "https"}}
    ]
    checked = subprocess.run(
        [promtool(), "check", "config", str(tmp_path / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--centre", "centre.lan"], "not HOST:PORT"),
        (["--centre", "ftp://centre.lan:21"], "http or https"),
        (["--centre", "centre.lan:99999"], "not HOST:PORT"),
        ([], "either --seats FILE or --centre"),
    ],
)
def test_a_bad_centre_address_is_refused(tmp_path: Path, args: list[str], message: str) -> None:
    output = tmp_path / "centre.json"
    result = CliRunner().invoke(deploy, ["prometheus-targets", *args, "-o", str(output)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not output.exists()


def compose_health_check() -> str:
    """The Python one-liner compose.yaml's centre service runs as its health check."""
    compose = (ROOT / "deploy" / "compose" / "compose.yaml").read_text()
    centre = compose[compose.index("\n  centre:\n") : compose.index("\n  prometheus:\n")]
    assert '["centre", "--config", "/etc/cti-agent/centre.toml"]' in centre
    assert "- python\n" in centre
    assert "- -c\n" in centre
    (code,) = re.findall(r'^\s+- "(import urllib.*)"$', centre, flags=re.MULTILINE)
    assert "http://127.0.0.1:8340/healthz" in code
    prometheus = compose[compose.index("\n  prometheus:\n") : compose.index("\n  grafana:\n")]
    assert "centre:\n        condition: service_started" in prometheus
    return code


def test_the_centre_unit_runs_the_centre_without_devices() -> None:
    unit = (ROOT / "deploy" / "systemd" / "cti-centre.service").read_text()
    lines = {line.partition("=")[0]: line.partition("=")[2] for line in unit.splitlines() if "=" in line}
    assert (
        lines["ExecStart"] == "/opt/cti-agent/venv/bin/cti-agent centre --config /etc/cti-agent/centre.toml"
    )
    assert lines["PrivateDevices"] == "yes"
    assert lines["DevicePolicy"] == "closed"
    assert "DeviceAllow" not in lines
    assert "SupplementaryGroups" not in lines
    assert lines["NoNewPrivileges"] == "yes"
    assert lines["ProtectSystem"] == "strict"
    assert lines["RestartPreventExitStatus"] == "2"
    seat = (ROOT / "deploy" / "systemd" / "cti-agent.service").read_text()
    for setting in ("CapabilityBoundingSet=", "ProtectHome=yes", "SystemCallFilter=@system-service"):
        assert setting in seat
        assert setting in unit


def post_floor(address: str, tokens: dict[str, str], batch: int, backlog: dict[str, int]) -> None:
    """Every seat's calls of ``FLOOR``, batch 0 (the first half of each seat's) or 1 (the rest)."""
    started = datetime.now(UTC) - timedelta(minutes=10)
    number = batch * 1000
    for (seat, team), calls in FLOOR.items():
        half = len(calls) // 2
        chosen = calls[:half] if batch == 0 else calls[half:]
        entries = []
        for rep, direction, disposition, talk in chosen:
            number += 1
            call = make_call(
                UUID.format(number + 100 * int(seat[-1])),
                seat=seat,
                rep=rep,
                team=team,
                direction=direction,
                started_at=started,
            )
            entries.append(CallEntry.of(ended(call, talk=talk, disposition=disposition), None, None))
        with httpx.Client(base_url=address, headers={"authorization": f"Bearer {tokens[seat]}"}) as client:
            answer = client.post(
                "/api/v1/calls", json={"seat": seat, "backlog": backlog.get(seat, 0), "calls": entries}
            )
        assert answer.status_code == 200, answer.text
        assert {r["status"] for r in answer.json()["results"]} <= {"accepted"}


def watched(expr: str) -> str:
    """An alert's expression without its thresholds: the series it watches, which must exist."""
    return re.sub(r"\s*(==|>=|<=|>|<)\s*[0-9.]+", "", " ".join(expr.split()))


def firing_alerts(prom: Prometheus) -> list[dict[str, Any]]:
    return [a for a in prom.api("alerts")["alerts"] if a["state"] == "firing"]


def database_truth(data_dir: Path) -> list[Any]:
    engine = create_engine(f"sqlite:///{data_dir / 'cti-agent.db'}")
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(text("SELECT rep, team, direction, disposition, talk_seconds FROM calls")).all()
            )
    finally:
        engine.dispose()


def test_one_centre_target_gives_the_floors_numbers(
    tmp_path: Path, prometheus: Callable[[], Prometheus]
) -> None:
    data_dir = tmp_path / "centre"
    data_dir.mkdir()
    process, address = start_centre(data_dir)
    health = compose_health_check().replace("127.0.0.1:8340", address.removeprefix("http://"))
    try:
        # compose's health check passes on the real centre (and fails once it is gone, below).
        checked = subprocess.run([sys.executable, "-c", health], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        tokens: dict[str, str] = {}
        for seat, team in [*FLOOR, ("seat-9", "south")]:
            added = cli("seats", "add", seat, "--team", team, "--data-dir", str(data_dir))
            assert added.returncode == 0, added.stderr
            tokens[seat] = added.stdout.strip()
        assert cli("seats", "revoke", "seat-9", "--data-dir", str(data_dir)).returncode == 0
        post_floor(address, tokens, 0, {"seat-2": 40})

        workdir: Path = prometheus.workdir  # type: ignore[attr-defined]
        hostport = address.removeprefix("http://")
        done = CliRunner().invoke(
            deploy,
            ["prometheus-targets", "--centre", hostport, "-o", str(workdir / "targets" / "centre.json")],
        )
        assert done.exit_code == 0, done.output
        prom = prometheus()
        prom_started = time.time()
        prom.wait_for(
            "the first scrape of the centre",
            lambda: prom.values('count(cti_team_calls_today{job="cti-centre"})') != {},
        )
        # The centre's target is the cti-centre job's only: the seat job drops targets/centre.json.
        active = prom.api("targets")["activeTargets"]
        assert [t["labels"]["instance"] for t in active if t["labels"]["job"] == "cti-centre"] == [hostport]
        assert {t["labels"]["job"] for t in active} == {"cti-centre", "prometheus"}

        # The revoked seat keeps knocking with its old token (its first refusal creates the
        # series; the rest are counted from a scraped value, as a seat retrying for minutes is).
        refused = {"seat": "seat-9", "calls": []}
        with httpx.Client(base_url=address, headers={"authorization": f"Bearer {tokens['seat-9']}"}) as c:
            assert c.post("/api/v1/calls", json=refused).status_code == 401
            prom.wait_for(
                "the first refusal scraped",
                lambda: prom.values('cti_centre_auth_failures_total{reason="unknown"}') == {"": 1.0},
            )
            for _ in range(7):
                assert c.post("/api/v1/calls", json=refused).status_code == 401
        post_floor(address, tokens, 1, {"seat-2": 40})

        rows = database_truth(data_dir)
        assert len(rows) == sum(len(calls) for calls in FLOOR.values())
        calls: Counter[str] = Counter(r.rep for r in rows)
        missed: Counter[str] = Counter(r.rep for r in rows if r.disposition == "missed")
        talk: defaultdict[str, float] = defaultdict(float)
        effective: Counter[str] = Counter()
        by_kind: Counter[tuple[str, str, str, str]] = Counter()
        for r in rows:
            by_kind[(r.team, r.rep, r.direction, r.disposition)] += 1
            if r.disposition == "answered":
                talk[r.rep] += r.talk_seconds or 0.0
                effective[r.rep] += (r.talk_seconds or 0.0) >= EFFECTIVE
        reps = {"alice", "bob", "carol"}
        assert set(calls) == reps
        assert 0 < sum(effective.values()) < sum(r.disposition == "answered" for r in rows)

        prom.wait_for(
            "the final counts scraped and recorded",
            lambda: (
                prom.values("sum(team_rep:cti_calls:today)") == {"": float(len(rows))}
                and prom.values('sum(increase(cti_centre_auth_failures_total{reason="unknown"}[1m]))') != {}
            ),
        )
        time.sleep(2.5)  # two more scrapes: every series has a rate, every rule a new value
        at = prom.values('timestamp(up{job="cti-centre"})')[""]
        window = math.ceil(at - prom_started) + 5

        # -- the recording rules: the day so far per rep, as the database has it --------------
        groups = prom.api("rules")["groups"]
        today = [r for g in groups if g["name"] == "cti-rep-today" for r in g["rules"]]
        assert len(today) == 4
        for rule in today:
            assert rule["health"] == "ok", rule
            assert prom.query(rule["name"]), rule["name"]
        assert prom.values("team_rep:cti_calls:today", at, "rep") == {r: float(calls[r]) for r in reps}
        for rep, seconds in prom.values("team_rep:cti_talk_seconds:today", at, "rep").items():
            assert seconds == pytest.approx(talk[rep], abs=1e-6)
        assert prom.values("team_rep:cti_effective_calls:today", at, "rep") == {
            r: float(effective[r]) for r in reps
        }
        kinds = {
            (
                s["metric"]["team"],
                s["metric"]["rep"],
                s["metric"]["direction"],
                s["metric"]["disposition"],
            ): float(s["value"][1])
            for s in prom.query("team_rep_direction_disposition:cti_calls:today", at)
        }
        assert kinds == {k: float(n) for k, n in by_kind.items()}
        # The pace rules fall back on the centre's gauges: every rep has one.
        assert set(prom.values("team_rep:cti_calls:rate5m", at, "rep")) == reps
        assert {
            (s["metric"]["team"], s["metric"]["direction"])
            for s in prom.query("team_direction:cti_calls:rate5m", at)
        } == {(r.team, r.direction) for r in rows}
        # Labels are who and what, never a caller: no series of the centre has a number in it.
        for series in prom.api("series", **{"match[]": '{job="cti-centre"}'}):
            for value in series.values():
                assert "13812345678" not in value
                assert "+86" not in value

        # -- the wallboard on the centre alone -------------------------------------------------
        board = dashboards()["cti-wallboard"]
        results: dict[str, list[dict[str, Any]]] = {}
        for title, target in panel_targets(board):
            results[title] = prom.query(substitute(target["expr"], window), at)

        def panel(title: str, key: str | None = "rep") -> dict[str, float]:
            return {
                (s["metric"].get(key, "") if key else ""): round(float(s["value"][1]), 6)
                for s in results[title]
            }

        assert panel("Calls today") == {r: float(calls[r]) for r in reps}
        ranking = [s["metric"]["rep"] for s in results["Calls today"]]
        assert [calls[r] for r in ranking] == sorted(calls.values(), reverse=True)
        for rep, seconds in panel("Talk time today").items():
            assert seconds == pytest.approx(talk[rep], abs=1e-6)
        assert set(panel("Talk time today")) == reps
        assert panel("Ranking: effective calls today") == {r: float(effective[r]) for r in reps}
        assert panel("Missed calls today") == {r: float(n) for r, n in missed.items()}
        assert panel("Team calls today", None) == {"": float(len(rows))}
        assert panel("Team talk time today", None)[""] == pytest.approx(sum(talk.values()), abs=1e-6)
        # What the centre does not export (yet): the reps' targets, the effective-call threshold
        # and who is on a call now come from the seats' exporters only.
        for title in ("Calls vs target", "Talk time vs target", "Effective calls vs target"):
            assert results[title] == [], title
        assert panel("Reps on a call now", None) == {"": 0.0}

        # The dashboards' team and rep variables find the centre's teams and reps.
        variables = {v["name"]: v["query"]["query"] for v in board["templating"]["list"]}
        selector = variables["team"].removeprefix("label_values(").rsplit(",", 1)[0]
        assert prom.api("label/team/values", **{"match[]": selector}) == ["north", "south"]
        selector = variables["rep"].removeprefix("label_values(").rsplit(",", 1)[0].replace("$team", ".*")
        assert set(prom.api("label/rep/values", **{"match[]": selector})) == reps

        # -- the supervisor's per-hour and centre panels ---------------------------------------
        sup = {
            title: substitute(t["expr"], window) for title, t in panel_targets(dashboards()["cti-supervisor"])
        }
        assert set(prom.values(sup["Calls per hour by direction"], at, "direction")) == {"in", "out"}
        assert set(prom.values(sup["Missed calls per hour by rep"], at, "rep")) == {"alice", "carol"}
        assert prom.values(sup["Seats calling in (centre)"], at) == {"": 3.0}
        assert prom.values(sup["Seats silent (centre)"], at) == {"": 0.0}
        assert prom.values(sup["Rows waiting on seats (centre)"], at) == {"": 40.0}
        assert prom.values(sup["Seat API refusals (centre)"], at)[""] >= 7

        # -- the centre's alerts ---------------------------------------------------------------
        centre_alerts = [r for g in groups if g["name"] == "cti-centre" for r in g["rules"]]
        assert {r["name"] for r in centre_alerts} == {
            "CtiCentreNotScraped",
            "CtiCentreDatabaseDown",
            "CtiSeatSilent",
            "CtiSeatBacklogStuck",
            "CtiSeatBacklogHigh",
            "CtiSeatAuthFailures",
        }
        for alert in centre_alerts:
            # What each one watches is there (the centre exports it) ...
            assert prom.query(watched(alert["query"]), at), alert["name"]
        # ... and on a healthy floor only the revoked seat's knocking is an alert (the stuck
        # backlog needs its 15 minutes; a silent seat, 5 minutes without a call-in).
        prom.wait_for(
            "the auth-failure alert",
            lambda: [a["labels"]["alertname"] for a in firing_alerts(prom)] == ["CtiSeatAuthFailures"],
        )
        (firing,) = firing_alerts(prom)
        assert firing["labels"]["reason"] == "unknown"
        assert firing["state"] == "firing"
        pending = [r["name"] for r in centre_alerts if r["name"] != "CtiSeatAuthFailures"]
        fresh = {
            r["name"]: r["state"] for g in prom.api("rules")["groups"] for r in g["rules"] if "state" in r
        }
        assert {fresh[name] for name in pending} <= {"inactive", "pending"}
        assert fresh["CtiSeatSilent"] == "inactive"
        assert fresh["CtiCentreDatabaseDown"] == "inactive"
        # A floor watched through the centre alone is not "no seat scraped".
        assert fresh["CtiNoSeatScraped"] == "inactive"
        assert prom.values("cti_centre_database_up") == {"": 1.0}
    finally:
        assert stop(process) == 0
    checked = subprocess.run([sys.executable, "-c", health], capture_output=True, text=True, timeout=30)
    assert checked.returncode != 0


def test_the_wallboard_with_both_sources_counts_each_rep_once(tmp_path: Path) -> None:
    # Seats s1 (alice) and s2 (dave) are scraped; the centre knows alice (with calls from a seat
    # Prometheus cannot reach) and bob. Each rep is counted once: the centre's day where it has
    # one, the seats' counters for dave. promtool evaluates the panels' own expressions.
    seat = 'job="cti-seats",instance="{0}:9330",seat="{0}",team="north",rep="{1}"'
    centre = 'job="cti-centre",instance="c1:8340",team="north",rep="{0}"'
    series = [
        (
            f'cti_calls_total{{{seat.format("s1", "alice")},direction="in",disposition="answered"}}',
            "0 1 2 3x8",
        ),
        (f'cti_talk_seconds_total{{{seat.format("s1", "alice")},direction="in"}}', "0 60 120 180x8"),
        (f'cti_effective_calls_total{{{seat.format("s1", "alice")},direction="in"}}', "0 1 2 3x8"),
        (
            f'cti_calls_total{{{seat.format("s2", "dave")},direction="out",disposition="missed"}}',
            "0 0 1 1 2x7",
        ),
        (f'cti_talk_seconds_total{{{seat.format("s2", "dave")},direction="out"}}', "0x10"),
        (f'cti_effective_calls_total{{{seat.format("s2", "dave")},direction="out"}}', "0x10"),
        (f'cti_team_calls_today{{{centre.format("alice")},direction="in",disposition="answered"}}', "5x10"),
        (f'cti_team_calls_today{{{centre.format("bob")},direction="out",disposition="missed"}}', "4x10"),
        (f"cti_team_talk_seconds_today{{{centre.format('alice')}}}", "500x10"),
        (f"cti_team_talk_seconds_today{{{centre.format('bob')}}}", "0x10"),
        (f"cti_team_effective_calls_today{{{centre.format('alice')}}}", "4x10"),
        (f"cti_team_effective_calls_today{{{centre.format('bob')}}}", "0x10"),
    ]
    expected: dict[str, dict[str, float]] = {
        "Calls today": {"alice": 5, "bob": 4, "dave": 2},
        "Talk time today": {"alice": 500, "bob": 0, "dave": 0},
        "Ranking: effective calls today": {"alice": 4, "bob": 0, "dave": 0},
        "Missed calls today": {"bob": 4, "dave": 2},
        "Team calls today": {"": 11},
        "Team talk time today": {"": 500},
    }
    exprs = {title: substitute(t["expr"], 600) for title, t in panel_targets(dashboards()["cti-wallboard"])}
    tests = []
    for title, values in expected.items():
        samples = [
            {"labels": f'{{rep="{rep}"}}' if rep else "{}", "value": value} for rep, value in values.items()
        ]
        tests.append({"expr": exprs[title], "eval_time": "10m", "exp_samples": samples})
    document = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "promql_expr_test": tests,
            }
        ],
    }
    path = tmp_path / "wallboard_test.yml"
    path.write_text(json.dumps(document, indent=2))  # JSON is YAML
    result = run_promtool(path)
    assert result.returncode == 0, result.stdout + result.stderr
    # ... and a wrong expectation fails it.
    tests[0]["exp_samples"][0]["value"] = 8
    path.write_text(json.dumps(document, indent=2))
    assert run_promtool(path).returncode != 0
