"""The recording policy: which calls are recorded, from when, whether kept, and how flagged.

Pure: decisions from call events, the ``[recording]`` settings and what the
writer reports; no I/O, no clock (a call's times and talk seconds are in the
:class:`~agent.events.Call` it is given), so it is tested with tables.

- **open** (:meth:`RecordingPolicy.opens`): a call that starts is captured
  (its line's source opened, audio kept in the pre-roll) unless it is call
  waiting, or the policy is ``outbound`` and the call is inbound.
- **begin** (:meth:`RecordingPolicy.begins`): the file starts at the trigger,
  ``[recording] start_on``: ``ring`` the start of any call; ``off_hook`` the
  start of an outbound call or the answer of an inbound one; ``answered``
  (the default) the answer.
- **keep** (:meth:`RecordingPolicy.keeps`): ``answered`` keeps answered calls,
  ``outbound`` outbound ones, ``all`` every call; each only with at least
  ``min_talk_seconds`` of talk.
- **end** (:meth:`RecordingPolicy.ending`): a recording not kept is discarded;
  a kept one with audio is saved with its flags; an answered call the policy
  wants that has no audio is *missing* (saved as a ``failed`` row flagged
  ``missing`` and why).
- **flags**: the writer's failure (``disk_full``, ``io_error``,
  ``device_lost``), ``overrun``, then the suspects: ``short`` (much shorter
  than the call's talk), ``silent``, ``one_sided``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from agent.config import RecordingSection
from agent.events import Call, CallEventKind, Direction, Disposition

#: A recording shorter than this share of the call's talk time (less a grace) is flagged ``short``.
SHORT_RATIO = 0.8
SHORT_GRACE_SECONDS = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Take:
    """What the writer made of one call's audio, as the policy reads it.

    :param written: a file was started (its row may still say ``failed``).
    :param seconds: audio in the file.
    :param status: ``complete``, ``partial`` or ``failed``.
    :param failure: why the recording stopped early, if it did.
    :param overruns: times input was lost (device or writer behind).
    :param verdicts: the level checks' findings (``silent``, ``one_sided``).
    """

    written: bool
    seconds: float = 0.0
    status: str = "complete"
    failure: str | None = None
    overruns: int = 0
    verdicts: tuple[str, ...] = ()

    @property
    def playable(self) -> bool:
        """Whether there is audio to keep (a ``failed`` file with nothing in it is none)."""
        return self.written and not (self.status == "failed" and self.seconds == 0)


class EndingKind(enum.Enum):
    """What becomes of a call's recording when the call ends."""

    NOTHING = "nothing"
    DISCARD = "discard"
    MISSING = "missing"
    SAVE = "save"


@dataclass(frozen=True, slots=True)
class Ending:
    """The decision at a call's end.

    :param kind: see :class:`EndingKind`.
    :param flags: the row's flags for ``SAVE`` (failure, ``overrun``, then the suspects).
    :param suspects: the flags the completeness checks raised (logged and counted).
    :param reason: why a ``MISSING`` recording is missing (``device_open``, ``no_audio``, ...).
    """

    kind: EndingKind
    flags: tuple[str, ...] = ()
    suspects: tuple[str, ...] = ()
    reason: str | None = None


NOTHING = Ending(EndingKind.NOTHING)
DISCARD = Ending(EndingKind.DISCARD)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingPolicy:
    """The decisions of ``[recording]`` (see the module docstring)."""

    start_on: str = "answered"
    policy: str = "answered"
    min_talk_seconds: float = 0.0

    @classmethod
    def from_settings(cls, settings: RecordingSection) -> RecordingPolicy:
        """The policy of a ``[recording]`` section."""
        return cls(
            start_on=settings.start_on, policy=settings.policy, min_talk_seconds=settings.min_talk_seconds
        )

    def opens(self, call: Call) -> bool:
        """Whether a call that just started can end up kept (so its source is opened)."""
        return not call.waiting and (self.policy != "outbound" or call.direction is Direction.OUT)

    def begins(self, kind: CallEventKind, call: Call) -> bool:
        """Whether event ``kind`` of ``call`` is the trigger that starts the file."""
        if self.start_on == "ring":
            return kind is CallEventKind.STARTED
        if self.start_on == "off_hook" and call.direction is Direction.OUT:
            return kind is CallEventKind.STARTED
        return kind is CallEventKind.ANSWERED

    def keeps(self, call: Call) -> bool:
        """Whether the ended call's recording is kept under the policy and the minimum talk time."""
        if self.policy == "answered" and call.disposition is not Disposition.ANSWERED:
            return False
        if self.policy == "outbound" and call.direction is not Direction.OUT:
            return False
        return (call.talk_seconds or 0.0) >= self.min_talk_seconds

    def should_have(self, call: Call) -> bool:
        """An answered call the policy wants recorded: having no recording is a loss."""
        return not call.waiting and call.disposition is Disposition.ANSWERED and self.keeps(call)

    def unrecorded(self, call: Call) -> bool:
        """Whether a call that ended without being captured lost its recording.

        A call is not captured when its line was busy with another or the agent
        started mid-call; it is a loss (``missing``, ``not_started``) only where
        the line has an audio source, which the caller checks.
        """
        return call.ended and self.opens(call) and self.should_have(call)

    def ending(
        self, call: Call, take: Take | None, *, open_failure: str | None = None, forced: bool = False
    ) -> Ending:
        """The end of a captured call.

        :param take: what the writer made of it; None when the source never opened.
        :param open_failure: why the source did not open, if it did not.
        :param forced: the agent is shutting down mid-call: keep what there is, whatever the policy.
        """
        if not forced and not self.keeps(call):
            return DISCARD if take is not None and take.written else NOTHING
        if take is None or not take.playable:
            if not self.should_have(call):
                return NOTHING
            failure = open_failure or (take.failure if take is not None else None)
            return Ending(EndingKind.MISSING, reason=failure or "no_audio")
        flags: list[str] = []
        if take.failure:
            flags.append(take.failure)
        if take.overruns:
            flags.append("overrun")
        suspects: list[str] = []
        talk = call.talk_seconds or 0.0
        if (
            call.disposition is Disposition.ANSWERED
            and take.seconds < talk * SHORT_RATIO - SHORT_GRACE_SECONDS
        ):
            suspects.append("short")
        suspects.extend(take.verdicts)
        return Ending(EndingKind.SAVE, flags=(*flags, *suspects), suspects=tuple(suspects))


__all__ = [
    "DISCARD",
    "NOTHING",
    "SHORT_GRACE_SECONDS",
    "SHORT_RATIO",
    "Ending",
    "EndingKind",
    "RecordingPolicy",
    "Take",
]
