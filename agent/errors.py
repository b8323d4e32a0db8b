"""The one exception root of cti-agent and its branches."""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """The configuration is wrong; the message names the key and, where known, the file line."""


class DeviceError(AgentError):
    """A device could not be opened, refused a command, or went away."""


class DeviceTimeout(DeviceError):
    """A device did not answer in time."""


class StorageError(AgentError):
    """The database could not be reached or refused a write."""
