"""notify_desktop: off unless configured and on a desktop; arguments, escaping, missed calls, open URL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.config import Config
from agent.errors import ConfigError
from agent.events import Absence, Call, Direction, Disposition
from plugins import notify_desktop
from plugins.notify_desktop import DesktopNotifier, NotifyConfig, desktop_session

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CALL = Call(
    uuid="c1",
    seat="s",
    device_id="d",
    line="L1",
    rep="alice",
    team="",
    direction=Direction.IN,
    started_at=T0,
    number_raw="13812345678",
    number_e164="+8613812345678",
    cid_name="<b>张三</b> & co",
)


def notifier(**options: object) -> tuple[DesktopNotifier, list[list[str]]]:
    spawned: list[list[str]] = []
    config = NotifyConfig.model_validate({"enabled": True, **options})
    return DesktopNotifier(
        config, command="/usr/bin/notify-send", opener="/usr/bin/xdg-open", spawn=spawned.append
    ), spawned


def test_incoming_call_is_notified_with_escaped_text() -> None:
    plugin, spawned = notifier(urgency="normal", expire_ms=5000)
    plugin.call_started(CALL)
    assert spawned == [
        [
            "/usr/bin/notify-send",
            "--urgency=normal",
            "--expire-time=5000",
            "--app-name=cti-agent",
            "--",
            "Incoming call",
            "13812345678 &lt;b&gt;张三&lt;/b&gt; &amp; co line L1",
        ]
    ]
    plugin.call_started(replace(CALL, direction=Direction.OUT))
    assert len(spawned) == 1  # outbound calls are the rep's own


def test_withheld_and_missed() -> None:
    plugin, spawned = notifier()
    plugin.call_started(
        replace(CALL, number_raw=None, number_e164=None, cid_name=None, absence=Absence.PRIVATE)
    )
    assert spawned[-1][-1] == "withheld number line L1"
    plugin.call_ended(replace(CALL, disposition=Disposition.ANSWERED))
    assert len(spawned) == 1
    plugin.call_ended(replace(CALL, disposition=Disposition.MISSED, customer_name="Acme"))
    assert spawned[-1][-2:] == ["Missed call", "13812345678 Acme line L1"]
    quiet, none = notifier(missed=False)
    quiet.call_ended(replace(CALL, disposition=Disposition.MISSED))
    assert none == []


def test_open_url_on_answer() -> None:
    plugin, spawned = notifier(open_url="https://crm.example.com/search?phone={e164}&raw={raw}")
    plugin.call_answered(CALL)
    assert spawned == [
        ["/usr/bin/xdg-open", "https://crm.example.com/search?phone=%2B8613812345678&raw=13812345678"]
    ]
    plugin.call_answered(replace(CALL, number_raw=None, number_e164=None))
    assert len(spawned) == 1
    without, nothing = notifier()
    without.call_answered(CALL)
    assert nothing == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"open_url": "file:///etc/passwd?{e164}"}, "http"),
        ({"open_url": "https://crm/{name}"}, "{e164} and {raw}"),
        ({"urgency": "loud"}, "urgency"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_config(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match="plugins.notify_desktop") as info:
        notify_desktop.agent_configured(Config(plugins={"notify_desktop": options}))
    assert message in str(info.value)


def test_off_by_default_and_without_a_desktop(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert notify_desktop.agent_configured(Config()) is None
    assert notify_desktop.agent_configured(Config(plugins={"notify_desktop": {}})) is None  # enabled = false
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    assert not desktop_session()
    on = Config(plugins={"notify_desktop": {"enabled": True}})
    assert notify_desktop.agent_configured(on) is None
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert notify_desktop.agent_configured(on) is None  # no notify-send
    fake = tmp_path / "notify-send"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    plugin = notify_desktop.agent_configured(on)
    assert isinstance(plugin, DesktopNotifier)
    assert plugin.command == str(fake)


def test_a_ring_without_caller_id_is_told_again_once_the_caller_is_known() -> None:
    spawned: list[list[str]] = []
    plugin = DesktopNotifier(
        NotifyConfig(enabled=True), command="notify-send", opener=None, spawn=spawned.append
    )
    bare = replace(CALL, number_raw=None, number_e164=None, cid_name=None)
    plugin.call_started(bare)
    plugin.call_identified(CALL)
    plugin.call_identified(replace(CALL, customer_name="王总"))  # the lookup answered later: no third pop
    assert len(spawned) == 2
    assert "13812345678" not in spawned[0][-1]
    assert "13812345678" in spawned[1][-1]
