"""``cti-agent devices``: what is attached (serial ports, USB ids), what answers, what each line reports."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click
import httpx
from serial.tools import list_ports

from agent.config import Config, device_options, load_config
from agent.errors import ConfigError
from agent.plugins import make_plugin_manager
from agent.seat.devices import Device, DeviceRegistry
from plugins.serialbox.hid import list_hid_devices


def serial_ports() -> list[dict[str, Any]]:
    """Every serial port the system lists, with its USB identity where it has one."""
    ports = []
    for port in sorted(list_ports.comports(), key=lambda p: p.device):
        usb = f"{port.vid:04x}:{port.pid:04x}" if port.vid is not None and port.pid is not None else None
        ports.append(
            {
                "port": port.device,
                "usb": usb,
                "serial_number": port.serial_number,
                "description": port.description if port.description != "n/a" else None,
                "answers": None,
            }
        )
    return ports


async def probe_ports(ports: list[dict[str, Any]], device_types: list[type[Device]]) -> None:
    """Ask each serial device type whether it answers on each port (one port at a time)."""
    for entry in ports:
        for device_cls in device_types:
            answer = await device_cls.probe(entry["port"])
            if answer:
                entry["answers"] = f"{device_cls.type}: {answer}"
                break


def line_states(listen: str) -> list[dict[str, Any]] | str:
    """The lines as the running agent on ``listen`` sees them, or why they cannot be read."""
    host, _, port = listen.rpartition(":")
    # A wildcard listen address is reached through loopback.
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    url = f"http://{host}:{port}/api/state"
    try:
        response = httpx.get(url, timeout=3)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        return f"the agent is not answering at {url} ({exc})"
    lines: list[dict[str, Any]] = response.json().get("lines", [])
    return lines


@click.command("devices")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also show what each configured line's device reports now (asks the running agent).",
)
@click.option(
    "--probe", is_flag=True, help="Send a harmless query (AT) to each serial port to see who answers."
)
@click.option(
    "--calibrate",
    "calibrate_line",
    metavar="LINE",
    default=None,
    help="Record LINE (a [[lines]] id or a device id) for --seconds; suggest its thresholds. Needs --config.",
)
@click.option("--seconds", type=click.FloatRange(min=1, max=120), default=10.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per port and per line.")
def devices_command(
    config_path: Path | None, probe: bool, calibrate_line: str | None, seconds: float, as_json: bool
) -> None:
    """List serial ports with their USB ids, which answer, and the configured lines' state."""
    pm = make_plugin_manager()
    registry = DeviceRegistry.from_plugins(pm)
    if calibrate_line is not None:
        if config_path is None:
            raise click.UsageError("--calibrate needs --config (which device the line is on)")
        _calibrate(load_config(config_path, registry), registry, calibrate_line, seconds, as_json)
        return
    ports = serial_ports()
    hid = list_hid_devices()  # USB HID boxes and handsets (empty without hidapi)
    if probe:
        asyncio.run(probe_ports(ports, [registry.get(name) for name in registry.names()]))
    lines: list[dict[str, Any]] | str = []
    if config_path is not None:
        config = load_config(config_path, registry)
        lines = (
            line_states(config.web.listen)
            if config.web.enabled
            else "the seat page is disabled in the config"
        )
    if as_json:
        for entry in ports:
            click.echo(json.dumps({"kind": "port", **entry}, ensure_ascii=False))
        for entry in hid:
            click.echo(json.dumps({"kind": "hid", **entry}, ensure_ascii=False))
        if isinstance(lines, list):
            for line in lines:
                click.echo(json.dumps({"kind": "line", **line}, ensure_ascii=False))
        else:
            click.echo(json.dumps({"kind": "error", "error": lines}, ensure_ascii=False))
        return
    click.echo(f"serial ports: {len(ports)}")
    for entry in ports:
        usb = f"  usb {entry['usb']}" if entry["usb"] else ""
        serial = f" serial {entry['serial_number']}" if entry["serial_number"] else ""
        answers = f"  -> {entry['answers']}" if entry["answers"] else ("  (no answer)" if probe else "")
        click.echo(f"  {entry['port']}{usb}{serial}  {entry['description'] or ''}{answers}")
    click.echo(f"HID devices: {len(hid)}")
    for entry in hid:
        serial = f" serial {entry['serial_number']}" if entry["serial_number"] else ""
        click.echo(f"  {entry['path']}  usb {entry['usb']}{serial}  {entry['description']}")
    if config_path is not None:
        if isinstance(lines, str):
            click.echo(f"lines: {lines}")
        else:
            click.echo(f"lines: {len(lines)}")
            for line in lines:
                click.echo(
                    f"  {line['line']}  {line['state']:<8} since {line['since']}  "
                    f"device {line['device_id']}  rep {line['rep'] or '-'}"
                )


def _calibrate(config: Config, registry: DeviceRegistry, wanted: str, seconds: float, as_json: bool) -> None:
    """Open the device that carries ``wanted`` and print the thresholds it suggests."""
    section = next((line for line in config.lines if line.id == wanted), None)
    device_id = section.device if section is not None else wanted
    device_section = next((d for d in config.devices if d.id == device_id), None)
    if device_section is None:
        raise ConfigError(f"no line or device {wanted!r} in the config")
    device = registry.get(device_section.type)(device_id, device_options(config, registry, device_section))

    async def run() -> dict[str, dict[str, float]]:
        async with device:
            return await device.calibrate(seconds)

    click.echo(
        f"listening to {device_id} for {seconds:g} s: leave the line idle, then lift the handset", err=True
    )
    suggested = asyncio.run(run())
    for port, values in suggested.items():
        if section is not None and port != section.port:
            continue
        if as_json:
            click.echo(json.dumps({"kind": "calibration", "device": device_id, "port": port, **values}))
        else:
            settings = "  ".join(f"{key} = {value:.1f}" for key, value in values.items())
            click.echo(f"{device_id} port {port}: {settings}")
