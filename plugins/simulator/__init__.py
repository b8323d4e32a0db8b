"""Simulated phone lines: the ``simulator`` device type, for demos, tests and trying the agent out.

Registered as a built-in plugin through the same ``register_devices`` hook a
third-party device plugin uses. Configure it as::

    [[devices]]
    id = "sim"
    type = "simulator"
    lines = 4
    rate = 0.5      # calls per minute per line
    seed = 42       # the same calls on every run
"""

from __future__ import annotations

from collections.abc import Callable

import agent
from agent.seat.devices import Device
from plugins.simulator.config import SimulatorConfig
from plugins.simulator.device import SimulatorDevice


@agent.hookimpl
def register_devices(register: Callable[[type[Device]], None]) -> None:
    """Contribute the ``simulator`` device type."""
    register(SimulatorDevice)


__all__ = ["SimulatorConfig", "SimulatorDevice", "register_devices"]
