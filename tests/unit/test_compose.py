"""deploy/compose holds together: addresses, ports, volumes and users, without Docker.

Docker cannot run here, so the stack is checked as compose would read it: ``compose.yaml`` is
rendered with ``env.example``'s values (``${VAR}``, ``${VAR:-default}``, ``${VAR:?message}``), then
parsed; the files it mounts (``centre.toml``, ``prometheus.yml``, Grafana's provisioning) are
parsed and loaded the way their programs do; the commands it runs are parsed by the CLI itself.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from cli_parse import parse_cli

from agent.config import load_config, parse_listen
from agent.web.guard import allowed_hosts, is_loopback

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
WILDCARDS = {"0.0.0.0", "::"}

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def env_example() -> dict[str, str]:
    values = {}
    for line in (COMPOSE_DIR / "env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def render(text: str, env: dict[str, str]) -> str:
    """``text`` with compose's variable forms replaced from ``env``; KeyError for a missing required one."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        value = env.get(name)
        if op in (":-", "-"):
            return value if value else arg
        if op in (":?", "?"):
            if not value:
                raise KeyError(f"{name}: {arg}")
            return value
        return value or ""

    return _VARIABLE.sub(substitute, text)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    text = (COMPOSE_DIR / "compose.yaml").read_text(encoding="utf-8")
    loaded: dict[str, Any] = yaml.safe_load(render(text, env_example()))
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


@pytest.fixture
def centre_config(monkeypatch: pytest.MonkeyPatch) -> Any:
    """centre.toml as the centre loads it in the container (XDG_DATA_HOME from the Dockerfile)."""
    monkeypatch.setenv("XDG_DATA_HOME", dockerfile_env()["XDG_DATA_HOME"])
    monkeypatch.delenv("CTI_AGENT_DATABASE_URL", raising=False)
    return load_config(COMPOSE_DIR / "centre.toml")


def dockerfile_lines() -> list[str]:
    text = (COMPOSE_DIR / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def dockerfile_env() -> dict[str, str]:
    env = {}
    for line in dockerfile_lines():
        if line.startswith("ENV "):
            name, _, value = line[4:].partition("=")
            env[name.strip()] = value.strip()
    return env


def ports(service: dict[str, Any]) -> dict[int, int]:
    """Published ports: container port -> host port."""
    published = {}
    for entry in service.get("ports", []):
        host, _, container = str(entry).rpartition(":")
        published[int(container)] = int(host)
    return published


def prometheus_flags(service: dict[str, Any]) -> dict[str, str]:
    """Prometheus' ``--name=value`` flags (a bare ``--name`` is ``"true"``)."""
    flags = {}
    for arg in service["command"]:
        name, _, value = arg.removeprefix("--").partition("=")
        flags[name] = value or "true"
    return flags


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Volumes: target in the container -> source (a named volume, or a path relative to compose.yaml)."""
    result = {}
    for entry in service.get("volumes", []):
        source, target, *_ = str(entry).split(":")
        result[target] = source
    return result


def test_every_variable_compose_needs_is_in_env_example() -> None:
    text = (COMPOSE_DIR / "compose.yaml").read_text(encoding="utf-8")
    required = {m["name"] for m in _VARIABLE.finditer(text) if m["op"] in (":?", "?", None)}
    assert required <= set(env_example()), required - set(env_example())
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        render(text, {})


def test_the_stack_is_the_centre_its_database_prometheus_and_grafana(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", "migrate", "centre", "prometheus", "grafana"}
    assert services["migrate"]["image"] == services["centre"]["image"] == "cti-agent:local"
    assert services["migrate"]["build"]["dockerfile"] == "deploy/compose/Dockerfile"
    assert (COMPOSE_DIR / services["migrate"]["build"]["context"]).resolve() == ROOT
    assert services["centre"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_the_centre_listens_on_the_containers_address_at_its_published_port(
    services: dict[str, Any], centre_config: Any
) -> None:
    centre = services["centre"]
    command = centre["command"]
    assert command[:3] == ["centre", "--config", "/etc/cti-agent/centre.toml"]
    assert "--listen" not in command  # the address is centre.toml's
    host, port = parse_listen(centre_config.centre.listen)
    assert host in WILDCARDS, "a loopback listen address is unreachable through a published port"
    assert not is_loopback(host)
    assert ports(centre) == {port: 8340}
    # The health check asks from inside the container, over its loopback, on the same port.
    check = " ".join(centre["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/healthz" in check
    # Prometheus reaches it as "centre": the Host guard must accept that name (and loopback).
    assert {"centre", "127.0.0.1", "localhost"} <= allowed_hosts(host, centre_config.centre.hosts)


def test_prometheus_and_grafana_listen_on_the_containers_address(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    flags = prometheus_flags(prometheus)
    listen_host, listen_port = parse_listen(flags["web.listen-address"])
    assert listen_host in WILDCARDS
    assert ports(prometheus) == {listen_port: 9090}
    grafana = services["grafana"]
    assert grafana["environment"]["GF_SERVER_HTTP_ADDR"] in WILDCARDS
    assert ports(grafana) == {int(grafana["environment"]["GF_SERVER_HTTP_PORT"]): 3000}


def test_the_database_is_not_published_and_the_centre_names_it_by_service(services: dict[str, Any]) -> None:
    postgres = services["postgres"]
    assert "ports" not in postgres  # seats never reach the database; only the stack does
    env = postgres["environment"]
    password = env_example()["POSTGRES_PASSWORD"]
    expected = f"postgresql+psycopg://{env['POSTGRES_USER']}:{password}@postgres:5432/{env['POSTGRES_DB']}"
    for name in ("migrate", "centre"):
        assert services[name]["environment"]["CTI_AGENT_DATABASE_URL"] == expected
    assert re.fullmatch(r"[A-Za-z0-9_-]+", password), "the password is put into a URL as it is"


def on_the_host(args: list[str], service: dict[str, Any]) -> list[str]:
    """``args`` with each bind-mounted file's container path replaced by the file in the checkout."""
    binds = {t: str(COMPOSE_DIR / s) for t, s in mounts(service).items() if s.startswith(".")}
    return [binds.get(arg, arg) for arg in args]


def test_the_commands_it_runs_parse_against_the_cli(services: dict[str, Any]) -> None:
    entrypoint = next(line for line in dockerfile_lines() if line.startswith("ENTRYPOINT "))
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == ["cti-agent"]
    for name in ("migrate", "centre"):
        parse_cli(on_the_host(services[name]["command"], services["centre"]))
    # The ones compose.yaml's header tells an admin to run in the centre's container.
    header = (COMPOSE_DIR / "compose.yaml").read_text(encoding="utf-8").split("\nname:", 1)[0]
    lines = re.findall(r"docker compose exec centre cti-agent ([^#\n]+)", header)
    assert lines
    for line in lines:
        parse_cli(on_the_host(shlex.split(line), services["centre"]))


def test_the_centre_runs_as_its_own_user_with_its_data_on_the_volume(
    services: dict[str, Any], centre_config: Any
) -> None:
    lines = dockerfile_lines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users
    assert users[-1] not in {"root", "0"}
    (useradd,) = [m for line in lines for m in re.findall(r"useradd [^&]*", line)]
    assert useradd.split()[-1] == users[-1]
    home = shlex.split(useradd)[shlex.split(useradd).index("--home-dir") + 1]
    assert "--create-home" in useradd  # owned by the user, so a new named volume is too
    data_dir = PurePosixPath(str(centre_config.agent.data_dir))
    assert data_dir == PurePosixPath(home) == PurePosixPath(dockerfile_env()["XDG_DATA_HOME"], "cti-agent")
    # The recording store defaults to a directory in the data dir: on the volume, not in the image.
    assert centre_config.centre.recordings == {}
    volumes = mounts(services["centre"])
    assert volumes[str(data_dir)] == "centre-data"
    assert volumes["/etc/cti-agent/centre.toml"] == "./centre.toml"
    assert (COMPOSE_DIR / "centre.toml").is_file()
    for service in services.values():
        assert str(service.get("user", "")) not in {"root", "0", "0:0"}
    assert "tzdata" in " ".join(lines)  # TZ names a zone the image must know


def test_every_volume_is_declared_and_every_bind_mount_exists(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, service in services.items():
        for target, source in mounts(service).items():
            assert target.startswith("/"), (name, target)
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), (name, source)
            else:
                used.add(source)
    assert used == declared
    assert mounts(services["postgres"])["/var/lib/postgresql/data"] == "postgres-data"
    flags = prometheus_flags(services["prometheus"])
    assert mounts(services["prometheus"])[flags["storage.tsdb.path"]] == "prometheus-data"
    assert mounts(services["grafana"])["/var/lib/grafana"] == "grafana-data"


def test_prometheus_finds_its_config_and_scrapes_the_centre_by_service_name(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    flags = prometheus_flags(prometheus)
    config_file = PurePosixPath(flags["config.file"])
    volumes = mounts(prometheus)
    host_dir = COMPOSE_DIR / volumes[str(config_file.parent)]
    config = yaml.safe_load((host_dir / config_file.name).read_text(encoding="utf-8"))
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "cti-centre"]
    (centre_targets,) = job["file_sd_configs"][0]["files"]
    assert (host_dir / centre_targets).parent.is_dir()
    # The target the header tells the admin to write (the centre's service name and port).
    header = (COMPOSE_DIR / "compose.yaml").read_text(encoding="utf-8")
    (written,) = re.findall(r"echo '(\[.*\])' > \.\./prometheus/(targets/centre\.json)", header)
    assert written[1] == centre_targets
    assert json.loads(written[0]) == [{"targets": ["centre:8340"], "labels": {}}]
    assert set(json.loads(written[0])[0]["targets"]) == {f"centre:{p}" for p in ports(services["centre"])}


def test_grafana_reads_prometheus_by_service_name_and_its_dashboards_are_mounted(
    services: dict[str, Any],
) -> None:
    grafana = services["grafana"]
    volumes = mounts(grafana)
    provisioning = COMPOSE_DIR / volumes["/etc/grafana/provisioning"]
    (datasource,) = yaml.safe_load(
        (provisioning / "datasources" / "cti-prometheus.yaml").read_text(encoding="utf-8")
    )["datasources"]
    prometheus_port = next(iter(ports(services["prometheus"])))
    assert datasource["url"] == f"http://prometheus:{prometheus_port}"
    (provider,) = yaml.safe_load(
        (provisioning / "dashboards" / "cti-dashboards.yaml").read_text(encoding="utf-8")
    )["providers"]
    dashboards_target = provider["options"]["path"]
    dashboards = COMPOSE_DIR / volumes[dashboards_target]
    assert sorted(p.name for p in dashboards.glob("*.json")) == [
        "cti-supervisor.json",
        "cti-supervisor.zh-CN.json",
        "cti-wallboard.json",
        "cti-wallboard.zh-CN.json",
    ]
    home = PurePosixPath(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert str(home.parent) == dashboards_target
    assert (dashboards / home.name).is_file()
