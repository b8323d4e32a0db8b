"""A real S3 object store for the test session: a throwaway single-node Ceph cluster with radosgw.

``tests/ceph/ceph-rgw-up.sh`` starts one monitor, one OSD on ``memstore`` (data in
RAM) and radosgw (beast frontend), all on 127.0.0.1 with ports picked free here,
in about 2 s; ``tests/ceph/ceph-rgw-down.sh`` stops them by PID and removes the
state directory, also when the session fails. The daemons inherit the
``CTI_CI_RUN_ID`` variable, so ``.ci/run`` stops any left behind when pytest itself
is killed. The recipe and its measurements: ``/work/shared/recipes/ceph-rgw.md``.

``conftest.py`` imports the ``rgw`` fixture; :func:`start_rgw` serves the benchmark.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

CEPH = Path(__file__).resolve().parents[1] / "ceph"
RGW_MISSING = (
    "Ceph's radosgw/ceph-mon/ceph-osd not found: run `make test` "
    "(tests/system-deps.sh installs ceph-mon ceph-osd ceph-common radosgw)"
)
ACCESS_KEY = "TESTACCESSKEY"
SECRET_KEY = "TESTSECRETKEY"  # a throwaway cluster's user, nothing else


@dataclass(frozen=True)
class RgwServer:
    """A running radosgw: its S3 endpoint, the keys of its one user, and its state directory."""

    endpoint: str
    access_key: str
    secret_key: str
    dir: Path


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _port_block() -> int:
    """A base port with base (mon), base+1 (rgw) and base+10..base+30 (OSD) free."""
    for _ in range(50):
        base = random.randrange(20000, 60000, 100)
        if all(_free(p) for p in [base, base + 1, *range(base + 10, base + 31)]):
            return base
    raise RuntimeError("no free block of ports for the Ceph test cluster")


def missing_binaries() -> list[str]:
    """The Ceph programs the scripts need that are not installed."""
    needed = ("monmaptool", "ceph-mon", "ceph-osd", "ceph", "radosgw", "radosgw-admin", "uuidgen", "curl")
    return [name for name in needed if shutil.which(name) is None]


@contextmanager
def start_rgw(objectstore: str = "memstore", memstore_bytes: int = 1 << 30) -> Iterator[RgwServer]:
    """Start a throwaway cluster; stop it and remove its directory on the way out, whatever happened."""
    base = _port_block()
    state = Path(tempfile.mkdtemp(prefix="cti-ceph-rgw."))
    env = dict(
        os.environ,  # CTI_CI_RUN_ID included: .ci/run finds the daemons by it
        D=str(state),
        MON_PORT=str(base),
        RGW_PORT=str(base + 1),
        OSD_PORT_MIN=str(base + 10),
        OBJECTSTORE=objectstore,
        MEMSTORE_BYTES=str(memstore_bytes),
        S3_AK=ACCESS_KEY,
        S3_SK=SECRET_KEY,
    )
    try:
        up = subprocess.run(
            ["bash", str(CEPH / "ceph-rgw-up.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if up.returncode != 0:
            logs = ""
            for log in sorted((state / "log").glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-20:]
                logs += f"\n--- {log.name} (tail)\n" + "\n".join(tail)
            raise RuntimeError(f"ceph-rgw-up.sh failed ({up.returncode}): {up.stderr}{up.stdout}{logs}")
        yield RgwServer(f"http://127.0.0.1:{base + 1}", ACCESS_KEY, SECRET_KEY, state)
    finally:
        subprocess.run(
            ["bash", str(CEPH / "ceph-rgw-down.sh"), str(state)],
            env=dict(os.environ, SIG="KILL"),
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(state, ignore_errors=True)


def _gateway_pid(server: RgwServer) -> int | None:
    pid_file = server.dir / "run" / "client.rgw.a.pid"
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if str(server.dir / "ceph.conf").encode() in cmdline else None


def _answers(server: RgwServer) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", int(server.endpoint.rsplit(":", 1)[1])), timeout=1):
            return True
    except OSError:
        return False


def _serves(server: RgwServer) -> bool:
    """Whether the gateway answers S3 (an anonymous ListBuckets is 200)."""
    try:
        with urllib.request.urlopen(server.endpoint + "/", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def stop_gateway(server: RgwServer) -> None:
    """Stop radosgw alone (the monitor and OSD keep the data): the store is down, as when its host is.

    Waits until the port refuses connections.
    """
    pid = _gateway_pid(server)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _answers(server):
        if time.monotonic() > deadline:
            raise RuntimeError("radosgw did not stop within 30 s")
        time.sleep(0.1)


def start_gateway(server: RgwServer) -> None:
    """Start radosgw again on the same port and data (no-op when it runs); waits until it answers."""
    if _gateway_pid(server) is None or not _answers(server):
        subprocess.run(
            ["radosgw", "-c", str(server.dir / "ceph.conf"), "-n", "client.rgw.a"],
            check=True,
            capture_output=True,
            timeout=60,
        )
    deadline = time.monotonic() + 60
    while not _serves(server):
        if time.monotonic() > deadline:
            raise RuntimeError("radosgw did not answer within 60 s of its start")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def rgw() -> Iterator[RgwServer]:
    """A real Ceph RGW (S3) on 127.0.0.1 for the session; fails, never skips, when Ceph is not installed."""
    missing = missing_binaries()
    if missing:
        pytest.fail(f"{RGW_MISSING}; missing: {' '.join(missing)}")
    try:
        with start_rgw() as server:
            yield server
    except RuntimeError as exc:
        pytest.fail(str(exc))
