"""The ``cti-agent`` command line.

Exit codes scripts can rely on: 0 ok, 1 runtime failure (a device, the
database, a port already taken), 2 usage or configuration error.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agent import __version__
from agent.commands.common import config_option, url_option
from agent.errors import AgentError, ConfigError

if TYPE_CHECKING:
    import pluggy

    from agent.config import Config

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


#: Loggers whose INFO lines are chatter, not news: the schema migrations (Alembic's own steps and
#: ``storage.db``'s "database ... is at revision head", on every command that opens the database),
#: uvicorn's server banner and httpx's line per request (a seat's sync makes several per call; the
#: sync logs what it sent). Shown with ``--verbose`` (or ``--log-level debug``).
CHATTY_LOGGERS = ("alembic", "storage.db", "uvicorn.error", "httpx")


def _setup_logging(level: str, verbose: bool = False) -> None:
    root_level = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(
        level=root_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in CHATTY_LOGGERS:
        if verbose or root_level <= logging.DEBUG:
            # Their INFO lines even under --log-level warning; their DEBUG ones under debug.
            logging.getLogger(name).setLevel(min(root_level, logging.INFO))
        else:
            # Warnings and errors still show: a failed migration is not chatter.
            logging.getLogger(name).setLevel(max(logging.WARNING, root_level))


#: Commands that live in their own modules (agent/commands/), imported only when they run: the
#: name, ``module:attribute`` and the one-line help ``--help`` lists (a test keeps it equal to the
#: command's own). ``cti-agent --help`` and ``--version`` thus import neither SQLAlchemy nor numpy.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "centre": (
        "agent.commands.centre:centre",
        "Serve the centre: the supervisor console and the seat API, until SIGINT/SIGTERM.",
    ),
    "console": (
        "agent.commands.console:console",
        "The old name of `cti-agent centre`: the same server, with the same options (this name will go).",
    ),
    "deploy": ("agent.commands.deploy:deploy", "Generate files for the central Prometheus and Grafana."),
    "devices": (
        "agent.commands.devices:devices_command",
        "List serial ports with their USB ids, which answer, and the configured lines' state.",
    ),
    "export-customers": (
        "agent.commands.customers:export_customers_command",
        "Export every customer to FILE (.xlsx, or CSV in UTF-8 with BOM); it imports back unchanged.",
    ),
    "import-customers": (
        "agent.commands.customers:import_customers_command",
        "Import customers from a CSV or XLSX FILE.",
    ),
    "leads": (
        "agent.commands.leads:leads",
        "Lead lists at the centre: import, assign to a team or a rep, coverage (打透).",
    ),
    "purge": (
        "agent.commands.purge:purge",
        "Delete call recordings (and only them) past their retention; the calls themselves stay.",
    ),
    "report": (
        "agent.commands.report:report",
        "Calls, answered, missed, talk time and effective calls from the database.",
    ),
    "reps": ("agent.commands.reps:reps", "The centre's reps: add (or move to a team), list."),
    "dnc": ("agent.commands.dnc:dnc", "The do-not-call list: add, import, list, remove."),
    "seat-password": (
        "agent.commands.seat_password:seat_password",
        "Set the password the seat page asks for when reached over the network ([web] listen).",
    ),
    "seats": (
        "agent.commands.seats:seats",
        "Seat credentials at the centre: add (prints the token once), list, set-rep, revoke.",
    ),
    "sync": (
        "agent.commands.sync:sync",
        "Replay this seat's calls, notes and recordings to the centre ([central] url).",
    ),
    "users": (
        "agent.commands.users:users",
        "Console log-ins: rep (own calls), lead (own team), manager (all calls), admin (users, audit).",
    ),
}


class LazyGroup(click.Group):
    """The top-level group: built-in subcommands imported on first use, plugin commands on demand.

    Plugin commands (hook ``register_commands``) are loaded only when they can matter: to list
    them in ``--help`` or to run a name that is not built in.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugins_loaded = False

    def _load_plugin_commands(self) -> None:
        if not self._plugins_loaded:
            self._plugins_loaded = True
            _add_plugin_commands(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Built-in, lazy and plugin command names, sorted."""
        self._load_plugin_commands()
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command called ``cmd_name``, imported on first use; None when there is none."""
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        if cmd_name in LAZY_COMMANDS:
            import importlib

            module_name, _, attribute = LAZY_COMMANDS[cmd_name][0].partition(":")
            loaded: click.Command = getattr(importlib.import_module(module_name), attribute)
            self.add_command(loaded, cmd_name)
            return loaded
        self._load_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The Commands section of --help, without importing the lazy commands."""
        # As click's own, but a lazy command's help comes from the table: listing must not import it.
        rows = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is None and name in LAZY_COMMANDS:
                limit = formatter.width - 6 - len(name)
                # A bare Command shortens the text exactly as click does for a loaded one.
                rows.append(
                    (name, click.Command(name, help=LAZY_COMMANDS[name][1]).get_short_help_str(limit))
                )
            elif command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="cti-agent")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    help="How much to log (to stderr). Caller numbers are logged only at debug.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Also log the database migrations (Alembic), the web server's start-up and each HTTP request.",
)
def cli(log_level: str, verbose: bool) -> None:
    """cti-agent: caller ID, screen-pop, call recording and live call stats for telesales seats."""
    _setup_logging(log_level, verbose)


def _load(path: Path | None, overrides: dict[str, Any] | None = None) -> tuple[Config, pluggy.PluginManager]:
    """Load the config, build the plugin manager it asks for, and validate devices against it."""
    from agent.config import load_config
    from agent.plugins import make_plugin_manager
    from agent.seat.devices import DeviceRegistry

    first = load_config(path, overrides=overrides)
    pm = make_plugin_manager(disabled=first.agent.disabled_plugins)
    config = load_config(path, DeviceRegistry.from_plugins(pm), overrides=overrides)
    return config, pm


def _run_agent(config: Config, pm: pluggy.PluginManager, duration: float | None) -> None:
    import asyncio
    import signal

    from agent.seat.runner import Agent
    from storage.db import safe_url

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if duration is not None:
            loop.call_later(duration, stop.set)
        agent = Agent(config, pm)
        runner = asyncio.create_task(agent.run(stop))
        started = asyncio.create_task(agent.started.wait())
        await asyncio.wait([runner, started], return_when=asyncio.FIRST_COMPLETED)
        if agent.started.is_set():
            host = config.web.listen.rsplit(":", 1)[0]
            if config.web.enabled:
                click.echo(f"seat page:  http://{host}:{agent.web_port}/", err=True)
            if config.metrics.enabled:
                mhost = config.metrics.listen.rsplit(":", 1)[0]
                click.echo(f"metrics:    http://{mhost}:{agent.metrics_port}/metrics", err=True)
            click.echo(f"database:   {safe_url(config.database_url)}", err=True)
            click.echo("press Ctrl-C to stop", err=True)
        else:
            started.cancel()
        await runner

    asyncio.run(main())


@cli.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The TOML config file.",
)
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (for scripts).")
def run(config_path: Path, duration: float | None) -> None:
    """Run the agent from a config file until SIGINT/SIGTERM."""
    config, pm = _load(config_path)
    _run_agent(config, pm, duration)


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the SQLite database and recordings go (default: the platform data directory).",
)
@click.option("--lines", type=click.IntRange(1, 64), default=2, show_default=True, help="Simulated lines.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0.01),
    default=2.0,
    show_default=True,
    help="Calls per minute per line.",
)
@click.option("--seed", type=int, default=None, help="Seed for a repeatable run.")
@click.option(
    "--speed",
    type=click.FloatRange(min=0.1, max=1000),
    default=1.0,
    show_default=True,
    help="Time compression: 10 runs calls ten times faster.",
)
@click.option("--listen", default="127.0.0.1:8330", show_default=True, help="Seat page HOST:PORT.")
@click.option(
    "--metrics-listen", default="127.0.0.1:9330", show_default=True, help="Prometheus metrics HOST:PORT."
)
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option(
    "--seats",
    type=click.IntRange(1, 50),
    default=None,
    help="A whole floor: the centre and this many seats, each its own process syncing to it over HTTP "
    "(--listen is then the centre's address).",
)
@click.pass_context
def demo(
    ctx: click.Context,
    data_dir: Path | None,
    lines: int,
    rate: float,
    seed: int | None,
    speed: float,
    listen: str,
    metrics_listen: str,
    duration: float | None,
    seats: int | None,
) -> None:
    """Run everything on simulated lines with embedded defaults (no config file needed)."""
    if seats is not None:
        from agent.commands.floor import FloorOptions, run_floor
        from agent.config import default_data_dir

        if ctx.get_parameter_source("metrics_listen") is not click.core.ParameterSource.DEFAULT:
            raise click.UsageError(
                "with --seats the team's metrics are on the centre's /metrics and each seat's exporter "
                "takes a free port; --metrics-listen is for one seat"
            )
        explicit = ctx.get_parameter_source("listen") is not click.core.ParameterSource.DEFAULT
        options = FloorOptions(
            seats=seats,
            lines=lines,
            rate=rate,
            seed=seed,
            speed=speed,
            listen=listen if explicit else "127.0.0.1:8340",
            duration=duration,
        )
        run_floor(data_dir or default_data_dir() / "floor", options)
        return
    # The seat page shows its rep's day: the first line's rep (each line has its own).
    agent_section: dict[str, Any] = {"seat": "demo-seat", "rep": "rep01", "team": "team-a"}
    if data_dir is not None:
        agent_section["data_dir"] = str(data_dir)
    overrides: dict[str, Any] = {
        "agent": agent_section,
        "web": {"listen": listen},
        "metrics": {"listen": metrics_listen},
        # Simulated lines carry synthetic call audio, so the demo records real files.
        "recording": {"enabled": True},
        "devices": [
            {
                "id": "sim",
                "type": "simulator",
                "lines": lines,
                "rate": rate,
                "seed": seed,
                "speed": speed,
            }
        ],
        "lines": [
            {"id": f"line{n}", "device": "sim", "port": str(n), "rep": f"rep{n:02d}"}
            for n in range(1, lines + 1)
        ],
    }
    if seed is None:
        del overrides["devices"][0]["seed"]
    if speed != 1.0:
        # Ring and dial time-outs shrink with the simulated clock.
        overrides["tracker"] = {"ring_timeout": 8.0 / speed, "dial_timeout": 4.0 / speed}
    # The demo's customers call and are called, so the pop shows who they are (the plain
    # config is enough to find the database; devices are validated once, by _load).
    from agent.config import load_config

    overrides["devices"][0]["known_numbers"] = _seed_demo(load_config(None, overrides=overrides))
    config, pm = _load(None, overrides)
    _run_agent(config, pm, duration)


def _seed_demo(config: Config) -> list[str]:
    """Import the demo's customers into its database (once); the numbers for the simulator."""
    from agent.commands.demo import seed_demo
    from storage.db import make_engine, upgrade

    engine = make_engine(config.database_url)
    try:
        upgrade(engine)
        return seed_demo(engine, seat=config.agent.seat, team=config.agent.team, region=config.agent.region)
    except AgentError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per plugin.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Apply this config's disabled_plugins.",
)
def plugins_command(as_json: bool, config_path: Path | None) -> None:
    """List the loaded plugins: name, version, where each came from, and its hooks."""
    from agent.config import load_config
    from agent.plugins import describe_plugins, make_plugin_manager
    from agent.seat.devices import DeviceRegistry

    disabled = load_config(config_path).agent.disabled_plugins if config_path else []
    pm = make_plugin_manager(disabled=disabled)
    registry = DeviceRegistry.from_plugins(pm)
    infos = describe_plugins(pm)
    if as_json:
        for info in infos:
            device_types = [name for name in registry.names() if registry.owner(name) == info.name]
            record = {
                "name": info.name,
                "version": info.version,
                "source": info.source,
                "hooks": list(info.hooks),
                "device_types": device_types,
            }
            click.echo(json.dumps(record, ensure_ascii=False))
        return
    rows = [("NAME", "VERSION", "SOURCE", "HOOKS")]
    rows += [(i.name, i.version or "-", i.source, ", ".join(i.hooks)) for i in infos]
    widths = [max(len(row[col]) for row in rows) for col in range(3)]
    for row in rows:
        click.echo("  ".join(cell.ljust(widths[n]) for n, cell in enumerate(row[:3])) + "  " + row[3])


@cli.command("decode")
@click.argument("path", type=click.Path(allow_dash=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    default="auto",
    show_default=True,
    help="The input's format (a decoder name; `auto` guesses from the first bytes).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event (the default is a table).")
@click.option("--region", default="CN", show_default=True, help="Region for normalising numbers to E.164.")
@click.option(
    "--name-encoding",
    default="auto",
    show_default=True,
    help="How callers' names are read, as a device's name_encoding: auto (UTF-8, else GB18030, "
    "else Latin-1) or a Python codec (gbk, big5, cp1252 ...).",
)
def decode_command(path: Path, fmt: str, as_json: bool, region: str, name_encoding: str) -> None:
    """Decode a captured modem log, caller-ID hex, NCID log, unit packets or a WAV into events.

    PATH `-` reads standard input. What cannot be decoded is an `error` record
    with the offending text; decoding goes on after it.
    """
    from agent.decode import collect_decoders, decode, pick_decoder
    from agent.names import AUTO, check_encoding
    from agent.plugins import make_plugin_manager

    try:
        name_encoding = check_encoding(name_encoding)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--name-encoding") from None
    decoders = collect_decoders(make_plugin_manager())
    known = ", ".join(sorted(decoders)) or "none"
    if fmt != "auto" and fmt not in decoders:
        raise click.UsageError(f"unknown format {fmt!r} (known: auto, {known})")
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    decoder = decoders[fmt] if fmt != "auto" else pick_decoder(decoders, data)
    if decoder is None:
        raise click.UsageError(f"cannot tell the format of {path}; name it with --format ({known})")
    if name_encoding != AUTO and not decoder.reads_names:
        raise click.UsageError(f"--name-encoding: the {decoder.name} format takes no name encoding")
    columns = ("kind", "line", "number", "number_e164", "name", "absence", "datetime", "error")
    if not as_json:
        click.echo("\t".join(c.upper() for c in columns))
    for record in decode(decoder, data, region.upper(), name_encoding=name_encoding):
        if as_json:
            click.echo(json.dumps(record, ensure_ascii=False))
        else:
            click.echo("\t".join("" if record.get(c) is None else str(record.get(c)) for c in columns))


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@config_option("Read the database URL from this config.")
@url_option
def db_upgrade(config_path: Path | None, url: str | None) -> None:
    """Create or migrate the database schema to the newest revision."""
    from agent.commands.common import database_url, load, open_engine
    from storage.db import current_revision, head_revision, safe_url, upgrade

    config = load(config_path)
    target = database_url(config, url)
    with open_engine(config, url, migrate=False) as engine:
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
    if before == after:
        click.echo(f"{safe_url(target)}: already at {after} (head {head_revision()})")
    else:
        click.echo(f"{safe_url(target)}: upgraded {before or 'empty'} -> {after}")


def _add_plugin_commands(group: click.Group) -> None:
    from agent.plugins import make_plugin_manager

    try:
        # Built-in plugins add no commands (those live in agent/commands/), so only
        # third-party ones are loaded here, and --help does not import the device drivers.
        pm = make_plugin_manager(builtins=False)
    except Exception as exc:  # a broken third-party plugin must not break --help
        logger.warning("plugins could not be loaded for extra commands: %s", exc)
        return
    for impl in pm.hook.register_commands.get_hookimpls():
        try:
            impl.function(cli=group)
        except Exception:
            logger.exception("plugin %s failed in register_commands", impl.plugin_name)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cti-agent`` script; returns the exit code."""
    try:
        cli.main(args=argv, prog_name="cti-agent", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return EXIT_FAILURE
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except ConfigError as exc:
        click.echo(f"config error: {exc}", err=True)
        return EXIT_USAGE
    except AgentError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
