"""The ``simulator`` device: phone lines that ring, get answered and dial out on their own.

It needs no hardware, so ``cti-agent demo``, the tests and a new install can
show the whole agent working. Each line plays the calls its
:class:`~plugins.simulator.scenario.Scenario` draws, in real time compressed by
``speed``; it reports hook state and the far end answering (as a PBX would),
and takes click-to-dial and hang-up commands.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import ClassVar

from agent.errors import DeviceError
from agent.events import ALL_LINES, CallerId, DeviceUp, LineEvent, OnHook
from agent.numbers import clean
from agent.seat.devices import Device, DeviceConfig
from plugins.simulator.audio import SyntheticSource, call_seed
from plugins.simulator.config import SimulatorConfig
from plugins.simulator.scenario import CallScript, Scenario, Step, line_random

logger = logging.getLogger(__name__)


class _Line:
    """One simulated line's state, shared by its task and the device's commands."""

    def __init__(self, label: str, scenario: Scenario) -> None:
        self.label = label
        self.scenario = scenario
        self.busy = False  # a call is playing, or a dialed call is about to
        self.pending: CallScript | None = None  # a dialed call for the task to play next
        self.hangup_requested = False
        self.wake = asyncio.Event()


@dataclass(frozen=True, slots=True)
class _Failed:
    """A line task died: ``events()`` raises it as a device error."""

    line: str
    error: BaseException


_CLOSED = object()


class SimulatorDevice(Device):
    """Simulated lines (see :mod:`plugins.simulator.scenario` for what their calls look like).

    With a ``seed`` the sequence of calls on each line (directions, numbers,
    names, outcomes, rings) is the same on every run; only wall-clock times
    differ. Commands draw from the same random source, so a ``dial`` changes
    what follows on its line.
    """

    type: ClassVar[str] = "simulator"
    Config: ClassVar[builtins.type[DeviceConfig]] = SimulatorConfig
    reports_hook: ClassVar[bool] = True
    reports_connect: ClassVar[bool] = True
    can_dial: ClassVar[bool] = True
    can_hangup: ClassVar[bool] = True

    def __init__(self, device_id: str, config: DeviceConfig) -> None:
        super().__init__(device_id, config)
        assert isinstance(self.config, SimulatorConfig)
        config = self.config
        self.options: SimulatorConfig = config
        labels = [str(n) for n in range(1, config.lines + 1)]
        self._lines = {
            label: _Line(label, Scenario(config, label, line_random(config.seed, label))) for label in labels
        }
        self._queue: asyncio.Queue[object] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def lines(self) -> list[str]:
        """``"1"`` .. ``"N"``."""
        return list(self._lines)

    def audio_source(self, line: str, call_uuid: str, samplerate: int) -> SyntheticSource:
        """Synthetic audio of a call on ``line`` (speech-like, seeded by the device seed and the call)."""
        return SyntheticSource(call_seed(self.options.seed, line, call_uuid), samplerate)

    async def __aenter__(self) -> SimulatorDevice:
        if self._tasks:
            raise DeviceError(f"{self.device_id}: the simulator is already open")
        queue: asyncio.Queue[object] = asyncio.Queue()
        self._queue = queue
        config = self.options
        logger.info(
            "%s: simulating %d line(s), %.2f calls/min each, speed x%g",
            self.device_id,
            config.lines,
            config.rate,
            config.speed,
        )
        queue.put_nowait(
            DeviceUp(
                device_id=self.device_id,
                line=ALL_LINES,
                at=datetime.now(UTC),
                detail=f"simulator, {config.lines} line(s)",
            )
        )
        for line in self._lines.values():
            line.busy = False
            line.pending = None
            line.hangup_requested = False
            line.wake = asyncio.Event()
            task = asyncio.create_task(self._run_line(line), name=f"simulator:{self.device_id}:{line.label}")
            task.add_done_callback(self._task_done)
            self._tasks.append(task)
        return self

    async def __aexit__(
        self,
        exc_type: builtins.type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        # Wait for them so nothing is left pending; their failures were already queued.
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._queue is not None:
            self._queue.put_nowait(_CLOSED)
        logger.info("%s: simulator closed", self.device_id)

    async def events(self) -> AsyncIterator[LineEvent]:
        """Line events of every line, in the order they happen, until the device is closed."""
        queue = self._queue
        if queue is None:
            raise DeviceError(f"{self.device_id}: the simulator is not open")
        while True:
            item = await queue.get()
            if item is _CLOSED:
                queue.put_nowait(_CLOSED)  # so any other reader ends too
                return
            if isinstance(item, _Failed):
                raise DeviceError(
                    f"{self.device_id}: line {item.line} failed: {item.error!r}"
                ) from item.error
            assert isinstance(item, LineEvent)
            yield item

    async def dial(self, line: str, number: str) -> None:
        """Start an outbound call to ``number`` on ``line`` now.

        Raises :class:`DeviceError` when the device is not open, the line is
        unknown or busy, or ``number`` has nothing to dial.
        """
        state = self._line(line)
        if not self._tasks:
            raise DeviceError(f"{self.device_id}: the simulator is not open")
        digits = clean(number)
        if not any(ch.isdigit() for ch in digits):
            raise DeviceError(f"{self.device_id}: nothing to dial in {number!r}")
        if state.busy:
            raise DeviceError(f"{self.device_id}: line {line} busy")
        state.pending = state.scenario.outbound(digits)
        state.busy = True
        state.wake.set()
        logger.debug("%s: line %s dialing %s", self.device_id, line, digits)

    async def hangup(self, line: str) -> None:
        """End the call on ``line`` now with an on-hook; nothing happens when the line is idle."""
        state = self._line(line)
        if not state.busy:
            return
        if state.pending is not None:
            # Dialed but not started yet: there is nothing on the line to hang up.
            state.pending = None
            state.busy = False
            return
        state.hangup_requested = True
        state.wake.set()

    # -- the line tasks -----------------------------------------------------------

    def _line(self, line: str) -> _Line:
        try:
            return self._lines[line]
        except KeyError:
            raise DeviceError(
                f"{self.device_id}: no line {line!r} (lines: {', '.join(self._lines)})"
            ) from None

    async def _run_line(self, line: _Line) -> None:
        loop = asyncio.get_running_loop()
        while True:
            script = line.pending
            if script is None:
                script = line.scenario.next_call()
                if await self._wait(line, loop.time() + script.gap / self.options.speed):
                    # A dial (or a dial hung up before it started) woke us; this call never happens.
                    continue
            line.pending = None
            line.busy = True
            await self._play(line, script)

    async def _play(self, line: _Line, script: CallScript) -> None:
        loop = asyncio.get_running_loop()
        speed = self.options.speed
        start = loop.time()
        logger.debug(
            "%s: line %s: %s call, %s", self.device_id, line.label, script.direction, script.disposition
        )
        line.hangup_requested = False
        emitted = False
        try:
            for step in script.steps:
                if await self._until_hangup(line, start + step.offset / speed):
                    if emitted:
                        self._emit(line, Step.of(0.0, OnHook))
                    return
                self._emit(line, step)
                emitted = True
            # An unanswered call's quiet tail still belongs to it: nothing may start on the line yet.
            if await self._until_hangup(line, start + script.duration / speed):
                self._emit(line, Step.of(0.0, OnHook))
        finally:
            line.busy = False
            line.hangup_requested = False

    async def _until_hangup(self, line: _Line, deadline: float) -> bool:
        """Sleep until ``deadline`` (loop time); True as soon as a hang-up is requested."""
        while not line.hangup_requested:
            if not await self._wait(line, deadline):
                return False
        return True

    @staticmethod
    async def _wait(line: _Line, deadline: float) -> bool:
        """Sleep until ``deadline`` (loop time) or until woken; True when woken."""
        if not line.wake.is_set():
            try:
                async with asyncio.timeout_at(deadline):
                    await line.wake.wait()
            except TimeoutError:
                return False
        line.wake.clear()
        return True

    def _emit(self, line: _Line, step: Step) -> None:
        assert self._queue is not None
        now = datetime.now(UTC)
        extra = {}
        if step.event is CallerId:
            # Caller-ID messages carry the exchange's local month, day, hour and minute.
            extra["device_time"] = now.astimezone().strftime("%m%d%H%M")
        self._queue.put_nowait(step.build(device_id=self.device_id, line=line.label, at=now, **extra))

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and self._queue is not None:
            label = task.get_name().rsplit(":", 1)[-1]
            logger.error("%s: line %s stopped: %r", self.device_id, label, error)
            self._queue.put_nowait(_Failed(label, error))


__all__ = ["SimulatorDevice"]
