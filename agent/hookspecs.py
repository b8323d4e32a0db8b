"""Hook specifications of cti-agent: each docstring is the contract a plugin relies on.

Hooks are synchronous and must not block the event loop. Notification hooks are
called one implementation at a time, each in its own try/except, so a plugin
that raises is logged (with its name), counted in ``cti_plugin_errors_total``
and never silences another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from agent.config import Config
    from agent.events import Call, Customer, Decoder, RecordingFacts
    from agent.seat.devices import Device

hookspec = pluggy.HookspecMarker("cti_agent")
hookimpl = pluggy.HookimplMarker("cti_agent")


@hookspec
def register_devices(register: Callable[[type[Device]], None]) -> None:
    """Contribute device types.

    :param register: call it once per device class. The class's ``type`` is the
        name used as ``type = "..."`` in a ``[[devices]]`` table of the config;
        its nested pydantic ``Config`` validates the table's other keys.

    When called: once, when the agent (or ``cti-agent devices`` / ``plugins``)
    builds its device registry, on the main thread. Registering a type name
    twice is a configuration error naming both plugins.
    """


@hookspec
def register_decoders(register: Callable[[Decoder], None]) -> None:
    """Contribute input formats for ``cti-agent decode``.

    :param register: call it once per :class:`agent.decode.Decoder`; its ``name``
        is the ``--format`` value, its ``sniff`` tells ``--format auto`` how sure
        it is of some input, and its ``decode`` turns captured device output into
        line events, with what it cannot decode as ``LineError`` events.

    When called: once, when ``cti-agent decode`` starts. A name registered by
    two plugins is an error naming both.
    """


@hookspec(firstresult=True)
def lookup_customer(number_e164: str | None, number_raw: str) -> Customer | None:
    """Find the customer behind a caller's (or a dialed) number.

    :param number_e164: the number normalised to E.164 (``+8613812345678``), or
        None when it could not be normalised.
    :param number_raw: the number exactly as the device gave it (a modem sends
        the national form, e.g. ``13812345678``).
    :return: a :class:`agent.events.Customer`, or None to let the next plugin try.

    Stops at first non-None result.

    When called: for each call once its number is known, in a worker thread
    (not on the event loop), so it may block on a database or HTTP request; the
    runtime waits for it at most ``[agent] lookup_timeout`` seconds and the call
    goes on without a customer if it takes longer. An exception is logged with
    the plugin's name and counted; the call goes on without a customer.
    """


@hookspec
def call_started(call: Call) -> None:
    """A call began (a ring, a caller-ID message, or the first dialed digit).

    :param call: the call as known now; its number may still be unknown.

    When called: on the event loop, in order for each call, after storage has
    been given the event. Must not block: hand slow work to a thread or task.
    Exceptions are logged and counted and do not reach other plugins.
    """


@hookspec
def call_identified(call: Call) -> None:
    """A call's number became known (caller ID, or dialing complete), or its customer was found.

    :param call: the call with ``number_raw`` / ``number_e164`` or ``absence``
        set; ``customer_id`` / ``customer_name`` once a lookup found them (the
        pop is two-phase: the number first, the customer when the lookup answers,
        so this may be called twice for one call).

    When called: as :func:`call_started`.
    """


@hookspec
def call_answered(call: Call) -> None:
    """A call connected (inbound picked up; outbound answered or dialed).

    :param call: the call with ``answered_at`` and ``ring_seconds`` set.

    When called: as :func:`call_started`.
    """


@hookspec
def call_ended(call: Call) -> None:
    """A call ended, with its disposition, ring and talk seconds.

    :param call: the final call; it is also what storage writes.

    When called: as :func:`call_started`. Every started call ends exactly once,
    also when the agent shuts down or the device goes away mid-call.
    """


@hookspec
def recording_finished(call: Call, recording: RecordingFacts) -> None:
    """A call's recording was written (or closed as partial or failed).

    :param call: the call the recording belongs to.
    :param recording: what the ``recordings`` row says: path relative to the
        data directory, codec, rate, seconds, bytes, sha256, status
        (``complete``, ``recovered``, ``partial``, ``failed``) and flags
        (``short``, ``silent``, ``one_sided``, ``missing``...).

    When called: in the recorder's worker thread once the file is renamed and
    its row saved, so it may block (upload, transcode). Exceptions are logged
    with the plugin's name and counted; they never affect the recording.
    """


@hookspec
def agent_configured(config: Config) -> object | None:
    """The agent read its configuration; a plugin that needs settings takes them from here.

    :param config: the validated :class:`agent.config.Config`. A plugin's own
        settings are the table ``[plugins.<name>]``, in ``config.plugins["<name>"]``
        (a plain dict: the plugin validates it, e.g. with a pydantic model).
    :return: None, or an object with hook implementations (a configured
        instance, say a CRM client holding its URL and cache), which the agent
        registers for this run under ``<plugin name>.configured``. A plugin
        that is off unless configured returns None when its table is absent.

    When called: once, when the agent starts, on the event loop, before any
    device is opened and before the seat page is built; must not block. A
    :class:`agent.errors.ConfigError` raised here stops the agent with its
    message (a misconfigured plugin fails at start, not on the first call);
    any other exception is logged with the plugin's name and counted, and the
    agent starts without that plugin's object.
    """


@hookspec
def register_routes(register: Callable[[Any], None]) -> None:
    """Add pages or endpoints to the seat page's web app.

    :param register: call it with a Starlette ``Route`` or ``Mount``. Paths
        should start with ``/plugins/<plugin-name>/``.

    When called: once, while the seat web app is built. Everything a route
    renders from a caller (name, number) must be escaped.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``cti-agent`` command line.

    :param cli: the top-level click group; use ``@cli.command()``.

    When called: once, when the CLI starts, before arguments are parsed.
    """
