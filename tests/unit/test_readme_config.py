"""The README's configuration reference is a config file that loads: the docs cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

from agent.config import load_config
from agent.plugins import make_plugin_manager
from agent.seat.devices import DeviceRegistry

README = Path(__file__).resolve().parents[2] / "README.md"


def toml_blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```toml\n(.*?)```", text[start:end], flags=re.S)


def test_the_configuration_reference_loads(tmp_path: Path) -> None:
    (block,) = toml_blocks("Configuration")
    path = tmp_path / "agent.toml"
    path.write_text(block, encoding="utf-8")
    registry = DeviceRegistry.from_plugins(make_plugin_manager(load_entrypoints=False))
    config = load_config(path, registry)
    assert config.agent.seat == "seat-07"
    assert config.targets.for_rep("zhang.wei", "east-1").calls == 100
    assert config.recording.codec == "flac"


def test_the_device_examples_load(tmp_path: Path) -> None:
    (block,) = toml_blocks("Devices")
    path = tmp_path / "agent.toml"
    path.write_text(block, encoding="utf-8")
    registry = DeviceRegistry.from_plugins(make_plugin_manager(load_entrypoints=False))
    config = load_config(path, registry)
    assert [d.type for d in config.devices] == ["hayes", "serialbox", "ncid", "whozz", "linetap"]
