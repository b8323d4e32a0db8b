"""The manager's lead upload: a CSV or XLSX file in, its columns and first rows shown, imported onto a list.

The flow (managers and admins only, every step CSRF-checked)::

    GET  /leads/import          the upload form
    POST /leads/import          the file (multipart, at most ``upload_max_bytes``) -> 303 to its preview
    GET  /leads/import/{id}     the detected column mapping, the first rows; once imported, the result
    POST /leads/import/{id}     the mapping as chosen, list, premium, update -> the import (audited)
    GET  /leads/import/{id}/rejects.csv, /changes.csv    rows not imported, fields changed (audited)

The file waits in the upload area (:mod:`agent.centre.uploads`) under an unguessable id bound
to the uploader's session; the import reads it as ``cti-agent leads import`` does
(:mod:`storage.leadfiles`) and writes the reject and changes files in the language the page was
in when the file was uploaded.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from agent.centre.access import Visit, client_address, error, language_of, read_form, render, requires
from agent.centre.auth import Principal, csrf_ok
from agent.centre.context import ConsoleContext
from agent.centre.uploads import MultipartError, Upload, parse_multipart, upload_owner
from agent.errors import StorageError
from storage.customers import FIELDS, ChangeWriter, ImportFileError, Reason, RejectWriter
from storage.leadfiles import LeadImport, Preview, import_file, mapping_of, preview_file
from storage.repository import add_audit

logger = logging.getLogger(__name__)

#: Who may upload leads.
MANAGERS: tuple[str, ...] = ("manager", "admin")
#: The choices of a column's mapping, in the order the page offers them.
CHOICES: tuple[str, ...] = ("ignore", *FIELDS)
#: The longest list name the form takes.
MAX_LIST_NAME = 100


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is (or announces itself) larger than ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _owner(ctx: ConsoleContext, current: Visit, who: Principal) -> str:
    return upload_owner(ctx.settings.secret, who.user_id, current.csrf)


def _upload_form(
    ctx: ConsoleContext, request: Request, current: Visit, status: int = 200, **problem: Any
) -> Response:
    return render(
        ctx,
        request,
        current,
        "lead_upload.html",
        status=status,
        max_mb=ctx.settings.upload_max_bytes / (1024 * 1024),
        problem_key=problem.get("key"),
        problem_detail=problem.get("detail"),
    )


@requires(*MANAGERS)
async def upload_page(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /leads/import``: the form; ``POST``: one file, kept for its preview (CSRF-checked)."""
    if request.method != "POST":
        return _upload_form(ctx, request, current)
    body = await read_body(request, ctx.settings.upload_max_bytes)
    if body is None:
        return _upload_form(ctx, request, current, 413, key="upload.too_large")
    try:
        fields, files = await run_in_threadpool(
            parse_multipart, request.headers.get("content-type", ""), body
        )
    except MultipartError:
        return error(ctx, request, current, 400, "error.bad_request")
    if not csrf_ok(current.csrf, fields.get("csrf")):
        return error(ctx, request, current, 403, "error.csrf")
    part = files.get("file")
    if part is None or not part.data:
        return _upload_form(ctx, request, current, 400, key="upload.no_file")
    store = ctx.upload_store()
    lang = language_of(ctx, request, who)
    try:
        upload = await run_in_threadpool(
            store.save, _owner(ctx, current, who), part.filename, part.data, lang=lang
        )
    except ValueError:
        return _upload_form(ctx, request, current, 400, key="upload.bad_type", detail=part.filename)
    try:
        await run_in_threadpool(preview_file, upload.source)
    except ImportFileError as exc:
        await run_in_threadpool(store.discard, upload)
        return _upload_form(ctx, request, current, 400, key="upload.unreadable", detail=str(exc))
    logger.info("lead upload by %s: %s, %d byte(s)", who.login, upload.filename, len(part.data))
    return RedirectResponse(f"/leads/import/{upload.id}", status_code=303)


async def _upload_of(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Upload | None:
    """The upload the path names, if it is this session's and has not expired (read off the loop)."""
    upload_id = str(request.path_params["upload_id"])
    return await run_in_threadpool(ctx.upload_store().get, upload_id, _owner(ctx, current, who))


def _preview(
    ctx: ConsoleContext,
    request: Request,
    current: Visit,
    upload: Upload,
    preview: Preview,
    *,
    status: int = 200,
    columns: dict[int, str] | None = None,
    form: dict[str, str] | None = None,
    problem: str | None = None,
    problem_key: str | None = None,
) -> Response:
    chosen = form or {}
    columns = preview.columns if columns is None else columns
    lang = language_of(ctx, request, current.who)
    rows = [
        {
            "row": r.row,
            "cells": r.cells,
            "problem": r.problem.text(lang) if isinstance(r.problem, Reason) else r.problem,
        }
        for r in preview.rows
    ]
    if problem_key is None and problem is None:
        problem_key = column_problem(columns)
    return render(
        ctx,
        request,
        current,
        "lead_preview.html",
        status=status,
        upload=upload,
        preview=preview,
        rows=rows,
        columns=columns,
        choices=CHOICES,
        list_name=chosen.get("list", ""),
        premium=chosen.get("premium") == "1",
        update=chosen.get("update") == "1",
        problem=problem,
        problem_key=problem_key,
    )


def column_problem(columns: dict[int, str]) -> str | None:
    """Why a mapping cannot be imported (a locale key: no phone column, two name columns), else None."""
    targets = list(columns.values())
    if "phone" not in targets:
        return "upload.need_phone"
    if any(targets.count(single) > 1 for single in ("name", "company", "owner_rep")):
        return "upload.one_each"
    return None


def _choices(form: dict[str, str], width: int) -> dict[int, str]:
    """The column choices of the preview form (``col.N``, 0-based); anything else is left out."""
    found: dict[int, str] = {}
    for key, value in form.items():
        if key.startswith("col.") and key[4:].isdigit() and int(key[4:]) < width:
            found[int(key[4:])] = value
    return found


def _result(done: LeadImport, *, update: bool, rejects: int, changes: int) -> dict[str, Any]:
    report = done.report
    kinds: dict[str, int] = {}
    for issue in report.issues:
        kinds[issue.kind] = kinds.get(issue.kind, 0) + 1
    return {
        "list": done.list_name,
        "premium": done.premium,
        "update": update,
        "rows": report.rows,
        "imported": report.imported,
        "added": done.added,
        "rejected": report.not_imported,
        "kinds": kinds,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "changes": len(report.changes),
        "columns": report.columns,
        "rejects_file": rejects > 0,
        "changes_file": changes > 0,
    }


@requires(*MANAGERS)
async def preview_page(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /leads/import/{id}``: mapping and first rows, or the result; ``POST``: the import (audited)."""
    upload = await _upload_of(ctx, request, current, who)
    if upload is None:
        return error(ctx, request, current, 404, "upload.expired")
    if upload.result is not None:
        return render(ctx, request, current, "lead_result.html", upload=upload, result=upload.result)
    try:
        preview = await run_in_threadpool(preview_file, upload.source)
    except ImportFileError:
        return error(ctx, request, current, 404, "upload.expired")
    if request.method != "POST":
        return _preview(ctx, request, current, upload, preview)
    form = await read_form(request)
    if form is None or not csrf_ok(current.csrf, form.get("csrf")):
        return error(ctx, request, current, 403, "error.csrf")
    columns = _choices(form, len(preview.header))
    list_name = form.get("list", "").strip()
    if not list_name or len(list_name) > MAX_LIST_NAME:
        return _preview(
            ctx, request, current, upload, preview, status=400, columns=columns, form=form,
            problem_key="upload.no_list",
        )  # fmt: skip
    if column_problem(columns) is not None:
        return _preview(ctx, request, current, upload, preview, status=400, columns=columns, form=form)
    premium, update = form.get("premium") == "1", form.get("update") == "1"
    addr = client_address(request)

    def run(session: Session) -> dict[str, Any]:
        rejects = RejectWriter(upload.rejects, lang=upload.lang)
        changes = ChangeWriter(upload.changes, lang=upload.lang)
        try:
            done = import_file(
                session,
                upload.source,
                list_name=list_name,
                actor=f"console:{who.login}",
                premium=premium,
                mapping=mapping_of(columns, len(preview.header)),
                update=update,
                region=ctx.settings.region.upper(),
                reject=rejects,
                changes=changes,
            )
        finally:
            rejects.close()
            changes.close()
        result = _result(done, update=update, rejects=rejects.count, changes=changes.count)
        detail = {
            "file": upload.filename,
            **{k: result[k] for k in ("rows", "imported", "rejected", "updated")},
        }
        add_audit(
            session, "lead_import", user=who.login, target=f"list:{done.list_name}",
            detail=json.dumps(detail, ensure_ascii=False), remote_addr=addr,
        )  # fmt: skip
        return result

    try:
        result = await ctx.write(run)
    except (ImportFileError, StorageError) as exc:
        return _preview(
            ctx, request, current, upload, preview, status=400, columns=columns, form=form, problem=str(exc)
        )
    await run_in_threadpool(ctx.upload_store().finish, upload, result)
    logger.info(
        "lead import by %s into list %s: %d imported, %d rejected, %d updated",
        who.login, result["list"], result["imported"], result["rejected"], result["updated"],
    )  # fmt: skip
    return RedirectResponse(f"/leads/import/{upload.id}", status_code=303)


async def _download(
    ctx: ConsoleContext, request: Request, current: Visit, who: Principal, kind: str
) -> Response:
    upload = await _upload_of(ctx, request, current, who)
    if upload is None or upload.result is None:
        return error(ctx, request, current, 404, "upload.expired")
    path: Path = upload.rejects if kind == "rejects" else upload.changes
    if not await run_in_threadpool(path.is_file):
        return error(ctx, request, current, 404, "error.not_found")
    detail = json.dumps({"file": upload.filename}, ensure_ascii=False)
    await ctx.audit(
        who.login, f"lead_{kind}_download", f"list:{upload.result['list']}", detail, client_address(request)
    )
    stem = Path(upload.filename).stem or "leads"
    return FileResponse(
        path,
        media_type="text/csv; charset=utf-8",
        filename=f"{stem}.{kind}.csv",
        headers={"Cache-Control": "no-store"},
    )


@requires(*MANAGERS)
async def download_rejects(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /leads/import/{id}/rejects.csv``: the rows the import did not take, with the reason (audited)."""
    return await _download(ctx, request, current, who, "rejects")


@requires(*MANAGERS)
async def download_changes(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /leads/import/{id}/changes.csv``: each field an update import changed (audited)."""
    return await _download(ctx, request, current, who, "changes")
