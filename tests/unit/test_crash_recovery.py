"""Crash recovery, in parts: open calls closed at start, the reserved spool, atomic sidecars, FLAC repair."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from agent.events import Call, Direction, Disposition, EndReason, RecordingFacts
from agent.seat.spool import Spool
from storage.db import make_engine, upgrade
from storage.models import CallRecord
from storage.recordings import RecordingStore, write_atomically
from storage.repository import close_open_calls, upsert_call

T0 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    upgrade(eng)
    yield eng
    eng.dispose()


def call(uuid: str, *, seat: str = "s1", answered: float | None = None, ended: float | None = None) -> Call:
    return Call(
        uuid=uuid,
        seat=seat,
        device_id="dev",
        line="1",
        rep="rep01",
        team="t",
        direction=Direction.IN,
        started_at=T0,
        number_raw="13812345678",
        answered_at=T0 + timedelta(seconds=answered) if answered is not None else None,
        ring_seconds=answered,
        ended_at=T0 + timedelta(seconds=ended) if ended is not None else None,
        talk_seconds=(ended - answered) if ended is not None and answered is not None else None,
        disposition=Disposition.ANSWERED if ended is not None else None,
        end_reason=EndReason.HANGUP if ended is not None else None,
    )


def store(engine: Engine, *calls: Call, updated: dict[str, float] | None = None) -> None:
    with Session(engine) as session, session.begin():
        for c in calls:
            upsert_call(session, c)
        session.flush()
        for uuid, seconds in (updated or {}).items():
            row = session.query(CallRecord).filter_by(uuid=uuid).one()
            row.updated_at = T0 + timedelta(seconds=seconds)


def test_open_calls_are_ended_from_what_is_known(engine: Engine) -> None:
    store(
        engine,
        call("ringing"),
        call("talking", answered=4.0),
        call("recorded", answered=3.0),
        call("done", answered=2.0, ended=30.0),
        call("other-seat", seat="s2"),
        updated={"ringing": 6.0, "talking": 10.0, "recorded": 3.0},
    )
    with Session(engine) as session, session.begin():
        RecordingStore._upsert_row(
            session,
            RecordingFacts(
                call_uuid="recorded",
                path="recordings/2024/05/06/recorded.flac",
                codec="flac",
                sample_rate=8000,
                channels=1,
                seconds=41.5,
                bytes=1000,
                sha256=None,
                status="recovered",
            ),
        )
    now = T0 + timedelta(hours=1)
    with Session(engine) as session, session.begin():
        closed = {c.uuid: c for c in close_open_calls(session, now=now, seat="s1")}
    assert set(closed) == {"ringing", "talking", "recorded"}
    with Session(engine) as session:
        rows = {r.uuid: r for r in session.query(CallRecord)}
    ringing, talking, recorded = rows["ringing"], rows["talking"], rows["recorded"]
    assert (ringing.disposition, ringing.end_reason) == ("unknown", "agent_crash")
    assert (ringing.ended_at, ringing.ring_seconds, ringing.talk_seconds) == (
        T0 + timedelta(seconds=6),
        6.0,
        0.0,
    )
    assert (talking.disposition, talking.ring_seconds, talking.talk_seconds) == ("answered", 4.0, 6.0)
    # The recording ran 41.5 s from the answer: the call lasted at least that long.
    assert recorded.ended_at == T0 + timedelta(seconds=44.5)
    assert (recorded.talk_seconds, closed["recorded"].recording_seconds) == (41.5, 41.5)
    assert rows["done"].end_reason == "hangup"
    assert rows["other-seat"].ended_at is None
    with Session(engine) as session, session.begin():
        assert close_open_calls(session, now=now, seat="s1") == []


def test_a_recordings_last_write_says_when_the_call_was_last_alive(engine: Engine) -> None:
    # Answered at 3 s; the recording (pre-roll, begun at the dial) holds 41.5 s, but the dead
    # run last wrote it at 30 s: the call ended then, not at 3 + 41.5 s.
    store(
        engine,
        call("recorded", answered=3.0),
        call("other", answered=3.0),
        updated={"recorded": 3.0, "other": 3.0},
    )
    with Session(engine) as session, session.begin():
        for uuid in ("recorded", "other"):
            RecordingStore._upsert_row(
                session,
                RecordingFacts(
                    call_uuid=uuid,
                    path=f"recordings/2024/05/06/{uuid}.flac",
                    codec="flac",
                    sample_rate=8000,
                    channels=1,
                    seconds=41.5,
                    bytes=1000,
                    sha256=None,
                    status="recovered",
                ),
            )
    with Session(engine) as session, session.begin():
        closed = {
            c.uuid: c
            for c in close_open_calls(
                session,
                now=T0 + timedelta(hours=1),
                audio_until={"recorded": T0 + timedelta(seconds=30)},
            )
        }
    assert closed["recorded"].ended_at == T0 + timedelta(seconds=30)
    assert closed["recorded"].talk_seconds == 27.0
    assert closed["other"].talk_seconds == 41.5  # no last write known: from the answer, as before


def test_a_recording_longer_than_the_time_since_is_capped_at_now(engine: Engine) -> None:
    store(engine, call("c", answered=1.0))
    with Session(engine) as session, session.begin():
        (closed,) = close_open_calls(session, now=T0 + timedelta(seconds=5))
    assert closed.ended_at <= T0 + timedelta(seconds=5)
    assert closed.talk_seconds >= 0


# -- the spool -----------------------------------------------------------------------------


def test_the_spool_goes_into_the_reserved_space_and_is_renamed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, reserve_bytes=4096)
    assert spool.reserve()
    assert spool.reserve_path.stat().st_size == 4096
    assert spool.reserve_path.stat().st_blocks > 0  # allocated, not a sparse hole
    assert spool.write(['{"a": 1}', '{"b": "两"}']) == 0
    assert not spool.reserve_path.exists()
    assert spool.lines() == ['{"a": 1}', '{"b": "两"}']
    # The next start takes a new reservation and leaves the spool alone.
    assert spool.reserve()
    assert spool.lines() == ['{"a": 1}', '{"b": "两"}']


def test_a_spool_larger_than_its_reservation_still_grows(tmp_path: Path) -> None:
    spool = Spool(tmp_path, reserve_bytes=16)
    spool.reserve()
    lines = [f'{{"n": {n}}}' for n in range(100)]
    assert spool.write(lines) == 0
    assert spool.lines() == lines


def test_without_a_reservation_the_spool_is_still_written_atomically(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert spool.write(["x"]) == 0
    assert spool.lines() == ["x"]
    assert [p.name for p in tmp_path.iterdir()] == [spool.path.name]


def test_replace_rewrites_or_removes(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.write(["a", "b"])
    assert spool.replace(["b"])
    assert spool.lines() == ["b"]
    assert spool.replace([])
    assert not spool.path.exists()


def test_write_atomically_leaves_no_temporary_and_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "x.call.json"
    write_atomically(target, b"old")
    assert (target.read_bytes(), oct(target.stat().st_mode & 0o777)) == (b"old", "0o600")
    write_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "missing-dir" / "y", b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.call.json"]


# -- FLAC repair -----------------------------------------------------------------------------


def torn_flac(path: Path, seconds: float, keep: float) -> int:
    """A FLAC of ``seconds`` of noise cut at ``keep`` of its bytes, as SIGKILL leaves one; its frames."""
    rng = np.random.default_rng(7)
    audio = (rng.normal(0, 3000, int(8000 * seconds))).astype("int16")
    sf.write(path, audio, 8000, format="FLAC", subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return len(audio)


def test_repair_keeps_the_frames_a_block_read_would_lose(tmp_path: Path) -> None:
    part = tmp_path / "c.flac.part"
    total = torn_flac(part, 3.0, 0.6)
    plain = 0
    with sf.SoundFile(part) as f:
        while True:
            try:
                block = f.read(8192, dtype="int16")
            except sf.LibsndfileError:
                break
            if not len(block):
                break
            plain += len(block)
    frames = RecordingStore.readable_frames(part)
    # FLAC frames hold 4096 samples here: every whole one before the cut, not one 8192-block less.
    assert frames > plain
    assert frames >= int(total * 0.6 * 0.9) - 4096
    assert frames < total
