"""deploy/INSTALL.md says only what the code does: its configs load and its commands parse.

Every TOML block is loaded as the agent or the centre loads it, and every ``cti-agent`` call (in
shell blocks and in inline code) is parsed by the CLI itself, so a renamed option or config key
fails here. File paths are not opened: ``/etc/cti-agent/...`` exists on the machines the notes
are for, not here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest
from cli_parse import cli_calls, inline_calls, parse_cli

from agent.config import Config, is_centre_url, load_config
from agent.plugins import make_plugin_manager
from agent.seat.devices import DeviceRegistry
from storage.blobconfig import RecordingStoreSettings

INSTALL = Path(__file__).resolve().parents[2] / "deploy" / "INSTALL.md"


def blocks(language: str) -> list[str]:
    text = INSTALL.read_text(encoding="utf-8")
    return [re.sub(r"^ {3}", "", b, flags=re.M) for b in re.findall(rf"```{language}\n(.*?)```", text, re.S)]


def load(block: str, tmp_path: Path) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(block, encoding="utf-8")
    return load_config(path, DeviceRegistry.from_plugins(make_plugin_manager(load_entrypoints=False)))


@pytest.fixture
def no_file_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """click.Path takes any path as it is (the options' other checks stay)."""

    def convert(self: click.Path, value: Any, param: Any, ctx: Any) -> Any:
        return self.coerce_path_result(value)

    monkeypatch.setattr(click.Path, "convert", convert)


def test_every_cti_agent_command_in_the_notes_parses(no_file_checks: None) -> None:
    calls = [call for block in blocks("sh") for call in cli_calls(block)]
    mentions = [c for c in inline_calls(INSTALL.read_text(encoding="utf-8")) if c[:1] != ["COMMAND"]]
    commands = {" ".join(call[:2]) for call in calls + mentions}
    for expected in ("users add", "seats add", "seats list", "seats revoke", "run --config", "sync --status"):
        assert any(c.startswith(expected) for c in commands), expected
    for call, mention in [(c, False) for c in calls] + [(c, True) for c in mentions]:
        try:
            parse_cli(call, mention=mention)
        except click.ClickException as exc:
            pytest.fail(f"cti-agent {' '.join(call)}: {exc.format_message()}")


def test_every_config_block_loads(tmp_path: Path) -> None:
    configs = [load(block, tmp_path) for block in blocks("toml")]
    assert len(configs) == 3


def test_the_seat_names_only_its_centre_and_token(tmp_path: Path) -> None:
    (seat,) = [load(b, tmp_path) for b in blocks("toml") if "[central]" in b]
    assert seat.central.url is not None
    assert is_centre_url(seat.central.url)
    assert seat.central.url.startswith("https://")
    assert seat.central.token_file == Path("/etc/cti-agent/seat.token")
    assert seat.storage.url is None  # no database URL on a seat: its own SQLite
    assert seat.recording.enabled
    assert seat.agent.data_dir == Path("/var/lib/cti-agent")
    assert [d.type for d in seat.devices] == ["hayes"]


def test_the_centre_config_and_its_recording_store(tmp_path: Path) -> None:
    (centre,) = [
        load(b, tmp_path) for b in blocks("toml") if b.lstrip().startswith("[agent]") and "[centre]" in b
    ]
    assert centre.storage.url is not None
    assert centre.storage.url.startswith("postgresql+psycopg://")
    assert centre.centre.listen == "0.0.0.0:8340"
    assert centre.agent.data_dir == Path("/var/lib/cti-agent")
    (store,) = [load(b, tmp_path) for b in blocks("toml") if b.lstrip().startswith("[centre.recordings]")]
    settings = RecordingStoreSettings.model_validate(store.centre.recordings)
    assert settings.bucket == "cti-recordings"


def test_the_notes_say_nothing_of_the_old_design() -> None:
    text = INSTALL.read_text(encoding="utf-8")
    for stale in ("to come", "CTI_AGENT_CENTRAL_URL", "cti-agent console", "[postgres]'", "5432:5432"):
        assert stale not in text, stale
    # The old mode is named once, to say how to leave it.
    assert text.count("recordings_dir") == 1
