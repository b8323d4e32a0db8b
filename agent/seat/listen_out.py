"""Listen-in with the seat calling out: the seat's side of :mod:`agent.centre.relay`.

In team mode the seat keeps one long-poll open to the centre (``GET /api/v1/listen/wait``, its
own token). When a lead or manager asks to listen to one of its calls, the poll is answered with a
ticket and the seat streams that call's live tap (the recorder's, the same PCM the seat page's
``/listen`` route serves) as the body of ``POST /api/v1/listen/{ticket}`` until the call ends or
the centre stops reading. The seat never listens on the network for this; the centre decides
who may listen and audits it before a ticket exists. A centre that is down or refuses the
token only means no listen-in: the poll backs off and the seat's calls are untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import httpx

from agent.seat.transport import CentreAccess
from agent.seatapi import API_PREFIX

logger = logging.getLogger(__name__)

#: Seconds the poll waits beyond the centre's own hold (25 s) before it counts as dead.
POLL_SECONDS = 40.0
BACKOFF_START = 1.0
BACKOFF_MAX = 60.0
#: Bytes per chunk sent upstream (100 ms of 8 kHz 16-bit audio), as the seat page's route sends.
CHUNK_BYTES = 1600


class Tap(Protocol):
    """A call's live audio: iterate for PCM chunks; :meth:`close` stops it."""

    def __aiter__(self) -> AsyncIterator[bytes]:
        """The chunks, until the call ends."""

    def close(self) -> None:
        """Stop listening."""


class ListenOut:
    """The seat's long-poll for listen requests and the streams it answers them with.

    :param live: the recorder's ``subscribe_live``: a call's tap, or None when it is not recorded
        live here.
    :param client: an httpx async client to use (tests pass one); else one for ``base_url``.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        live: Callable[[str], Tap | None],
        *,
        verify: bool | str = True,
        client: httpx.AsyncClient | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.live = live
        self._client = client or httpx.AsyncClient(
            base_url=self.base_url, verify=verify, timeout=httpx.Timeout(POLL_SECONDS, connect=5.0)
        )
        self._headers = {"authorization": f"Bearer {token}"}
        self._rand = rand
        self._streams: set[asyncio.Task[None]] = set()
        self.failures = 0

    async def run(self) -> None:
        """Poll until cancelled; each listen request gets a stream of its own."""
        try:
            while True:
                delay = await self._poll()
                if delay:
                    await asyncio.sleep(delay)
        finally:
            for task in list(self._streams):
                task.cancel()
            await asyncio.gather(*self._streams, return_exceptions=True)
            await self._client.aclose()

    async def _poll(self) -> float:
        """One long-poll; returns how long to wait before the next (0: at once)."""
        try:
            response = await self._client.get(f"{API_PREFIX}/listen/wait", headers=self._headers)
        except httpx.HTTPError as exc:
            return self._failed(f"the centre is unreachable: {exc}")
        if response.status_code == 204:
            self.failures = 0
            return 0.0
        if response.status_code != 200:
            return self._failed(f"the centre answered {response.status_code}")
        self.failures = 0
        try:
            request = response.json()
            ticket, call_uuid = str(request["ticket"]), str(request["call_uuid"])
        except (ValueError, KeyError, TypeError):
            return self._failed("the centre's listen request makes no sense")
        task = asyncio.create_task(self._stream(ticket, call_uuid), name=f"listen-out:{call_uuid}")
        self._streams.add(task)
        task.add_done_callback(self._streams.discard)
        return 0.0

    def _failed(self, why: str) -> float:
        self.failures += 1
        ceiling = min(BACKOFF_START * 2.0 ** (self.failures - 1), BACKOFF_MAX)
        delay = ceiling / 2 + self._rand() * ceiling / 2
        if self.failures == 1 or self.failures % 10 == 0:
            logger.warning("listen-in: %s; polling again in %.1f s", why, delay)
        return delay

    async def _stream(self, ticket: str, call_uuid: str) -> None:
        url = f"{API_PREFIX}/listen/{ticket}"
        tap = self.live(call_uuid)
        try:
            if tap is None:
                await self._client.post(url, params={"status": "not_live"}, headers=self._headers)
                logger.info("listen-in: call %s is not live here; told the centre", call_uuid)
                return
            logger.info("listen-in: streaming call %s to the centre", call_uuid)
            response = await self._client.post(
                url, content=_chunks(tap), headers=self._headers, timeout=httpx.Timeout(None, connect=5.0)
            )
            logger.info("listen-in: call %s stream ended (%d)", call_uuid, response.status_code)
        except httpx.HTTPError as exc:
            logger.info("listen-in: call %s stream stopped: %s", call_uuid, exc)
        finally:
            if tap is not None:
                tap.close()


async def _chunks(tap: Tap) -> AsyncIterator[bytes]:
    async for chunk in tap:
        for start in range(0, len(chunk), CHUNK_BYTES):
            yield chunk[start : start + CHUNK_BYTES]


def start_listen_out(
    access: CentreAccess, live: Callable[[str], Tap | None]
) -> tuple[ListenOut, asyncio.Task[None]]:
    """Start the poll to the centre of ``access`` in a task."""
    out = ListenOut(access.url, access.token, live, verify=access.verify)
    task = asyncio.create_task(out.run(), name="listen-out")
    return out, task


async def stop_listen_out(task: asyncio.Task[None]) -> None:
    """Cancel the poll and its streams."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


__all__ = ["ListenOut", "start_listen_out", "stop_listen_out"]
