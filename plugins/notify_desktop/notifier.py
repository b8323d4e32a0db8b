"""The notifier: builds ``notify-send`` / ``xdg-open`` argument lists and runs them off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import string
from collections.abc import Callable
from typing import Literal
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent import hookimpl
from agent.events import Absence, Call, Direction, Disposition

logger = logging.getLogger(__name__)

Spawn = Callable[[list[str]], None]
"""Run a command (an argument list, never a shell string) without waiting for it."""


class NotifyConfig(BaseModel):
    """``[plugins.notify_desktop]``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    command: str = "notify-send"
    opener: str = "xdg-open"
    urgency: Literal["low", "normal", "critical"] = "critical"
    expire_ms: int = Field(default=15_000, ge=0)
    missed: bool = True
    #: A CRM page for the number, opened when a call is answered: {e164}, {raw} (URL-quoted).
    open_url: str | None = None

    @field_validator("open_url")
    @classmethod
    def _open_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("open_url must be an http(s) URL")
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        if not names <= {"e164", "raw"}:
            raise ValueError("open_url may use {e164} and {raw} only")
        return value


def _who(call: Call) -> str:
    if call.number_raw:
        return call.number_raw
    if call.absence is Absence.PRIVATE:
        return "withheld number"
    if call.absence is Absence.UNAVAILABLE:
        return "number unavailable"
    return "unknown number"


async def _run(argv: list[str]) -> None:
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        logger.warning("notify_desktop: %s failed: %s", argv[0], exc)
        return
    try:
        async with asyncio.timeout(10):
            _, err = await process.communicate()
    except TimeoutError as exc:
        logger.warning("notify_desktop: %s failed: %s", argv[0], exc)
        return
    finally:
        # Timed out or cancelled (the agent stopping): end the command and reap it, so no
        # process or pipe outlives the event loop.
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await asyncio.shield(process.wait())
    if process.returncode:
        logger.warning(
            "notify_desktop: %s exited %d: %s",
            argv[0],
            process.returncode,
            err.decode(errors="replace")[:200],
        )


class DesktopNotifier:
    """Notification hooks for one run. ``spawn`` runs a command without waiting (tests pass a recorder)."""

    def __init__(
        self, config: NotifyConfig, *, command: str, opener: str | None, spawn: Spawn | None = None
    ) -> None:
        self.config = config
        self.command = command
        self.opener = opener
        self._spawn = spawn or self._spawn_on_loop
        self._tasks: set[asyncio.Task[None]] = set()
        self._told: set[str] = set()

    def _spawn_on_loop(self, argv: list[str]) -> None:
        # Hooks are called on the event loop: the command runs as a task, never blocking it.
        task = asyncio.get_running_loop().create_task(_run(argv))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def notify_argv(self, summary: str, body: str) -> list[str]:
        """The ``notify-send`` command. The body is escaped: notification servers render markup in it."""
        return [
            self.command,
            f"--urgency={self.config.urgency}",
            f"--expire-time={self.config.expire_ms}",
            "--app-name=cti-agent",
            "--",
            summary,
            html.escape(body),
        ]

    def url_for(self, call: Call) -> str | None:
        """The CRM page for the call's number, or None (no template, or no number)."""
        if self.config.open_url is None or not call.number_raw:
            return None
        values = {"e164": call.number_e164 or call.number_raw, "raw": call.number_raw}
        return self.config.open_url.format_map({k: quote(v, safe="") for k, v in values.items()})

    @hookimpl
    def call_started(self, call: Call) -> None:
        """Notify an inbound call at once (with the number when it came with the first ring)."""
        if call.direction is not Direction.IN:
            return
        self._incoming(call)

    @hookimpl
    def call_identified(self, call: Call) -> None:
        """Notify again once the caller is known, with the customer's name when the lookup found one."""
        if call.direction is not Direction.IN or call.uuid in self._told:
            return
        if call.number_raw or call.absence is not None:
            self._incoming(call)

    def _incoming(self, call: Call) -> None:
        if call.number_raw or call.absence is not None:
            self._told.add(call.uuid)  # one notification with the caller per call
        name = call.customer_name or call.cid_name or ""
        body = " ".join(part for part in (_who(call), name, f"line {call.line}") if part)
        self._spawn(self.notify_argv("Incoming call", body))

    @hookimpl
    def call_answered(self, call: Call) -> None:
        """Open the CRM page for the number, when configured."""
        url = self.url_for(call)
        if url is not None and self.opener is not None:
            self._spawn([self.opener, url])

    @hookimpl
    def call_ended(self, call: Call) -> None:
        """Notify a missed call, with its number and name."""
        self._told.discard(call.uuid)
        if not self.config.missed or call.disposition is not Disposition.MISSED:
            return
        name = call.customer_name or call.cid_name or ""
        body = " ".join(part for part in (_who(call), name, f"line {call.line}") if part)
        self._spawn(self.notify_argv("Missed call", body))
