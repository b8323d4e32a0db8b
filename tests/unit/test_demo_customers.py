"""The demo's customer file: valid numbers, imported once, follow-ups due today, the simulator told."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent.commands.demo import demo_customers_text, dialable_numbers, seed_demo
from agent.numbers import to_e164
from plugins.simulator.config import SimulatorConfig
from plugins.simulator.scenario import Scenario, line_random
from storage.db import make_engine, upgrade
from storage.models import CallRecord, CustomerRecord


def test_every_demo_number_is_valid_and_dialable() -> None:
    numbers = dialable_numbers(demo_customers_text())
    assert len(numbers) >= 15
    assert all(n.isdigit() for n in numbers)
    assert all(to_e164(n, "CN") for n in numbers)
    assert "01065529988" in numbers  # a Beijing landline, with its trunk prefix
    assert "13801012345" in numbers


def test_seeding_imports_once_with_follow_ups_due(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'demo.db'}")
    upgrade(engine)
    numbers = seed_demo(engine, seat="demo-seat", team="team-a")
    again = seed_demo(engine, seat="demo-seat", team="team-a")
    assert numbers == again
    with Session(engine) as session:
        assert session.scalar(select(func.count(CustomerRecord.id))) == 15
        due = list(session.scalars(select(CallRecord).where(CallRecord.follow_up_at.is_not(None))))
        assert len(due) == 3  # not doubled by the second start
        assert all(call.notes for call in due)
        assert {c.name for c in session.scalars(select(CustomerRecord))} >= {"王建国", "Emily Carter"}
    engine.dispose()


def test_the_simulator_uses_known_numbers_and_a_seeded_run_without_them_is_unchanged() -> None:
    known = ["13801012345", "01065529988"]
    with_known = Scenario(SimulatorConfig(known_numbers=known, known_ratio=1.0), "1", line_random(3, "1"))
    numbers = {with_known.next_call().number for _ in range(40)} - {None}
    # A rep may key a 0 before a mobile (as on a real floor): the same number once normalised.
    assert {to_e164(n, "CN") for n in numbers if n} == {to_e164(n, "CN") for n in known}
    plain = [Scenario(SimulatorConfig(), "1", line_random(3, "1")).next_call() for _ in range(2)]
    again = [Scenario(SimulatorConfig(), "1", line_random(3, "1")).next_call() for _ in range(2)]
    assert plain == again
