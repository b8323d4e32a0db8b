"""Recording with real system parts: a PulseAudio device, SIGKILL mid-call, and a full filesystem.

- Through PulseAudio (``pulse_fixture``): a known signal is played into the
  null sink while the recorder records from sounddevice's ``pulse`` device as it
  does in production; the file must correlate with what was played (the lag is
  found by cross-correlation, never assumed), have the right length, and start
  and stop with the call events.
- SIGKILL: a child process records a call from the same device and is killed
  mid-call; the next start's recovery must give a file that plays in one read,
  with the audio up to the kill.
- Disk full: a small tmpfs (mounted by the test; needs root, skipped otherwise
  because the unit tests inject the same error) fills up mid-call.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pulse_fixture import RATE, PulseServer, pulse  # noqa: F401  (the fixture)
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from agent.config import RecordingSection
from agent.events import Call, CallEvent, CallEventKind, Direction, Disposition
from agent.seat.audio import SoundDeviceSource
from agent.seat.recorder import Recorder
from storage.db import make_engine, upgrade
from storage.models import CallRecord, Recording
from storage.recordings import RecordingStore

ROOT = Path(__file__).resolve().parents[2]


def clip(path: Path, seconds: float, seed: int) -> np.ndarray:
    """Write a noise clip (white noise is unambiguous to correlate) and return its samples."""
    rng = np.random.default_rng(seed)
    samples = (rng.standard_normal(int(seconds * RATE)) * 5000).astype(np.int16)
    sf.write(path, samples, RATE, subtype="PCM_16")
    return samples


def align(recording: np.ndarray, reference: np.ndarray) -> tuple[int, float]:
    """Where ``reference`` starts in ``recording`` (FFT cross-correlation) and how well it matches there.

    The lag may be negative: the clip began a few samples before the recorder started keeping
    audio (the player and the call's answer race by a millisecond or so).
    """
    rec = recording.astype(np.float64)
    ref = reference.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(rec) + len(ref))))
    xcorr = np.fft.irfft(np.fft.rfft(rec, n) * np.conj(np.fft.rfft(ref, n)), n)
    best = int(np.argmax(xcorr))
    lag = best if best < len(rec) else best - n  # indices past the recording wrap to negative lags
    if lag >= 0:
        overlap = min(len(ref), len(rec) - lag)
        a, b = rec[lag : lag + overlap], ref[:overlap]
    else:
        overlap = min(len(ref) + lag, len(rec))
        a, b = rec[:overlap], ref[-lag : -lag + overlap]
    return lag, float(np.corrcoef(a, b)[0, 1]) if overlap > 10 else 0.0


def make_calls(uuid: str, answered_at: datetime, ended_at: datetime) -> tuple[Call, Call, Call]:
    started = Call(
        uuid=uuid,
        seat="seat-1",
        device_id="usb-box",
        line="l1",
        rep="alice",
        team="north",
        direction=Direction.IN,
        started_at=datetime.now(UTC),
    )
    answered = Call(**{**_fields(started), "answered_at": answered_at})
    ended = Call(
        **{
            **_fields(answered),
            "ended_at": ended_at,
            "talk_seconds": (ended_at - answered_at).total_seconds(),
            "disposition": Disposition.ANSWERED,
        }
    )
    return started, answered, ended


def _fields(call: Call) -> dict[str, object]:
    return {name: getattr(call, name) for name in Call.__dataclass_fields__}


@pytest.fixture
def engine() -> Engine:
    engine = make_engine("sqlite://")
    upgrade(engine)
    return engine


async def wait_for_audio(recorder: Recorder, timeout: float = 10.0) -> None:
    """Capture through the ALSA pulse plugin takes 0.9-1.8 s to start: wait for the first block."""
    deadline = time.monotonic() + timeout
    while recorder.writer_stats.blocks == 0:
        assert time.monotonic() < deadline, "no audio from the pulse device"
        await asyncio.sleep(0.02)


async def test_recording_through_pulseaudio_follows_the_call(
    pulse: PulseServer,  # noqa: F811
    tmp_path: Path,
    engine: Engine,
) -> None:
    before = clip(tmp_path / "ringing.wav", 1.0, seed=1)
    talk = clip(tmp_path / "talk.wav", 2.0, seed=2)
    after = clip(tmp_path / "after.wav", 1.0, seed=3)
    settings = RecordingSection(enabled=True, pre_roll=0.5)
    recorder = Recorder(
        settings,
        RecordingStore(tmp_path / "data", engine),
        lambda call: SoundDeviceSource(pulse.device, [1], RATE),
    )
    recorder.start()
    started, _, _ = make_calls("a1b2c3d4-0000-4000-8000-00000000beef", datetime.now(UTC), datetime.now(UTC))
    await recorder.notify(CallEvent(CallEventKind.STARTED, started, started.started_at))
    await wait_for_audio(recorder)
    await asyncio.to_thread(pulse.play(tmp_path / "ringing.wav").wait)  # before the answer

    answered_at = datetime.now(UTC)
    t_answer = time.monotonic()
    answered = Call(**{**_fields(started), "answered_at": answered_at})
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, answered, answered_at))
    await asyncio.to_thread(pulse.play(tmp_path / "talk.wav").wait)
    await asyncio.sleep(0.3)  # the tail of the clip still in the device's buffers
    _, _, ended = make_calls(started.uuid, answered_at, datetime.now(UTC))
    t_end = time.monotonic()
    await recorder.notify(CallEvent(CallEventKind.ENDED, ended, ended.ended_at or answered_at))
    await asyncio.to_thread(pulse.play(tmp_path / "after.wav").wait)  # after the end: not recorded
    await recorder.aclose()

    with Session(engine) as session:
        row = session.scalars(select(Recording)).one()
    assert (row.status, row.codec, row.sample_rate, row.flags) == ("complete", "flac", RATE, None)
    data, rate = sf.read(tmp_path / "data" / row.path_or_uri, dtype="int16")
    assert rate == RATE
    # Length: from the answer (less the pre-roll) to the end, as the wall clock saw it.
    assert len(data) / RATE == pytest.approx(t_end - t_answer + 0.5, abs=0.35)
    lag, match = align(data, talk)
    assert match > 0.95, f"the talk clip is not in the recording (best correlation {match:.3f})"
    assert lag + len(talk) <= len(data)  # all of it
    _, match_after = align(data, after)
    assert match_after < 0.3  # the audio after the end was not recorded
    # Only the pre-roll's half second of the ringing clip may be in the file, never its start.
    _, match_head = align(data, before[: RATE // 4])
    assert match_head < 0.3


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from agent.seat.audio import SoundDeviceSource
    from agent.config import RecordingSection
    from agent.events import Call, CallEvent, CallEventKind, Direction
    from agent.seat.recorder import Recorder
    from storage.recordings import RecordingStore

    async def main():
        recorder = Recorder(
            RecordingSection(enabled=True, pre_roll=0),
            RecordingStore(Path(sys.argv[1])),
            lambda call: SoundDeviceSource("pulse", [1], 8000),
        )
        recorder.start()
        now = datetime.now(UTC)
        call = Call(uuid=sys.argv[2], seat="s", device_id="usb-box", line="l1", rep="alice",
                    team="north", direction=Direction.IN, started_at=now)
        await recorder.notify(CallEvent(CallEventKind.STARTED, call, now))
        while recorder.writer_stats.blocks == 0:
            await asyncio.sleep(0.02)
        answered = Call(**{**{f: getattr(call, f) for f in Call.__dataclass_fields__}, "answered_at": now})
        await recorder.notify(CallEvent(CallEventKind.ANSWERED, answered, now))
        print("recording", flush=True)
        await asyncio.sleep(120)

    asyncio.run(main())
    """
)


def test_sigkill_mid_call_leaves_a_recording_that_recovers(
    pulse: PulseServer,  # noqa: F811
    tmp_path: Path,
    engine: Engine,
) -> None:
    uuid = "dead0000-0000-4000-8000-00000000c0de"
    speech = clip(tmp_path / "speech.wav", 6.0, seed=4)
    data_dir = tmp_path / "data"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), uuid],
        cwd=ROOT,
        env=pulse.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "recording"
        player = pulse.play(tmp_path / "speech.wav")
        pulse.wait_playing()  # count the 4 s from when the clip really plays, not from launching paplay
        time.sleep(4.0)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        player.terminate()
        player.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    [part] = list(data_dir.rglob("*.part"))

    # The next start.
    [facts] = RecordingStore(data_dir, engine).recover()
    assert facts.status == "recovered"
    final = data_dir / facts.path
    assert final.name == f"{uuid}.flac"
    assert not part.exists()
    data, rate = sf.read(final, dtype="int16")  # one read of the whole file: it is playable
    assert rate == RATE
    assert facts.seconds == pytest.approx(len(data) / RATE, abs=0.01)
    lag, match = align(data, speech)
    assert match > 0.95
    heard = (len(data) - lag) / RATE  # seconds of the clip in the recovered file
    # Up to the kill at 4 s into the clip, less what libsndfile's FLAC encoder still held (8192 frames).
    assert 4.0 - 8192 / RATE - 0.5 <= heard <= 4.0 + 0.3
    with Session(engine) as session:
        row = session.scalars(select(Recording)).one()
        assert (row.call_uuid, row.status) == (uuid, "recovered")
        assert session.scalars(select(CallRecord.uuid)).one() == uuid  # linked to its call


async def test_sound_server_gone_mid_call_then_back_records_again(
    pulse: PulseServer,  # noqa: F811
    tmp_path: Path,
    engine: Engine,
) -> None:
    """The sound server dying is what an unplugged USB box looks like to PortAudio's ALSA path."""
    talk = clip(tmp_path / "talk.wav", 2.0, seed=7)
    recorder = Recorder(
        RecordingSection(enabled=True, pre_roll=0),
        RecordingStore(tmp_path / "data", engine),
        lambda call: SoundDeviceSource(pulse.device, [1], RATE),
        stall_timeout=1.0,
    )
    recorder.start()
    now = datetime.now(UTC)
    first = make_calls("0b0b0b0b-0000-4000-8000-000000000001", now, now)
    second = make_calls("0b0b0b0b-0000-4000-8000-000000000002", now, now)
    try:
        await recorder.notify(CallEvent(CallEventKind.STARTED, first[0], now))
        await wait_for_audio(recorder)
        await recorder.notify(CallEvent(CallEventKind.ANSWERED, first[1], now))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(pulse.stop)  # unplugged
        await asyncio.sleep(2.5)  # over the stall time-out
        await recorder.notify(CallEvent(CallEventKind.ENDED, first[2], now))
        await asyncio.to_thread(pulse.start)  # plugged back in
        blocks = recorder.writer_stats.blocks
        await recorder.notify(CallEvent(CallEventKind.STARTED, second[0], now))
        deadline = time.monotonic() + 10
        while recorder.writer_stats.blocks == blocks:
            assert time.monotonic() < deadline, "no audio after the server came back"
            await asyncio.sleep(0.02)
        await recorder.notify(CallEvent(CallEventKind.ANSWERED, second[1], now))
        await asyncio.to_thread(pulse.play(tmp_path / "talk.wav").wait)
        # Let the capture's tail arrive before the call ends (trailing silence does not hurt).
        await asyncio.sleep(1.0)
        await recorder.notify(CallEvent(CallEventKind.ENDED, second[2], now))
    finally:
        await recorder.aclose()
    with Session(engine) as session:
        rows = {r.call_uuid: r for r in session.scalars(select(Recording))}
    lost, ok = rows[first[0].uuid], rows[second[0].uuid]
    assert lost.status == "partial"
    assert "device_lost" in (lost.flags or "")
    assert 0.5 < lost.seconds < 3.0
    assert ok.status == "complete"
    data, _ = sf.read(tmp_path / "data" / ok.path_or_uri, dtype="int16")
    assert align(data, talk)[1] > 0.95


class NoiseSource:
    """Pushes incompressible audio as fast as asked (no device needed for the disk test)."""

    samplerate = RATE
    channels = 1

    def __init__(self) -> None:
        self.sink = None

    def start(self, sink: object) -> None:
        self.sink = sink

    def stop(self) -> None:
        self.sink = None

    def push(self, seconds: float, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        audio = (rng.standard_normal((int(seconds * RATE), 1)) * 8000).astype(np.int16)
        for start in range(0, len(audio), 160):
            self.sink.block(audio[start : start + 160].copy())  # type: ignore[attr-defined]
        return audio


@pytest.fixture
def small_disk(tmp_path: Path) -> object:
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        why = f"cannot mount a tmpfs here ({result.stderr.decode().strip()})"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI runs as root and must test a real full disk")
        pytest.skip(f"{why}; the unit tests inject ENOSPC instead")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


async def test_full_disk_stops_cleanly_and_recording_resumes(small_disk: Path, engine: Engine) -> None:
    filler = small_disk / "filler"
    # The filler leaves ~90 KB for the first call and, once deleted, room to repair it.
    filler.write_bytes(os.urandom(160 * 1024))
    sources = [NoiseSource(), NoiseSource()]
    counts: dict[str, int] = {}

    class Counts:
        def recording_bytes(self, n: int) -> None:
            counts["bytes"] = counts.get("bytes", 0) + n

        def recording_error(self, reason: str) -> None:
            counts[reason] = counts.get(reason, 0) + 1

        def recording_overrun(self) -> None:
            counts["overrun"] = counts.get("overrun", 0) + 1

        def recording_missing(self) -> None:
            counts["missing"] = counts.get("missing", 0) + 1

        def recording_suspect(self, reason: str) -> None:
            counts[reason] = counts.get(reason, 0) + 1

    store = RecordingStore(small_disk, engine)
    feed = iter(sources)
    recorder = Recorder(RecordingSection(enabled=True, pre_roll=0), store, lambda call: next(feed), Counts())
    recorder.start()
    now = datetime.now(UTC)
    first = make_calls("f1f1f1f1-0000-4000-8000-000000000001", now, now)
    await recorder.notify(CallEvent(CallEventKind.STARTED, first[0], now))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, first[1], now))
    audio = sources[0].push(20.0, seed=5)  # ~320 KB of PCM: more than the disk holds
    await recorder.notify(CallEvent(CallEventKind.ENDED, first[2], now))

    with Session(engine) as session:
        row = session.scalars(select(Recording)).one()
    assert counts["disk_full"] == 1
    assert row.status == "partial"
    assert "disk_full" in (row.flags or "")
    written = small_disk / row.path_or_uri
    assert written.exists()
    # ~90 KB of noise as FLAC is about 6 s; what matters is that it stopped far short of the 20 s played.
    assert 1.0 < row.seconds < 10.0
    # What was written reads back (block by block: a torn FLAC) and is the start of the call.
    got = RecordingStore.readable_frames(written)
    assert got == round(row.seconds * RATE)
    with sf.SoundFile(written) as f:
        head = f.read(RATE, dtype="int16", always_2d=True)
    np.testing.assert_array_equal(head, audio[:RATE])

    # Space is freed; the agent goes on: the next call records, and the next start repairs the first.
    filler.unlink()
    second = make_calls("f2f2f2f2-0000-4000-8000-000000000002", now, now)
    await recorder.notify(CallEvent(CallEventKind.STARTED, second[0], now))
    await recorder.notify(CallEvent(CallEventKind.ANSWERED, second[1], now))
    sources[1].push(1.0, seed=6)
    await recorder.notify(CallEvent(CallEventKind.ENDED, second[2], now))
    await recorder.aclose()
    recovered = store.recover()
    with Session(engine) as session:
        rows = {r.call_uuid: r for r in session.scalars(select(Recording))}
    assert rows[second[0].uuid].status == "complete"
    assert rows[second[0].uuid].seconds == pytest.approx(1.0)
    if row.path_or_uri.endswith(".part"):  # no room for a repaired copy at the time: repaired now
        assert [f.call_uuid for f in recovered] == [first[0].uuid]
        assert rows[first[0].uuid].status == "recovered"
        data, _ = sf.read(small_disk / rows[first[0].uuid].path_or_uri, dtype="int16", always_2d=True)
        np.testing.assert_array_equal(data, audio[: len(data)])
    assert len(rows) == 2


@pytest.mark.slow
async def test_the_agent_records_simulated_calls_and_recovers_a_crash_leftover(tmp_path: Path) -> None:
    """The runtime wiring: ``[recording] enabled`` on simulated lines gives files and rows, as `make run`."""
    from agent.config import load_config
    from agent.plugins import make_plugin_manager
    from agent.seat.devices import DeviceRegistry
    from agent.seat.runner import Agent

    # A leftover of a "previous run": the start-up must repair it before taking calls.
    leftover = RecordingStore(tmp_path)
    crashed = make_calls("c4a5e000-0000-4000-8000-000000000001", datetime.now(UTC), datetime.now(UTC))[1]
    paths = leftover.paths(crashed.uuid, crashed.started_at, "flac")
    live = leftover.open_part(paths, crashed, RATE, 1)
    live.write(np.zeros((RATE * 3, 1), dtype=np.int16) + 1000)
    live.flush()
    torn = paths.part.read_bytes()
    live.close()
    paths.part.write_bytes(torn)

    speed = 20.0
    overrides = {
        "agent": {"seat": "seat-rec", "data_dir": str(tmp_path)},
        "web": {"enabled": False},
        "metrics": {"enabled": False},
        "tracker": {"ring_timeout": 8.0 / speed, "dial_timeout": 4.0 / speed},
        "recording": {"enabled": True, "policy": "answered"},
        "devices": [
            {
                "id": "sim",
                "type": "simulator",
                "lines": 2,
                "rate": 30.0,
                "seed": 11,
                "speed": speed,
                "answer_rate": 1.0,
                "talk_median": 20.0,
            }
        ],
    }
    pm = make_plugin_manager(load_entrypoints=False)
    config = load_config(None, DeviceRegistry.from_plugins(pm), overrides=overrides)
    agent = Agent(config, pm)
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    await asyncio.wait_for(agent.started.wait(), 30)
    await asyncio.sleep(8.0)
    stop.set()
    await asyncio.wait_for(run, 60)

    engine = make_engine(config.database_url)
    try:
        with Session(engine) as session:
            rows = list(session.scalars(select(Recording)))
            answered = set(
                session.scalars(select(CallRecord.uuid).where(CallRecord.disposition == "answered"))
            )
    finally:
        engine.dispose()
    by_call = {r.call_uuid: r for r in rows}
    assert by_call[crashed.uuid].status == "recovered"
    assert by_call[crashed.uuid].seconds == pytest.approx(3.0, abs=1.1)
    made = [r for r in rows if r.call_uuid != crashed.uuid]
    assert made, "no simulated call was recorded"
    assert {r.call_uuid for r in made} <= answered | {crashed.uuid}
    for row in made:
        assert row.status == "complete"
        data, rate = sf.read(tmp_path / row.path_or_uri, dtype="int16", always_2d=True)
        assert rate == RATE
        assert len(data) / RATE == pytest.approx(row.seconds, abs=0.01)
    assert not list(tmp_path.rglob("*.part"))
