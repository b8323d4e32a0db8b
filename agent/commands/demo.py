"""The demo's customers: a small floor's customer file, imported once, so the first pops know who calls.

``demo_customers.csv`` (packaged beside this module) holds fifteen customers of a Chinese floor,
with Chinese and English names, mobiles and landlines, owner reps, tags and notes. On a demo's
first start it is imported into the demo's database with the same import as
``cti-agent import-customers``, and three of the customers get an earlier call with a note and
a follow-up due today, so the seat's worklist has something in it. The simulator is told their
numbers, so about half the calls are with a known customer.
"""

from __future__ import annotations

import csv
import io
import logging
import uuid
from datetime import UTC, datetime, timedelta
from importlib import resources

import phonenumbers
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from agent.events import Call, Direction, Disposition, EndReason
from agent.numbers import to_e164

logger = logging.getLogger(__name__)

CUSTOMERS_FILE = "demo_customers.csv"
#: Customers (by row) given an earlier call with a note and a follow-up due today.
FOLLOW_UPS = ((0, "回电确认续订数量"), (4, "发送年付方案报价"), (8, "Send the revised quote"))


def demo_customers_text() -> str:
    """The packaged customer file."""
    return resources.files("agent.commands").joinpath(CUSTOMERS_FILE).read_text(encoding="utf-8")


def _dialable(cell: str, region: str) -> str:
    """A number as a phone dials it: national digits (``01065529988``, ``13801012345``)."""
    parsed = phonenumbers.parse(cell, region)
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return "".join(ch for ch in national if ch.isdigit())


def _row_numbers(row: dict[str, str], region: str) -> list[str]:
    return [_dialable(cell, region) for cell in (row.get("手机", ""), row.get("座机", "")) if cell.strip()]


def dialable_numbers(text: str, region: str = "CN") -> list[str]:
    """Every number of the file as a phone dials it."""
    return [n for row in csv.DictReader(io.StringIO(text)) for n in _row_numbers(row, region)]


def demo_owners() -> list[str]:
    """The owner reps of the demo's customers, in file order, each once."""
    owners = (row.get("负责人", "").strip() for row in csv.DictReader(io.StringIO(demo_customers_text())))
    return list(dict.fromkeys(owner for owner in owners if owner))


#: The demo's lead list: every demo customer, held by its owner rep.
DEMO_LIST = "演示数据"


def seed_demo(engine: Engine, *, seat: str, team: str, region: str = "CN") -> list[str]:
    """Import the demo customers into an empty customer table; returns the numbers to simulate.

    A database that already has customers (an earlier demo, or the user's own) is left as it is.
    """
    from storage.customers import import_customers
    from storage.leads import add_leads, open_list
    from storage.models import CustomerRecord
    from storage.repository import save_note, upsert_call

    text = demo_customers_text()
    numbers = dialable_numbers(text, region)
    with Session(engine) as session, session.begin():
        if session.scalar(select(func.count(CustomerRecord.id))):
            return numbers
        rows = list(csv.reader(io.StringIO(text)))
        imported: list[int] = []
        report = import_customers(session, enumerate(rows, start=1), region=region, imported=imported.extend)
        # The customers are the demo's lead list too, each held by its owner: their worklists.
        add_leads(session, open_list(session, DEMO_LIST, actor="demo"), imported, actor="demo")
        records = list(csv.DictReader(io.StringIO(text)))
        now = datetime.now(UTC)
        for index, note in FOLLOW_UPS:
            number = _row_numbers(records[index], region)[0]
            started = now - timedelta(days=2, hours=index)
            call = Call(
                uuid=str(uuid.uuid4()),
                seat=seat,
                device_id="sim",
                line="line1",
                rep=records[index]["负责人"],
                team=team,
                direction=Direction.OUT,
                started_at=started,
                number_raw=number,
                number_e164=to_e164(number, region),
                answered_at=started + timedelta(seconds=12),
                ended_at=started + timedelta(seconds=200),
                ring_seconds=12.0,
                talk_seconds=188.0,
                disposition=Disposition.ANSWERED,
                end_reason=EndReason.HANGUP,
            )
            upsert_call(session, call)
            due = now.replace(hour=9, minute=30, second=0, microsecond=0)
            save_note(session, call.uuid, note, due)
    logger.info("demo: %d customers imported, %d follow-ups due today", report.imported, len(FOLLOW_UPS))
    return numbers


__all__ = ["demo_customers_text", "demo_owners", "dialable_numbers", "seed_demo"]
