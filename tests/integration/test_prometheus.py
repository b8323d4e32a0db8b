"""The Prometheus config, rules and Grafana dashboards, proven against a real Prometheus.

Debian's ``prometheus`` scrapes a real agent running simulated lines; then every
PromQL expression of every dashboard panel and every rule is run through its HTTP
API, and the numbers are compared with the calls in the agent's database.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prom_fixture import DEPLOY, Prometheus, is_number, prometheus_fixture  # noqa: F401
from prometheus_client import start_http_server
from sqlalchemy import create_engine, text

from agent.commands.deploy import deploy
from agent.config import load_config
from agent.events import LineState, LineStatus
from agent.plugins import make_plugin_manager
from agent.seat.devices import DeviceRegistry
from agent.seat.runner import Agent

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
SEAT, TEAM = "seat-prom", "team-a"
TARGET_CALLS, TARGET_TALK, TARGET_EFFECTIVE = 40, 300, 10
EFFECTIVE_SECONDS = 1.0  # simulated talk at 60x speed lasts about 1.5 s


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: run `make test` (tests/system-deps.sh installs prometheus)")
    return found


# -- promtool: config, rules, rule unit tests -------------------------------------------


def test_promtool_check_config_and_rules(tmp_path: Path) -> None:
    shutil.copytree(DEPLOY, tmp_path / "prometheus")
    (tmp_path / "prometheus" / "targets" / "seats.json").write_text(
        json.dumps([{"targets": ["127.0.0.1:9330"], "labels": {"seat": "s1", "team": "north"}}])
    )
    config = subprocess.run(
        [promtool(), "check", "config", str(tmp_path / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert config.returncode == 0, config.stdout + config.stderr
    assert "2 rule files found" in config.stdout + config.stderr
    rules = sorted((DEPLOY / "rules").glob("*.yml"))
    assert len(rules) == 2
    checked = subprocess.run(
        [promtool(), "check", "rules", *map(str, rules)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_rule_unit_tests() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", str(DEPLOY / "tests" / "rules_test.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_rule_tests_can_fail(tmp_path: Path) -> None:
    # The rule tests are not vacuous: a wrong expectation makes promtool fail.
    shutil.copytree(DEPLOY, tmp_path / "prometheus")
    tests = tmp_path / "prometheus" / "tests" / "rules_test.yml"
    original = tests.read_text()
    broken = original.replace("            value: 8\n", "            value: 9\n", 1)
    assert broken != original
    tests.write_text(broken)
    result = subprocess.run(
        [promtool(), "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0


# -- cti-agent deploy prometheus-targets ------------------------------------------------


def test_prometheus_targets_from_csv(tmp_path: Path) -> None:
    seats = tmp_path / "seats.csv"
    seats.write_text(
        "# the third floor\naddress,seat,team\n10.0.3.11:9330,seat-11,north\n\n"
        "pc-12.floor3.lan:9330,seat-12,south\n[fd00::13]:9330,seat-13,\n"
    )
    output = tmp_path / "targets" / "seats.json"
    result = CliRunner().invoke(deploy, ["prometheus-targets", "--seats", str(seats), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert json.loads(output.read_text()) == [
        {"targets": ["10.0.3.11:9330"], "labels": {"seat": "seat-11", "team": "north"}},
        {"targets": ["pc-12.floor3.lan:9330"], "labels": {"seat": "seat-12", "team": "south"}},
        {"targets": ["[fd00::13]:9330"], "labels": {"seat": "seat-13"}},
    ]
    assert not list(output.parent.glob(".*.tmp"))


def test_prometheus_targets_from_toml_to_stdout(tmp_path: Path) -> None:
    seats = tmp_path / "seats.toml"
    seats.write_text('[[seats]]\naddress = "pc1:9330"\nseat = "s1"\nteam = "north"\n')
    result = CliRunner().invoke(deploy, ["prometheus-targets", "--seats", str(seats)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"targets": ["pc1:9330"], "labels": {"seat": "s1", "team": "north"}}]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("s.csv", "address,seat\npc1,s1\n", "not HOST:PORT"),
        ("s.csv", "address,seat\npc1:70000,s1\n", "not HOST:PORT"),
        ("s.csv", "address,seat\npc1:9330,\n", "seat name is empty"),
        ("s.csv", "address,seat\npc1:9330,s1\npc2:9330,s1\n", "listed twice"),
        ("s.csv", "address,seat\npc1:9330,s1\npc1:9330,s2\n", "listed twice"),
        ("s.csv", "host,name\npc1:9330,s1\n", "header"),
        ("s.csv", "address,seat\npc1:9330,s1,extra\n", "columns"),
        ("s.csv", 'address,seat\npc1:9330,"s""1"\n', "quotes"),
        ("s.csv", "address,seat\n", "empty"),
        ("s.toml", '[[seat]]\naddress = "pc1:9330"\n', "unknown table"),
        ("s.toml", '[[seats]]\naddress = "pc1:9330"\nseat = "s"\nrack = 3\n', "unknown column"),
        ("s.toml", "[[seats]\n", "not valid TOML"),
    ],
)
def test_prometheus_targets_rejects_bad_seat_lists(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    seats = tmp_path / name
    seats.write_text(content)
    output = tmp_path / "out.json"
    result = CliRunner().invoke(deploy, ["prometheus-targets", "--seats", str(seats), "-o", str(output)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not output.exists()


# -- the Grafana files ------------------------------------------------------------------


def dashboards() -> dict[str, dict[str, Any]]:
    """The English dashboards (NAME.json).

    Each language's (NAME.LANG.json) has the same queries, which tests/unit/test_grafana.py proves.
    """
    paths = sorted((GRAFANA / "dashboards").glob("*.json"))
    return {p.stem: json.loads(p.read_text()) for p in paths if len(p.suffixes) == 1}


def panel_targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target


def test_grafana_dashboards_are_wired_to_the_provisioned_datasource() -> None:
    boards = dashboards()
    assert set(boards) == {"cti-wallboard", "cti-supervisor"}
    provisioned = (GRAFANA / "provisioning" / "datasources" / "cti-prometheus.yaml").read_text()
    assert "uid: cti-prometheus" in provisioned
    provider = (GRAFANA / "provisioning" / "dashboards" / "cti-dashboards.yaml").read_text()
    assert "path: /var/lib/grafana/dashboards/cti" in provider
    for name, board in boards.items():
        assert board["uid"] == name
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        assert [v["name"] for v in board["templating"]["list"]] == ["team", "rep"]
        for title, target in panel_targets(board):
            assert target["datasource"]["uid"] == "cti-prometheus", (name, title)
            assert target["expr"].strip(), (name, title)
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "cti-prometheus"
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (name, panel["title"])
    assert boards["cti-wallboard"]["time"] == {"from": "now/d", "to": "now"}


def test_queries_use_only_the_allowed_labels() -> None:
    # Queries group and filter only by who and what: nothing could select or show a caller.
    allowed = {"rep", "team", "seat", "line", "direction", "disposition", "state", "device", "type"}
    allowed |= {"plugin", "le", "instance", "job", "reason"}
    sources = [t["expr"] for b in dashboards().values() for _, t in panel_targets(b)]
    sources += [p.read_text() for p in (DEPLOY / "rules").glob("*.yml")]
    used: set[str] = set()
    for source in sources:
        for group in re.findall(r"\b(?:by|on) \(([^)]*)\)", source):
            used |= {label.strip() for label in group.split(",") if label.strip()}
        used |= set(re.findall(r"\b([a-z_]+)\s*(?:=~|!~|!=|==?)\s*\"", source))
        used |= set(re.findall(r"\$labels\.([a-z_]+)", source))
    assert used <= allowed, used - allowed
    assert {"rep", "team", "seat", "disposition", "le"} <= used


# -- the proof: a real Prometheus scraping a real agent ---------------------------------


def substitute(expr: str, window: int) -> str:
    """Grafana's variables as a test run sets them: every team and rep, the whole window."""
    for variable, value in (
        ("$__rate_interval", f"{window}s"),
        ("$__interval", "1s"),
        ("$__range", f"{window}s"),
        ("$team", ".*"),
        ("$rep", ".*"),
    ):
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def agent_config(tmp_path: Path) -> tuple[Any, Any]:
    speed = 60.0
    overrides: dict[str, Any] = {
        "agent": {"seat": SEAT, "team": TEAM, "data_dir": str(tmp_path)},
        "web": {"enabled": False},
        "metrics": {"listen": "127.0.0.1:0", "effective_call_seconds": EFFECTIVE_SECONDS},
        "targets": {"calls": TARGET_CALLS, "talk_seconds": TARGET_TALK, "effective_calls": TARGET_EFFECTIVE},
        "tracker": {"ring_timeout": 8.0 / speed, "dial_timeout": 4.0 / speed},
        "devices": [{"id": "sim", "type": "simulator", "lines": 3, "rate": 40.0, "seed": 11, "speed": speed}],
        "lines": [
            {"id": f"line{n}", "device": "sim", "port": str(n), "rep": f"rep{n:02d}"} for n in range(1, 4)
        ],
    }
    pm = make_plugin_manager(load_entrypoints=False)
    return load_config(None, DeviceRegistry.from_plugins(pm), overrides=overrides), pm


def alert_inner(expr: str) -> str:
    """The part of an alert expression that must have data: without its threshold or absent()."""
    expr = " ".join(expr.split())
    match = re.fullmatch(r"absent\((.*?)\)(?: unless .*)?", expr)
    if match:
        return match.group(1)
    return re.sub(r"\s*(==|>|<|>=|<=)\s*[0-9.]+$", "", expr)


async def test_dashboards_and_rules_agree_with_the_database(
    tmp_path: Path, prometheus: Callable[[], Prometheus]
) -> None:
    config, pm = agent_config(tmp_path)
    agent = Agent(config, pm)
    # What the runner passes as Metrics(targets=config.targets); harmless once it does.
    agent.metrics.targets = config.targets
    # The seat's exporter on its own listener, so Prometheus can still scrape the final
    # counts after the agent (and its own listener) stopped.
    server, thread = start_http_server(0, addr="127.0.0.1", registry=agent.registry)
    stop = asyncio.Event()
    run: asyncio.Task[None] = asyncio.create_task(stop.wait())  # replaced by the agent's task below
    try:
        seats = tmp_path / "seats.csv"
        seats.write_text(f"address,seat,team\n127.0.0.1:{server.server_port},{SEAT},{TEAM}\n")
        workdir: Path = prometheus.workdir  # type: ignore[attr-defined]
        result = CliRunner().invoke(
            deploy,
            ["prometheus-targets", "--seats", str(seats), "-o", str(workdir / "targets" / "seats.json")],
        )
        assert result.exit_code == 0, result.output
        # Every rep's series exist at 0 before the first call, so increase() counts every call.
        now = datetime.now(UTC)
        for line in config.lines:
            agent.metrics.line_status(LineStatus(SEAT, line.id, "sim", line.rep, TEAM, LineState.IDLE, now))
        started = time.time()
        prom = await asyncio.to_thread(prometheus)
        series = 3 * 2 * 4  # reps x directions x dispositions
        await asyncio.to_thread(
            prom.wait_for,
            "the first scrape of every rep's call counters",
            lambda: prom.values('count(cti_calls_total{job="cti-seats"})') == {"": series},
        )
        first_scrape = time.time()

        run.cancel()
        run = asyncio.create_task(agent.run(stop))
        await asyncio.wait_for(agent.started.wait(), 20)

        # -- live: who is on a call now, and no alert fires on a healthy seat -----------
        boards = dashboards()
        live_checked = False
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            agent.metrics.pop_latency(0.03)  # what the runner reports per screen-pop
            agent.metrics.lookup_latency(0.004)
            await asyncio.sleep(0.5)
            if time.time() - first_scrape < 6:
                continue
            at = time.time()
            on_call = [t for title, t in panel_targets(boards["cti-wallboard"]) if title == "On a call now"]
            rows = await asyncio.to_thread(prom.query, substitute(on_call[0]["expr"], 60), at)
            if not rows:
                continue
            for row in rows:
                assert row["metric"]["rep"] in {"rep01", "rep02", "rep03"}
                assert 0 <= float(row["value"][1]) < time.time() - started
            reps_busy = [
                t for title, t in panel_targets(boards["cti-wallboard"]) if title == "Reps on a call now"
            ]
            busy = await asyncio.to_thread(prom.values, substitute(reps_busy[0]["expr"], 60), at)
            assert busy[""] >= 1
            live_checked = True
            break
        assert live_checked, "no line was on a call in 20 s of simulated traffic"
        rules = (await asyncio.to_thread(prom.api, "rules"))["groups"]
        # The seats' alerts (group cti-alerts); the centre's (cti-centre) are proven against a
        # real centre in test_centre_prometheus.py.
        alerts = [
            r for g in rules if g["name"] == "cti-alerts" for r in g["rules"] if r["type"] == "alerting"
        ]
        assert len(alerts) == 10
        at = time.time()
        exported = {sample.name for m in agent.registry.collect() for sample in m.samples}
        without_series: set[str] = set()
        for alert in alerts:
            # A healthy seat: no alert expression returns anything ...
            assert await asyncio.to_thread(prom.query, alert["query"], at) == [], alert["name"]
            # ... but what each one watches is there, unless the seat has no such series yet
            # (plugin errors: their labels are known only at the first error).
            inner = alert_inner(alert["query"])
            watched = re.findall(r"\b(cti_[a-z_]+?)(?:_total|_bucket)?\b", inner)
            if watched and not all(any(name.startswith(w) for name in exported) for w in watched):
                without_series.add(alert["name"])
                continue
            assert await asyncio.to_thread(prom.query, inner, at), (alert["name"], inner)
        assert without_series == {"CtiPluginErrors"}

        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.wait_for(run, 30)

        # -- the database: the truth ------------------------------------------------------
        engine = create_engine(f"sqlite:///{tmp_path / 'cti-agent.db'}")
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT rep, team, direction, disposition, talk_seconds, ended_at FROM calls")
            ).all()
        engine.dispose()
        assert len(rows) >= 10, "the simulator should have produced calls"
        assert all(r.ended_at is not None for r in rows)
        calls = Counter(r.rep for r in rows)
        talk: defaultdict[str, float] = defaultdict(float)
        effective: Counter[str] = Counter()
        missed: Counter[str] = Counter()
        by_direction: Counter[str] = Counter(r.direction for r in rows)
        answered_talks = [r.talk_seconds or 0.0 for r in rows if r.disposition == "answered"]
        for r in rows:
            if r.disposition == "answered":
                talk[r.rep] += r.talk_seconds or 0.0
                if (r.talk_seconds or 0.0) >= EFFECTIVE_SECONDS:
                    effective[r.rep] += 1
            if r.disposition == "missed":
                missed[r.rep] += 1
        reps = {"rep01", "rep02", "rep03"}
        assert set(calls) == reps
        assert 0 < sum(effective.values()) < len(answered_talks), "pick a threshold some calls pass"

        # Wait for a scrape of the final counts (the exporter outlives the agent).
        await asyncio.to_thread(
            prom.wait_for,
            "the final counts",
            lambda: prom.values('sum(cti_calls_total{job="cti-seats"})') == {"": float(len(rows))},
        )
        # Evaluate at the newest scrape: increase() then needs no extrapolation at either end
        # (the series began at 0 after the window's start), so Prometheus' numbers are exact.
        at = (await asyncio.to_thread(prom.values, 'timestamp(up{job="cti-seats"})'))[""]
        window = math.ceil(at - started) + 5
        v = prom.values

        def by_rep(values: dict[str, float]) -> dict[str, float]:
            return {k: round(x, 6) for k, x in values.items()}

        # -- every panel expression returns data --------------------------------------------
        results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for name, board in dashboards().items():
            for title, target in panel_targets(board):
                expr = substitute(target["expr"], window)
                rows_ = await asyncio.to_thread(prom.query, expr, at)
                if title == "On a call now":
                    continue  # checked live: after the stop no line is on a call, by design
                assert rows_, f"{name} / {title}: no data for {expr}"
                results[(name, title, target["refId"])] = rows_

        def panel(name: str, title: str, key: str | None = "rep", ref: str = "A") -> dict[str, float]:
            out: dict[str, float] = {}
            for sample in results[(name, title, ref)]:
                out[sample["metric"].get(key, "") if key else ""] = round(float(sample["value"][1]), 6)
            return out

        wall, sup = "cti-wallboard", "cti-supervisor"
        assert panel(wall, "Calls today") == {rep: float(calls[rep]) for rep in reps}
        assert panel(wall, "Calls vs target") == {
            rep: round(100 * calls[rep] / TARGET_CALLS, 6) for rep in reps
        }
        for rep, seconds in panel(wall, "Talk time today").items():
            assert seconds == pytest.approx(talk[rep], abs=0.01)
        for rep, pct in panel(wall, "Talk time vs target").items():
            assert pct == pytest.approx(100 * talk[rep] / TARGET_TALK, abs=0.01)
        assert panel(wall, "Effective calls vs target") == {
            rep: round(100 * effective[rep] / TARGET_EFFECTIVE, 6) for rep in reps
        }
        assert panel(wall, "Ranking: effective calls today") == {rep: float(effective[rep]) for rep in reps}
        ranking = [s["metric"]["rep"] for s in results[(wall, "Ranking: effective calls today", "A")]]
        assert [effective[r] for r in ranking] == sorted((effective[r] for r in ranking), reverse=True)
        assert panel(wall, "Missed calls today") == {rep: float(missed[rep]) for rep in reps}
        assert panel(wall, "Team calls today", None) == {"": float(len(rows))}
        assert panel(wall, "Team talk time today", None)[""] == pytest.approx(sum(talk.values()), abs=0.01)
        assert panel(wall, "Effective-call threshold", None) == {"": EFFECTIVE_SECONDS}
        assert panel(wall, "Reps on a call now", None) == {"": 0.0}

        per_hour = panel(sup, "Calls per hour by direction", "direction")
        assert per_hour == pytest.approx({d: 3600 * n / window for d, n in by_direction.items()}, rel=1e-6)
        inbound = [r for r in rows if r.direction == "in"]
        outbound = [r for r in rows if r.direction == "out"]
        assert panel(sup, "Answer rate (inbound)", None)[""] == pytest.approx(
            sum(r.disposition == "answered" for r in inbound) / len(inbound), abs=1e-6
        )
        assert panel(sup, "Connect rate (outbound)", None)[""] == pytest.approx(
            sum(r.disposition == "answered" for r in outbound) / len(outbound), abs=1e-6
        )
        assert panel(sup, "Average talk time", None)[""] == pytest.approx(
            sum(answered_talks) / len(answered_talks), abs=0.01
        )
        median = panel(sup, "Median talk time", None)[""]
        assert min(answered_talks) <= median <= 60  # within the histogram's first buckets
        assert panel(sup, "Teams: calls, effective calls", "team") == {TEAM: float(len(rows))}
        assert panel(sup, "Teams: calls, effective calls", "team", "B") == {
            TEAM: float(sum(effective.values()))
        }
        assert panel(sup, "Teams: talk time per rep", "team")[TEAM] == pytest.approx(
            sum(talk.values()) / 3, abs=0.01
        )
        assert panel(sup, "Seats scraped", None) == {"": 1.0}
        assert panel(sup, "Seats down", None) == {"": 0.0}
        down = sum(
            1
            for m in agent.registry.collect()
            if m.name == "cti_device_up"
            for s in m.samples
            if s.value == 0
        )
        assert panel(sup, "Devices down", None) == {"": float(down)}
        assert panel(sup, "Plugin errors", None) == {"": 0.0}
        assert panel(sup, "Recording errors", None) == {"": 0.0}
        assert panel(sup, "Recordings missing", None) == {"": 0.0}
        distribution = panel(sup, "Talk-time distribution (answered calls)", "le")
        assert distribution["+Inf"] == len(answered_talks)
        assert distribution["10.0"] == sum(t <= 10 for t in answered_talks)
        latency = results[(sup, "Screen-pop and lookup latency (95th percentile)", "A")]
        assert 0.025 < float(latency[0]["value"][1]) <= 0.05

        # -- every rule expression returns data, and the recorded per-rep numbers agree -------
        groups = (await asyncio.to_thread(prom.api, "rules"))["groups"]
        # The seats' recording rules (group cti-rep); cti-rep-today is the centre's.
        recording = [
            r for g in groups if g["name"] == "cti-rep" for r in g["rules"] if r["type"] == "recording"
        ]
        assert len(recording) == 10
        for rule in recording:
            assert await asyncio.to_thread(prom.query, rule["query"], at), rule["name"]
            assert rule["health"] == "ok", rule
            # ... and Prometheus has been recording it.
            assert await asyncio.to_thread(prom.query, rule["name"]), rule["name"]
        exprs = {r["name"]: r["query"] for r in recording}
        assert by_rep(v(exprs["team_rep:cti_calls:increase1d"], at, "rep")) == {
            r: float(calls[r]) for r in reps
        }
        assert by_rep(v(exprs["team_rep:cti_effective_calls:increase1d"], at, "rep")) == {
            r: float(effective[r]) for r in reps
        }
        for rep, seconds in v(exprs["team_rep:cti_talk_seconds:increase1d"], at, "rep").items():
            assert seconds == pytest.approx(talk[rep], abs=0.01)
        assert v(exprs["team_rep:cti_calls:rate5m"], at, "rep") == pytest.approx(
            {r: calls[r] / 300 for r in reps}, rel=1e-6
        )
        assert v(exprs["team_rep:cti_target_calls:max"], at, "rep") == {r: TARGET_CALLS for r in reps}
        missed_rule: Counter[str] = Counter()
        for sample in prom.query(exprs["team_rep_direction_disposition:cti_calls:increase1d"], at):
            if sample["metric"]["disposition"] == "missed":
                missed_rule[sample["metric"]["rep"]] += round(float(sample["value"][1]), 6)
        assert +missed_rule == missed
        for alert in [r for g in groups for r in g["rules"] if r["type"] == "alerting"]:
            # After the stop the seat is still scraped and nothing failed: still no alert.
            assert alert["state"] == "inactive", alert["name"]

        # -- the Grafana variables ------------------------------------------------------------
        teams = await asyncio.to_thread(prom.api, "label/team/values", **{"match[]": "cti_line_state"})
        assert teams == [TEAM]
        reps_ = await asyncio.to_thread(
            prom.api, "label/rep/values", **{"match[]": f'cti_line_state{{team=~"{TEAM}"}}'}
        )
        assert set(reps_) == reps
        assert is_number(at)
    finally:
        stop.set()
        if not run.done():
            await asyncio.wait_for(run, 30)
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
