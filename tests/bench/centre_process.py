"""A real ``cti-agent centre`` for the benchmarks, in its own process (the seats' client is the bench)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def centre_process(root: Path, data_dir: Path, tables: str = "") -> Iterator[str]:
    """A centre keeping its data in ``data_dir``, with ``tables`` (TOML) in its config; its address."""
    port = free_port()
    config = root / "centre.toml"
    config.write_text(
        f'[agent]\ndata_dir = "{data_dir}"\n\n[centre]\nlisten = "127.0.0.1:{port}"\n\n{tables}',
        encoding="utf-8",
    )
    log_path = root / "centre.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "--log-level", "WARNING", "centre", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{address}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("the centre did not start: " + log_path.read_text()[-2000:])
            time.sleep(0.2)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)


__all__ = ["centre_process", "free_port"]
