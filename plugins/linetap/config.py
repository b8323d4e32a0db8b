"""Options of the ``linetap`` device type (a ``[[devices]]`` table with ``type = "linetap"``)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from agent.seat.devices import DeviceConfig
from plugins.linetap.dsp import FSK_STANDARDS, PLANS
from plugins.linetap.protocol import HookSettings
from plugins.linetap.ring import RingSettings

_HOOK = HookSettings()
_RING = RingSettings()


class LinetapConfig(DeviceConfig):
    """A sound input carrying phone-line audio (a USB phone box, a recording adapter).

    Each entry of ``channels`` (1-based input channels) is one line, labelled
    by ``lines`` in the same order (default ``"1"``, ``"2"``, ...). ``file``
    replays a recording instead of a sound device (demos, tests, support
    cases), paced like live input unless ``speed`` is 0.
    """

    device: str | int | None = Field(default=None, description="sounddevice name (or part of one) or index")
    file: str | None = Field(default=None, description="replay this recording instead of a sound device")
    speed: float = Field(default=1.0, ge=0, description="replay pace for file (0: as fast as possible)")
    samplerate: int = Field(default=8000, ge=8000, le=192000, description="input rate in Hz (device input)")
    channels: list[int] = Field(
        default_factory=lambda: [1], min_length=1, description="1-based channels, one per line"
    )
    lines: list[str] | None = Field(default=None, description="labels of the lines, one per channel")
    plan: str = Field(default="cn", description='call-progress tone plan: "cn" (450 Hz) or "nanp"')
    fsk: list[str] = Field(
        default_factory=lambda: ["bell202", "v23"], min_length=1, description="FSK standards"
    )
    bare_dtmf_callerid: bool = Field(
        default=False,
        description="on-hook digits with no start key are caller ID (Denmark, Netherlands: <number>#)",
    )
    region: str = Field(
        default="CN", min_length=2, max_length=2, description="numbering plan that judges noisy digit strings"
    )
    block_seconds: float = Field(default=0.1, gt=0, le=2, description="seconds of audio per read")
    off_hook_dbfs: float = Field(default=_HOOK.off_hook_dbfs, le=0, description="louder: line in use")
    on_hook_dbfs: float = Field(default=_HOOK.on_hook_dbfs, le=0, description="quieter: line idle")
    off_hook_after: float = Field(
        default=_HOOK.off_hook_after, gt=0, description="seconds of sound = off-hook"
    )
    on_hook_after: float = Field(default=_HOOK.on_hook_after, gt=0, description="seconds of quiet = on-hook")
    answer_speech: float = Field(
        default=_HOOK.answer_speech, gt=0, description="speech after ringback = answered"
    )
    digit_gap: float = Field(default=_HOOK.digit_gap, gt=0, description="pause that ends a burst of digits")
    detect_ring: bool = Field(
        default=True, description="report ring bursts heard on the tap (plugins.linetap.ring)"
    )
    ring_dbfs: float = Field(default=_RING.min_dbfs, le=0, description="ring voltage on the tap is louder")

    @field_validator("plan")
    @classmethod
    def _plan(cls, value: str) -> str:
        value = value.lower()
        if value not in PLANS:
            raise ValueError(f"unknown tone plan {value!r} (known: {', '.join(PLANS)})")
        return value

    @field_validator("fsk")
    @classmethod
    def _fsk(cls, value: list[str]) -> list[str]:
        value = [v.lower() for v in value]
        unknown = [v for v in value if v not in FSK_STANDARDS]
        if unknown:
            raise ValueError(f"unknown FSK standard(s) {unknown} (known: {', '.join(FSK_STANDARDS)})")
        return value

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[int]) -> list[int]:
        if any(c < 1 for c in value) or len(set(value)) != len(value):
            raise ValueError("channels are distinct 1-based channel numbers")
        return value

    @model_validator(mode="after")
    def _check(self) -> LinetapConfig:
        if self.lines is not None and len(self.lines) != len(self.channels):
            raise ValueError(f"{len(self.lines)} line labels for {len(self.channels)} channels")
        if self.on_hook_dbfs > self.off_hook_dbfs:
            raise ValueError("on_hook_dbfs must not be above off_hook_dbfs")
        return self

    def line_labels(self) -> list[str]:
        """The label of each channel's line."""
        return list(self.lines) if self.lines else [str(i) for i in range(1, len(self.channels) + 1)]

    def ring_settings(self) -> RingSettings | None:
        """The ring detector's thresholds, or None when ring detection is off."""
        return RingSettings(min_dbfs=self.ring_dbfs) if self.detect_ring else None

    def hook_settings(self) -> HookSettings:
        """The hook-inference thresholds as the decoder takes them."""
        return HookSettings(
            off_hook_dbfs=self.off_hook_dbfs,
            on_hook_dbfs=self.on_hook_dbfs,
            off_hook_after=self.off_hook_after,
            on_hook_after=self.on_hook_after,
            answer_speech=self.answer_speech,
            digit_gap=self.digit_gap,
        )


__all__ = ["LinetapConfig"]
