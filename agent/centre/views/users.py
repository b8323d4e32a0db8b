"""The users page (admins): list, add, disable and enable, reset a password, set role, team and rep.

Every change goes through the functions ``cti-agent users`` calls (:mod:`agent.centre.auth`),
so the rules are the CLI's (password strength, role names, a rep needs a rep name, a lead a
team), and is audited in the same transaction as the change.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from agent.centre.access import Visit, client_address, error, read_form, render, requires
from agent.centre.auth import (
    Principal,
    UserError,
    create_user,
    csrf_ok,
    disable_user,
    enable_user,
    list_users,
    set_password,
    update_user,
)
from agent.centre.context import ConsoleContext
from storage.models import ROLES
from storage.repository import add_audit

#: The form's operations and the audit action each writes.
OPERATIONS: dict[str, str] = {
    "add": "user_add",
    "disable": "user_disable",
    "enable": "user_enable",
    "password": "user_password",
    "update": "user_update",
}


def change_for(op: str, form: dict[str, str]) -> tuple[Callable[[Session], object], str | None]:
    """What ``op`` does to the database (a function of a session) and the audit detail it leaves.

    :raises UserError: an unknown operation.
    """
    login = form.get("login", "").strip()
    role, team, rep = form.get("role", ""), form.get("team", "").strip(), form.get("rep", "").strip()
    password = form.get("password", "")
    if op == "add":
        return (
            lambda s: create_user(s, login, password, role=role, team=team or None, rep=rep or None),
            f"role={role} team={team} rep={rep}",
        )
    if op == "disable":
        return lambda s: disable_user(s, login), None
    if op == "enable":
        return lambda s: enable_user(s, login), None
    if op == "password":
        return lambda s: set_password(s, login, password), None
    if op == "update":
        return (
            lambda s: update_user(s, login, role=role, team=team or None, rep=rep or None),
            f"role={role} team={team} rep={rep}",
        )
    raise UserError(f"unknown operation {op!r}")


@requires("admin")
async def users_page(ctx: ConsoleContext, request: Request, current: Visit, who: Principal) -> Response:
    """``GET /users``: every user with forms to change them; ``POST /users``: one change (CSRF-checked)."""
    problem = None
    status = 200
    if request.method == "POST":
        form = await read_form(request)
        if form is None or not csrf_ok(current.csrf, form.get("csrf")):
            return error(ctx, request, current, 403, "error.csrf")
        op = form.get("op", "")
        login = form.get("login", "").strip()
        addr = client_address(request)
        try:
            change, detail = change_for(op, form)

            def apply(session: Session) -> None:
                change(session)
                add_audit(
                    session, OPERATIONS[op], user=who.login, target=f"user:{login}", detail=detail,
                    remote_addr=addr,
                )  # fmt: skip

            await ctx.write(apply)
        except UserError as exc:
            problem, status = str(exc), 400
        else:
            return RedirectResponse("/users", status_code=303)
    rows = await ctx.read(list_users)
    return render(
        ctx, request, current, "users.html", status=status, users=rows, roles=ROLES, problem=problem
    )
