"""notify_desktop runs its command as a subprocess from the event loop, without blocking it."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from agent.events import Call, Direction
from plugins.notify_desktop import DesktopNotifier, NotifyConfig

CALL = Call(
    uuid="c1",
    seat="s",
    device_id="d",
    line="L1",
    rep="alice",
    team="",
    direction=Direction.IN,
    started_at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
    number_raw="13812345678",
    cid_name="<b>张三</b> & co",
)


async def test_commands_run_off_the_loop(tmp_path: Path) -> None:
    out = tmp_path / "args"
    script = tmp_path / "notify-send"
    body = f'import sys, pathlib\npathlib.Path({str(out)!r}).write_text("|".join(sys.argv[1:]))\n'
    script.write_text(f"#!{sys.executable}\n{body}")
    script.chmod(0o755)
    plugin = DesktopNotifier(NotifyConfig(enabled=True), command=str(script), opener=None)
    plugin.call_started(CALL)
    for _ in range(100):
        if out.exists():
            break
        await asyncio.sleep(0.05)
    assert out.read_text().endswith("Incoming call|13812345678 &lt;b&gt;张三&lt;/b&gt; &amp; co line L1")
