"""A throwaway Prometheus (Debian's ``prometheus`` package) on loopback, for one test.

Not a ``conftest``: a test module that needs it imports :func:`prometheus_fixture`
(the ``prometheus`` fixture) from here.
The server runs with a temporary config directory and TSDB, and is stopped by the
fixture's teardown; if pytest itself is killed, ``.ci/run`` stops it by the
``CTI_CI_RUN_ID`` variable it inherits.
"""

from __future__ import annotations

import math
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMETHEUS_MISSING = "prometheus not found: run `make test` (tests/system-deps.sh installs it)"


def prometheus_binary() -> str:
    """The prometheus server binary; the test fails (never skips) when it is missing."""
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if found is None:
        pytest.fail(PROMETHEUS_MISSING)
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deploy_config(interval: str = "1s") -> str:
    """``deploy/prometheus/prometheus.yml`` with its scrape and evaluation intervals set to ``interval``."""
    text = (DEPLOY / "prometheus.yml").read_text(encoding="utf-8")
    text, count = re.subn(r"(?m)^(\s*(?:scrape|evaluation)_interval:)\s*\S+", rf"\g<1> {interval}", text)
    assert count == 2, "prometheus.yml should set scrape_interval and evaluation_interval once each"
    text, count = re.subn(r"(?m)^(\s*scrape_timeout:)\s*\S+", r"\g<1> 1s", text)
    assert count == 1
    return text


class Prometheus:
    """A running server: its directory (config, ``targets/``, ``rules/``), URL and a small API client."""

    def __init__(self, workdir: Path, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process = process
        self.log = log
        self.client = httpx.Client(base_url=self.url, timeout=10.0)

    def api(self, path: str, **params: Any) -> Any:
        """GET ``/api/v1/<path>``; returns ``data`` or fails the test with Prometheus' error."""
        response = self.client.get(f"/api/v1/{path}", params=params)
        body = response.json()
        if body.get("status") != "success":
            pytest.fail(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query; the result vector (a scalar becomes a one-sample vector)."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return list(data["result"])

    def values(self, expr: str, at: float | None = None, key: str | None = None) -> dict[str, float]:
        """Result of an instant query as ``{label value of key: value}`` (key None: ``{"": value}``)."""
        out: dict[str, float] = {}
        for sample in self.query(expr, at):
            name = sample["metric"].get(key, "") if key else ""
            assert name not in out, f"{expr}: two samples for {key}={name!r}"
            out[name] = float(sample["value"][1])
        return out

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
        """Poll ``check`` until it is true; fail with ``what`` and the server log after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"prometheus exited ({self.process.returncode}):\n{self.tail()}")
            try:
                if check():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        """The end of the server's log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _start(binary: str, workdir: Path) -> Prometheus:
    log = workdir / "prometheus.log"
    for _ in range(3):  # the port could be taken between choosing and binding it
        port = _free_port()
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1d",
                    "--log.level=warn",
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
            )
        server = Prometheus(workdir, port, process, log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if server.client.get("/-/ready").status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        _stop(server)
        if "address already in use" not in server.tail():
            break
    pytest.fail(f"prometheus did not become ready:\n{server.tail()}")


def _stop(server: Prometheus) -> None:
    server.client.close()
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=5)


@pytest.fixture(name="prometheus")
def prometheus_fixture() -> Iterator[Callable[[], Prometheus]]:
    """``start()`` runs Prometheus on the deploy config (1 s intervals) from a temp directory.

    Before calling ``start()`` the test writes its targets into ``start.workdir / "targets"``.
    The rule files are copied from ``deploy/prometheus/rules``. Teardown stops the server
    and removes the directory.
    """
    binary = prometheus_binary()
    workdir = Path(tempfile.mkdtemp(prefix="cti-prom-"))
    (workdir / "targets").mkdir()
    shutil.copytree(DEPLOY / "rules", workdir / "rules")
    (workdir / "prometheus.yml").write_text(deploy_config(), encoding="utf-8")
    servers: list[Prometheus] = []

    def start() -> Prometheus:
        server = _start(binary, workdir)
        servers.append(server)
        return server

    start.workdir = workdir  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        for server in servers:
            _stop(server)
        shutil.rmtree(workdir, ignore_errors=True)


def is_number(value: float) -> bool:
    """True for a finite float (Prometheus answers NaN for 0/0 and empty histograms)."""
    return not math.isnan(value) and not math.isinf(value)


__all__ = ["DEPLOY", "Prometheus", "deploy_config", "is_number", "prometheus_binary", "prometheus_fixture"]
