"""The recording store: layout, permissions, repair of crash leftovers, rows, and the purge command."""

from __future__ import annotations

import json
import shutil
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from agent.commands.purge import parse_age, purge
from agent.events import Call, Direction, RecordingFacts
from storage.db import make_engine, upgrade
from storage.models import AuditEntry, CallRecord, Recording
from storage.recordings import RecordingStore, sha256_of

RATE = 8000
T0 = datetime(2024, 5, 6, 23, 30, 0, tzinfo=UTC)


def make_call(uuid: str = "2b1f0c7e-aaaa-4bbb-8ccc-000000000001") -> Call:
    return Call(
        uuid=uuid,
        seat="seat-1",
        device_id="box",
        line="l1",
        rep="alice",
        team="north",
        direction=Direction.IN,
        started_at=T0,
    )


def noise(seconds: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((int(seconds * RATE), 1)) * 3000).astype(np.int16)


@pytest.fixture
def engine() -> Engine:
    engine = make_engine("sqlite://")
    upgrade(engine)
    return engine


def crash_leftover(store: RecordingStore, tmp_path: Path, codec: str, audio: np.ndarray) -> Call:
    """Make the files a crash leaves: a .part written up to now but never closed, and its .call.json."""
    call = make_call()
    paths = store.paths(call.uuid, call.started_at, codec)
    scratch = RecordingStore(tmp_path / "scratch")
    scratch_paths = scratch.paths(call.uuid, call.started_at, codec)
    live = scratch.open_part(scratch_paths, call, RATE, 1)
    live.write(audio)
    live.flush()
    # Copy the bytes as they are on disk while the writer still holds the file open: what SIGKILL leaves.
    paths.part.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(scratch_paths.part, paths.part)
    shutil.copyfile(scratch_paths.meta, paths.meta)
    live.close()
    return call


def test_paths_follow_the_utc_start_date(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path)
    local = T0.astimezone(ZoneInfo("Asia/Shanghai"))  # 07:30 on the 7th there
    paths = store.paths("abc", local, "opus")
    assert paths.final == tmp_path / "recordings/2024/05/06/abc.opus"
    assert paths.part.name == "abc.opus.part"
    assert paths.meta.name == "abc.opus.call.json"
    assert store.relative(paths.final) == "recordings/2024/05/06/abc.opus"
    assert store.resolve("recordings/2024/05/06/abc.opus") == paths.final
    with pytest.raises(ValueError, match="not a call uuid"):
        store.paths("../etc", T0, "flac")


def test_part_files_are_private(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path)
    call = make_call()
    paths = store.paths(call.uuid, call.started_at, "flac")
    with store.open_part(paths, call, RATE, 1) as f:
        f.write(noise(0.1))
    for path in (paths.part, paths.meta):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.part.parent.stat().st_mode) == 0o700
    assert json.loads(paths.meta.read_text())["call"]["uuid"] == call.uuid
    size, digest = store.finish(paths)
    assert not paths.part.exists()
    assert size == paths.final.stat().st_size
    assert digest == sha256_of(paths.final)


@pytest.mark.parametrize(("codec", "min_seconds"), [("flac", 5.0 - 8192 / RATE), ("wav", 5.0), ("opus", 3.5)])
def test_crash_leftovers_are_repaired_and_linked_to_their_call(
    tmp_path: Path, engine: Engine, codec: str, min_seconds: float
) -> None:
    # What a kill may lose: FLAC, libsndfile's unencoded buffer (8192 frames); Ogg, the open page.
    store = RecordingStore(tmp_path / "data", engine)
    audio = noise(5.0)
    call = crash_leftover(store, tmp_path, codec, audio)
    [facts] = store.recover()

    assert facts.status == "recovered"
    path = store.resolve(facts.path)
    data, rate = sf.read(path, dtype="int16", always_2d=True)  # one read: the file is whole again
    assert rate == RATE
    assert min_seconds <= len(data) / RATE <= 5.0
    assert facts.seconds == pytest.approx(len(data) / RATE, abs=0.03)
    if codec != "opus":  # lossless: every recovered sample is the one written
        np.testing.assert_array_equal(data, audio[: len(data)])
    assert not list(path.parent.glob("*.part"))
    assert not list(path.parent.glob("*.json"))
    with Session(engine) as session:
        row = session.scalars(select(Recording)).one()
        assert (row.call_uuid, row.status, row.sha256) == (call.uuid, "recovered", sha256_of(path))
        assert session.scalars(select(CallRecord.uuid)).one() == call.uuid
    assert store.recover() == []  # nothing left over twice


def test_finished_file_without_row_gets_its_row(tmp_path: Path, engine: Engine) -> None:
    store = RecordingStore(tmp_path, engine)
    call = make_call()
    paths = store.paths(call.uuid, call.started_at, "flac")
    with store.open_part(paths, call, RATE, 1) as f:
        f.write(noise(2.0))
    store.finish(paths)  # crash here: renamed, but no row yet
    [facts] = store.recover()
    assert (facts.status, facts.seconds) == ("complete", 2.0)
    assert not paths.meta.exists()


def test_unreadable_leftover_is_removed(tmp_path: Path, engine: Engine) -> None:
    store = RecordingStore(tmp_path, engine)
    paths = store.paths("dead-beef", T0, "flac")
    paths.part.parent.mkdir(parents=True)
    paths.part.write_bytes(b"fLaC" + b"\x00" * 10)
    assert store.recover() == []
    assert not paths.part.exists()
    with Session(engine) as session:
        assert session.scalars(select(Recording)).all() == []


def test_saving_twice_updates_one_row(tmp_path: Path, engine: Engine) -> None:
    store = RecordingStore(tmp_path, engine)
    call = make_call()
    facts = RecordingFacts(
        call.uuid, "recordings/x.flac", "flac", RATE, 1, 3.0, 100, None, "partial", ("disk_full",)
    )
    store.save(facts, call)
    store.save(RecordingFacts(**_replace(facts)), call)
    with Session(engine) as session:
        [row] = session.scalars(select(Recording)).all()
        assert (row.status, row.flags) == ("recovered", None)


def _replace(facts: RecordingFacts) -> dict[str, object]:
    values = {name: getattr(facts, name) for name in RecordingFacts.__slots__}
    return {**values, "status": "recovered", "flags": ()}


# --- purge ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("180d", timedelta(days=180)),
        ("12w", timedelta(weeks=12)),
        ("36h", timedelta(hours=36)),
        ("7", timedelta(days=7)),
    ],
)
def test_parse_age(text: str, expected: timedelta) -> None:
    assert parse_age(text) == expected


def test_parse_age_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="not an age"):
        parse_age("six months")


@pytest.fixture
def floor(tmp_path: Path) -> tuple[Path, Engine, RecordingStore, list[Path]]:
    """A config and data dir with three recordings: two 200 days old, one from today."""
    data = tmp_path / "data"
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\ndata_dir = "{data}"\n', encoding="utf-8")
    engine = make_engine(f"sqlite:///{data / 'cti-agent.db'}")
    upgrade(engine)
    store = RecordingStore(data, engine)
    files = []
    for n in range(3):
        call = make_call(f"call-{n}")
        paths = store.paths(call.uuid, call.started_at, "flac")
        with store.open_part(paths, call, RATE, 1) as f:
            f.write(noise(0.5, seed=n))
        size, digest = store.finish(paths)
        store.save(
            RecordingFacts(
                call.uuid, store.relative(paths.final), "flac", RATE, 1, 0.5, size, digest, "complete"
            ),
            call,
        )
        files.append(paths.final)
    old = datetime.now(UTC) - timedelta(days=200)
    with Session(engine) as session, session.begin():
        session.execute(update(Recording).where(Recording.call_uuid != "call-2").values(created_at=old))
    return config, engine, store, files


def test_purge_dry_run_deletes_nothing(floor: tuple[Path, Engine, RecordingStore, list[Path]]) -> None:
    config, engine, _, files = floor
    result = CliRunner().invoke(purge, ["--older-than", "180d", "--dry-run", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "would delete 2 recording(s)" in result.output
    assert all(f.exists() for f in files)
    with Session(engine) as session:
        assert len(session.scalars(select(Recording)).all()) == 3
        assert session.scalars(select(AuditEntry)).all() == []


def test_purge_deletes_old_recordings_only_and_audits(
    floor: tuple[Path, Engine, RecordingStore, list[Path]],
) -> None:
    config, engine, _, files = floor
    freed = files[0].stat().st_size + files[1].stat().st_size
    result = CliRunner().invoke(purge, ["--older-than", "180d", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "deleted 2 recording(s)" in result.output
    assert [f.exists() for f in files] == [False, False, True]
    with Session(engine) as session:
        assert session.scalars(select(Recording.call_uuid)).all() == ["call-2"]
        assert len(session.scalars(select(CallRecord)).all()) == 3  # the calls stay
        [entry] = session.scalars(select(AuditEntry)).all()
        assert entry.action == "recordings.purge"
        assert json.loads(entry.detail or "{}")["bytes"] == freed
        assert json.loads(entry.detail or "{}")["recordings"] == 2


def test_purge_without_an_age_is_a_usage_error(
    floor: tuple[Path, Engine, RecordingStore, list[Path]],
) -> None:
    config = floor[0]
    result = CliRunner().invoke(purge, ["--config", str(config)])
    assert result.exit_code == 2
    assert "retention_days" in result.output
    result = CliRunner().invoke(purge, ["--older-than", "soon", "--config", str(config)])
    assert result.exit_code == 2


# --- purge: retention per team ----------------------------------------------------------------

#: (call uuid, team, age in days) of the recordings on the floor of teams.
TEAM_RECORDINGS = [
    ("north-60", "north", 60),
    ("north-10", "north", 10),
    ("south-200", "south", 200),
    ("south-400", "south", 400),
    ("west-200", "west", 200),
    ("west-60", "west", 60),
]
TEAM_RETENTION = "[recording]\nretention_days = 180\nteam_retention_days = { north = 30, south = 365 }\n"


@pytest.fixture
def teams_floor(tmp_path: Path) -> tuple[Path, Engine, dict[str, Path]]:
    """Recordings of three teams at various ages; the config's [recording] table is added by each test."""
    data = tmp_path / "data"
    engine = make_engine(f"sqlite:///{data / 'cti-agent.db'}")
    upgrade(engine)
    store = RecordingStore(data, engine)
    files: dict[str, Path] = {}
    now = datetime.now(UTC)
    for n, (uuid, team, days) in enumerate(TEAM_RECORDINGS):
        call = replace(make_call(uuid), team=team)
        paths = store.paths(call.uuid, call.started_at, "flac")
        with store.open_part(paths, call, RATE, 1) as f:
            f.write(noise(0.2, seed=n))
        size, digest = store.finish(paths)
        facts = RecordingFacts(
            call.uuid, store.relative(paths.final), "flac", RATE, 1, 0.2, size, digest, "complete"
        )
        store.save(facts, call)
        with Session(engine) as session, session.begin():
            session.execute(
                update(Recording)
                .where(Recording.call_uuid == uuid)
                .values(created_at=now - timedelta(days=days, hours=1))
            )
        files[uuid] = paths.final
    return data, engine, files


def teams_config(tmp_path: Path, data: Path, recording: str) -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\ndata_dir = "{data}"\n\n{recording}', encoding="utf-8")
    return config


def remaining(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return sorted(session.scalars(select(Recording.call_uuid)))


def test_purge_honours_each_teams_retention_and_falls_back_for_teams_not_listed(
    tmp_path: Path, teams_floor: tuple[Path, Engine, dict[str, Path]]
) -> None:
    data, engine, files = teams_floor
    config = teams_config(tmp_path, data, TEAM_RETENTION)
    result = CliRunner().invoke(purge, ["--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "deleted 3 recording(s) past retention (team north: 30d; team south: 365d; other teams: 180d)" in (
        result.output
    )
    # north keeps 30 days, south 365, west (not listed) the default 180.
    assert remaining(engine) == ["north-10", "south-200", "west-60"]
    assert {uuid for uuid, path in files.items() if path.exists()} == {"north-10", "south-200", "west-60"}
    with Session(engine) as session:
        assert len(session.scalars(select(CallRecord)).all()) == 6  # the calls stay
        [entry] = session.scalars(select(AuditEntry)).all()
    detail = json.loads(entry.detail or "{}")
    assert entry.action == "recordings.purge"
    assert detail["recordings"] == 3
    assert detail["retention_days"] == 180
    assert detail["team_retention_days"] == {"north": 30, "south": 365}


def test_purge_without_a_default_keeps_the_teams_not_listed(
    tmp_path: Path, teams_floor: tuple[Path, Engine, dict[str, Path]]
) -> None:
    data, engine, _ = teams_floor
    config = teams_config(tmp_path, data, "[recording]\nteam_retention_days = { north = 30 }\n")
    result = CliRunner().invoke(purge, ["--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "(team north: 30d; other teams kept)" in result.output
    assert remaining(engine) == ["north-10", "south-200", "south-400", "west-200", "west-60"]


def test_older_than_applies_to_every_team(
    tmp_path: Path, teams_floor: tuple[Path, Engine, dict[str, Path]]
) -> None:
    data, engine, files = teams_floor
    config = teams_config(tmp_path, data, TEAM_RETENTION)
    result = CliRunner().invoke(purge, ["--older-than", "100d", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "deleted 3 recording(s) older than" in result.output
    # south's 365 days and north's 30 are both overridden by the 100 days given.
    assert remaining(engine) == ["north-10", "north-60", "west-60"]
    assert not files["south-200"].exists()
    assert files["north-60"].exists()
    with Session(engine) as session:
        [entry] = session.scalars(select(AuditEntry)).all()
    assert json.loads(entry.detail or "{}")["older_than"] == str(timedelta(days=100))
    assert "whatever their team" in CliRunner().invoke(purge, ["--help"]).output


def test_purge_by_team_dry_run_deletes_nothing(
    tmp_path: Path, teams_floor: tuple[Path, Engine, dict[str, Path]]
) -> None:
    data, engine, files = teams_floor
    config = teams_config(tmp_path, data, TEAM_RETENTION)
    result = CliRunner().invoke(purge, ["--dry-run", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "would delete 3 recording(s) past retention" in result.output
    assert len(remaining(engine)) == 6
    assert all(path.exists() for path in files.values())
    with Session(engine) as session:
        assert session.scalars(select(AuditEntry)).all() == []


def test_team_retention_must_be_at_least_a_day(
    tmp_path: Path, teams_floor: tuple[Path, Engine, dict[str, Path]]
) -> None:
    data, engine, _ = teams_floor
    config = teams_config(tmp_path, data, "[recording]\nteam_retention_days = { north = 0 }\n")
    result = CliRunner().invoke(purge, ["--config", str(config)])
    assert result.exit_code == 2
    assert "team_retention_days.north" in result.output
    assert len(remaining(engine)) == 6
