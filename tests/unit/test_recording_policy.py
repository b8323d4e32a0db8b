"""The recording policy, by tables (the spec is agent/seat/recording/policy.py's docstring)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from agent.config import RecordingSection
from agent.events import Call, CallEventKind, Direction, Disposition
from agent.seat.recording.policy import Ending, EndingKind, RecordingPolicy, Take

T0 = datetime(2024, 5, 6, 9, 0, 0, tzinfo=UTC)
IN, OUT = Direction.IN, Direction.OUT
STARTED, IDENTIFIED, ANSWERED, ENDED = (
    CallEventKind.STARTED,
    CallEventKind.IDENTIFIED,
    CallEventKind.ANSWERED,
    CallEventKind.ENDED,
)
NOTHING, DISCARD, MISSING, SAVE = EndingKind.NOTHING, EndingKind.DISCARD, EndingKind.MISSING, EndingKind.SAVE


def call(
    direction: Direction = IN,
    *,
    talk: float | None = None,
    disposition: Disposition | None = None,
    waiting: bool = False,
) -> Call:
    """A call as the tracker gives it; ``talk`` or ``disposition`` given makes it an ended call."""
    started = Call(
        uuid="c0ffee00-0000-4000-8000-000000000001",
        seat="seat-1",
        device_id="box",
        line="l1",
        rep="alice",
        team="north",
        direction=direction,
        started_at=T0,
        waiting=waiting,
    )
    if talk is None and disposition is None:
        return started
    answered = disposition in (None, Disposition.ANSWERED)
    return dataclasses.replace(
        started,
        answered_at=T0 + timedelta(seconds=3) if answered else None,
        ended_at=T0 + timedelta(seconds=3 + (talk or 0.0)),
        talk_seconds=talk if answered else 0.0,
        disposition=disposition or Disposition.ANSWERED,
    )


def policy(**settings: object) -> RecordingPolicy:
    return RecordingPolicy.from_settings(RecordingSection.model_validate({"enabled": True, **settings}))


# -- which calls are opened -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "started", "opens"),
    [
        ({}, call(IN), True),
        ({}, call(OUT), True),
        ({}, call(IN, waiting=True), False),
        ({"policy": "all"}, call(IN, waiting=True), False),
        ({"policy": "outbound"}, call(IN), False),
        ({"policy": "outbound"}, call(OUT), True),
        ({"policy": "all"}, call(IN), True),
    ],
    ids=lambda v: str(v) if isinstance(v, dict | bool) else "",
)
def test_which_started_calls_are_opened(settings: dict[str, object], started: Call, opens: bool) -> None:
    assert policy(**settings).opens(started) is opens


# -- when the file begins ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start_on", "direction", "trigger"),
    [
        ("answered", IN, ANSWERED),
        ("answered", OUT, ANSWERED),
        ("off_hook", IN, ANSWERED),
        ("off_hook", OUT, STARTED),
        ("ring", IN, STARTED),
        ("ring", OUT, STARTED),
    ],
)
def test_the_trigger_is_one_event_per_setting_and_direction(
    start_on: str, direction: Direction, trigger: CallEventKind
) -> None:
    rule = policy(start_on=start_on)
    begins = [kind for kind in (STARTED, IDENTIFIED, ANSWERED, ENDED) if rule.begins(kind, call(direction))]
    assert begins == [trigger]


# -- what is kept -----------------------------------------------------------------------------


@dataclass(frozen=True)
class KeepCase:
    id: str
    settings: dict[str, object]
    ended: Call
    keeps: bool
    should_have: bool


KEEP_CASES = [
    KeepCase("answered policy, answered", {}, call(IN, talk=5.0), True, True),
    KeepCase("answered policy, missed", {}, call(IN, disposition=Disposition.MISSED), False, False),
    KeepCase("answered policy, abandoned", {}, call(OUT, disposition=Disposition.ABANDONED), False, False),
    KeepCase("answered policy, answered waiting call", {}, call(IN, talk=5.0, waiting=True), True, False),
    KeepCase("all, missed", {"policy": "all"}, call(IN, disposition=Disposition.MISSED), True, False),
    KeepCase("all, answered", {"policy": "all"}, call(IN, talk=5.0), True, True),
    KeepCase("outbound, inbound answered", {"policy": "outbound"}, call(IN, talk=5.0), False, False),
    KeepCase("outbound, outbound answered", {"policy": "outbound"}, call(OUT, talk=5.0), True, True),
    KeepCase("under the minimum talk", {"min_talk_seconds": 10}, call(IN, talk=5.0), False, False),
    KeepCase("at the minimum talk", {"min_talk_seconds": 10}, call(IN, talk=10.0), True, True),
    KeepCase("over the minimum talk", {"min_talk_seconds": 10}, call(IN, talk=12.0), True, True),
]


@pytest.mark.parametrize("case", KEEP_CASES, ids=lambda c: c.id)
def test_what_is_kept_and_what_must_exist(case: KeepCase) -> None:
    rule = policy(**case.settings)
    assert rule.keeps(case.ended) is case.keeps
    assert rule.should_have(case.ended) is case.should_have


# -- the end of a call ------------------------------------------------------------------------

WHOLE = Take(written=True, seconds=60.0)


@dataclass(frozen=True)
class EndCase:
    id: str
    ended: Call
    take: Take | None
    ending: Ending
    settings: dict[str, object] = field(default_factory=dict)
    open_failure: str | None = None
    forced: bool = False


END_CASES = [
    EndCase("complete", call(talk=60.0), WHOLE, Ending(SAVE)),
    EndCase("not kept, with a file: discarded", call(disposition=Disposition.MISSED), WHOLE, Ending(DISCARD)),
    EndCase(
        "not kept, no file: nothing to do",
        call(disposition=Disposition.MISSED),
        Take(written=False),
        Ending(NOTHING),
    ),
    EndCase(
        "under the minimum talk: discarded",
        call(talk=5.0),
        Take(written=True, seconds=5.0),
        Ending(DISCARD),
        settings={"min_talk_seconds": 10},
    ),
    EndCase(
        "the source never opened: missing, why",
        call(talk=30.0),
        None,
        Ending(MISSING, reason="device_open"),
        open_failure="device_open",
    ),
    EndCase(
        "opened but nothing written: missing, no audio",
        call(talk=30.0),
        Take(written=False),
        Ending(MISSING, reason="no_audio"),
    ),
    EndCase(
        "lost before the trigger: missing, the writer's reason",
        call(talk=30.0),
        Take(written=False, failure="device_lost"),
        Ending(MISSING, reason="device_lost"),
    ),
    EndCase(
        "a failed file with nothing in it counts as none",
        call(talk=30.0),
        Take(written=True, seconds=0.0, status="failed", failure="disk_full"),
        Ending(MISSING, reason="disk_full"),
    ),
    EndCase(
        "nothing written for a call the policy does not need: nothing",
        call(talk=30.0, waiting=True),
        Take(written=False),
        Ending(NOTHING),
    ),
    EndCase(
        "cut short by a full disk",
        call(talk=3.0),
        Take(written=True, seconds=1.0, status="partial", failure="disk_full"),
        Ending(SAVE, flags=("disk_full",)),
    ),
    EndCase(
        "unplugged: the failure, then short",
        call(talk=4.0),
        Take(written=True, seconds=1.0, status="partial", failure="device_lost"),
        Ending(SAVE, flags=("device_lost", "short"), suspects=("short",)),
    ),
    EndCase(
        "short is talk x 0.8 less 2 s: just over",
        call(talk=60.0),
        Take(written=True, seconds=46.0),
        Ending(SAVE),
    ),
    EndCase(
        "short is talk x 0.8 less 2 s: just under",
        call(talk=60.0),
        Take(written=True, seconds=45.9),
        Ending(SAVE, flags=("short",), suspects=("short",)),
    ),
    EndCase(
        "overruns, then the level verdicts",
        call(talk=2.0),
        Take(written=True, seconds=2.0, overruns=3, verdicts=("one_sided",)),
        Ending(SAVE, flags=("overrun", "one_sided"), suspects=("one_sided",)),
    ),
    EndCase(
        "a missed call kept under 'all' is never short",
        call(disposition=Disposition.MISSED),
        Take(written=True, seconds=0.5, verdicts=("silent",)),
        Ending(SAVE, flags=("silent",), suspects=("silent",)),
        settings={"policy": "all"},
    ),
    EndCase(
        "shut down mid-call: kept whatever the policy",
        call(IN),
        Take(written=True, seconds=1.0),
        Ending(SAVE),
        forced=True,
    ),
    EndCase(
        "shut down before the trigger: nothing",
        call(IN),
        Take(written=False),
        Ending(NOTHING),
        forced=True,
    ),
]


@pytest.mark.parametrize("case", END_CASES, ids=lambda c: c.id)
def test_the_end_of_a_captured_call(case: EndCase) -> None:
    rule = policy(**case.settings)
    ending = rule.ending(case.ended, case.take, open_failure=case.open_failure, forced=case.forced)
    assert ending == case.ending


@pytest.mark.parametrize(
    ("settings", "ended", "lost"),
    [
        ({}, call(talk=30.0), True),
        ({}, call(IN), False),  # not over yet (the agent is shutting down)
        ({}, call(disposition=Disposition.MISSED), False),
        ({}, call(talk=30.0, waiting=True), False),
        ({"policy": "outbound"}, call(IN, talk=30.0), False),
        ({"policy": "outbound"}, call(OUT, talk=30.0), True),
        ({"min_talk_seconds": 60}, call(talk=30.0), False),
    ],
)
def test_a_call_never_captured_is_lost_only_when_the_policy_wanted_it(
    settings: dict[str, object], ended: Call, lost: bool
) -> None:
    assert policy(**settings).unrecorded(ended) is lost


def test_the_policy_reads_its_section() -> None:
    section = RecordingSection(enabled=True, start_on="ring", policy="outbound", min_talk_seconds=7)
    assert RecordingPolicy.from_settings(section) == RecordingPolicy(
        start_on="ring", policy="outbound", min_talk_seconds=7.0
    )
