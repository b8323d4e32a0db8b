"""The agent's configuration: one TOML file parsed into pydantic models.

Unknown keys are errors. An error names the key and the line of the file it is
on (``agent.toml:12: devices[0].rate: ...``), never a traceback. Environment
variables override secrets and URLs only: ``CTI_AGENT_DATABASE_URL``,
``CTI_AGENT_CENTRAL_URL``.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.calls import TrackerConfig
from agent.errors import ConfigError
from agent.numbers import DEFAULT_REGION
from agent.seat.devices import DeviceRegistry

_Settings = TypeVar("_Settings", bound=BaseModel)

APP_NAME = "cti-agent"


def default_data_dir() -> Path:
    """The platform data directory (``~/.local/share/cti-agent`` on Linux)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:8330`` for IPv6) into host and port."""
    match = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]*):(\d+)", value.strip())
    if not match:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host = match.group(1) or match.group(3) or "127.0.0.1"
    port = int(match.group(2) or match.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range")
    return host, port


class AgentSection(_Section):
    """``[agent]``: who this seat is and where it keeps its data."""

    seat: str = Field(default_factory=socket.gethostname, min_length=1)
    rep: str = ""
    team: str = ""
    region: str = DEFAULT_REGION
    data_dir: Path = Field(default_factory=default_data_dir)
    disabled_plugins: list[str] = []
    lookup_timeout: float = Field(default=3.0, gt=0)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        import phonenumbers

        value = value.upper()
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r} (an ISO 3166 code such as CN, US, GB)")
        return value


class StorageSection(_Section):
    """``[storage]``: the database (SQLite in the data directory unless a URL is given)."""

    url: str | None = None


class WebSection(_Section):
    """``[web]``: the seat page's listener (loopback unless configured otherwise)."""

    enabled: bool = True
    listen: str = "127.0.0.1:8330"
    #: The supervisor console's base URL (``cti-agent console``); when set, the caller card links
    #: each earlier call that has a recording to ``{console_url}/calls/{uuid}``, where the console
    #: checks the user's role itself.
    console_url: str | None = None
    #: The shared secret the supervisor console sends (``Authorization: Bearer``) to listen in
    #: live on this seat's calls (``GET /listen/{uuid}``); None turns listen-in off. Listen-in
    #: needs the console to reach this page: set ``listen`` to an address it can reach.
    listen_token: str | None = Field(default=None, min_length=16)
    #: Names the page is reached by besides loopback and its listen address (the seat's host name,
    #: a DNS name); a request for any other ``Host`` is refused, so a DNS-rebinding page cannot use it.
    hosts: list[str] = []

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("console_url")
    @classmethod
    def _console_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.port == 0:
            raise ValueError(f"not an http(s) URL: {value!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"a base URL has no query or fragment: {value!r}")
        # The card appends "/calls/<uuid>": keep the base without its trailing slash.
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


class MetricsSection(_Section):
    """``[metrics]``: the Prometheus exporter's listener and call rules."""

    enabled: bool = True
    listen: str = "127.0.0.1:9330"
    effective_call_seconds: float = Field(default=60.0, ge=0)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value


class TargetValues(Protocol):
    """A set of daily targets from elsewhere (a ``teams`` row); None: no target of that kind."""

    @property
    def calls(self) -> int | None:
        """Calls a day."""

    @property
    def talk_seconds(self) -> float | None:
        """Talk seconds a day."""

    @property
    def effective_calls(self) -> int | None:
        """Effective calls a day."""


class DailyTarget(_Section):
    """A rep's quota for one day; None means no target of that kind."""

    calls: int | None = Field(default=None, ge=0)
    talk_seconds: float | None = Field(default=None, ge=0)
    effective_calls: int | None = Field(default=None, ge=0)


class TargetsSection(DailyTarget):
    """``[targets]``: daily targets per rep, exported as ``cti_target_*`` gauges for the wallboard.

    The top-level keys apply to every rep; ``[targets.teams.<team>]`` overrides
    them for a team's reps and ``[targets.reps.<rep>]`` for one rep, key by key.
    """

    teams: dict[str, DailyTarget] = {}
    reps: dict[str, DailyTarget] = {}

    def with_teams(self, stored: Mapping[str, TargetValues]) -> TargetsSection:
        """These targets with each team's targets from the centre's database laid over the file's.

        ``stored``: team name -> the ``teams`` row's targets (``storage.teams.team_targets``).
        Key by key, a team's stored target wins over ``[targets.teams.<team>]`` (the database
        is where the running centre keeps the team's settings); ``[targets.reps.<rep>]`` still
        wins over both, and the top-level keys apply where neither says anything.
        """
        teams = {name: target.model_copy() for name, target in self.teams.items()}
        for name, values in stored.items():
            own = teams.get(name)
            merged = {key: getattr(own, key) for key in DailyTarget.model_fields} if own is not None else {}
            for key in DailyTarget.model_fields:
                value = getattr(values, key)
                if value is not None:
                    merged[key] = value
            teams[name] = DailyTarget(**merged)
        return self.model_copy(update={"teams": teams})

    def for_rep(self, rep: str, team: str) -> DailyTarget:
        """The targets of ``rep`` in ``team``: the rep's own, else the team's, else the defaults."""
        merged = {name: getattr(self, name) for name in DailyTarget.model_fields}
        for layer in (self.teams.get(team), self.reps.get(rep)):
            if layer is None:
                continue
            for name in DailyTarget.model_fields:
                value = getattr(layer, name)
                if value is not None:
                    merged[name] = value
        return DailyTarget(**merged)


class TrackerSection(_Section):
    """``[tracker]``: how calls are read from line events (see :class:`agent.calls.TrackerConfig`)."""

    ring_timeout: float = Field(default=8.0, gt=0)
    dial_timeout: float = Field(default=4.0, gt=0)
    no_number_calls: bool = False


class DeviceSection(BaseModel):
    """``[[devices]]``: one device. Keys other than these go to the device type's ``Config``."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    type: str = Field(min_length=1)
    enabled: bool = True

    @property
    def options(self) -> dict[str, Any]:
        """The device type's own options."""
        return dict(self.model_extra or {})


class LineSection(_Section):
    """``[[lines]]``: names a device's line and says whose it is (defaults from ``[agent]``)."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    device: str
    port: str = "1"
    rep: str | None = None
    team: str | None = None
    #: The sound input this line's calls are recorded from: a sounddevice name (or part of one) or index.
    audio_device: str | int | None = None
    #: Which input channels (1-based) carry this line; several are mixed into one file, one channel each.
    audio_channels: list[int] = Field(default=[1], min_length=1)

    @field_validator("audio_channels")
    @classmethod
    def _channels(cls, value: list[int]) -> list[int]:
        if any(c < 1 for c in value) or len(set(value)) != len(value):
            raise ValueError("channels are distinct numbers from 1")
        return value


class RecordingSection(_Section):
    """``[recording]``: which calls are recorded, how, and for how long they are kept."""

    enabled: bool = False
    codec: Literal["flac", "opus", "wav"] = "flac"
    #: Hz; None records at the device's own rate (Opus needs 8000, 12000, 16000, 24000 or 48000).
    sample_rate: int | None = Field(default=8000, ge=8000, le=48000)
    start_on: Literal["answered", "off_hook", "ring"] = "answered"
    pre_roll: float = Field(default=2.0, ge=0, le=30)
    policy: Literal["all", "answered", "outbound"] = "answered"
    #: A recording of a call that talked less than this is deleted (0 keeps all).
    min_talk_seconds: float = Field(default=0.0, ge=0)
    retention_days: int | None = Field(default=None, ge=1)
    #: Days per team (the call's ``team``), overriding ``retention_days`` for that team's recordings.
    team_retention_days: dict[str, Annotated[int, Field(ge=1)]] = {}

    @model_validator(mode="after")
    def _opus_rate(self) -> RecordingSection:
        if self.codec == "opus" and self.sample_rate not in (8000, 12000, 16000, 24000, 48000):
            raise ValueError("opus records at 8000, 12000, 16000, 24000 or 48000 Hz: set sample_rate")
        return self


class LeadsSection(_Section):
    """``[leads]``: lead ownership, the guard against two reps working one lead.

    A customer's owner keeps them for ``protection_days`` after they were
    imported or last claimed; after that (or when nobody owns them) another rep
    may claim them from the seat page, at most ``daily_claim_limit`` a day.
    """

    protection_days: int = Field(default=30, ge=0)
    daily_claim_limit: int = Field(default=20, ge=0)


class RepStateSection(_Section):
    """``[rep_state]``: after-call work and pause reasons for the seat page's rep state."""

    #: How long after-call work (wrap-up) lasts before the rep is available again (0: no wrap-up).
    wrap_up_seconds: float = Field(default=30.0, ge=0, le=3600)
    pause_reasons: list[str] = Field(default=["meeting", "training", "break", "lunch"], min_length=1)


class CentralSection(_Section):
    """``[central]``: team mode. With ``url`` set, the seat's outbox is replayed to the centre.

    ``url`` is the centre (``https://centre.example:8340``, ``cti-agent centre``):
    the seat sends its calls, notes and recordings over the seat API with its own
    credential, read from ``token_file`` (written by the IT person from ``cti-agent
    seats add``; readable by its owner only). ``ca_file`` trusts a centre whose
    certificate no system CA signed (a self-signed one: give its certificate).

    The direct-database team mode is gone: a database URL here is refused when
    the sync starts (:func:`agent.seat.transport.make_transport`), and the old
    ``recordings_dir`` share is refused with a clear message, since recordings
    now upload to the centre's own store.
    """

    url: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None
    #: Outbox entries sent per batch (to the centre at most 1000, its limit).
    batch_size: int = Field(default=200, ge=1, le=10_000)
    #: Seconds between polls of an empty outbox (a call's end wakes the sync at once).
    interval: float = Field(default=5.0, gt=0, le=3600)
    #: The longest wait between retries while the centre is unreachable (seconds).
    backoff_max: float = Field(default=300.0, ge=1, le=86_400)
    #: Seconds the screen-pop waits for the centre's customer card before it uses its cache.
    lookup_timeout: float = Field(default=0.3, gt=0, le=10)

    @model_validator(mode="before")
    @classmethod
    def _no_share(cls, data: Any) -> Any:
        # Said plainly rather than "unknown key": a floor moving from the direct-database mode
        # has this line in every seat's config.
        if isinstance(data, dict) and "recordings_dir" in data:
            raise ValueError(
                "recordings_dir is gone with the direct-database team mode: recordings now upload "
                "to the centre (url, token_file), which keeps them in its own store; remove the line "
                "(README: Moving from the direct-database team mode)"
            )
        return data

    @model_validator(mode="after")
    def _http_needs_a_token(self) -> CentralSection:
        if self.url and is_centre_url(self.url) and self.token_file is None:
            raise ValueError(
                "url names a centre (http/https): set token_file to the file holding this seat's token "
                "(cti-agent seats add NAME, at the centre)"
            )
        return self


def is_centre_url(url: str) -> bool:
    """Whether a ``[central] url`` names the centre's seat API (http/https) rather than a database."""
    return url.split(":", 1)[0].lower() in ("http", "https")


#: The KPIs reps may be ranked by (``storage.kpis.RANK_KEYS``; a test keeps the two equal).
RankKey = Literal["talk_seconds", "calls", "effective", "connects", "connect_rate"]


class DispositionCode(_Section):
    """One disposition a rep may give a call to a lead (``[[centre.dispositions]]``).

    ``final``: the lead leaves the worklist (a deal, not interested, a wrong number).
    ``follow_up``: the rep must say when to call again (call back, appointment), and the lead
    comes back on that day's worklist. Neither: the lead stays and comes up again (no answer).
    """

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    en: str = Field(min_length=1, max_length=60)
    zh: str = Field(min_length=1, max_length=60)
    final: bool = False
    follow_up: bool = False
    #: The customer asked not to be called: their numbers go on the do-not-call list.
    do_not_call: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> DispositionCode:
        if self.final and self.follow_up:
            raise ValueError(f"disposition {self.code}: final and follow_up exclude each other")
        return self


def default_dispositions() -> list[DispositionCode]:
    """The dispositions a floor starts with (no answer, busy, ..., deal)."""
    return [
        DispositionCode(code="no_answer", en="No answer", zh="无人接听"),
        DispositionCode(code="busy", en="Busy", zh="占线"),
        DispositionCode(code="wrong_number", en="Wrong number", zh="空号/错号", final=True),
        DispositionCode(code="not_interested", en="Not interested", zh="无意向", final=True),
        DispositionCode(
            code="do_not_call", en="Do not call again", zh="要求勿扰", final=True, do_not_call=True
        ),
        DispositionCode(code="call_back", en="Call back at…", zh="约定回拨", follow_up=True),
        DispositionCode(code="appointment", en="Appointment", zh="已预约", follow_up=True),
        DispositionCode(code="deal", en="Deal", zh="成交", final=True),
    ]


class CentreSection(_Section):
    """``[centre]``: the team server (``cti-agent centre``): the console and the seat API on one port.

    With ``tls_cert`` and ``tls_key`` (PEM files) it serves HTTPS; without them plain HTTP, which
    is for loopback or behind a TLS proxy. ``hosts`` are the names it is reached by besides
    loopback and its listen address (requests for any other ``Host`` are refused).

    ``recordings`` is the ``[centre.recordings]`` table: where the centre keeps the seats'
    recordings (a directory, by default ``<data_dir>/recordings``, or an S3 bucket). It stays a
    raw table here, since the kernel does not import storage; ``cti-agent centre`` validates it
    with ``storage.blobconfig.RecordingStoreSettings`` at start-up.

    ``reps_see_team_ranking`` and ``rank_by`` shape the console's statistics and wallboard:
    whether a rep's log-in sees their team's ranking or only their own figures, and which
    KPI ranks the reps.
    """

    listen: str = "127.0.0.1:8340"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    hosts: list[str] = []
    recordings: dict[str, Any] = {}
    #: Whether a rep's log-in sees their whole team ranked on the statistics pages and the
    #: wallboard (True) or only their own row (False, the default).
    reps_see_team_ranking: bool = False
    #: The KPI reps are ranked by, best first (ties: talk time, calls, name); see ``storage.kpis``.
    rank_by: RankKey = "talk_seconds"
    #: What a rep may say a call to a lead came to, in the order the seat page offers them.
    dispositions: list[DispositionCode] = Field(default_factory=default_dispositions)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("dispositions")
    @classmethod
    def _unique_codes(cls, value: list[DispositionCode]) -> list[DispositionCode]:
        codes = [d.code for d in value]
        if not codes:
            raise ValueError("at least one disposition is needed")
        twice = sorted({c for c in codes if codes.count(c) > 1})
        if twice:
            raise ValueError(f"dispositions named twice: {', '.join(twice)}")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> CentreSection:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        return self


class Config(_Section):
    """The whole configuration file."""

    agent: AgentSection = Field(default_factory=AgentSection)
    storage: StorageSection = Field(default_factory=StorageSection)
    web: WebSection = Field(default_factory=WebSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    tracker: TrackerSection = Field(default_factory=TrackerSection)
    targets: TargetsSection = Field(default_factory=TargetsSection)
    recording: RecordingSection = Field(default_factory=RecordingSection)
    leads: LeadsSection = Field(default_factory=LeadsSection)
    rep_state: RepStateSection = Field(default_factory=RepStateSection)
    central: CentralSection = Field(default_factory=CentralSection)
    centre: CentreSection = Field(default_factory=CentreSection)
    devices: list[DeviceSection] = []
    lines: list[LineSection] = []
    #: ``[plugins.<name>]``: each plugin's own table, validated by that plugin in ``agent_configured``.
    plugins: dict[str, dict[str, Any]] = {}

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL: ``CTI_AGENT_DATABASE_URL``, ``[storage] url``, or SQLite in the data dir."""
        env = os.environ.get("CTI_AGENT_DATABASE_URL")
        if env:
            return env
        if self.storage.url:
            return self.storage.url
        return f"sqlite:///{self.agent.data_dir / 'cti-agent.db'}"

    @property
    def central_url(self) -> str | None:
        """Team mode's upstream: ``CTI_AGENT_CENTRAL_URL``, ``[central] url``, or None (one machine).

        Only the centre (http/https, see :func:`is_centre_url`) is accepted by the sync.
        """
        return os.environ.get("CTI_AGENT_CENTRAL_URL") or self.central.url or None

    def tracker_config(
        self, *, reports_hook: bool, reports_connect: bool, reports_end: bool = False
    ) -> TrackerConfig:
        """The call tracker's settings for a line on a device with these capabilities."""
        return TrackerConfig(
            ring_timeout=self.tracker.ring_timeout,
            dial_timeout=self.tracker.dial_timeout,
            no_number_calls=self.tracker.no_number_calls,
            reports_hook=reports_hook,
            reports_connect=reports_connect,
            reports_end=reports_end,
            region=self.agent.region,
        )

    def line_for(self, device_id: str, port: str) -> LineSection:
        """The configured line for a device's port, or one made from the ``[agent]`` defaults.

        Never raises: a device's label that is not a valid line id (``Home Line``,
        as an NCID server may send) gets a safe id derived from it (see
        :func:`derived_line_id`); :func:`line_label_problem` says why.
        """
        for line in self.lines:
            if line.device == device_id and line.port == port:
                return line
        return LineSection(id=derived_line_id(device_id, port), device=device_id, port=port)

    def line_problem(self, device_id: str, port: str) -> str | None:
        """Why an unconfigured port's label cannot be its line id as it is (None when it can)."""
        if any(line.device == device_id and line.port == port for line in self.lines):
            return None
        return line_label_problem(device_id, port)


#: What a line id may hold (the ``[[lines]] id`` pattern); the ``calls.line`` column holds 100.
LINE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]+$")
LINE_ID_MAX = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]+")


def derived_line_id(device_id: str, port: str) -> str:
    """The line id of an unconfigured port: ``device`` for port ``1``, else ``device:port``.

    When that is not a valid id, the label's unsafe characters become ``_`` and
    a short hash of the label is appended, so two labels that differ only in
    those characters (``Home Line``, ``Home/Line``) never share a line.
    """
    plain = device_id if port == "1" else f"{device_id}:{port}"
    if LINE_ID_PATTERN.match(plain) and len(plain) <= LINE_ID_MAX:
        return plain
    digest = hashlib.sha256(port.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    safe_device = _UNSAFE.sub("_", device_id)[:40] or "device"
    safe_port = _UNSAFE.sub("_", port).strip("_")[:40]
    return f"{safe_device}:{safe_port}-{digest}" if safe_port else f"{safe_device}:{digest}"


def line_label_problem(device_id: str, port: str) -> str | None:
    """Why a port's label cannot be its line id as it is (None when it can)."""
    plain = device_id if port == "1" else f"{device_id}:{port}"
    if LINE_ID_PATTERN.match(plain) and len(plain) <= LINE_ID_MAX:
        return None
    return (
        f"line label {port!r} is not a valid line id (letters, digits, '_.:-', at most {LINE_ID_MAX});"
        f" its calls are on line {derived_line_id(device_id, port)!r}"
    )


def load_config(
    path: Path | None,
    registry: DeviceRegistry | None = None,
    *,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Read and validate a config file (or the embedded defaults when ``path`` is None).

    With a ``registry``, each device's options are validated by its type's ``Config``.
    ``overrides`` are merged over the file's top-level tables (used by ``demo``).
    Raises :class:`ConfigError` with the file name, line and key on any mistake.
    """
    text = ""
    data: dict[str, Any] = {}
    label = "<defaults>"
    if path is not None:
        label = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: the config file is not UTF-8 text") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, text, label)) from None
    problems = [
        f"{_where(text, label, loc)}{_dotted(loc)}: {message}" for loc, message in _references(config)
    ]
    if problems:
        raise ConfigError("\n".join(problems))
    if registry is not None:
        for index, device in enumerate(config.devices):
            if not device.enabled:
                continue  # a disabled device's plugin need not be installed
            try:
                device_cls = registry.get(device.type)
            except ConfigError as exc:
                where = _where(text, label, ("devices", index, "type"))
                raise ConfigError(f"{where}devices[{index}].type: {exc}") from None
            try:
                device_cls.Config.model_validate(device.options)
            except ValidationError as exc:
                raise ConfigError(_describe(exc, text, label, prefix=("devices", index))) from None
    return config


def device_options(config: Config, registry: DeviceRegistry, device: DeviceSection) -> Any:
    """The validated options model of ``device`` (call after :func:`load_config` checked them)."""
    return registry.get(device.type).Config.model_validate(device.options)


def plugin_settings(config: Config, name: str, model: type[_Settings]) -> _Settings | None:
    """A plugin's ``[plugins.<name>]`` table validated into ``model``, or None when the table is absent.

    For built-in and third-party plugins alike, in their ``agent_configured`` hook.

    :raises ConfigError: the table is invalid; the message names each bad key as
        ``plugins.<name>.<key>``.
    """
    section = config.plugins.get(name)
    if section is None:
        return None
    try:
        return model.model_validate(section)
    except ValidationError as exc:
        problems = "; ".join(
            f"plugins.{name}.{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(problems) from None


def _references(config: Config) -> list[tuple[tuple[str | int, ...], str]]:
    """Cross-table mistakes: ids used twice, lines naming missing devices or mapping a port twice."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    devices: set[str] = set()
    for index, device in enumerate(config.devices):
        if device.id in devices:
            problems.append((("devices", index, "id"), f"device id {device.id!r} is used twice"))
        devices.add(device.id)
    line_ids: set[str] = set()
    ports: set[tuple[str, str]] = set()
    for index, line in enumerate(config.lines):
        if line.device not in devices:
            problems.append(
                (("lines", index, "device"), f"names device {line.device!r}, which is not configured")
            )
        if line.id in line_ids:
            problems.append((("lines", index, "id"), f"line id {line.id!r} is used twice"))
        if (line.device, line.port) in ports:
            problems.append(
                (("lines", index, "port"), f"port {line.port!r} of device {line.device!r} is mapped twice")
            )
        line_ids.add(line.id)
        ports.add((line.device, line.port))
    return problems


# -- error messages that point into the file --------------------------------------


def _describe(exc: ValidationError, text: str, label: str, prefix: Sequence[str | int] = ()) -> str:
    lines = []
    for error in exc.errors():
        loc = (*prefix, *error["loc"])
        key = _dotted(loc)
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{_where(text, label, loc)}{key}: {message}")
    return "\n".join(lines)


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _where(text: str, label: str, loc: Sequence[str | int]) -> str:
    line = locate(text, loc)
    return f"{label}:{line}: " if line else f"{label}: "


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")


def locate(text: str, loc: Sequence[str | int]) -> int | None:
    """The 1-based line of ``text`` where the key at ``loc`` is written, as near as can be told.

    ``loc`` is a pydantic error location such as ``("devices", 1, "rate")``. Keys
    of tables and arrays of tables are found; a key that is missing (a required
    one) points at its table's header. Inline tables point at the line of their key.
    """
    if not text:
        return None
    wanted = [str(p) if not isinstance(p, int) else p for p in loc]
    path: list[str | int] = []
    counts: dict[str, int] = {}
    best: int | None = None
    best_len = -1
    for number, raw in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(raw)
        if header:
            names = [n.strip().strip("\"'") for n in header.group(2).split(".")]
            if header.group(1) == "[[":
                key = ".".join(names)
                counts[key] = counts.get(key, -1) + 1
                path = [*names, counts[key]]
            else:
                path = list(names)
            if _is_prefix(path, wanted) and len(path) > best_len:
                best, best_len = number, len(path)
            continue
        match = _KEY.match(raw)
        if match:
            names = [n.strip().strip("\"'") for n in match.group(1).split(".")]
            full = [*path, *names]
            if _is_prefix(full, wanted) and len(full) > best_len:
                best, best_len = number, len(full)
    return best


def _is_prefix(path: Sequence[str | int], wanted: Sequence[str | int]) -> bool:
    return len(path) <= len(wanted) and list(wanted[: len(path)]) == list(path)


__all__ = ["Config", "default_data_dir", "is_centre_url", "load_config", "locate", "parse_listen"]
