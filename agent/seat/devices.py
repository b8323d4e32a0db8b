"""The device interface every device plugin implements, and the registry of device types."""

from __future__ import annotations

import abc
import builtins
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import ClassVar

import pluggy
from pydantic import BaseModel, ConfigDict, Field

from agent.errors import ConfigError, DeviceError
from agent.events import LineEvent
from agent.names import NameEncoding

logger = logging.getLogger(__name__)


class DeviceConfig(BaseModel):
    """Base of a device type's options: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    # On every device table, so one setting means the same everywhere (agent.names).
    name_encoding: NameEncoding = Field(
        default="auto",
        description="how callers' names are read: auto (UTF-8, else GB18030, else Latin-1) or a Python codec",
    )


class Device(abc.ABC):
    """A source of line events: constructed from its config alone, used as ``async with device:``.

    Subclasses set ``type`` (the config name) and a nested ``Config`` model, and
    the capability flags that tell the call tracker what the hardware can see.
    ``__init__`` must do no I/O; opening happens in ``__aenter__``. When the
    hardware goes away, ``events()`` raises :class:`agent.errors.DeviceError`;
    the runtime reports ``device_down``, backs off and opens the device again.
    """

    type: ClassVar[str]
    Config: ClassVar[builtins.type[DeviceConfig]] = DeviceConfig
    reports_hook: ClassVar[bool] = False
    reports_connect: ClassVar[bool] = False
    #: The device sends an end record for every call (a :class:`~agent.events.CallReport` or an
    #: on-hook), so on a line that cannot see the handset a call whose rings stopped is not over
    #: until it comes: the rep may be talking. Without it the tracker learns this only from a line's
    #: first end record, and that first call has already ended by the ring time-out.
    reports_end: ClassVar[bool] = False
    can_dial: ClassVar[bool] = False
    can_hangup: ClassVar[bool] = False

    def __init__(self, device_id: str, config: DeviceConfig) -> None:
        self.device_id = device_id
        own = type(self).Config
        # Validated into this type's own ``Config`` once, here, whatever model the caller built.
        self.config = config if isinstance(config, own) else own.model_validate(config.model_dump())

    def lines(self) -> list[str]:
        """The device's own labels of the lines it serves, where it knows them up front."""
        return ["1"]

    async def __aenter__(self) -> Device:
        return self

    async def __aexit__(
        self,
        exc_type: builtins.type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    @abc.abstractmethod
    def events(self) -> AsyncIterator[LineEvent]:
        """Line events as the device sees them, until it is closed or fails."""

    @classmethod
    async def probe(cls, port: str) -> str | None:
        """Whether a device of this type answers on serial ``port``: a description, or None.

        Used by ``cti-agent devices --probe``. Serial device types override it;
        it must give the port back closed and leave no line seized.
        """
        return None

    async def calibrate(self, seconds: float = 10.0) -> dict[str, dict[str, float]]:
        """Listen to every line for ``seconds`` and suggest detection thresholds per line label.

        For ``cti-agent devices --calibrate``; only devices that infer line state
        from a signal (line-tap audio) can. The device must be open.
        """
        raise DeviceError(f"{self.device_id}: a {self.type} device has nothing to calibrate")

    async def dial(self, line: str, number: str) -> None:
        """Place an outbound call on ``line`` (click-to-dial), where the hardware can."""
        raise DeviceError(f"{self.device_id}: a {self.type} device cannot dial")

    async def hangup(self, line: str) -> None:
        """Release ``line``, where the hardware can."""
        raise DeviceError(f"{self.device_id}: a {self.type} device cannot hang up")


class DeviceRegistry:
    """Device types by config name, collected through the ``register_devices`` hook."""

    def __init__(self) -> None:
        self._types: dict[str, type[Device]] = {}
        self._owners: dict[str, str] = {}

    @classmethod
    def from_plugins(cls, pm: pluggy.PluginManager) -> DeviceRegistry:
        """Ask every plugin for its device types."""
        registry = cls()
        for impl in pm.hook.register_devices.get_hookimpls():

            def register(device_cls: type[Device], _owner: str = impl.plugin_name) -> None:
                registry.add(device_cls, _owner)

            impl.function(register=register)
        return registry

    def add(self, device_cls: type[Device], owner: str) -> None:
        """Register ``device_cls`` under its ``type``; a name taken twice is a config error."""
        name = device_cls.type
        if name in self._types and self._types[name] is not device_cls:
            raise ConfigError(
                f"device type {name!r} is registered by both {self._owners[name]!r} and {owner!r}"
            )
        self._types[name] = device_cls
        self._owners[name] = owner

    def get(self, name: str) -> type[Device]:
        """The device class for ``name``, or a :class:`ConfigError` listing the known types."""
        try:
            return self._types[name]
        except KeyError:
            known = ", ".join(sorted(self._types)) or "none"
            raise ConfigError(f"unknown device type {name!r} (known: {known})") from None

    def owner(self, name: str) -> str:
        """The plugin that registered ``name``."""
        return self._owners[name]

    def names(self) -> list[str]:
        """Every registered type name, sorted."""
        return sorted(self._types)
