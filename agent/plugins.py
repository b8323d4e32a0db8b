"""The plugin manager factory: built-in plugins, third-party entry points, blocking by name."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata

import pluggy

from agent import hookspecs

logger = logging.getLogger(__name__)

PROJECT = "cti_agent"
ENTRY_POINT_GROUP = "cti_agent"

# Built-in plugins, registered exactly as a third-party plugin would be.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "agent.decode",
    "plugins.simulator",
    "plugins.hayes",
    "plugins.serialbox",
    "plugins.ncid",
    "plugins.whozz",
    "plugins.linetap",
    "plugins.crm_http",
    "plugins.notify_desktop",
)


def make_plugin_manager(
    *, load_entrypoints: bool = True, disabled: Iterable[str] = (), builtins: bool = True
) -> pluggy.PluginManager:
    """A fresh plugin manager with the built-ins and (optionally) third-party plugins loaded.

    ``disabled`` names plugins to block (config ``[agent] disabled_plugins``).
    ``CTI_AGENT_LOAD_PLUGINS`` (comma-separated entry-point names) limits which
    third-party plugins are loaded; set it empty to load none.
    ``builtins=False`` leaves out :data:`DEFAULT_PLUGINS` (the CLI's command loader: no
    built-in adds commands, and importing the device drivers would slow ``--help``).
    Misspelled hook implementations fail here, at start-up, not on first use.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in disabled:
        pm.set_blocked(name)
    for module_name in DEFAULT_PLUGINS if builtins else ():
        if pm.is_blocked(module_name) or pm.is_blocked(_short(module_name)):
            logger.info("built-in plugin %s is disabled by config", module_name)
            continue
        pm.register(importlib.import_module(module_name), name=_short(module_name))
    if load_entrypoints:
        only = os.environ.get("CTI_AGENT_LOAD_PLUGINS")
        if only is None:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        else:
            for name in filter(None, (n.strip() for n in only.split(","))):
                pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)
    pm.check_pending()
    return pm


def _short(module_name: str) -> str:
    return module_name.rsplit(".", 1)[-1]


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """One loaded plugin, as ``cti-agent plugins`` shows it."""

    name: str
    version: str | None
    source: str  # "built-in", or the distribution that provides the entry point
    hooks: tuple[str, ...]


def describe_plugins(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Name, version, origin and hooks of every registered plugin, sorted by name."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    own_version = _own_version()
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            continue
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
        dist = dists.get(id(plugin))
        if dist is not None:
            infos.append(PluginInfo(name, dist.version, f"entry point of {dist.metadata['name']}", hooks))
        else:
            infos.append(PluginInfo(name, own_version, "built-in", hooks))
    return sorted(infos, key=lambda info: info.name)


def _own_version() -> str | None:
    try:
        return metadata.version("cti-agent")
    except metadata.PackageNotFoundError:
        return None
