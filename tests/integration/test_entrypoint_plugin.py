"""A third-party plugin, installed for real, comes in through the ``cti_agent`` entry point.

``tests/example_plugin`` is built and installed with pip into a temporary
directory; each check runs in a fresh interpreter with that directory on
``PYTHONPATH``, so the plugin is found the way an installed one is: through its
distribution's metadata, not by importing it from the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

EXAMPLE_PLUGIN_SRC = Path(__file__).resolve().parents[1] / "example_plugin"
EXAMPLE_NUMBER = "13800138000"

#: The ``cti-agent`` script of the interpreter running the tests (the venv's).
CTI_AGENT_SCRIPT = Path(sys.executable).with_name("cti-agent")


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the installed example plugin (its module and dist-info)."""
    base = tmp_path_factory.mktemp("example-plugin")
    # pip builds a local project in its own tree (build/, *.egg-info): build a copy.
    src = shutil.copytree(
        EXAMPLE_PLUGIN_SRC, base / "src", ignore=shutil.ignore_patterns("build", "*.egg-info")
    )
    site = base / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(src),
        ],
        check=True,
        timeout=120,
    )
    assert (site / "cti_example_plugin.py").is_file()
    return site


def run_with_plugin(
    plugin_site: Path,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a fresh process that sees the installed example plugin.

    ``argv`` is a whole command line, e.g. ``[sys.executable, "-c", code]`` or
    ``[str(CTI_AGENT_SCRIPT), "plugins"]``. ``CTI_AGENT_LOAD_PLUGINS`` is unset
    unless ``env`` sets it; ``env`` entries override the test's environment.
    Output is text; the caller checks ``returncode``.
    """
    child_env = {k: v for k, v in os.environ.items() if k != "CTI_AGENT_LOAD_PLUGINS"}
    child_env["PYTHONPATH"] = str(plugin_site)
    child_env.update(env or {})
    return subprocess.run(
        list(argv), env=child_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def run_python_with_plugin(
    plugin_site: Path, code: str, *, env: Mapping[str, str] | None = None, timeout: float = 60
) -> Any:
    """Run Python ``code`` with the plugin installed; it prints one JSON document, which is returned."""
    proc = run_with_plugin(
        plugin_site, [sys.executable, "-c", textwrap.dedent(code)], env=env, timeout=timeout
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout)


PROBE = """
    import dataclasses, json, os
    from agent.seat.devices import DeviceRegistry
    from agent.plugins import describe_plugins, make_plugin_manager

    pm = make_plugin_manager(disabled=json.loads(os.environ.get("PROBE_DISABLED", "[]")))
    registry = DeviceRegistry.from_plugins(pm)
    print(json.dumps({
        "plugins": {info.name: dataclasses.asdict(info) for info in describe_plugins(pm)},
        "device_types": {name: registry.owner(name) for name in registry.names()},
    }))
"""


def test_installed_plugin_is_loaded_from_its_entry_point(plugin_site: Path) -> None:
    probe = run_python_with_plugin(plugin_site, PROBE)

    example = probe["plugins"]["example"]
    assert example["source"] == "entry point of cti-agent-example-plugin"
    assert example["version"] == "0.1.0"
    assert example["hooks"] == ["register_devices"]
    assert probe["device_types"]["example-clock"] == "example"
    # Built-ins are still there, and not mistaken for entry points.
    assert probe["plugins"]["simulator"]["source"] == "built-in"


def test_without_the_install_the_plugin_is_absent() -> None:
    # The control for the test above: the plugin comes from the installed
    # directory, not from anything else on the path.
    probe = run_python_with_plugin(Path(os.devnull), PROBE)

    assert "example" not in probe["plugins"]
    assert "example-clock" not in probe["device_types"]


@pytest.mark.parametrize(
    ("load_plugins", "loaded"),
    [("", False), ("example", True), ("someone-else", False), (" example , other ", True)],
)
def test_cti_agent_load_plugins_selects_entry_points(
    plugin_site: Path, load_plugins: str, loaded: bool
) -> None:
    probe = run_python_with_plugin(plugin_site, PROBE, env={"CTI_AGENT_LOAD_PLUGINS": load_plugins})

    assert ("example" in probe["plugins"]) is loaded
    assert ("example-clock" in probe["device_types"]) is loaded
    assert probe["plugins"]["simulator"]["source"] == "built-in"


def test_disabled_plugin_is_not_loaded(plugin_site: Path) -> None:
    probe = run_python_with_plugin(plugin_site, PROBE, env={"PROBE_DISABLED": '["example"]'})

    assert "example" not in probe["plugins"]
    assert "example-clock" not in probe["device_types"]
    assert "simulator" in probe["plugins"]


def test_config_file_is_validated_by_the_plugins_device_config(plugin_site: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[[devices]]\nid = "clock"\ntype = "example-clock"\ninterval = 0.5\nline = "7"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('[[devices]]\nid = "clock"\ntype = "example-clock"\ninterval = 0\n')
    code = """
        import json, sys
        from pathlib import Path
        from agent.config import device_options, load_config
        from agent.seat.devices import DeviceRegistry
        from agent.errors import ConfigError
        from agent.plugins import make_plugin_manager

        registry = DeviceRegistry.from_plugins(make_plugin_manager())
        config = load_config(Path(sys.argv[1]), registry)
        options = device_options(config, registry, config.devices[0])
        try:
            load_config(Path(sys.argv[2]), registry)
            error = None
        except ConfigError as exc:
            error = str(exc)
        print(json.dumps({"options": options.model_dump(), "error": error}))
    """
    proc = run_with_plugin(plugin_site, [sys.executable, "-c", textwrap.dedent(code), str(good), str(bad)])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)

    # name_encoding comes from the device base every device config inherits (#18).
    assert result["options"] == {"interval": 0.5, "line": "7", "name_encoding": "auto"}
    assert result["error"] is not None
    assert "devices[0]" in result["error"]
    assert "interval" in result["error"]


DEVICE_RUN = """
    import asyncio, json
    from datetime import timedelta
    from agent.calls import CallTracker, LineIdentity, TrackerConfig
    from agent.seat.devices import DeviceRegistry
    from agent.plugins import make_plugin_manager

    async def main():
        device_cls = DeviceRegistry.from_plugins(make_plugin_manager()).get("example-clock")
        device = device_cls("clock-1", device_cls.Config.model_validate({"interval": 0.2}))
        events = []

        async def collect():
            async with device:
                async for event in device.events():
                    events.append(event)

        try:
            await asyncio.wait_for(collect(), timeout=1.5)
        except TimeoutError:
            pass
        return device, events

    device, events = asyncio.run(main())
    # Read the events as the agent would: a tracker on the device's line, ring time-out
    # shorter than the interval so each ring is its own unanswered call.
    tracker = CallTracker(
        LineIdentity(seat="seat-1", device_id="clock-1", line=device.lines()[0]),
        TrackerConfig(ring_timeout=0.1, reports_hook=device.reports_hook),
    )
    call_events = []
    for event in events:
        call_events += tracker.feed(event, event.at)
    call_events += tracker.tick(events[-1].at + timedelta(seconds=1))
    print(json.dumps({
        "lines": device.lines(),
        "events": [e.to_dict() for e in events],
        "tz": [e.at.utcoffset() is not None for e in events],
        "calls": [c.call.to_dict() for c in call_events if c.kind.value == "ended"],
    }))
"""


def test_example_device_places_unanswered_calls(plugin_site: Path) -> None:
    result = run_python_with_plugin(plugin_site, DEVICE_RUN)
    events = result["events"]

    assert result["lines"] == ["1"]
    assert all(result["tz"])
    # 1.5 s at one call per 0.2 s: about 7 calls; allow for a slow, loaded machine.
    assert len(events) >= 6
    assert len(events) % 2 == 0
    for ring, caller_id in zip(events[::2], events[1::2], strict=True):
        assert ring["kind"] == "ring"
        assert caller_id["kind"] == "caller_id"
        assert caller_id["number"] == EXAMPLE_NUMBER
        assert caller_id["name"] == "Example"
        assert ring["device_id"] == caller_id["device_id"] == "clock-1"
        assert ring["line"] == caller_id["line"] == "1"
    ring_times = [_seconds(e["at"]) for e in events[::2]]
    gaps = [later - earlier for earlier, later in zip(ring_times, ring_times[1:], strict=False)]
    assert min(gaps) >= 0.18, gaps

    calls = result["calls"]
    assert len(calls) == len(events) // 2
    for call in calls:
        assert call["direction"] == "in"
        assert call["number_raw"] == EXAMPLE_NUMBER
        assert call["number_e164"] == "+86" + EXAMPLE_NUMBER
        assert call["cid_name"] == "Example"
        assert call["answered_at"] is None
        assert call["end_reason"] == "ring_timeout"
        # The device cannot see the handset, so "not answered" is all the tracker can say.
        assert call["disposition"] == "unknown"
    assert len({call["uuid"] for call in calls}) == len(calls)


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
