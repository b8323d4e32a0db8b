"""Coverage (打透) of a lead list for team leads and managers: per rep, the total, a chart, 过数据, exports.

::

    GET /leads/coverage?list=NAME&days=N[&team=T]        the page (a manager may pick a team)
    GET /leads/coverage/export.csv|.xlsx?list=NAME&...   the same rows as a sheet (audited)

A team lead sees their team's reps only (a lead without a team sees nothing); a rep's log-in is
answered 403 by :func:`agent.centre.access.requires`. The figures are
:func:`storage.coverage.coverage_report`'s.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from agent.centre import i18n
from agent.centre.access import Visit, client_address, error, language_of, render, requires
from agent.centre.auth import Principal
from agent.centre.charts import grouped_bar_chart_svg
from agent.centre.context import ConsoleContext
from agent.errors import StorageError
from storage.coverage import Coverage, CoverageReport, coverage_report, list_names
from storage.repository import add_audit
from storage.sheets import MEDIA_TYPES, SheetFormat, headers, iter_sheet

logger = logging.getLogger(__name__)

#: Who sees coverage.
LEADS_AND_MANAGERS: tuple[str, ...] = ("lead", "manager")
#: The page's default and largest "untouched for N days".
DEFAULT_DAYS, MAX_DAYS = 3.0, 365.0
#: The sheet's fixed columns (their headers: :data:`storage.sheets.HEADERS`).
COLUMNS: tuple[str, ...] = (
    "rep", "team", "assigned", "dialed", "reached", "attempts", "attempts_per_lead", "untouched",
    "closed", "passed_undialed",
)  # fmt: skip


class _Refused(Exception):
    """A parameter the page cannot take."""


def _team(request: Request, who: Principal) -> tuple[bool, str | None]:
    """Whether ``who`` may see anything, and the team they see (None: every team)."""
    if who.role == "lead":
        return bool(who.team), who.team
    return True, request.query_params.get("team") or None


def _days(request: Request) -> float:
    text = request.query_params.get("days") or ""
    if not text:
        return DEFAULT_DAYS
    try:
        days = float(text)
    except ValueError:
        raise _Refused from None
    if not 0 <= days <= MAX_DAYS:
        raise _Refused
    return days


def _read(
    session: Session, list_name: str | None, team: str | None, days: float
) -> tuple[list[str], CoverageReport | None]:
    names = list_names(session)
    if not list_name:
        return names, None
    return names, coverage_report(session, list_name, team=team, untouched_days=days)


def _code_labels(ctx: ConsoleContext, lang: str, codes: list[str]) -> dict[str, str]:
    known = {d.code: (d.zh if lang == "zh-CN" else d.en) for d in ctx.settings.dispositions}
    return {code: known.get(code, code) for code in codes}


@requires(*LEADS_AND_MANAGERS)
async def coverage_page(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /leads/coverage``: pick a list; its per-rep coverage, total, chart and 过数据 warnings."""
    try:
        days = _days(request)
    except _Refused:
        return error(ctx, request, current, 400, "error.bad_request")
    allowed, team = _team(request, who)
    list_name = request.query_params.get("list") or None
    try:
        names, report = await ctx.read(_read, list_name if allowed else None, team, days)
    except StorageError:
        return error(ctx, request, current, 404, "error.not_found")
    lang = language_of(ctx, request, who)
    chart = ""
    if report is not None and report.rows:
        t = i18n.Translator(lang)
        chart = grouped_bar_chart_svg(
            [row.rep for row in report.rows],
            [
                [float(row.assigned) for row in report.rows],
                [float(row.dialed) for row in report.rows],
                [float(row.reached) for row in report.rows],
            ],
            series=[t("coverage.assigned"), t("coverage.dialed"), t("coverage.reached")],
        )
    return render(
        ctx,
        request,
        current,
        "coverage.html",
        names=names,
        chosen=list_name or "",
        team=team or "",
        days=f"{days:g}",
        allowed=allowed,
        report=report,
        chart=chart,
        codes=_code_labels(ctx, lang, report.codes if report else []),
        export_query=str(request.url.query),
    )


def _sheet_rows(report: CoverageReport, codes: list[str]) -> list[list[Any]]:
    def row_of(row: Coverage, rep: str) -> list[Any]:
        per_lead = row.attempts_per_lead
        return [
            rep, row.team or "", row.assigned, row.dialed, row.reached, row.attempts,
            round(per_lead, 2) if per_lead is not None else "", row.untouched, row.closed,
            row.passed_undialed, *(row.dispositions.get(code, 0) for code in codes),
        ]  # fmt: skip

    return [*(row_of(row, row.rep) for row in report.rows), row_of(report.total, "total")]


async def _export(ctx: ConsoleContext, request: Request, who: Principal, kind: SheetFormat) -> Response:
    try:
        days = _days(request)
    except _Refused:
        return PlainTextResponse("days must be a number from 0 to 365", status_code=400)
    allowed, team = _team(request, who)
    list_name = request.query_params.get("list") or ""
    if not allowed or not list_name:
        return PlainTextResponse("name a list (and be a lead of a team)", status_code=400)
    addr = client_address(request)

    def read_and_audit(session: Session) -> CoverageReport:
        report = coverage_report(session, list_name, team=team, untouched_days=days)
        add_audit(
            session,
            f"coverage_export_{kind}",
            user=who.login,
            target=f"list:{list_name}",
            detail=f"team={team or ''} days={days:g} reps={len(report.rows)}",
            remote_addr=addr,
        )
        return report

    lang = who.language if who.language in ("en", "zh-CN") else "en"
    slot = ctx.exports.try_acquire(who.login)
    if slot is None:
        return PlainTextResponse("an export of yours is still running; try again when it is done", 429)
    try:
        try:
            report = await ctx.write(read_and_audit)
        except StorageError:
            return PlainTextResponse("no such lead list", status_code=404)
        codes = report.codes
        labels = _code_labels(ctx, lang, codes)
        header = [*headers(COLUMNS, lang), *(labels[code] for code in codes)]
        body = await run_in_threadpool(
            lambda: b"".join(
                iter_sheet(kind, _sheet_rows(report, codes), header=header, lang=lang, sheet_title=list_name)
            )
        )
    finally:
        slot.release()
    stamp = datetime.now(ctx.zone).strftime("%Y%m%d-%H%M%S")
    return Response(
        body,
        media_type=MEDIA_TYPES[kind],
        headers={
            "Content-Disposition": f'attachment; filename="coverage-{stamp}.{kind}"',
            "Cache-Control": "no-store",
        },
    )


@requires(*LEADS_AND_MANAGERS)
async def coverage_csv(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /leads/coverage/export.csv``: the page's rows as CSV (audited)."""
    return await _export(ctx, request, who, "csv")


@requires(*LEADS_AND_MANAGERS)
async def coverage_xlsx(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /leads/coverage/export.xlsx``: the page's rows as a workbook (audited)."""
    return await _export(ctx, request, who, "xlsx")
