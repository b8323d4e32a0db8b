"""Nothing lost at shutdown: what the database did not take is spooled, and written at the next start.

Calls go into the space reserved at start (:mod:`agent.seat.spool`), so a full disk at
shutdown still keeps them; rep-state changes go beside them as room allows (statistics of
the rep's day, lost loudly rather than failing the shutdown). The next start writes both
first, parks a call refused again, and keeps aside a line it cannot read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.events import CallEvent, Message, RepStateChange
from agent.seat.observers import Observer
from agent.seat.pipe import ObserverPipe
from agent.seat.spool import Spool
from storage.faults import PARK_AFTER, Rejected

logger = logging.getLogger(__name__)

#: Rep-state changes storage could not take at shutdown, beside the calls (every one counts).
REP_SPOOL_NAME = "unwritten-rep-states.jsonl"


def spool_unwritten(pipes: Sequence[ObserverPipe], data_dir: Path) -> int:
    """Spool what the database did not take, in the space reserved at start (see agent.seat.spool).

    :returns: how many calls fitted neither the database nor the spool (lost; logged).
    """
    pipe = next((p for p in pipes if p.observer.must_deliver), None)
    if pipe is None:
        return 0
    latest: dict[str, CallEvent] = {}
    rep_changes: list[RepStateChange] = []
    for message in pipe.pending():
        if isinstance(message, CallEvent):
            latest[message.call.uuid] = message
        elif isinstance(message, RepStateChange):
            rep_changes.append(message)  # every one: each closes the state before it
    # Calls first, into the space reserved for them; rep states after, as room allows.
    lost = _spool_calls(Spool(data_dir), latest)
    if rep_changes:
        _spool_rep_states(data_dir / REP_SPOOL_NAME, rep_changes)
    return lost


def _spool_rep_states(rep_path: Path, changes: list[RepStateChange]) -> None:
    try:
        _append_lines(rep_path, [change.to_dict() for change in changes])
    except OSError as exc:
        # Statistics of the rep's day, not calls: lost loudly rather than failing the shutdown.
        logger.error(
            "%d rep-state change(s) could not be spooled to %s (%s): lost", len(changes), rep_path, exc
        )
        return
    logger.error(
        "the database could not take %d rep-state change(s); kept in %s for the next start",
        len(changes),
        rep_path,
    )


def _spool_calls(spool: Spool, latest: dict[str, CallEvent]) -> int:
    if not latest:
        return 0
    earlier = spool.lines()  # what the last start could not write either
    lines = [*earlier, *(json.dumps(e.to_dict(), ensure_ascii=False) for e in latest.values())]
    lost = spool.write(lines)
    if lost:
        logger.error(
            "the database could not take %d call(s) and %d spooled line(s) did not fit in %s: lost",
            len(latest),
            lost,
            spool.path,
        )
        return lost
    logger.error(
        "the database could not take %d call(s); kept in %s for the next start", len(latest), spool.path
    )
    return 0


async def replay_spool(pipes: Sequence[ObserverPipe], data_dir: Path) -> None:
    """Write what the last run spooled (calls, then rep-state changes), then reserve the next spool's room."""
    spool = Spool(data_dir)
    storage = next(p for p in pipes if p.observer.must_deliver)
    lines = await asyncio.to_thread(spool.lines)
    if lines:
        await _replay_lines(storage, spool, lines)
    # Room for the next shutdown's spool, taken while the disk has some.
    await asyncio.to_thread(spool.reserve)
    changes = await _replay_file(data_dir / REP_SPOOL_NAME, storage.observer, RepStateChange.from_dict)
    if changes is not None:
        logger.info("wrote %d spooled rep-state change(s) from the last run", changes)


async def _replay_lines(storage: ObserverPipe, spool: Spool, lines: list[str]) -> None:
    kept: list[str] = []
    replayed = 0
    for number, text in enumerate(lines, start=1):
        try:
            event = CallEvent.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("%s:%d: unreadable spooled call kept aside: %s", spool.path, number, exc)
            kept.append(text)
            continue
        try:
            await storage.observer.notify(event)
            replayed += 1
        except Rejected as exc:
            # Spooled by the last run, refused again now: its tries are spent, park it.
            if not await storage.park(event, exc, refusals=PARK_AFTER):
                kept.append(text)
        except Exception as exc:
            logger.error("spooled call %s still cannot be written: %s", event.call.uuid, exc)
            kept.append(text)
    await asyncio.to_thread(spool.replace, kept)
    logger.info("wrote %d spooled call(s) from the last run", replayed)


def _append_lines(path: Path, records: list[dict[str, Any]]) -> None:
    """Append JSON lines to a spool file and fsync it (the agent is stopping: nothing may be lost)."""
    with path.open("a", encoding="utf-8") as spool:
        for record in records:
            spool.write(json.dumps(record, ensure_ascii=False) + "\n")
        spool.flush()
        os.fsync(spool.fileno())


async def _replay_file(
    path: Path,
    storage: Observer,
    parse: Callable[[dict[str, Any]], Message],
) -> int | None:
    """Hand every line of a spool file to storage; keep what fails. None when there is no file."""
    if not path.exists():
        return None
    kept: list[str] = []
    replayed = 0
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            message = parse(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("%s:%d: unreadable spooled line kept aside: %s", path, number, exc)
            kept.append(text)
            continue
        try:
            await storage.notify(message)
            replayed += 1
        except Exception as exc:
            what = f"call {message.call.uuid}" if isinstance(message, CallEvent) else "rep-state change"
            logger.error("spooled %s still cannot be written: %s", what, exc)
            kept.append(text)
    if kept:
        path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    else:
        path.unlink()
    return replayed


__all__ = ["REP_SPOOL_NAME", "replay_spool", "spool_unwritten"]
