"""What the seat page is built from: one frozen context object, made once at start-up.

The runtime (:class:`agent.seat.runner.Agent`) builds a :class:`SeatContext`
and hands it to :func:`agent.seat.web.app.make_seat_app`; the page, the event
stream and the JSON API (:mod:`agent.seat.web.api`) read everything they need
from it. Collaborators are typed as the protocols they implement, so a renamed
method is a type error, not a feature that silently switched itself off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

from agent.config import DailyTarget
from agent.numbers import DEFAULT_REGION
from agent.seat.observers import PluginErrorCounter
from agent.seat.web.bus import SeatBus
from agent.seat.web.login import SeatLogin
from agent.web.guard import LOOPBACK_NAMES, PageTokens

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from agent.seat.worklist import SeatWorklist
    from storage.lookup import CardCall


class Dialer(Protocol):
    """What click-to-dial needs from the runtime (:class:`agent.seat.runner.Agent` is one)."""

    def dialable_lines(self) -> list[str]:
        """The ids of the lines whose device can dial."""

    async def dial(self, line_id: str, number: str) -> None:
        """Dial ``number`` on ``line_id``; raises LookupError (no such line) or DeviceError."""


class RepDesk(Protocol):
    """Where the rep's choice of state goes (:class:`agent.seat.runner.Agent` is one).

    The runtime owns the rep's :class:`agent.repstate.RepState`; the page only asks.
    """

    async def choose_rep_state(self, state: str, reason: str | None) -> dict[str, Any]:
        """Move the rep to ``state`` and return the state now (as ``RepState.snapshot()``).

        Returns once the change is stored (or storing it took too long; it is
        then still on its way). :raises ValueError: the state cannot be chosen now.
        """


class LiveStream(Protocol):
    """A call's live audio (:class:`agent.seat.recording.tap.LiveTap`): PCM chunks until the call ends."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None:
        """Stop the stream (the listener went away)."""


def local_now() -> datetime:
    """The wall clock in this machine's time zone (a rep's day starts at local midnight)."""
    return datetime.now().astimezone()


#: The seat page's session cookie, to which its write token is bound.
SEAT_COOKIE = "cti_seat"


def _page_tokens() -> PageTokens:
    return PageTokens(SEAT_COOKIE)


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatContext:
    """Everything the seat page needs, fixed for the life of the app.

    :param bus: the seat's :class:`~agent.seat.web.bus.SeatBus` (also an observer of the runtime).
    :param seat: the seat's name, shown in the header.
    :param rep: the seat's rep, whose follow-ups, counts and claims the page shows.
    :param pm: plugin manager whose ``register_routes`` implementations add routes.
    :param language: the configured page language; ``?lang=`` overrides it, and
        without it the browser's ``Accept-Language`` decides (``zh*`` → Simplified Chinese, else English).
    :param errors: counts a plugin failing in ``register_routes`` (the metrics object).
    :param heartbeat: seconds of silence after which the event stream sends a comment line.
    :param engine: the database, for the caller card's history, notes, follow-ups and counts;
        without it the card shows only what the bus knows.
    :param dialer: click-to-dial (the runtime); without it nothing is dialable.
    :param rep_desk: takes the rep's choice of state (the runtime); without it the
        rep-state route answers 409.
    :param targets: the rep's daily targets, shown against today's counts (None: none known).
    :param effective_call_seconds: talk time from which an answered call counts as effective.
    :param now: the local wall clock (a rep's day starts at local midnight).
    :param tokens: the page's write tokens, each bound to the session cookie the page was served
        with (:class:`agent.web.guard.PageTokens`): a POST must carry its own session's.
    :param hosts: the ``Host`` names the page answers to (loopback, its listen address and
        ``[web] hosts``); any other is refused before a handler runs.
    :param max_clients: how many event streams may be open at once; more are answered 503.
    :param protection_days: how long an owner keeps a customer before another rep may claim it.
    :param daily_claim_limit: how many customers a rep may claim a day.
    :param console_url: the supervisor console's base URL (``[web] console_url``); with it the
        card's earlier calls that have a recording link to their page there. None: no links.
    :param live: gives a call's live audio (the recorder's ``subscribe_live``), None when not captured.
    :param listen_token: the console's shared secret for ``/listen/{call_uuid}``; None: listen-in
        is off and the route answers 404.
    :param recordings_dir: where the recorder writes; ``/healthz`` checks that a file can be
        made there (None: recording is off, nothing checked).
    :param health: parked and waiting counts added to ``/healthz`` and ``/api/state`` (the runtime's);
        the page shows the parked ones in its status line.
    :param team_calls: a number's last calls at the centre from any seat of the team (the
        centre lookup's cache; never waits on the network), shown on the card beside the seat's
        own; None outside team mode.
    :param login: the rep's log-in (:class:`agent.seat.web.login.SeatLogin`), required of every
        request that reaches the page over the network; None: such requests are refused (the
        page says no password is set), loopback is unaffected either way.
    :param region: the numbering region the page writes numbers for (``[agent] region``).
    :param worklist: the rep's worklist from the centre (:class:`agent.seat.worklist.SeatWorklist`);
        None outside team mode: the page shows no worklist and takes no dispositions.
    :param wake_sync: asks the outbox to send soon (after a disposition); None: it sends on its own time.
    """

    bus: SeatBus
    seat: str
    rep: str = ""
    pm: pluggy.PluginManager | None = None
    language: str | None = None
    errors: PluginErrorCounter | None = None
    heartbeat: float = 15.0
    engine: Engine | None = None
    dialer: Dialer | None = None
    rep_desk: RepDesk | None = None
    targets: DailyTarget | None = None
    effective_call_seconds: float = 60.0
    now: Callable[[], datetime] = local_now
    tokens: PageTokens = field(default_factory=_page_tokens)
    hosts: frozenset[str] = LOOPBACK_NAMES
    max_clients: int = 64
    protection_days: int = 30
    daily_claim_limit: int = 20
    console_url: str | None = None
    live: Callable[[str], LiveStream | None] | None = None
    listen_token: str | None = None
    health: Callable[[], dict[str, int]] | None = None
    recordings_dir: Path | None = None
    login: SeatLogin | None = None
    team_calls: Callable[[str], Sequence[CardCall]] | None = None
    region: str = DEFAULT_REGION
    worklist: SeatWorklist | None = None
    #: who owns a number across the floor (the centre's lookup, cached); None outside team mode
    ownership: Callable[[str], dict[str, Any] | None] | None = None
    #: whether a number (E.164) is on the floor's do-not-call list; None outside team mode
    do_not_call: Callable[[str], bool] | None = None
    wake_sync: Callable[[], None] | None = None
