"""``cti-agent console``: the old name of ``cti-agent centre``, kept so scripts and units keep working."""

from __future__ import annotations

import logging
from typing import Any

import click

from agent.commands.centre import serve_centre, with_centre_options

__all__ = ["console"]

logger = logging.getLogger(__name__)


@click.command(deprecated=False)
@with_centre_options
def console(**options: Any) -> None:
    """The old name of `cti-agent centre`: the same server, with the same options (this name will go).

    `cti-agent centre` serves the supervisor console and the seat API; `console` runs it with
    the same options. Without --config or --data-dir it reads this machine's own seat
    database, as it always did.
    """
    click.echo("cti-agent console is now cti-agent centre; running that (this name will go)", err=True)
    serve_centre(**options, legacy_data_dir=True)
