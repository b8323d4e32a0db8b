"""Observers: what the runtime fans call events, line states and rep-state changes out to.

Also the plugins' ``agent_configured`` objects, registered before the first observer runs.

Each observer gets every message in order, from its own queue and task (see
:mod:`agent.seat.pipe`), so a slow one never holds up another. An observer that
raises is logged and counted; the runtime decides whether to retry (storage
does: nothing may be lost) or to go on.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

import pluggy

from agent.config import Config
from agent.errors import ConfigError
from agent.events import Call, CallEvent, CallEventKind, Message

logger = logging.getLogger(__name__)


@runtime_checkable
class Observer(Protocol):
    """Receives every :data:`agent.events.Message`, in order."""

    #: Short name used in logs and in ``cti_observer_errors_total{observer}``.
    name: str
    #: True when a failed message must be retried until it goes through (storage).
    must_deliver: bool

    async def notify(self, message: Message) -> None:
        """Handle one message. May await; must not block the event loop."""


class PluginErrorCounter(Protocol):
    """Counts a plugin's failure (implemented by the metrics module)."""

    def plugin_error(self, plugin: str, hook: str) -> None:
        """Count one exception raised by ``plugin`` in ``hook``."""


_HOOK_FOR_KIND = {
    CallEventKind.STARTED: "call_started",
    CallEventKind.IDENTIFIED: "call_identified",
    CallEventKind.ANSWERED: "call_answered",
    CallEventKind.ENDED: "call_ended",
}


def notify_each(
    pm: pluggy.PluginManager, hook_name: str, errors: PluginErrorCounter | None, **kwargs: object
) -> None:
    """Call ``hook_name`` on every implementation, one at a time; one raising never silences another."""
    caller = getattr(pm.hook, hook_name)
    for impl in caller.get_hookimpls():
        try:
            # Like pluggy: an implementation may take fewer arguments than the spec.
            impl.function(**{name: kwargs[name] for name in impl.argnames})
        except Exception:
            logger.exception("plugin %s failed in %s", impl.plugin_name, hook_name)
            if errors is not None:
                errors.plugin_error(impl.plugin_name, hook_name)


class HookObserver:
    """Turns call events into the ``call_*`` notification hooks (started, identified, answered, ended)."""

    name = "plugin-hooks"
    must_deliver = False

    def __init__(self, pm: pluggy.PluginManager, errors: PluginErrorCounter | None = None) -> None:
        self._pm = pm
        self._errors = errors

    async def notify(self, message: Message) -> None:
        """Dispatch a call event to the matching notification hook."""
        if not isinstance(message, CallEvent):
            return
        hook_name = _HOOK_FOR_KIND.get(message.kind)
        if hook_name is not None:
            self.dispatch(hook_name, message.call)

    def dispatch(self, hook_name: str, call: Call) -> None:
        """Call one notification hook with per-plugin isolation."""
        notify_each(self._pm, hook_name, self._errors, call=call)


def configure_plugins(pm: pluggy.PluginManager, config: Config, errors: PluginErrorCounter | None) -> None:
    """Call ``agent_configured`` on each plugin; register what each returns as ``<name>.configured``.

    A :class:`ConfigError` from a plugin propagates (the agent must not start
    misconfigured); any other exception is logged, counted, and that plugin's
    object left out.
    """
    for impl in pm.hook.agent_configured.get_hookimpls():
        try:
            result = impl.function(**{name: config for name in impl.argnames if name == "config"})
        except ConfigError:
            raise
        except Exception:
            logger.exception("plugin %s failed in agent_configured", impl.plugin_name)
            if errors is not None:
                errors.plugin_error(impl.plugin_name, "agent_configured")
            continue
        if result is None:
            continue
        name = f"{impl.plugin_name}.configured"
        if pm.has_plugin(name):
            pm.unregister(name=name)
        pm.register(result, name=name)
        logger.info("plugin %s is configured", impl.plugin_name)
