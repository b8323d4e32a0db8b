"""Call recording costs, with the CLI encoders as peers.

CPU per recorded channel, bytes per hour per codec, and the writer's latency and dropped frames
under load.

Run: .venv/bin/python tests/bench/bench_recording.py [--seconds 20] [--realtime 5]

1. Encoding CPU: N channels (1, 8, 32) of speech-like audio (the simulator's
   synthesiser) pushed through the real recorder (queue, writer thread,
   soundfile) as fast as it takes them; CPU seconds per second of audio per
   channel, at 8 and 16 kHz, FLAC and Opus (and WAV as the floor).
2. Bytes per hour of speech per codec, from the files written.
3. Peers: the same audio (one channel, as WAV) through the ``flac`` and
   ``opusenc`` command-line tools when installed (apt: flac, opus-tools).
4. Under load: 32 channels in real time (20 ms blocks from 32 generator
   threads) while another process keeps one core busy; the writer's block
   latency (queued to written) and dropped frames.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import soundfile as sf

from agent.config import RecordingSection
from agent.events import Call, CallEvent, CallEventKind, Direction, Disposition
from agent.seat.audio import Block, BlockSink
from agent.seat.recorder import Recorder
from plugins.simulator.audio import SpeechSynth, SyntheticSource
from storage.recordings import RecordingStore

BLOCK_SECONDS = 0.02


class PushSource:
    """A source the benchmark pushes pre-rendered blocks through (the PortAudio callback's part)."""

    def __init__(self, samplerate: int) -> None:
        self.samplerate = samplerate
        self.channels = 1
        self.sink: BlockSink | None = None

    def start(self, sink: BlockSink) -> None:
        self.sink = sink

    def stop(self) -> None:
        self.sink = None


def call(n: int) -> tuple[Call, Call, Call]:
    now = datetime.now(UTC)
    started = Call(
        uuid=f"bench-{n:04d}-{time.monotonic_ns()}",
        seat="bench",
        device_id="box",
        line=f"l{n}",
        rep="r",
        team="t",
        direction=Direction.IN,
        started_at=now,
    )
    fields = {name: getattr(started, name) for name in Call.__dataclass_fields__}
    answered = Call(**{**fields, "answered_at": now})
    ended = Call(**{**fields, "answered_at": now, "ended_at": now, "talk_seconds": 0.0})
    ended = Call(**{**{k: getattr(ended, k) for k in fields}, "disposition": Disposition.ANSWERED})
    return started, answered, ended


async def encode_run(
    root: Path, codec: str, rate: int, channels: int, audio: Block
) -> tuple[float, float, int, float]:
    """Record ``channels`` calls of ``audio`` each; CPU s per audio s per channel, bytes/hour, drops, wall."""
    sources = [PushSource(rate) for _ in range(channels)]
    feed = iter(sources)
    recorder = Recorder(
        RecordingSection(enabled=True, codec=codec, sample_rate=rate, pre_roll=0),  # type: ignore[arg-type]
        RecordingStore(root),
        lambda c: next(feed),
        max_pending_blocks=10**9,
    )
    recorder.start()
    calls = [call(n) for n in range(channels)]
    for started, answered, _ in calls:
        await recorder.notify(CallEvent(CallEventKind.STARTED, started, started.started_at))
        await recorder.notify(CallEvent(CallEventKind.ANSWERED, answered, started.started_at))
    block = int(rate * BLOCK_SECONDS)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for start in range(0, len(audio), block):
        piece = audio[start : start + block]
        for source in sources:
            assert source.sink is not None
            source.sink.block(piece.copy())
    for _, _, ended in calls:
        await recorder.notify(CallEvent(CallEventKind.ENDED, ended, ended.started_at))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await recorder.aclose()
    files = [p for p in root.rglob(f"*.{'opus' if codec == 'opus' else codec}")]
    seconds = len(audio) / rate
    size = sum(p.stat().st_size for p in files) / max(len(files), 1)
    return cpu / (seconds * channels), size / seconds * 3600, recorder.writer_stats.dropped_frames, wall


def peer(tool: list[str], wav: Path, out: Path, seconds: float) -> tuple[float, float] | None:
    """CPU s per audio s and bytes/hour of a command-line encoder, or None when it is not installed."""
    if shutil.which(tool[0]) is None:
        return None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    argv = [*tool, str(wav), "-o", str(out)] if tool[0] == "flac" else [*tool, str(wav), str(out)]
    subprocess.run(argv, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu / seconds, out.stat().st_size / seconds * 3600


def _burn(stop: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


async def realtime_run(root: Path, channels: int, seconds: float) -> None:
    recorder = Recorder(
        RecordingSection(enabled=True, codec="flac", sample_rate=8000, pre_roll=0),
        RecordingStore(root),
        lambda c: SyntheticSource(hash(c.uuid) & 0xFFFF, 8000, 1, BLOCK_SECONDS),
    )
    recorder.start()
    calls = [call(n) for n in range(channels)]
    stop = multiprocessing.Event()
    hog = multiprocessing.Process(target=_burn, args=(stop,), daemon=True)
    hog.start()
    try:
        for started, answered, _ in calls:
            await recorder.notify(CallEvent(CallEventKind.STARTED, started, started.started_at))
            await recorder.notify(CallEvent(CallEventKind.ANSWERED, answered, started.started_at))
        cpu0 = time.process_time()
        await asyncio.sleep(seconds)
        cpu = time.process_time() - cpu0
        for _, _, ended in calls:
            await recorder.notify(CallEvent(CallEventKind.ENDED, ended, ended.started_at))
    finally:
        stop.set()
        hog.join(5)
    await recorder.aclose()
    stats = recorder.writer_stats
    mean = stats.total_latency / max(stats.blocks, 1)
    print(
        f"realtime {channels} ch x {seconds:.0f} s FLAC 8 kHz, one core busy elsewhere: "
        f"{stats.blocks} blocks, writer latency mean {mean * 1000:.2f} ms, "
        f"max {stats.max_latency * 1000:.1f} ms, "
        f"dropped frames {stats.dropped_frames}, agent CPU {cpu / seconds * 100:.1f}% of a core"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per channel in the CPU runs")
    parser.add_argument("--realtime", type=float, default=5.0, help="seconds of the real-time run")
    args = parser.parse_args()
    print("codec rate  ch  CPU/ch (% of a core)  bytes/hour/ch  wall s  dropped")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for rate in (8000, 16000):
            audio = SpeechSynth(1, rate, 1).render(int(args.seconds * rate))
            for codec in ("flac", "opus", "wav"):
                for channels in (1, 8, 32):
                    root = base / f"{codec}-{rate}-{channels}"
                    cpu, per_hour, dropped, wall = await encode_run(root, codec, rate, channels, audio)
                    print(
                        f"{codec:5} {rate:5} {channels:3}  {cpu * 100:18.3f}  {per_hour / 1e6:10.2f} MB  "
                        f"{wall:6.2f}  {dropped}"
                    )
                    shutil.rmtree(root)
            wav = base / f"speech-{rate}.wav"
            sf.write(wav, audio, rate, subtype="PCM_16")
            seconds = len(audio) / rate
            for name, tool, out in (
                ("flac CLI (-5)", ["flac", "-s", "-f"], base / "peer.flac"),
                ("opusenc CLI", ["opusenc", "--quiet"], base / "peer.opus"),
            ):
                result = peer(tool, wav, out, seconds)
                if result is None:
                    print(f"peer {name}: not installed")
                else:
                    print(
                        f"peer {name} {rate} Hz: CPU {result[0] * 100:.3f}% of a core, "
                        f"{result[1] / 1e6:.2f} MB/hour"
                    )
        await realtime_run(base / "rt", 32, args.realtime)


if __name__ == "__main__":
    asyncio.run(main())
