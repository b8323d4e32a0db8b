"""Call-tracker throughput: line events per second through CallTracker.feed on one core.

Run: .venv/bin/python tests/bench/bench_tracker.py
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from agent.calls import CallTracker, LineIdentity, TrackerConfig
from agent.events import CallerId, Connected, Dialed, LineEvent, OffHook, OnHook, Ring

BASE = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def script(n_calls: int) -> list[tuple[float, LineEvent]]:
    """A realistic mix: inbound answered, inbound missed, outbound dialed in bursts."""
    out: list[tuple[float, LineEvent]] = []
    t = 0.0

    def ev(cls: type[LineEvent], **kw: object) -> tuple[float, LineEvent]:
        return t, cls(device_id="d", line="1", at=BASE + timedelta(seconds=t), **kw)  # type: ignore[arg-type]

    for i in range(n_calls):
        kind = i % 3
        if kind == 0:
            out.append(ev(Ring))
            t += 1.5
            out.append(ev(CallerId, number=f"1380013{i % 10000:04d}", name="王伟"))
            t += 3.5
            out.append(ev(Ring))
            t += 2.0
            out.append(ev(OffHook))
            t += 95.0
            out.append(ev(OnHook))
        elif kind == 1:
            for _ in range(4):
                out.append(ev(Ring))
                t += 5.0
            t += 10.0  # rings stop: ended by the next event's tick
        else:
            out.append(ev(OffHook))
            t += 2.0
            out.append(ev(Dialed, digits="0"))
            t += 1.0
            out.append(ev(Dialed, digits="22"))
            t += 0.5
            out.append(ev(Dialed, digits="12345678"))
            t += 12.0
            out.append(ev(Connected))
            t += 60.0
            out.append(ev(OnHook))
        t += 30.0
    return out


def main() -> None:
    events = script(30_000)
    ident = LineIdentity(seat="s", device_id="d", line="1", rep="r", team="t")
    counter = iter(range(10**9))
    tracker = CallTracker(ident, TrackerConfig(reports_connect=True), new_uuid=lambda: f"u{next(counter)}")
    ended = 0
    start = time.perf_counter()
    for offset, event in events:
        for call_event in tracker.feed(event, BASE + timedelta(seconds=offset)):
            ended += call_event.kind == "ended"
    elapsed = time.perf_counter() - start
    print(f"tracker: {len(events)} events, {ended} calls ended in {elapsed:.3f} s")
    print(f"tracker throughput: {len(events) / elapsed:,.0f} events/s on one core")
    print(f"tracker per event: {elapsed / len(events) * 1e6:.1f} us")


if __name__ == "__main__":
    main()
