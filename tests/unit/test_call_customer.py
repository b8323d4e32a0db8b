"""The customer rides on the call: set once, the same for every observer, and kept through the spool."""

from __future__ import annotations

from datetime import UTC, datetime

from agent.events import Call, CallEvent, CallEventKind, Customer, Direction

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CALL = Call(
    uuid="c1",
    seat="s",
    device_id="d",
    line="L1",
    rep="alice",
    team="north",
    direction=Direction.IN,
    started_at=T0,
    number_raw="13812345678",
    number_e164="+8613812345678",
)


def test_our_customer_keeps_its_id() -> None:
    call = CALL.with_customer(Customer(id=7, name="张伟", company="天津贸易", owner_rep="bob", source="sql"))
    assert (call.customer_id, call.customer_name) == (7, "张伟")
    assert call.customer == Customer(id=7, name="张伟", company="天津贸易", owner_rep="bob", source="sql")


def test_a_crm_id_is_not_one_of_ours() -> None:
    call = CALL.with_customer(Customer(id=77, name="陈老板", source="crm_http"))
    assert (call.customer_id, call.customer_name) == (None, "陈老板")
    assert call.customer == Customer(id=None, name="陈老板", source="crm_http")


def test_the_customer_survives_the_spool() -> None:
    call = CALL.with_customer(Customer(id=7, name="张伟", owner_rep="bob", source="sql"))
    event = CallEvent(CallEventKind.IDENTIFIED, call, T0)
    data = event.to_dict()
    assert data["call"]["customer"] == {
        "id": 7,
        "name": "张伟",
        "company": None,
        "owner_rep": "bob",
        "source": "sql",
    }
    assert CallEvent.from_dict(data) == event
    assert Call.from_dict(CALL.to_dict()).customer is None
