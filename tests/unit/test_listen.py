"""Live listen-in without a network: the recorder's live tap, the seat's token check, the seat list."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from agent.centre.auth import Principal
from agent.centre.listen import live_call, live_calls, parse_seats, seat_listen_url
from agent.config import RecordingSection, load_config
from agent.events import Call, CallEvent, CallEventKind, Direction, Disposition
from agent.seat.audio import Block, BlockSink
from agent.seat.recorder import LiveTap, Recorder, live_pcm
from agent.seat.web.app import LISTEN_CHUNK_BYTES, LISTEN_MEDIA_TYPE, make_seat_app
from agent.seat.web.bus import SeatBus
from agent.seat.web.context import SeatContext
from agent.web import bearer_ok
from storage.db import make_engine, upgrade
from storage.models import CallRecord, Recording
from storage.recordings import RecordingStore

T0 = datetime(2024, 5, 6, 9, 0, 0, tzinfo=UTC)
UUID = "c0ffee00-0000-4000-8000-00000000000a"
TOKEN = "s3cret-listen-token-0123456789"


class PushSource:
    """An audio source the test pushes blocks through, as a sound card's callback would."""

    def __init__(self, channels: int = 1, samplerate: int = 8000) -> None:
        self.samplerate = samplerate
        self.channels = channels
        self.sink: BlockSink | None = None

    def start(self, sink: BlockSink) -> None:
        self.sink = sink

    def stop(self) -> None:
        self.sink = None

    def push(self, data: Block) -> None:
        assert self.sink is not None
        self.sink.block(data.copy())


def calls() -> tuple[Call, Call, Call]:
    started = Call(
        uuid=UUID,
        seat="seat-1",
        device_id="box",
        line="l1",
        rep="alice",
        team="north",
        direction=Direction.IN,
        started_at=T0,
    )
    answered = dataclasses.replace(started, answered_at=T0 + timedelta(seconds=1))
    ended = dataclasses.replace(
        answered,
        ended_at=T0 + timedelta(seconds=3),
        talk_seconds=2.0,
        disposition=Disposition.ANSWERED,
    )
    return started, answered, ended


def block(n: int, frames: int = 160, channels: int = 1) -> Block:
    """A block whose samples say which block it is (n * 100 + position)."""
    mono = (n * 100 + np.arange(frames) % 100).astype(np.int16)
    return np.repeat(mono[:, None], channels, axis=1)


@pytest.fixture
def engine() -> Engine:
    engine = make_engine("sqlite://")
    upgrade(engine)
    return engine


async def started_recorder(tmp_path: Path, engine: Engine, source: PushSource) -> Recorder:
    recorder = Recorder(
        RecordingSection(enabled=True, pre_roll=0.5),
        RecordingStore(tmp_path, engine),
        lambda call: source,
        stall_timeout=30.0,
        first_block_timeout=30.0,
    )
    recorder.start()
    started, answered, _ = calls()
    await recorder.notify(CallEvent(CallEventKind.STARTED, started, T0))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, answered, T0))
    return recorder


async def until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def drain(tap: LiveTap) -> list[bytes]:
    return [chunk async for chunk in tap]


async def test_every_listener_gets_the_calls_audio_and_the_end_of_the_call_ends_the_stream(
    tmp_path: Path, engine: Engine
) -> None:
    source = PushSource()
    recorder = await started_recorder(tmp_path, engine, source)
    first, second = recorder.subscribe_live(UUID), recorder.subscribe_live(UUID)
    assert first is not None
    assert second is not None
    readers = [asyncio.create_task(drain(first)), asyncio.create_task(drain(second))]
    for n in range(5):
        source.push(block(n))
    await until(lambda: recorder.writer_stats.blocks == 5)
    await recorder.notify(CallEvent(CallEventKind.ENDED, calls()[2], T0))
    got_first, got_second = await asyncio.wait_for(asyncio.gather(*readers), 5)
    expected = [block(n)[:, 0].astype("<i2").tobytes() for n in range(5)]
    assert got_first == expected
    assert got_second == expected
    # The recording was made all the same.
    with Session(engine) as session:
        assert session.scalar(select(Recording.seconds)) == pytest.approx(5 * 160 / 8000)
    assert recorder.subscribe_live(UUID) is None  # over: nothing to listen to
    await recorder.aclose()


async def test_a_slow_listener_loses_its_oldest_audio_and_never_holds_up_the_recording(
    tmp_path: Path, engine: Engine
) -> None:
    source = PushSource()
    recorder = await started_recorder(tmp_path, engine, source)
    slow = recorder.subscribe_live(UUID, max_blocks=3)
    fast = recorder.subscribe_live(UUID)
    assert slow is not None
    assert fast is not None
    fast_reader = asyncio.create_task(drain(fast))
    for n in range(10):
        source.push(block(n))
    # The writer handles every block at once although nobody reads the slow tap.
    await until(lambda: recorder.writer_stats.blocks == 10, timeout=2.0)
    await asyncio.sleep(0.05)  # let the hand-overs to the event loop run
    assert slow.dropped == 7
    await recorder.notify(CallEvent(CallEventKind.ENDED, calls()[2], T0))
    kept = await asyncio.wait_for(drain(slow), 5)
    assert kept == [block(n)[:, 0].astype("<i2").tobytes() for n in (7, 8, 9)]
    assert len(await asyncio.wait_for(fast_reader, 5)) == 10
    with Session(engine) as session:
        assert session.scalar(select(Recording.seconds)) == pytest.approx(10 * 160 / 8000)
    await recorder.aclose()


async def test_a_closed_tap_detaches_and_an_unknown_call_has_no_tap(tmp_path: Path, engine: Engine) -> None:
    source = PushSource()
    recorder = await started_recorder(tmp_path, engine, source)
    assert recorder.subscribe_live("no-such-call") is None
    tap = recorder.subscribe_live(UUID)
    assert tap is not None
    tap.close()
    source.push(block(1))
    await until(lambda: recorder.writer_stats.blocks == 1)
    await asyncio.sleep(0.05)
    assert await asyncio.wait_for(drain(tap), 1) == []
    await recorder.aclose()


def test_live_pcm_mixes_channels_to_mono_little_endian() -> None:
    stereo = np.array([[1000, 3000], [-2000, -4000], [32767, 32767]], dtype=np.int16)
    pcm = live_pcm(stereo, None)
    assert np.frombuffer(pcm, dtype="<i2").tolist() == [2000, -3000, 32767]


async def test_a_recording_at_16_khz_is_streamed_at_8_khz(tmp_path: Path, engine: Engine) -> None:
    source = PushSource(channels=2, samplerate=16000)
    recorder = Recorder(
        RecordingSection(enabled=True, sample_rate=16000),
        RecordingStore(tmp_path, engine),
        lambda call: source,
    )
    recorder.start()
    started, answered, ended = calls()
    await recorder.notify(CallEvent(CallEventKind.STARTED, started, T0))
    tap = recorder.subscribe_live(UUID)
    assert tap is not None
    reader = asyncio.create_task(drain(tap))
    t = np.arange(16000) / 16000
    tone = (np.sin(2 * np.pi * 400 * t) * 8000).astype(np.int16)
    for start in range(0, 16000, 320):
        source.push(np.repeat(tone[start : start + 320, None], 2, axis=1))
    await until(lambda: recorder.writer_stats.blocks == 50)
    await recorder.notify(CallEvent(CallEventKind.ENDED, ended, T0))
    pcm = b"".join(await asyncio.wait_for(reader, 5))
    samples = np.frombuffer(pcm, dtype="<i2")
    assert abs(len(samples) - 8000) < 100  # one second at 8 kHz
    assert np.abs(samples[1000:7000]).max() > 6000  # the tone survives the resampling
    await recorder.aclose()


# --- the seat's route ---------------------------------------------------------------


class FakeTap:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    async def _gen(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._gen()

    def close(self) -> None:
        self.closed = True


def seat_client(token: str | None, taps: dict[str, FakeTap]) -> TestClient:
    app = make_seat_app(SeatContext(bus=SeatBus(), seat="s1", live=taps.get, listen_token=token))
    return TestClient(app, base_url="http://127.0.0.1")


def test_bearer_token_check() -> None:
    assert bearer_ok(f"Bearer {TOKEN}", TOKEN)
    assert bearer_ok(f"bearer  {TOKEN} ", TOKEN)
    assert not bearer_ok(None, TOKEN)
    assert not bearer_ok("", TOKEN)
    assert not bearer_ok(f"Basic {TOKEN}", TOKEN)
    assert not bearer_ok("Bearer ", TOKEN)
    assert not bearer_ok(f"Bearer {TOKEN}x", TOKEN)
    assert not bearer_ok(f"Bearer {TOKEN[:-1]}", TOKEN)
    assert not bearer_ok("Bearer 密码", TOKEN)


def test_the_seat_streams_pcm_to_the_right_token_only() -> None:
    tap = FakeTap([b"\x01\x00" * 2000, b"\x02\x00" * 10])
    client = seat_client(TOKEN, {UUID: tap})
    assert client.get(f"/listen/{UUID}").status_code == 401
    wrong = client.get(f"/listen/{UUID}", headers={"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    unknown = client.get("/listen/other", headers={"Authorization": f"Bearer {TOKEN}"})
    assert unknown.status_code == 404
    chunks = []
    with client.stream("GET", f"/listen/{UUID}", headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == LISTEN_MEDIA_TYPE
        assert response.headers["cache-control"] == "no-store"
        chunks = list(response.iter_raw())
    body = b"".join(chunks)
    assert body == b"\x01\x00" * 2000 + b"\x02\x00" * 10
    assert all(len(chunk) <= LISTEN_CHUNK_BYTES for chunk in chunks)
    assert tap.closed


def test_listen_in_is_off_without_a_token() -> None:
    client = seat_client(None, {UUID: FakeTap([b"\x00\x00"])})
    response = client.get(f"/listen/{UUID}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404


def test_the_listen_token_setting() -> None:
    config = load_config(None, overrides={"web": {"listen_token": TOKEN}})
    assert config.web.listen_token == TOKEN
    assert load_config(None).web.listen_token is None
    with pytest.raises(Exception, match="listen_token"):
        load_config(None, overrides={"web": {"listen_token": "short"}})


# --- the console's side -----------------------------------------------------------------


def test_seats_are_name_equals_url() -> None:
    assert parse_seats(["seat-07=http://10.0.0.7:8330/", " s2 = https://s2.floor:8330 "]) == {
        "seat-07": "http://10.0.0.7:8330",
        "s2": "https://s2.floor:8330",
    }
    for bad in ("seat-07", "=http://x:1", "s=ftp://x", "s=http://x:1/?a=1", "s=notaurl"):
        with pytest.raises(ValueError, match="NAME=URL|base URL"):
            parse_seats([bad])
    assert seat_listen_url("http://s:1", "a/b") == "http://s:1/listen/a%2Fb"


def who(role: str, team: str | None = None, rep: str | None = None) -> Principal:
    return Principal(user_id=1, login=role, role=role, team=team, rep=rep, language="en")


def test_the_live_list_and_the_listen_check_follow_the_role(engine: Engine) -> None:
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        for uuid, team, started, ended in (
            ("live-north", "north", now - timedelta(seconds=30), None),
            ("live-south", "south", now - timedelta(seconds=10), None),
            ("done-north", "north", now - timedelta(minutes=5), now - timedelta(minutes=4)),
            ("stale-north", "north", now - timedelta(days=2), None),
        ):
            session.add(
                CallRecord(
                    uuid=uuid,
                    seat=f"seat-{team}",
                    device_id="d",
                    line="1",
                    rep=f"rep-{team}",
                    team=team,
                    direction="in",
                    number_raw="13812345678",
                    started_at=started,
                    ended_at=ended,
                )
            )
    seats = {"seat-north": "http://n:8330"}
    with Session(engine) as session:
        lead = live_calls(session, who("lead", team="north"), seats, masked=False, now=now)
        assert [(c.uuid, c.number, c.listenable) for c in lead] == [("live-north", "13812345678", True)]
        assert 29 <= lead[0].elapsed_seconds <= 31
        manager = live_calls(session, who("manager"), seats, masked=True, now=now)
        assert [(c.uuid, c.number, c.listenable) for c in manager] == [
            ("live-north", "138****5678", True),
            ("live-south", "138****5678", False),
        ]
        assert live_call(session, "live-north", who("lead", team="north"))[0] is not None
        assert live_call(session, "live-south", who("lead", team="north")) == (None, True)
        assert live_call(session, "live-north", who("rep", rep="rep-north")) == (None, True)
        assert live_call(session, "nothing", who("manager")) == (None, False)
