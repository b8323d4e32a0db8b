"""An emulator of the hidapi ``hid`` module's interface (``enumerate``, ``device``) that replays reports.

This machine has no /dev/uhid, so the HID transport is tested at the hidapi
boundary: :class:`FakeHidApi` lists the devices it was given and each opened
device returns its queued input reports, in the report format of
plugins/serialbox/hid.py, then raises ``OSError`` as hidapi does when the
device is unplugged. Reads without a queued report wait their timeout and
return ``[]``, like ``hid.device.read``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any


def reports(payload: bytes, size: int = 8) -> list[list[int]]:
    """``payload`` cut into input reports of ``size`` bytes: ``count | data | zero padding``."""
    out = []
    step = size - 1
    for i in range(0, len(payload), step):
        chunk = payload[i : i + step]
        out.append([len(chunk), *chunk, *([0] * (step - len(chunk)))])
    return out


class FakeHidDevice:
    """One emulated device: its reports, then unplugged."""

    def __init__(self, api: FakeHidApi) -> None:
        self._api = api
        self._queue: list[list[int] | None] = []
        self.closed = False

    def open_path(self, path: bytes) -> None:
        if path not in self._api.streams:
            raise OSError(f"open failed: {path!r}")
        self._queue = list(self._api.streams[path])

    def read(self, max_length: int, timeout_ms: int = 0) -> list[int]:
        if not self._queue:
            raise OSError("read error (device disconnected)")
        report = self._queue.pop(0)
        if report is None:  # a quiet moment: the read times out
            time.sleep(timeout_ms / 1000)
            return []
        return report[:max_length]

    def close(self) -> None:
        self.closed = True


class FakeHidApi:
    """The ``hid`` module for tests: ``devices`` as hidapi's enumerate() lists them, ``streams`` by path."""

    def __init__(self, devices: Iterable[tuple[dict[str, Any], list[list[int] | None]]]) -> None:
        self.infos: list[dict[str, Any]] = []
        self.streams: dict[bytes, list[list[int] | None]] = {}
        for info, stream in devices:
            self.infos.append(info)
            self.streams[info["path"]] = stream

    def enumerate(self, vendor_id: int = 0, product_id: int = 0) -> list[dict[str, Any]]:
        return [
            info
            for info in self.infos
            if (not vendor_id or info["vendor_id"] == vendor_id)
            and (not product_id or info["product_id"] == product_id)
        ]

    def device(self) -> FakeHidDevice:
        return FakeHidDevice(self)


def info(path: bytes, vid: int, pid: int, product: str, serial: str = "") -> dict[str, Any]:
    """An enumerate() entry as hidapi gives it."""
    return {
        "path": path,
        "vendor_id": vid,
        "product_id": pid,
        "serial_number": serial,
        "manufacturer_string": "Holtek",
        "product_string": product,
        "interface_number": 0,
    }
