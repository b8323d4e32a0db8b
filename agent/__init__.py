"""cti-agent: a computer-telephony integration agent for telesales teams."""

from __future__ import annotations

from agent.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
