"""``notify_desktop``: a desktop notification for each call, and optionally a CRM page opened for it.

Off by default. Turned on by a ``[plugins.notify_desktop]`` table::

    [plugins.notify_desktop]
    enabled = true
    open_url = "https://crm.example.com/search?phone={e164}"   # opened when a call is answered

It needs a desktop session (``DISPLAY``, ``WAYLAND_DISPLAY`` or a D-Bus session
bus) and ``notify-send`` (libnotify); without them it logs why and stays off.
An inbound call is notified when it starts, and once more when its caller
becomes known (``call_identified``) if the number did not come with the ring;
missed calls are notified when they end.
"""

from __future__ import annotations

import logging
import os
import shutil

import agent
from agent.config import Config, plugin_settings
from plugins.notify_desktop.notifier import DesktopNotifier, NotifyConfig

NAME = "notify_desktop"
logger = logging.getLogger(__name__)


def desktop_session(environ: dict[str, str] | None = None) -> bool:
    """Whether a desktop session is reachable (an X or Wayland display, or a D-Bus session bus)."""
    env = os.environ if environ is None else environ
    return any(env.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS"))


@agent.hookimpl
def agent_configured(config: Config) -> DesktopNotifier | None:
    """A notifier for this run, or None when not enabled or no desktop session is there.

    :raises ConfigError: the table is invalid.
    """
    options = plugin_settings(config, NAME, NotifyConfig)
    if options is None:
        return None
    if not options.enabled:
        return None
    if not desktop_session():
        logger.info("notify_desktop: no desktop session (DISPLAY, WAYLAND_DISPLAY, D-Bus); staying off")
        return None
    command = shutil.which(options.command)
    if command is None:
        logger.warning("notify_desktop: %s not found (install libnotify-bin); staying off", options.command)
        return None
    return DesktopNotifier(options, command=command, opener=shutil.which(options.opener))


__all__ = ["DesktopNotifier", "NotifyConfig", "agent_configured", "desktop_session"]
