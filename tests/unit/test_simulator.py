"""The simulator plugin's pure parts: config, people, scenario scripts read by the call tracker."""

from __future__ import annotations

import math
import random
import re
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.calls import CallTracker, LineIdentity, TrackerConfig
from agent.config import load_config
from agent.errors import ConfigError
from agent.events import (
    Absence,
    Call,
    CallerId,
    CallEventKind,
    Connected,
    Dialed,
    Direction,
    Disposition,
    EndReason,
    OffHook,
    OnHook,
    Ring,
)
from agent.numbers import to_e164
from agent.plugins import make_plugin_manager
from agent.seat.devices import DeviceRegistry
from plugins.simulator import people
from plugins.simulator.config import SimulatorConfig
from plugins.simulator.device import SimulatorDevice
from plugins.simulator.scenario import (
    DTMF_CID_RATIO,
    QUIET_AFTER_RINGS,
    TALK_MAX,
    TALK_MIN,
    CallScript,
    Scenario,
    line_random,
)

BASE = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
TRACKER = TrackerConfig(reports_hook=True, reports_connect=True)


def scripts(config: SimulatorConfig, count: int, *, seed: int = 7, line: str = "1") -> list[CallScript]:
    scenario = Scenario(config, line, line_random(seed, line))
    return [scenario.next_call() for _ in range(count)]


def new_tracker(config: TrackerConfig = TRACKER) -> CallTracker:
    return CallTracker(LineIdentity(seat="seat", device_id="sim", line="1"), config)


def play(tracker: CallTracker, script: CallScript, start: datetime) -> list[Call]:
    """Feed one script's events starting at ``start``; the calls that ended meanwhile."""
    ended = []
    for event in script.events(device_id="sim", line="1", start=start):
        ended += [e.call for e in tracker.feed(event, event.at) if e.kind is CallEventKind.ENDED]
    return ended


def play_all(
    call_scripts: list[CallScript], config: TrackerConfig = TRACKER
) -> tuple[list[Call], list[datetime]]:
    """Feed scripts back to back on one line (gaps included); ended calls and each call's start."""
    tracker = new_tracker(config)
    now = BASE
    ended: list[Call] = []
    starts = []
    for script in call_scripts:
        now += timedelta(seconds=script.gap)
        starts.append(now)
        ended += play(tracker, script, now)
        now += timedelta(seconds=script.duration)
    ended += [e.call for e in tracker.tick(now + timedelta(hours=1)) if e.kind is CallEventKind.ENDED]
    return ended, starts


def assert_call_matches(call: Call, script: CallScript) -> None:
    assert call.direction is script.direction
    assert call.disposition is script.disposition
    assert abs((call.talk_seconds or 0.0) - script.talk_seconds) <= 0.01
    assert call.number_raw == script.number
    if script.number is not None:
        assert call.number_e164 == to_e164(script.number, "CN")
        assert call.number_e164 is not None
    if script.direction is Direction.IN:
        assert call.rings == script.rings
        assert call.cid_name == script.name
        assert call.absence == script.absence
        expected_reason = EndReason.HANGUP if script.answered else EndReason.RING_TIMEOUT
        assert call.end_reason is expected_reason
    else:
        assert call.end_reason is EndReason.HANGUP


# -- config and registration ----------------------------------------------------


def test_config_defaults_and_bounds() -> None:
    config = SimulatorConfig()
    assert (config.lines, config.rate, config.ring_period, config.max_rings, config.region) == (
        2,
        1.0,
        5.0,
        6,
        "CN",
    )
    assert SimulatorConfig(region="us").region == "US"
    for bad in (
        {"lines": 0},
        {"lines": 65},
        {"rate": 0},
        {"answer_rate": 1.5},
        {"region": "XX"},
        {"speed": 0},
    ):
        with pytest.raises(ValidationError):
            SimulatorConfig.model_validate(bad)
    with pytest.raises(ValidationError, match="Extra inputs"):
        SimulatorConfig.model_validate({"lines": 2, "ratee": 3})


def test_registered_as_builtin_device_type() -> None:
    registry = DeviceRegistry.from_plugins(make_plugin_manager(load_entrypoints=False))
    assert registry.get("simulator") is SimulatorDevice
    assert registry.owner("simulator") == "simulator"


def test_config_file_is_validated_by_the_simulator_config(tmp_path: Path) -> None:
    registry = DeviceRegistry.from_plugins(make_plugin_manager(load_entrypoints=False))
    good = tmp_path / "good.toml"
    good.write_text('[[devices]]\nid = "sim"\ntype = "simulator"\nlines = 4\nrate = 0.5\nseed = 3\n')
    config = load_config(good, registry)
    assert config.devices[0].options == {"lines": 4, "rate": 0.5, "seed": 3}
    bad = tmp_path / "bad.toml"
    bad.write_text('[[devices]]\nid = "sim"\ntype = "simulator"\nlines = 4\nrings = 3\n')
    with pytest.raises(ConfigError, match=r"bad\.toml:5: devices\[0\]\.rings: unknown key"):
        load_config(bad, registry)


def test_device_construction_does_nothing_but_remember() -> None:
    device = SimulatorDevice("sim", SimulatorConfig(lines=3))
    assert device.lines() == ["1", "2", "3"]
    assert device.type == "simulator"
    assert (device.reports_hook, device.reports_connect, device.can_dial, device.can_hangup) == (
        True,
        True,
        True,
        True,
    )
    assert device.config == SimulatorConfig(lines=3)


# -- people -----------------------------------------------------------------------


def test_cn_numbers_are_valid_and_national() -> None:
    rng = random.Random(1)
    mobiles = landlines = 0
    for _ in range(3000):
        number = people.phone_number(rng, "CN")
        assert number.isdigit(), number
        assert to_e164(number, "CN") is not None, number
        assert to_e164(number, "CN") == "+86" + number.removeprefix("0")
        if number.startswith("0"):
            landlines += 1
            assert len(number) in (10, 11, 12), number
        else:
            mobiles += 1
            assert re.fullmatch(r"1[35789]\d{9}", number), number
    assert 0.6 < mobiles / 3000 < 0.8
    assert landlines > 0


@pytest.mark.parametrize("make", [people.cn_mobile, people.cn_landline])
def test_every_cn_prefix_and_area_code_is_valid(make: object) -> None:
    rng = random.Random(2)
    seen = set()
    for _ in range(2000):
        number = make(rng)  # type: ignore[operator]
        assert to_e164(number, "CN") is not None, number
        seen.add(number[:4] if number.startswith("0") else number[:3])
    assert len(seen) > 20  # the whole table was drawn from, not one entry


@pytest.mark.parametrize(
    ("region", "pattern"), [("US", r"[2-9]\d{9}"), ("CA", r"[2-9]\d{9}"), ("GB", r"\+1\d{10}")]
)
def test_other_regions_get_nanp_numbers_valid_there(region: str, pattern: str) -> None:
    rng = random.Random(3)
    for _ in range(1000):
        number = people.phone_number(rng, region)
        assert re.fullmatch(pattern, number), number
        assert to_e164(number, region) is not None, number


def test_names_are_a_deterministic_mix() -> None:
    rng = random.Random(9)
    names = [people.caller_name(rng, "CN") for _ in range(500)]
    rng = random.Random(9)
    assert names == [people.caller_name(rng, "CN") for _ in range(500)]
    companies = [n for n in names if n.endswith("有限公司")]
    chinese_people = [n for n in names if re.fullmatch(r"[\u4e00-\u9fff]{2,4}", n)]
    latin = [n for n in names if re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", n)]
    assert len(companies) + len(chinese_people) + len(latin) == len(names)
    assert min(len(companies), len(chinese_people), len(latin)) > 30
    assert len(set(chinese_people)) > 100
    rng = random.Random(9)
    us_names = [people.caller_name(rng, "US") for _ in range(200)]
    assert sum(bool(re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", n)) for n in us_names) > 100


# -- scenario: determinism and statistics -----------------------------------------


def test_same_seed_same_calls_and_lines_independent() -> None:
    config = SimulatorConfig(seed=42)
    assert scripts(config, 50, seed=42) == scripts(config, 50, seed=42)
    assert scripts(config, 50, seed=42, line="1") != scripts(config, 50, seed=42, line="2")
    assert scripts(config, 50, seed=42) != scripts(config, 50, seed=43)
    first, second = (Scenario(config, "1", line_random(None, "1")) for _ in range(2))
    assert [first.next_call() for _ in range(10)] != [second.next_call() for _ in range(10)]


@pytest.mark.parametrize(
    "config",
    [
        SimulatorConfig(rate=2.0),
        SimulatorConfig(rate=0.25, inbound_ratio=0.3, answer_rate=0.45, talk_median=240.0, talk_sigma=0.5),
    ],
)
def test_arrivals_ratios_and_talk_time_follow_the_config(config: SimulatorConfig) -> None:
    n = 4000
    calls = scripts(config, n)
    # Exponential gaps: the mean is 60/rate with a standard error of (60/rate)/sqrt(n); allow 4 of them.
    mean_gap = 60.0 / config.rate
    assert abs(statistics.fmean(c.gap for c in calls) - mean_gap) < 4 * mean_gap / math.sqrt(n)
    # Exponential, not constant: the standard deviation equals the mean.
    assert abs(statistics.pstdev(c.gap for c in calls) / mean_gap - 1) < 0.1
    for observed, p in (
        (sum(c.direction is Direction.IN for c in calls) / n, config.inbound_ratio),
        (sum(c.answered for c in calls) / n, config.answer_rate),
    ):
        assert abs(observed - p) < 4 * math.sqrt(p * (1 - p) / n)
    talks = [c.talk_seconds for c in calls if c.answered]
    # The sample median of a log-normal: log-scale standard error sqrt(pi/2) * sigma / sqrt(n).
    se = math.sqrt(math.pi / 2) * config.talk_sigma / math.sqrt(len(talks))
    assert abs(math.log(statistics.median(talks)) - math.log(config.talk_median)) < 4 * se
    assert all(c.talk_seconds == 0.0 for c in calls if not c.answered)


def test_talk_time_is_clamped() -> None:
    calls = scripts(SimulatorConfig(talk_median=60.0, talk_sigma=4.0, answer_rate=1.0), 1000)
    talks = [c.talk_seconds for c in calls]
    assert min(talks) == TALK_MIN
    assert max(talks) == TALK_MAX


# -- scenario: what the line sees --------------------------------------------------


def test_inbound_ring_cadence_and_caller_id_placement() -> None:
    config = SimulatorConfig(inbound_ratio=1.0, answer_rate=0.5, ring_period=5.0, max_rings=6)
    calls = scripts(config, 2000)
    before = 0
    for call in calls:
        rings = [s.offset for s in call.steps if s.event is Ring]
        cid = [s.offset for s in call.steps if s.event is CallerId]
        assert len(rings) == call.rings
        assert len(cid) == 1
        assert all(abs(b - a - 5.0) < 0.002 for a, b in zip(rings, rings[1:], strict=False))
        assert [s.offset for s in call.steps] == sorted(s.offset for s in call.steps)
        if call.cid_before_ring:
            before += 1
            assert call.steps[0].event is CallerId
            assert call.steps[0].offset == 0.0
            assert 0 < rings[0] <= 2.5
        else:
            assert call.steps[0].event is Ring
            assert call.steps[0].offset == 0.0
            assert rings[0] < cid[0] < rings[0] + 5.0  # between the first and the second ring
        if call.answered:
            assert 1 <= call.rings <= 4
            off_hook = next(s.offset for s in call.steps if s.event is OffHook)
            assert rings[-1] < off_hook < rings[-1] + 5.0
            assert off_hook > cid[0]
            assert call.steps[-1].event is OnHook
            assert call.duration == call.steps[-1].offset
        else:
            assert call.rings == 6
            assert call.steps[-1].event is Ring  # never picked up: no hook events at all
            assert not any(s.event in (OffHook, OnHook) for s in call.steps)
            assert call.duration == pytest.approx(rings[-1] + QUIET_AFTER_RINGS)
    share = before / len(calls)
    assert abs(share - DTMF_CID_RATIO) < 4 * math.sqrt(DTMF_CID_RATIO * (1 - DTMF_CID_RATIO) / len(calls))


def test_withheld_callers_carry_absence_and_no_number() -> None:
    config = SimulatorConfig(inbound_ratio=1.0, withheld_ratio=0.5)
    calls = scripts(config, 600)
    withheld = [c for c in calls if c.absence is not None]
    assert 0.4 < len(withheld) / len(calls) < 0.6
    assert {c.absence for c in withheld} == {Absence.PRIVATE, Absence.UNAVAILABLE}
    for call in withheld:
        cid = next(s for s in call.steps if s.event is CallerId).kwargs
        assert cid.get("number") is None
        assert cid.get("name") is None
        assert cid["absence"] is call.absence
        assert call.number is None
    ended, _ = play_all(withheld)
    assert [(c.absence, c.number_raw, c.number_e164) for c in ended] == [
        (w.absence, None, None) for w in withheld
    ]
    named = [c for c in calls if c.absence is None]
    assert all(c.number for c in named)
    assert 0 < sum(c.name is None for c in named) < len(named) / 4  # some networks send no name


def test_outbound_dialing_in_bursts() -> None:
    config = SimulatorConfig(inbound_ratio=0.0, answer_rate=0.5)
    calls = scripts(config, 1000)
    burst_counts = set()
    prefixed = 0
    for call in calls:
        assert call.steps[0].event is OffHook
        assert call.steps[0].offset == 0.0
        dialed = [s for s in call.steps if s.event is Dialed]
        burst_counts.add(len(dialed))
        digits = [s.kwargs["digits"] for s in dialed]
        assert "".join(digits) == call.number
        assert to_e164(call.number, "CN") is not None
        prefixed += digits[0] == "0" and len(digits) == 2 and digits[1].startswith("1")
        times = [s.offset for s in dialed]
        assert all(0 < b - a < 3.0 for a, b in zip(times, times[1:], strict=False))
        assert call.steps[-1].event is OnHook
        assert call.duration == call.steps[-1].offset
        if call.answered:
            connected = next(s.offset for s in call.steps if s.event is Connected)
            assert 5.0 <= connected - times[-1] <= 25.0
            assert call.duration == pytest.approx(connected + call.talk_seconds, abs=0.002)
        else:
            assert not any(s.event is Connected for s in call.steps)
            assert 15.0 <= call.duration - times[-1] <= 40.0
    assert burst_counts == {1, 2, 3}
    assert prefixed > 0


def test_click_to_dial_script() -> None:
    scenario = Scenario(SimulatorConfig(answer_rate=1.0), "1", random.Random(1))
    script = scenario.outbound("02187654321")
    assert script.gap == 0.0
    assert [s.event for s in script.steps] == [OffHook, Dialed, Connected, OnHook]
    assert script.steps[1].kwargs == {"digits": "02187654321", "complete": True}
    tracker = new_tracker()
    start = BASE
    events = []
    for event in script.events(device_id="sim", line="1", start=start):
        events += tracker.feed(event, event.at)
    kinds = [e.kind for e in events]
    # The whole number at once: identified as soon as it is dialed, before the far end answers.
    assert kinds == [
        CallEventKind.STARTED,
        CallEventKind.IDENTIFIED,
        CallEventKind.ANSWERED,
        CallEventKind.ENDED,
    ]
    assert events[1].call.number_e164 == "+862187654321"
    assert_call_matches(events[-1].call, script)
    scenario = Scenario(SimulatorConfig(answer_rate=0.0), "1", random.Random(1))
    script = scenario.outbound("13812345678")
    assert [s.event for s in script.steps] == [OffHook, Dialed, OnHook]
    (call,) = play(new_tracker(), script, BASE)
    assert call.disposition is Disposition.ABANDONED


# -- scenario through the call tracker ---------------------------------------------


def test_each_script_alone_is_exactly_one_call() -> None:
    config = SimulatorConfig(withheld_ratio=0.2)
    for script in scripts(config, 400, seed=11):
        tracker = new_tracker()
        ended = play(tracker, script, BASE)
        ended += [
            e.call
            for e in tracker.tick(BASE + timedelta(seconds=script.duration + 60))
            if e.kind is CallEventKind.ENDED
        ]
        assert len(ended) == 1
        assert_call_matches(ended[0], script)
        assert tracker.call is None


def test_back_to_back_calls_stay_separate_calls() -> None:
    calls = scripts(SimulatorConfig(rate=30.0, withheld_ratio=0.1), 800, seed=5)
    ended, starts = play_all(calls)
    assert len(ended) == len(calls)
    for call, script, start in zip(ended, calls, starts, strict=True):
        assert_call_matches(call, script)
        assert call.started_at == start
    dispositions = {(c.direction, c.disposition) for c in ended}
    assert dispositions == {
        (Direction.IN, Disposition.ANSWERED),
        (Direction.IN, Disposition.MISSED),
        (Direction.OUT, Disposition.ANSWERED),
        (Direction.OUT, Disposition.ABANDONED),
    }


def test_talk_seconds_match_the_script_for_every_kind() -> None:
    calls = scripts(SimulatorConfig(answer_rate=1.0, talk_median=45.0), 300, seed=8)
    ended, _ = play_all(calls)
    assert [c.talk_seconds for c in ended] == pytest.approx([s.talk_seconds for s in calls], abs=0.01)
    assert all(c.disposition is Disposition.ANSWERED for c in ended)
