"""``cti-agent deploy``: files for the central stack, generated from what the floor has."""

from __future__ import annotations

import csv
import io
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

__all__ = ["Seat", "centre_target", "deploy", "file_sd_targets", "read_seats"]

_LABEL_VALUE = re.compile(r"^[^\x00-\x1f\"\\]*$")
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


@dataclass(frozen=True, slots=True)
class Seat:
    """One seat to scrape: its metrics listener's ``host:port``, seat name and team."""

    address: str
    seat: str
    team: str = ""


def _seat(record: dict[str, Any], where: str) -> Seat:
    unknown = set(record) - {"address", "seat", "team"}
    if unknown:
        raise click.BadParameter(f"{where}: unknown column(s) {', '.join(sorted(unknown))}")
    address = str(record.get("address") or "").strip()
    seat = str(record.get("seat") or "").strip()
    team = str(record.get("team") or "").strip()
    match = _ADDRESS.match(address)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise click.BadParameter(f"{where}: address {address!r} is not HOST:PORT")
    if not seat:
        raise click.BadParameter(f"{where}: the seat name is empty")
    for value in (seat, team):
        if not _LABEL_VALUE.match(value):
            raise click.BadParameter(f"{where}: {value!r} has quotes, backslashes or control characters")
    return Seat(address=address, seat=seat, team=team)


def read_seats(text: str, *, toml: bool) -> list[Seat]:
    """Parse a seat list: CSV with a header ``address,seat,team`` or TOML ``[[seats]]`` tables.

    Blank CSV lines and lines starting with ``#`` are skipped. A seat name or an
    address listed twice is an error (two targets would double the floor's numbers).
    Raises :class:`click.BadParameter` naming the line or entry at fault.
    """
    seats: list[Seat] = []
    if toml:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise click.BadParameter(f"not valid TOML: {exc}") from None
        unknown = set(data) - {"seats"}
        if unknown:
            raise click.BadParameter(f"unknown table(s) {', '.join(sorted(unknown))}; expected [[seats]]")
        for index, record in enumerate(data.get("seats", [])):
            seats.append(_seat(record, f"seats[{index}]"))
    else:
        rows = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        reader = csv.DictReader(io.StringIO("\n".join(rows)))
        if reader.fieldnames is None or not {"address", "seat"} <= {f.strip() for f in reader.fieldnames}:
            raise click.BadParameter("the CSV needs a header line with address,seat[,team]")
        for number, record in enumerate(reader, start=2):
            clean = {(k or "").strip(): v for k, v in record.items()}
            if None in record.values() or "" in clean:
                raise click.BadParameter(f"line {number}: wrong number of columns")
            seats.append(_seat(clean, f"line {number}"))
    for attribute in ("seat", "address"):
        seen: set[str] = set()
        for seat in seats:
            value = getattr(seat, attribute)
            if value in seen:
                raise click.BadParameter(f"{attribute} {value!r} is listed twice")
            seen.add(value)
    return seats


def file_sd_targets(seats: list[Seat]) -> list[dict[str, Any]]:
    """Prometheus file_sd entries: one target group per seat, labelled with ``seat`` and ``team``."""
    groups = []
    for seat in seats:
        labels = {"seat": seat.seat}
        if seat.team:
            labels["team"] = seat.team
        groups.append({"targets": [seat.address], "labels": labels})
    return groups


def centre_target(address: str) -> list[dict[str, Any]]:
    """The file_sd entry for the centre's ``/metrics``: ``HOST:PORT``, or ``https://HOST:PORT``.

    An ``https://`` address sets the target's ``__scheme__`` (a centre with ``[centre] tls_cert``);
    ``http://`` or no scheme is plain HTTP. Raises :class:`click.BadParameter` for anything else.
    """
    scheme, separator, rest = address.strip().partition("://")
    if not separator:
        scheme, rest = "http", address.strip()
    if scheme not in ("http", "https"):
        raise click.BadParameter(f"{address!r}: the scheme must be http or https", param_hint="--centre")
    match = _ADDRESS.match(rest.rstrip("/"))
    if not match or not 0 < int(match.group(2)) < 65536:
        raise click.BadParameter(f"{address!r} is not HOST:PORT or https://HOST:PORT", param_hint="--centre")
    group: dict[str, Any] = {"targets": [rest.rstrip("/")], "labels": {}}
    if scheme == "https":
        group["labels"]["__scheme__"] = "https"
    return [group]


@click.group()
def deploy() -> None:
    """Generate files for the central Prometheus and Grafana."""


@deploy.command("prometheus-targets")
@click.option(
    "--seats",
    "seats_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="The seat list: CSV (address,seat,team) or TOML ([[seats]] tables), by extension.",
)
@click.option(
    "--centre",
    "centre",
    metavar="HOST:PORT",
    default=None,
    help="Instead of --seats: the centre's address (https://HOST:PORT when it serves TLS), "
    "for targets/centre.json.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The targets file to write (default: standard output).",
)
def prometheus_targets(seats_path: Path | None, centre: str | None, output: Path | None) -> None:
    """Write Prometheus' file_sd targets (JSON) for the seats' metrics listeners or the centre.

    With ``--seats``: one target per seat (the ``cti-seats`` job). With ``--centre``: the one
    target of the ``cti-centre`` job, which watches a floor whose seats are behind NAT.
    The file is replaced atomically, so Prometheus never reads half of it.
    """
    if seats_path is not None and centre is not None:
        raise click.UsageError("give either --seats FILE or --centre HOST:PORT, not both")
    if centre is not None:
        groups = centre_target(centre)
        what = "the centre"
    elif seats_path is None:
        raise click.UsageError("give either --seats FILE or --centre HOST:PORT")
    else:
        try:
            text = seats_path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise click.BadParameter("the seat list is not UTF-8 text", param_hint="--seats") from None
        seats = read_seats(text, toml=seats_path.suffix.lower() == ".toml")
        if not seats:
            raise click.BadParameter("the seat list is empty", param_hint="--seats")
        groups = file_sd_targets(seats)
        what = f"{len(seats)} seat(s)"
    document = json.dumps(groups, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        click.echo(document, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.tmp")
    temporary.write_text(document, encoding="utf-8")
    temporary.replace(output)
    click.echo(f"{output}: {what}", err=True)


_DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _dashboard_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


@deploy.command("grafana-dashboards")
@click.option(
    "--dashboards",
    "dashboards_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=_DEPLOY / "grafana" / "dashboards",
    show_default="deploy/grafana/dashboards",
    help="The English dashboards (NAME.json); each language's are written beside them (NAME.LANG.json).",
)
@click.option(
    "--catalogue",
    "catalogues",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    multiple=True,
    help="A language's catalogue (repeatable; default: every deploy/grafana/i18n/*.json).",
)
@click.option(
    "--check", is_flag=True, help="Write nothing; fail when a file is out of date or a text untranslated."
)
def grafana_dashboards(dashboards_dir: Path, catalogues: tuple[Path, ...], check: bool) -> None:
    """Write the dashboards in every language from the English ones and each language's catalogue.

    The English dashboards are the one source: edit them, add the new texts to each
    catalogue, and run this. A text a catalogue lacks stays English and is named here
    (with --check it fails, as the test suite does).
    """
    from agent.grafana import Catalogue, translate, untranslated

    paths = list(catalogues) or sorted((_DEPLOY / "grafana" / "i18n").glob("*.json"))
    if not paths:
        raise click.UsageError("no catalogue: give --catalogue FILE")
    books = []
    for path in paths:
        try:
            books.append(Catalogue.from_json(json.loads(path.read_text(encoding="utf-8"))))
        except (ValueError, UnicodeDecodeError) as exc:
            raise click.BadParameter(f"{path}: {exc}", param_hint="--catalogue") from None
    languages = {book.language for book in books}
    translated = tuple(f".{language}.json" for language in languages)
    sources = [p for p in sorted(dashboards_dir.glob("*.json")) if not p.name.endswith(translated)]
    if not sources:
        raise click.UsageError(f"no English dashboard (NAME.json) in {dashboards_dir}")
    problems = []
    for source in sources:
        english = json.loads(source.read_text(encoding="utf-8"))
        for book in books:
            missing = untranslated(english, book)
            problems += [f"{source.name}: no {book.language} for {text!r}" for text in missing]
            target = source.with_name(f"{source.stem}.{book.language}.json")
            document = _dashboard_json(translate(english, book))
            current = target.read_text(encoding="utf-8") if target.exists() else None
            if current == document:
                continue
            if check:
                problems.append(f"{target.name} is out of date: run cti-agent deploy grafana-dashboards")
                continue
            temporary = target.with_name(f".{target.name}.tmp")
            temporary.write_text(document, encoding="utf-8")
            temporary.replace(target)
            click.echo(f"{target}: written", err=True)
    for problem in problems:
        click.echo(problem, err=True)
    if check and problems:
        raise SystemExit(1)
