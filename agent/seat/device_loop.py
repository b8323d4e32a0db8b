"""One task per device: open it, read its events; when it fails, report it down, back off, reopen it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from agent.errors import DeviceError
from agent.events import ALL_LINES, DeviceDown, DeviceUp, LineEvent
from agent.seat.devices import Device
from agent.seat.metrics import Metrics

logger = logging.getLogger(__name__)

#: First and longest wait before a failed device is opened again (seconds).
BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
#: A device open this long counts as having recovered: the next failure waits BACKOFF_START again.
DEVICE_STABLE_SECONDS = 60.0


async def keep_open(
    device: Device,
    feed: Callable[[LineEvent], None],
    metrics: Metrics,
    clock: Callable[[], datetime],
) -> None:
    """Open ``device``, hand each of its events to ``feed``; when it fails or closes, say so and reopen.

    ``device_up``/``device_down`` go to every line of the device (``line = "*"``); the wait before
    reopening doubles from :data:`BACKOFF_START` to :data:`BACKOFF_MAX`, and starts over once the
    device had stayed open :data:`DEVICE_STABLE_SECONDS`. Runs until cancelled; a bug in a device
    plugin is logged, never raised.
    """
    delay = BACKOFF_START
    while True:
        opened_at: datetime | None = None
        try:
            async with device:
                opened_at = clock()
                metrics.device_status(device.device_id, device.type, True)
                feed(DeviceUp(device_id=device.device_id, line=ALL_LINES, at=opened_at))
                async for event in device.events():
                    feed(event)
            reason = "closed"
        except asyncio.CancelledError:
            raise
        except (DeviceError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            logger.warning("device %s: %s", device.device_id, reason)
        except Exception as exc:
            # A bug in a device plugin must not take the agent down.
            reason = f"{type(exc).__name__}: {exc}"
            logger.exception("device %s failed", device.device_id)
        now = clock()
        metrics.device_status(device.device_id, device.type, False)
        metrics.device_reconnect(device.device_id)
        feed(DeviceDown(device_id=device.device_id, line=ALL_LINES, at=now, reason=reason))
        if opened_at is not None and (now - opened_at).total_seconds() > DEVICE_STABLE_SECONDS:
            delay = BACKOFF_START
        logger.info("device %s: reopening in %.1f s", device.device_id, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, BACKOFF_MAX)


__all__ = ["BACKOFF_MAX", "BACKOFF_START", "DEVICE_STABLE_SECONDS", "keep_open"]
