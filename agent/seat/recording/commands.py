"""The writer's commands: everything the event loop and the sources' threads tell it.

Frozen dataclasses, one per thing to do, handled in order by the writer
thread's one ``match`` (:mod:`.writer`). ``key`` names the capture (one per
call, given by the recorder). A command that needs an answer carries the
:class:`concurrent.futures.Future` the writer resolves.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass

from agent.events import Call
from agent.seat.audio import Block
from agent.seat.recording.capture import Format, Outcome
from agent.seat.recording.tap import LiveTap
from storage.recordings import RecordingPaths


@dataclass(frozen=True, slots=True)
class Prepare:
    """A call's source is about to open: make its capture (blocks may come before :class:`Open`)."""

    key: int
    call: Call


@dataclass(frozen=True, slots=True)
class Open:
    """The source is open at ``fmt``: start keeping its audio (pre-roll) and watching for stalls."""

    key: int
    paths: RecordingPaths
    fmt: Format
    pre_roll_seconds: float
    reply: concurrent.futures.Future[None]


@dataclass(frozen=True, slots=True)
class Begin:
    """The trigger: create the file and write the pre-roll into it."""

    key: int
    call: Call
    reply: concurrent.futures.Future[None]


@dataclass(frozen=True, slots=True, eq=False)
class BlockIn:
    """Audio from a source's thread, with when it was queued (for the latency statistics)."""

    key: int
    data: Block
    queued_at: float


@dataclass(frozen=True, slots=True)
class Dropped:
    """A block the queue had no room for: counted as an overrun."""

    key: int
    frames: int


@dataclass(frozen=True, slots=True)
class Overrun:
    """The device dropped input."""

    key: int


@dataclass(frozen=True, slots=True)
class SourceError:
    """The source stopped on its own (unplugged, stream failed)."""

    key: int
    reason: str


@dataclass(frozen=True, slots=True, eq=False)
class Listen:
    """Feed a live listener from now on."""

    key: int
    tap: LiveTap


@dataclass(frozen=True, slots=True, eq=False)
class Unlisten:
    """Stop feeding a live listener."""

    key: int
    tap: LiveTap


@dataclass(frozen=True, slots=True)
class Finish:
    """The call is over: close the file and answer with the :class:`Outcome` (None: no capture)."""

    key: int
    reply: concurrent.futures.Future[Outcome | None]


@dataclass(frozen=True, slots=True)
class Stop:
    """End the thread (after everything queued before)."""


Command = (
    Prepare | Open | Begin | BlockIn | Dropped | Overrun | SourceError | Listen | Unlisten | Finish | Stop
)


__all__ = [
    "Begin",
    "BlockIn",
    "Command",
    "Dropped",
    "Finish",
    "Listen",
    "Open",
    "Overrun",
    "Prepare",
    "SourceError",
    "Stop",
    "Unlisten",
]
