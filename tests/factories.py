"""Test data every suite builds: calls at each stage, in one place.

``make_call`` gives a plausible inbound call on a mainland China mobile number; any field can be
set by keyword. Suites with their own defaults bind them once, e.g.
``make_call = functools.partial(factories.make_call, seat="seat-7", line="L1")``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.events import Call, Direction, Disposition, EndReason, RecordingFacts

T0 = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)


def make_call(uuid: str = "c-1", **fields: Any) -> Call:
    """A call that has just started (ringing in), with every field overridable."""
    values: dict[str, Any] = {
        "uuid": uuid,
        "seat": "seat-1",
        "device_id": "modem0",
        "line": "line-1",
        "rep": "alice",
        "team": "north",
        "direction": Direction.IN,
        "started_at": T0,
        "number_raw": "13812345678",
        "number_e164": "+8613812345678",
    }
    values.update(fields)
    return Call(**values)


def answered(call: Call, ring: float = 5.0) -> Call:
    """The call picked up ``ring`` seconds after it started."""
    return dataclasses.replace(
        call,
        answered_at=call.started_at + timedelta(seconds=ring),
        ring_seconds=ring,
        rings=max(call.rings, 1),
    )


def ended(call: Call, talk: float = 90.0, disposition: Disposition = Disposition.ANSWERED) -> Call:
    """The call ended: answered and talked ``talk`` seconds, or ended unanswered with ``disposition``."""
    if disposition is Disposition.ANSWERED:
        call = answered(call) if call.answered_at is None else call
        assert call.answered_at is not None
        return dataclasses.replace(
            call,
            ended_at=call.answered_at + timedelta(seconds=talk),
            talk_seconds=talk,
            disposition=disposition,
            end_reason=EndReason.HANGUP,
        )
    return dataclasses.replace(
        call,
        ended_at=call.started_at + timedelta(seconds=20),
        ring_seconds=20.0,
        disposition=disposition,
        end_reason=EndReason.HANGUP,
    )


def add_recording(
    local: Any,
    data_dir: Path,
    call: Call,
    content: bytes = b"fLaC audio bytes",
    *,
    flags: tuple[str, ...] = (),
    seconds: float = 60.0,
) -> Path:
    """A finished recording of ``call`` on a seat, as the recorder leaves it: the file and its row."""
    from storage.recordings import RecordingStore

    store = RecordingStore(data_dir, local)
    paths = store.paths(call.uuid, call.started_at, "flac")
    paths.final.parent.mkdir(parents=True, exist_ok=True)
    paths.final.write_bytes(content)
    facts = RecordingFacts(
        call_uuid=call.uuid,
        path=store.relative(paths.final),
        codec="flac",
        sample_rate=8000,
        channels=1,
        seconds=seconds,
        bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        status="complete",
        flags=flags,
    )
    store.save(facts, call)
    return paths.final
