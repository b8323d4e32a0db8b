"""The recorder driven by call events, with a scripted audio source and an in-memory database."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import errno
import hashlib
import stat
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from agent.config import RecordingSection
from agent.errors import DeviceError
from agent.events import Call, CallEvent, CallEventKind, Direction, Disposition
from agent.seat.audio import Block, BlockSink, LevelStats, PreRoll, Resampler, dbfs
from agent.seat.recorder import Recorder, RecordingCounters
from plugins.simulator.audio import SpeechSynth, SyntheticSource
from storage.db import make_engine, upgrade
from storage.models import CallRecord, Recording
from storage.recordings import RecordingPaths, RecordingStore

RATE = 8000
T0 = datetime(2024, 5, 6, 9, 0, 0, tzinfo=UTC)


class FakeCounters:
    """Implements :class:`RecordingCounters` by counting into a Counter."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def recording_bytes(self, n: int) -> None:
        self.counts["bytes"] += n

    def recording_error(self, reason: str) -> None:
        self.counts[f"error:{reason}"] += 1

    def recording_overrun(self) -> None:
        self.counts["overrun"] += 1

    def recording_missing(self) -> None:
        self.counts["missing"] += 1

    def recording_suspect(self, reason: str) -> None:
        self.counts[f"suspect:{reason}"] += 1


class ScriptedSource:
    """An audio source the test pushes blocks through, as a PortAudio callback would."""

    def __init__(self, channels: int = 1, *, fail_start: bool = False) -> None:
        self.samplerate = RATE
        self.channels = channels
        self.sink: BlockSink | None = None
        self.fail_start = fail_start
        self.stopped = False

    def start(self, sink: BlockSink) -> None:
        if self.fail_start:
            raise DeviceError("no such audio device 'usb-box'")
        self.sink = sink

    def stop(self) -> None:
        self.stopped = True

    def push(self, data: Block, block: int = 160) -> None:
        assert self.sink is not None
        for start in range(0, len(data), block):
            self.sink.block(data[start : start + block].copy())


def tone(seconds: float, freq: float = 440.0, channels: int = 1, level: float = 0.3) -> Block:
    t = np.arange(int(seconds * RATE)) / RATE
    mono = (np.sin(2 * np.pi * freq * t) * level * 32767).astype(np.int16)
    return np.repeat(mono[:, None], channels, axis=1)


def ramp(frames: int) -> Block:
    """A signal whose every sample says where it is (for checking order and pre-roll)."""
    return ((np.arange(frames) % 20000) - 10000).astype(np.int16)[:, None]


def make_call(
    uuid: str = "c0ffee00-0000-4000-8000-000000000001",
    *,
    direction: Direction = Direction.IN,
    answered: bool = True,
    talk: float = 2.0,
    line: str = "l1",
) -> tuple[Call, Call, Call]:
    started = Call(
        uuid=uuid,
        seat="seat-1",
        device_id="box",
        line=line,
        rep="alice",
        team="north",
        direction=direction,
        started_at=T0,
    )
    answered_call = dataclasses.replace(started, answered_at=T0 + timedelta(seconds=3))
    ended = dataclasses.replace(
        started,
        answered_at=T0 + timedelta(seconds=3) if answered else None,
        ended_at=T0 + timedelta(seconds=3 + talk),
        talk_seconds=talk if answered else None,
        disposition=Disposition.ANSWERED if answered else Disposition.MISSED,
    )
    return started, answered_call, ended


@pytest.fixture
def engine() -> Engine:
    engine = make_engine("sqlite://")
    upgrade(engine)
    return engine


@pytest.fixture
def counters() -> FakeCounters:
    return FakeCounters()


def rows(engine: Engine) -> list[Recording]:
    with Session(engine) as session:
        return list(session.scalars(select(Recording).order_by(Recording.id)))


class Harness:
    def __init__(self, recorder: Recorder, sources: dict[str, ScriptedSource]) -> None:
        self.recorder = recorder
        self.sources = sources

    async def event(self, kind: CallEventKind, call: Call) -> None:
        await self.recorder.notify(CallEvent(kind, call, T0))


@pytest.fixture
async def harness(tmp_path: Path, engine: Engine, counters: FakeCounters) -> Any:
    sources: dict[str, ScriptedSource] = {}

    def factory(call: Call) -> ScriptedSource:
        return sources.setdefault(call.uuid, ScriptedSource())

    settings = RecordingSection(enabled=True, pre_roll=0.5)
    recorder = Recorder(settings, RecordingStore(tmp_path, engine), factory, counters)
    recorder.start()
    yield Harness(recorder, sources)
    await recorder.aclose()


def make_recorder(
    tmp_path: Path,
    engine: Engine,
    counters: FakeCounters,
    source: Any,
    store: RecordingStore | None = None,
    **settings: Any,
) -> Recorder:
    section = RecordingSection(enabled=True, **{"pre_roll": 0.5, **settings})
    recorder = Recorder(
        section,
        store or RecordingStore(tmp_path, engine),
        source if callable(source) else (lambda call: source),
        counters,
        stall_timeout=0.5,
        first_block_timeout=1.0,
    )
    recorder.start()
    return recorder


# --- the pure helpers ------------------------------------------------------------------------


def test_preroll_keeps_the_last_frames_in_order() -> None:
    ring = PreRoll(1000, 1)
    signal = ramp(2500)
    for start in range(0, 2500, 300):
        ring.push(signal[start : start + 300])
    assert len(ring) == 1000
    np.testing.assert_array_equal(ring.take(), signal[1500:])
    assert len(ring) == 0
    assert len(ring.take()) == 0


def test_preroll_of_zero_keeps_nothing() -> None:
    ring = PreRoll(0, 1)
    ring.push(ramp(10))
    assert len(ring.take()) == 0


def test_levels_tell_speech_silence_and_one_side() -> None:
    assert dbfs(tone(1.0, level=0.5))[0] == pytest.approx(-9.03, abs=0.1)
    talk = LevelStats(2, RATE)
    talk.add(tone(3.0, channels=2))
    assert talk.verdicts() == []
    silent = LevelStats(1, RATE)
    silent.add(np.zeros((RATE * 3, 1), dtype=np.int16))
    assert silent.verdicts() == ["silent"]
    one = LevelStats(2, RATE)
    both = tone(3.0, channels=2)
    both[:, 1] = 0
    one.add(both[:100])
    one.add(both[100:])
    assert one.verdicts() == ["one_sided"]
    assert one.active_seconds == [pytest.approx(3.0, abs=0.11), 0.0]


def test_synthetic_speech_is_seeded_and_has_both_sides() -> None:
    a = SpeechSynth(7, RATE, 2).render(RATE * 20)
    b = SpeechSynth(7, RATE, 2).render(RATE * 20)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, SpeechSynth(8, RATE, 2).render(RATE * 20))
    stats = LevelStats(2, RATE)
    stats.add(a)
    assert stats.verdicts() == []
    assert all(s > 2.0 for s in stats.active_seconds)
    assert min(stats.active_seconds) < 18.0  # pauses and turns, not a constant tone


def test_recorder_counters_protocol_is_met_by_the_fake() -> None:
    assert isinstance(FakeCounters(), RecordingCounters)


# --- recording calls -------------------------------------------------------------------------


async def test_answered_call_is_recorded_with_its_pre_roll(
    harness: Harness, engine: Engine, counters: FakeCounters, tmp_path: Path
) -> None:
    started, answered, ended = make_call()
    await harness.event(CallEventKind.STARTED, started)
    source = harness.sources[started.uuid]
    signal = ramp(RATE * 3)
    source.push(signal[: RATE * 1])  # ringing: only the last 0.5 s is kept
    await harness.event(CallEventKind.ANSWERED, answered)
    source.push(signal[RATE * 1 :])
    await harness.event(CallEventKind.ENDED, ended)

    path = tmp_path / "recordings" / "2024" / "05" / "06" / f"{started.uuid}.flac"
    data, rate = sf.read(path, dtype="int16", always_2d=True)
    assert rate == RATE
    np.testing.assert_array_equal(data, signal[RATE // 2 :])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(path.parent.glob("*.part"))
    assert not list(path.parent.glob("*.json"))
    assert source.stopped
    [row] = rows(engine)
    assert (row.call_uuid, row.codec, row.sample_rate, row.channels, row.status) == (
        started.uuid,
        "flac",
        RATE,
        1,
        "complete",
    )
    assert row.path_or_uri == f"recordings/2024/05/06/{started.uuid}.flac"
    assert row.seconds == pytest.approx(2.5)
    assert row.bytes == path.stat().st_size
    assert row.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert counters.counts["bytes"] == row.bytes
    with Session(engine) as session:
        assert session.scalars(select(CallRecord.disposition)).one() == "answered"


@pytest.mark.parametrize(("codec", "ext"), [("wav", "wav"), ("opus", "opus")])
async def test_other_codecs(
    tmp_path: Path, engine: Engine, counters: FakeCounters, codec: str, ext: str
) -> None:
    source = ScriptedSource()
    recorder = make_recorder(tmp_path, engine, counters, source, codec=codec)
    started, answered, ended = make_call(talk=3.0)
    await recorder.notify(CallEvent(CallEventKind.STARTED, started, T0))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, answered, T0))
    source.push(tone(3.0))
    await recorder.notify(CallEvent(CallEventKind.ENDED, ended, T0))
    await recorder.aclose()
    [row] = rows(engine)
    assert row.codec == codec
    assert row.status == "complete"
    assert row.flags is None
    info = sf.info(str(tmp_path / row.path_or_uri))
    assert info.duration == pytest.approx(3.0, abs=0.05)
    assert row.path_or_uri.endswith(f".{ext}")


async def test_start_on_ring_records_from_the_first_event(
    tmp_path: Path, engine: Engine, counters: FakeCounters
) -> None:
    source = ScriptedSource()
    recorder = make_recorder(tmp_path, engine, counters, source, start_on="ring", pre_roll=0)
    started, answered, ended = make_call(talk=1.0)
    await recorder.notify(CallEvent(CallEventKind.STARTED, started, T0))
    source.push(tone(1.0))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, answered, T0))
    source.push(tone(1.0))
    await recorder.notify(CallEvent(CallEventKind.ENDED, ended, T0))
    await recorder.aclose()
    [row] = rows(engine)
    assert row.seconds == pytest.approx(2.0)


async def test_missed_call_leaves_nothing_under_the_answered_policy(
    harness: Harness, engine: Engine, counters: FakeCounters, tmp_path: Path
) -> None:
    started, _, ended = make_call(answered=False)
    await harness.event(CallEventKind.STARTED, started)
    harness.sources[started.uuid].push(tone(1.0))
    await harness.event(CallEventKind.ENDED, ended)
    assert rows(engine) == []
    assert counters.counts["missing"] == 0
    assert not [p for p in (tmp_path / "recordings").rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("settings", "direction", "talk", "kept"),
    [
        ({"policy": "outbound"}, Direction.IN, 5.0, False),
        ({"policy": "outbound"}, Direction.OUT, 5.0, True),
        ({"min_talk_seconds": 10}, Direction.IN, 5.0, False),
        ({"min_talk_seconds": 10}, Direction.IN, 12.0, True),
    ],
)
async def test_conditional_recording(
    tmp_path: Path,
    engine: Engine,
    counters: FakeCounters,
    settings: dict[str, Any],
    direction: Direction,
    talk: float,
    kept: bool,
) -> None:
    source = ScriptedSource()
    recorder = make_recorder(tmp_path, engine, counters, source, **settings)
    started, answered, ended = make_call(direction=direction, talk=talk)
    await recorder.notify(CallEvent(CallEventKind.STARTED, started, T0))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, answered, T0))
    if source.sink is not None:
        source.push(tone(talk))
    await recorder.notify(CallEvent(CallEventKind.ENDED, ended, T0))
    await recorder.aclose()
    assert len(rows(engine)) == int(kept)
    files = [p for p in (tmp_path / "recordings").rglob("*") if p.is_file()] if kept else []
    assert len(files) == int(kept)
    assert counters.counts["missing"] == 0


class FailingFile:
    """A SoundFile stand-in that takes ``good`` frames and then fails like a full disk.

    The write that crosses the limit stores the frames that fit, then raises, as a real one does.
    """

    def __init__(self, real: sf.SoundFile, good: int) -> None:
        self.real = real
        self.good = good

    def write(self, data: Block) -> None:
        fits = data[: max(self.good, 0)]
        self.good -= len(fits)
        if len(fits):
            self.real.write(fits)
        if len(fits) < len(data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self) -> None:
        self.real.flush()

    def close(self) -> None:
        self.real.close()


class FullDiskStore(RecordingStore):
    """The first recording's writer fails after ``good`` frames; later ones work."""

    def __init__(self, *args: Any, good: int) -> None:
        super().__init__(*args)
        self.good = good
        self.failures = 1

    def open_part(self, paths: RecordingPaths, call: Call, samplerate: int, channels: int) -> Any:
        real = super().open_part(paths, call, samplerate, channels)
        if self.failures:
            self.failures -= 1
            return FailingFile(real, self.good)
        return real


async def test_disk_full_keeps_what_was_written_and_the_next_call_records(
    tmp_path: Path, engine: Engine, counters: FakeCounters
) -> None:
    sources = [ScriptedSource(), ScriptedSource()]
    # 50 blocks of 160 frames go through (no pre-roll: nothing came before the answer).
    store = FullDiskStore(tmp_path, engine, good=50 * 160)
    feed = iter(sources)
    recorder = make_recorder(tmp_path, engine, counters, lambda call: next(feed), store=store)
    first = make_call("call-1", talk=3.0)
    await recorder.notify(CallEvent(CallEventKind.STARTED, first[0], T0))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, first[1], T0))
    signal = tone(3.0, freq=300)
    sources[0].push(signal)
    await recorder.notify(CallEvent(CallEventKind.ENDED, first[2], T0))
    second = make_call("call-2", talk=1.0)
    await recorder.notify(CallEvent(CallEventKind.STARTED, second[0], T0))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, second[1], T0))
    sources[1].push(tone(1.0))
    await recorder.notify(CallEvent(CallEventKind.ENDED, second[2], T0))
    await recorder.aclose()

    failed, ok = rows(engine)
    assert failed.status == "partial"
    assert failed.flags is not None
    assert "disk_full" in failed.flags.split(",")
    assert failed.seconds == pytest.approx(50 * 160 / RATE)
    data, _ = sf.read(tmp_path / failed.path_or_uri, dtype="int16")
    np.testing.assert_array_equal(data, signal[: 50 * 160, 0])
    assert failed.sha256 == hashlib.sha256((tmp_path / failed.path_or_uri).read_bytes()).hexdigest()
    assert counters.counts["error:disk_full"] == 1
    assert (ok.status, ok.flags, ok.seconds) == ("complete", None, pytest.approx(1.0))


async def test_unplugged_box_closes_the_recording_and_the_next_call_records(
    tmp_path: Path, engine: Engine, counters: FakeCounters
) -> None:
    sources = [ScriptedSource(), ScriptedSource()]
    feed = iter(sources)
    recorder = make_recorder(tmp_path, engine, counters, lambda call: next(feed))
    first = make_call("call-1", talk=4.0)
    await recorder.notify(CallEvent(CallEventKind.STARTED, first[0], T0))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, first[1], T0))
    box = sources[0]
    box.push(tone(1.0))
    assert box.sink is not None
    box.sink.error("audio stream stopped")  # PortAudio's finished callback on unplug
    box.push(tone(1.0))  # nothing after the error may be written
    await recorder.notify(CallEvent(CallEventKind.ENDED, first[2], T0))

    second = make_call("call-2", talk=1.0)
    await recorder.notify(CallEvent(CallEventKind.STARTED, second[0], T0))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, second[1], T0))
    sources[1].push(tone(1.0))
    await recorder.notify(CallEvent(CallEventKind.ENDED, second[2], T0))
    await recorder.aclose()
    lost, ok = rows(engine)
    assert lost.status == "partial"
    assert set(lost.flags.split(",")) == {"device_lost", "short"}  # type: ignore[union-attr]
    assert lost.seconds == pytest.approx(1.0)
    assert counters.counts["error:device_lost"] == 1
    assert counters.counts["suspect:short"] == 1
    assert ok.status == "complete"


async def test_a_box_that_goes_quiet_is_detected_as_lost(
    tmp_path: Path, engine: Engine, counters: FakeCounters
) -> None:
    source = ScriptedSource()
    recorder = make_recorder(tmp_path, engine, counters, source)
    started, answered, ended = make_call(talk=1.0)
    await recorder.notify(CallEvent(CallEventKind.STARTED, started, T0))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, answered, T0))
    source.push(tone(1.0))
    await asyncio.sleep(1.0)  # over the 0.5 s stall timeout with no audio
    await recorder.notify(CallEvent(CallEventKind.ENDED, ended, T0))
    await recorder.aclose()
    [row] = rows(engine)
    assert row.status == "partial"
    assert row.flags == "device_lost"
    assert counters.counts["error:device_lost"] == 1


async def test_device_that_cannot_open_makes_a_missing_recording(
    tmp_path: Path, engine: Engine, counters: FakeCounters
) -> None:
    recorder = make_recorder(tmp_path, engine, counters, ScriptedSource(fail_start=True))
    started, answered, ended = make_call(talk=30.0)
    for kind, call in (
        (CallEventKind.STARTED, started),
        (CallEventKind.ANSWERED, answered),
        (CallEventKind.ENDED, ended),
    ):
        await recorder.notify(CallEvent(kind, call, T0))
    await recorder.aclose()
    [row] = rows(engine)
    assert row.status == "failed"
    assert row.seconds == 0
    assert row.bytes == 0
    assert row.flags == "missing,device_open"
    assert counters.counts["missing"] == 1
    assert counters.counts["error:device_open"] == 1


@pytest.mark.parametrize(
    ("channels", "silence", "talk", "flags"),
    [
        (1, [0], 2.0, "silent"),
        (2, [1], 2.0, "one_sided"),
        (1, [], 60.0, "short"),
    ],
)
async def test_suspect_recordings_are_flagged_and_counted(
    tmp_path: Path,
    engine: Engine,
    counters: FakeCounters,
    channels: int,
    silence: list[int],
    talk: float,
    flags: str,
) -> None:
    source = ScriptedSource(channels)
    recorder = make_recorder(tmp_path, engine, counters, source, pre_roll=0)
    started, answered, ended = make_call(talk=talk)
    await recorder.notify(CallEvent(CallEventKind.STARTED, started, T0))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, answered, T0))
    audio = tone(2.0, channels=channels)
    audio[:, silence] = 0
    source.push(audio)
    await recorder.notify(CallEvent(CallEventKind.ENDED, ended, T0))
    await recorder.aclose()
    [row] = rows(engine)
    assert (row.status, row.flags) == ("complete", flags)
    assert counters.counts[f"suspect:{flags}"] == 1


async def test_overruns_are_counted_and_flagged(
    tmp_path: Path, engine: Engine, counters: FakeCounters
) -> None:
    source = ScriptedSource()
    recorder = make_recorder(tmp_path, engine, counters, source)
    started, answered, ended = make_call(talk=2.0)
    await recorder.notify(CallEvent(CallEventKind.STARTED, started, T0))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, answered, T0))
    source.push(tone(1.0))
    assert source.sink is not None
    source.sink.overrun()
    source.push(tone(1.0))
    await recorder.notify(CallEvent(CallEventKind.ENDED, ended, T0))
    await recorder.aclose()
    [row] = rows(engine)
    assert row.flags == "overrun"
    assert counters.counts["overrun"] == 1


async def test_a_writer_far_behind_drops_blocks_and_counts_them(
    tmp_path: Path, engine: Engine, counters: FakeCounters
) -> None:
    source = ScriptedSource()
    recorder = Recorder(
        RecordingSection(enabled=True, pre_roll=0),
        RecordingStore(tmp_path, engine),
        lambda call: source,
        counters,
        max_pending_blocks=0,  # every block finds the queue "full"
    )
    recorder.start()
    started, answered, ended = make_call(talk=1.0)
    await recorder.notify(CallEvent(CallEventKind.STARTED, started, T0))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, answered, T0))
    source.push(tone(0.1))
    await recorder.notify(CallEvent(CallEventKind.ENDED, ended, T0))
    await recorder.aclose()
    assert counters.counts["overrun"] == 5
    assert recorder.writer_stats.dropped_frames == 800


async def test_synthetic_source_records_in_real_time(
    tmp_path: Path, engine: Engine, counters: FakeCounters
) -> None:
    recorder = make_recorder(tmp_path, engine, counters, lambda call: SyntheticSource(3, RATE, 2), pre_roll=0)
    started, answered, ended = make_call(talk=0.5)
    await recorder.notify(CallEvent(CallEventKind.STARTED, started, T0))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, answered, T0))
    await asyncio.sleep(0.6)
    await recorder.notify(CallEvent(CallEventKind.ENDED, ended, T0))
    await recorder.aclose()
    [row] = rows(engine)
    assert row.channels == 2
    assert row.status == "complete"
    assert 0.4 < row.seconds < 1.0


async def test_shutdown_closes_a_recording_in_progress(
    tmp_path: Path, engine: Engine, counters: FakeCounters
) -> None:
    source = ScriptedSource()
    recorder = make_recorder(tmp_path, engine, counters, source)
    started, answered, _ = make_call()
    await recorder.notify(CallEvent(CallEventKind.STARTED, started, T0))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, answered, T0))
    source.push(tone(1.0))
    await recorder.aclose()
    [row] = rows(engine)
    assert row.status == "complete"
    assert row.seconds == pytest.approx(1.0)


# --- configuration ---------------------------------------------------------------------------


def test_recording_and_line_audio_config(tmp_path: Path) -> None:
    from agent.config import load_config

    path = tmp_path / "agent.toml"
    path.write_text(
        '[recording]\nenabled = true\ncodec = "opus"\nsample_rate = 16000\nstart_on = "off_hook"\n'
        'policy = "outbound"\nmin_talk_seconds = 5\nretention_days = 180\n'
        '[[devices]]\nid = "box"\ntype = "simulator"\n'
        '[[lines]]\nid = "l2"\ndevice = "box"\nport = "2"\naudio_device = 3\naudio_channels = [2]\n',
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.recording.codec == "opus"
    assert config.recording.retention_days == 180
    assert (config.lines[0].audio_device, config.lines[0].audio_channels) == (3, [2])
    assert RecordingSection().enabled is False
    assert RecordingSection().codec == "flac"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[recording]\ncodec = "opus"\nsample_rate = 11025\n', "opus records at"),
        ('[recording]\ncodec = "mp3"\n', "recording.codec"),
        ('[recording]\nstart_on = "dial"\n', "recording.start_on"),
        (
            '[[devices]]\nid = "b"\ntype = "x"\n[[lines]]\nid = "l"\ndevice = "b"\naudio_channels = [0]\n',
            "distinct",
        ),
    ],
)
def test_bad_recording_config_is_refused(tmp_path: Path, text: str, message: str) -> None:
    from agent.config import load_config
    from agent.errors import ConfigError

    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_line_sources_prefer_the_configured_audio_device() -> None:
    from agent.config import Config
    from agent.seat.audio import SoundDeviceSource
    from agent.seat.recorder import line_sources

    config = Config.model_validate(
        {
            "recording": {"enabled": True},
            "devices": [{"id": "box", "type": "simulator"}],
            "lines": [{"id": "l1", "device": "box", "audio_device": "USB Audio", "audio_channels": [2]}],
        }
    )

    class Offers:
        def audio_source(self, line: str, call_uuid: str, samplerate: int) -> SyntheticSource:
            return SyntheticSource(1, samplerate)

    factory = line_sources(config, {"box": Offers(), "other": object()})
    started = make_call()[0]
    chosen = factory(started)
    assert isinstance(chosen, SoundDeviceSource)
    assert (chosen.device, chosen.channels) == ("USB Audio", 1)
    synthetic = factory(dataclasses.replace(started, line="l9"))
    assert isinstance(synthetic, SyntheticSource)
    assert factory(dataclasses.replace(started, device_id="other")) is None


# --- resampling ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate_in", "rate_out"), [(48000, 8000), (44100, 8000), (44100, 16000), (8000, 16000)]
)
def test_resampler_keeps_speech_and_length_whatever_the_block_size(rate_in: int, rate_out: int) -> None:
    t = np.arange(rate_in * 2) / rate_in
    signal = (np.sin(2 * np.pi * 1000 * t) * 10000).astype(np.int16)[:, None]
    whole = Resampler(rate_in, rate_out, 1).process(signal)
    for size in (7, 441):
        streaming = Resampler(rate_in, rate_out, 1)
        pieces = [streaming.process(signal[i : i + size]) for i in range(0, len(signal), size)]
        np.testing.assert_array_equal(np.concatenate(pieces), whole)
    assert abs(len(whole) - 2 * rate_out) <= 2
    spectrum = np.abs(np.fft.rfft(whole[:, 0].astype(np.float64)))
    assert np.fft.rfftfreq(len(whole), 1 / rate_out)[np.argmax(spectrum)] == pytest.approx(1000, abs=2)
    assert dbfs(whole[100:])[0] == pytest.approx(dbfs(signal)[0], abs=0.5)


def test_resampler_removes_what_the_lower_rate_cannot_carry() -> None:
    t = np.arange(48000) / 48000
    whistle = (np.sin(2 * np.pi * 6000 * t) * 10000).astype(np.int16)[:, None]  # over 8 kHz's Nyquist
    assert dbfs(Resampler(48000, 8000, 1).process(whistle)[100:])[0] < -60


async def test_a_device_at_another_rate_is_recorded_at_the_configured_one(
    tmp_path: Path, engine: Engine, counters: FakeCounters
) -> None:
    source = ScriptedSource()
    source.device_rate = 48000  # type: ignore[attr-defined]
    recorder = make_recorder(tmp_path, engine, counters, source, pre_roll=0)
    started, answered, ended = make_call(talk=2.0)
    await recorder.notify(CallEvent(CallEventKind.STARTED, started, T0))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, answered, T0))
    t = np.arange(48000 * 2) / 48000
    source.push((np.sin(2 * np.pi * 440 * t) * 10000).astype(np.int16)[:, None], block=480)
    await recorder.notify(CallEvent(CallEventKind.ENDED, ended, T0))
    await recorder.aclose()
    [row] = rows(engine)
    assert row.sample_rate == RATE
    assert row.seconds == pytest.approx(2.0, abs=0.01)
    data, rate = sf.read(tmp_path / row.path_or_uri, dtype="int16")
    assert rate == RATE
    peak = np.fft.rfftfreq(len(data), 1 / RATE)[np.argmax(np.abs(np.fft.rfft(data.astype(np.float64))))]
    assert peak == pytest.approx(440, abs=2)


# --- the writer thread -----------------------------------------------------------------------


async def test_the_writer_thread_starts_in_start_not_in_the_constructor(
    tmp_path: Path, engine: Engine
) -> None:
    import threading

    from agent.seat.recording.commands import Finish
    from agent.seat.recording.writer import Writer

    before = {t.name for t in threading.enumerate()}
    writer = Writer(
        RecordingStore(tmp_path, engine), None, stall_timeout=1, first_block_timeout=1, max_pending_blocks=10
    )
    assert {t.name for t in threading.enumerate()} == before
    with pytest.raises(RuntimeError, match="not started"):
        writer.put(Finish(1, concurrent.futures.Future()))
    writer.start()
    try:
        assert "recorder-writer" in {t.name for t in threading.enumerate()}
        assert await asyncio.wrap_future(writer.finish(404)) is None  # no such capture
    finally:
        await asyncio.to_thread(writer.close)
    assert "recorder-writer" not in {t.name for t in threading.enumerate()}


async def test_a_recorder_never_started_refuses_calls_and_closes(tmp_path: Path, engine: Engine) -> None:
    recorder = Recorder(
        RecordingSection(enabled=True), RecordingStore(tmp_path, engine), lambda c: ScriptedSource()
    )
    with pytest.raises(RuntimeError, match="not started"):
        await recorder.notify(CallEvent(CallEventKind.STARTED, make_call()[0], T0))
    await recorder.aclose()


class CountingStore(RecordingStore):
    """Counts the writes that reach each open file."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.writes: list[int] = []

    def open_part(self, paths: RecordingPaths, call: Call, samplerate: int, channels: int) -> Any:
        real = super().open_part(paths, call, samplerate, channels)
        writes = self.writes

        class Counting:
            def write(self, data: Block) -> None:
                writes.append(len(data))
                real.write(data)

            def flush(self) -> None:
                real.flush()

            def close(self) -> None:
                real.close()

        return Counting()


async def test_blocks_are_written_in_batches_and_a_kill_loses_at_most_one(
    tmp_path: Path, engine: Engine, counters: FakeCounters
) -> None:
    from agent.seat.recording.batching import batch_frames

    source = ScriptedSource()
    store = CountingStore(tmp_path, engine)
    recorder = make_recorder(tmp_path, engine, counters, source, store=store, codec="wav", pre_roll=0)
    started, answered, ended = make_call(talk=3.0)
    await recorder.notify(CallEvent(CallEventKind.STARTED, started, T0))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, answered, T0))
    signal = ramp(RATE * 3)
    source.push(signal[: RATE * 2])
    deadline = asyncio.get_running_loop().time() + 5
    while recorder.writer_stats.blocks < RATE * 2 // 160:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    # What a kill now would leave: the .part's bytes as they are on disk.
    [part] = list((tmp_path / "recordings").rglob("*.part"))
    on_disk = RecordingStore.readable_frames(part)
    batch = batch_frames(RATE)
    assert batch == 4096
    assert RATE * 2 - batch < on_disk <= RATE * 2
    source.push(signal[RATE * 2 :])
    await recorder.notify(CallEvent(CallEventKind.ENDED, ended, T0))
    await recorder.aclose()
    # Writes end where the file holds batch * k + 1 frames (where libsndfile's FLAC encoder emits).
    ends = [*range(batch + 1, RATE * 3, batch), RATE * 3]
    assert store.writes == [b - a for a, b in zip([0, *ends], ends, strict=False)]
    [row] = rows(engine)
    data, _ = sf.read(tmp_path / row.path_or_uri, dtype="int16", always_2d=True)
    np.testing.assert_array_equal(data, signal)


async def test_batched_flac_keeps_on_disk_what_unbatched_writes_kept(
    tmp_path: Path, engine: Engine, counters: FakeCounters
) -> None:
    """A kill loses no more than before batching: libsndfile's encoder holds as much anyway."""
    source = ScriptedSource()
    recorder = make_recorder(tmp_path, engine, counters, source, pre_roll=0)
    started, answered, ended = make_call(talk=3.0)
    await recorder.notify(CallEvent(CallEventKind.STARTED, started, T0))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, answered, T0))
    signal = (np.random.default_rng(3).standard_normal((RATE * 3, 1)) * 5000).astype(np.int16)
    reference = tmp_path / "unbatched.flac"
    with sf.SoundFile(reference, "w", RATE, 1, format="FLAC", subtype="PCM_16") as unbatched:
        step = RATE * 2 // 5  # 0.4 s: every phase of the 0.51 s batches
        for start in range(0, len(signal), step):
            piece = signal[start : start + step]
            source.push(piece)
            for block in range(0, len(piece), 160):
                unbatched.write(piece[block : block + 160])
            deadline = asyncio.get_running_loop().time() + 5
            while recorder.writer_stats.frames < start + len(piece):
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.01)
            [part] = list((tmp_path / "recordings").rglob("*.part"))
            kept = RecordingStore.readable_frames(part)
            assert kept >= RecordingStore.readable_frames(reference), f"after {start + len(piece)} frames"
    await recorder.notify(CallEvent(CallEventKind.ENDED, ended, T0))
    await recorder.aclose()
    [row] = rows(engine)
    assert row.seconds == pytest.approx(3.0)
