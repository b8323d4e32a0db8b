"""The manager's lead upload on the console: upload, preview, mapping, import, rejects, over a TestClient."""

from __future__ import annotations

import csv
import io
import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_factories import PASSWORD, audit_rows, csrf_of, log_in
from openpyxl import Workbook
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from agent.centre.app import ConsoleSettings, make_console_app
from agent.centre.auth import create_user
from agent.centre.uploads import UploadStore, parse_multipart, safe_filename, upload_owner
from agent.centre.views.leads import column_problem
from storage.customers import import_customers
from storage.db import make_engine, upgrade
from storage.leadfiles import mapping_of, preview_file
from storage.models import AuditEntry, CustomerRecord, Lead, LeadList

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

SECRET = b"u" * 32
#: A floor's export from a Chinese Excel: GBK, Chinese headers, a broken row, a duplicate.
GBK_ROWS = [
    ["客户名称", "联系人", "手机号码", "备注"],
    ["华为", "王伟", "138 0000 0001", "老客户"],
    ["中兴", "李娜", "１３８０００００００２", ""],  # full-width digits
    ["小米", "张三", "not a number", ""],  # broken
    ["腾讯", "赵六", "+86 138 0000 0001", ""],  # the first row's number again
]


def gbk_csv(rows: list[list[str]] = GBK_ROWS) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out).writerows(rows)
    return out.getvalue().encode("gbk")


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = make_engine("sqlite://")
    upgrade(eng)
    with Session(eng) as session, session.begin():
        create_user(session, "boss", PASSWORD, role="manager")
        create_user(session, "root", PASSWORD, role="admin")
        create_user(session, "nina", PASSWORD, role="lead", team="north")
        create_user(session, "alice", PASSWORD, role="rep", rep="alice")
    yield eng
    eng.dispose()


def settings(tmp_path: Path, **extra: object) -> ConsoleSettings:
    return ConsoleSettings(secret=SECRET, recordings_dir=tmp_path, **extra)  # type: ignore[arg-type]


@pytest.fixture
def client(engine: Engine, tmp_path: Path) -> TestClient:
    return TestClient(make_console_app(engine, settings(tmp_path)), base_url="http://127.0.0.1")


def upload(client: TestClient, data: bytes, name: str = "名单.csv", **extra: str) -> object:
    token = csrf_of(client.get("/leads/import").text)
    return client.post(
        "/leads/import",
        data={"csrf": token, **extra},
        files={"file": (name, data, "text/csv")},
        follow_redirects=False,
    )


def preview_path(client: TestClient, data: bytes, name: str = "名单.csv") -> str:
    response = upload(client, data, name)
    assert response.status_code == 303, response.text  # type: ignore[attr-defined]
    return str(response.headers["location"])  # type: ignore[attr-defined]


def selected(html: str) -> dict[int, str]:
    """Each column's selected field in the preview's mapping row."""
    found = {}
    for index, body in re.findall(r'<select name="col\.(\d+)".*?>(.*?)</select>', html, re.S):
        chosen = re.search(r'<option value="([^"]+)" selected>', body)
        assert chosen is not None
        found[int(index)] = chosen.group(1)
    return found


def test_a_manager_uploads_sees_the_mapping_changes_it_imports_and_downloads_the_rejects(
    client: TestClient, engine: Engine
) -> None:
    log_in(client, "boss")
    path = preview_path(client, gbk_csv())
    assert re.fullmatch(r"/leads/import/[A-Za-z0-9_-]{32}", path)
    page = client.get(path)
    assert page.status_code == 200
    # Detected: a B2B sheet, so 客户名称 is the company and 联系人 the contact's name.
    assert selected(page.text) == {0: "company", 1: "name", 2: "phone", 3: "notes"}
    assert "王伟" in page.text
    assert "not a number" in page.text
    form = {
        "csrf": csrf_of(page.text),
        "col.0": "company",
        "col.1": "name",
        "col.2": "phone",
        "col.3": "tags",
    }
    done = client.post(path, data={**form, "list": "春季", "premium": "1"}, follow_redirects=False)
    assert done.status_code == 303, done.text
    result = client.get(path)
    assert re.search(r'id="result-imported">2<', result.text)
    assert re.search(r'id="result-added">2<', result.text)
    assert re.search(r'id="result-rejected">2<', result.text)
    assert 'data-kind="duplicate_in_file">1<' in result.text
    assert 'data-kind="rejected">1<' in result.text
    assert "changes.csv" not in result.text  # not an update: no changes file
    with Session(engine) as session:
        customers = session.execute(select(CustomerRecord.company, CustomerRecord.tags)).all()
        lists = session.execute(select(LeadList.name, LeadList.premium, LeadList.created_by)).all()
        on_list = session.scalars(select(Lead.id)).all()
    assert sorted(customers) == [("中兴", None), ("华为", "老客户")]  # the notes column went to tags
    assert lists == [("春季", True, "console:boss")]
    assert len(on_list) == 2
    rejects = client.get(f"{path}/rejects.csv")
    assert rejects.status_code == 200
    assert rejects.headers["content-type"].startswith("text/csv")
    assert "attachment" in rejects.headers["content-disposition"]
    lines = list(csv.reader(io.StringIO(rejects.content.decode("utf-8-sig"))))
    assert lines[0] == ["row", "reason", "客户名称", "联系人", "手机号码", "备注"]
    assert [line[0] for line in lines[1:]] == ["4", "5"]
    assert lines[1][1] == "not a valid phone number: 'not a number'"
    assert audit_rows(engine, "lead_import", "lead_rejects_download") == [
        ("boss", "lead_import", "list:春季"),
        ("boss", "lead_rejects_download", "list:春季"),
    ]
    with Session(engine) as session:
        detail = session.scalar(select(AuditEntry.detail).where(AuditEntry.action == "lead_import"))
    assert json.loads(detail or "") == {
        "file": "名单.csv",
        "rows": 4,
        "imported": 2,
        "rejected": 2,
        "updated": 0,
    }


def test_the_files_are_in_the_language_of_the_upload(client: TestClient, engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        import_customers(session, iter([(1, ["姓名", "公司", "电话"]), (2, ["王伟", "华为", "13800000001"])]))
    log_in(client, "boss")
    client.post("/language", data={"csrf": csrf_of(client.get("/calls").text), "language": "zh-CN"})
    rows = [["姓名", "公司", "电话"], ["王伟", "华为技术", "13800000001"], ["李娜", "", "12"]]
    path = preview_path(client, gbk_csv(rows))
    page = client.get(path)
    assert "核对各列" in page.text
    form = {"csrf": csrf_of(page.text), "col.0": "name", "col.1": "company", "col.2": "phone"}
    client.post(path, data={**form, "list": "回访", "update": "1"})
    result = client.get(path).text
    assert re.search(r'id="result-updated">1<', result)
    rejects = client.get(f"{path}/rejects.csv").content.decode("utf-8-sig")
    assert rejects.splitlines()[0] == "行号,原因,姓名,公司,电话"
    assert "不是有效的电话号码" in rejects
    changes = client.get(f"{path}/changes.csv").content.decode("utf-8-sig").splitlines()
    assert changes == ["行号,号码,客户编号,字段,原值,新值", "2,+8613800000001,1,公司,华为,华为技术"]
    assert [a for _, a, _ in audit_rows(engine, "lead_changes_download")] == ["lead_changes_download"]


def test_a_mapping_without_a_phone_column_is_refused_beside_the_form(client: TestClient) -> None:
    log_in(client, "root")  # admins may upload too
    path = preview_path(client, gbk_csv())
    token = csrf_of(client.get(path).text)
    refused = client.post(path, data={"csrf": token, "col.0": "company", "col.1": "name", "list": "x"})
    assert refused.status_code == 400
    assert 'id="preview-problem"' in refused.text
    assert "Choose the column that holds the phone numbers." in refused.text
    assert selected(refused.text) == {0: "company", 1: "name", 2: "ignore", 3: "ignore"}  # as chosen
    no_list = client.post(path, data={"csrf": token, "col.2": "phone", "list": " "})
    assert no_list.status_code == 400
    assert "Name the lead list." in no_list.text


def test_only_managers_and_admins_reach_the_upload(client: TestClient) -> None:
    for login in ("nina", "alice"):
        log_in(client, login)
        assert client.get("/leads/import").status_code == 403
        assert client.post("/leads/import", files={"file": ("a.csv", b"x")}).status_code == 403
    client.cookies.clear()
    assert client.get("/leads/import", follow_redirects=False).status_code == 303


def test_an_upload_is_bound_to_its_session(client: TestClient, engine: Engine, tmp_path: Path) -> None:
    log_in(client, "boss")
    path = preview_path(client, gbk_csv())
    other = TestClient(client.app, base_url="http://127.0.0.1")
    log_in(other, "boss")  # the same user in another session
    assert other.get(path).status_code == 404
    log_in(other, "root")
    assert other.get(path).status_code == 404
    assert other.get(f"{path}/rejects.csv").status_code == 404
    assert client.get(path).status_code == 200


def test_the_upload_refuses_a_missing_csrf_a_large_body_a_wrong_type_and_a_broken_file(
    engine: Engine, tmp_path: Path
) -> None:
    client = TestClient(
        make_console_app(engine, settings(tmp_path, upload_max_bytes=2000)), base_url="http://127.0.0.1"
    )
    log_in(client, "boss")
    forged = client.post("/leads/import", data={"csrf": "nope"}, files={"file": ("a.csv", gbk_csv())})
    assert forged.status_code == 403
    large = upload(client, b"a,b\n" * 1000)
    assert large.status_code == 413  # type: ignore[attr-defined]
    assert "larger than the console takes" in large.text  # type: ignore[attr-defined]
    wrong = upload(client, b"MZ\x90\x00", name="setup.exe")
    assert wrong.status_code == 400  # type: ignore[attr-defined]
    assert "Only CSV and Excel" in wrong.text  # type: ignore[attr-defined]
    broken = upload(client, b"\x81\x00\xff\xfe" * 10, name="broken.csv")
    assert broken.status_code == 400  # type: ignore[attr-defined]
    assert "The file cannot be read:" in broken.text  # type: ignore[attr-defined]
    assert "neither UTF-8" in broken.text  # type: ignore[attr-defined]
    not_xlsx = upload(client, b"PK\x03\x04 not a zip", name="leads.xlsx")
    assert not_xlsx.status_code == 400  # type: ignore[attr-defined]
    empty = upload(client, b"", name="empty.csv")
    assert empty.status_code == 400  # type: ignore[attr-defined]
    assert "Choose a file" in empty.text  # type: ignore[attr-defined]
    uploads = tmp_path / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []  # nothing refused is kept


def test_an_xlsx_uploads_and_imports(client: TestClient, engine: Engine) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Name", "Mobile", "Company"])
    sheet.append(["Amy Wang", 13800000009, "ACME"])
    data = io.BytesIO()
    book.save(data)
    log_in(client, "boss")
    path = preview_path(client, data.getvalue(), name="leads.xlsx")
    page = client.get(path).text
    assert selected(page) == {0: "name", 1: "phone", 2: "company"}
    assert "13800000009" in page
    form = {"csrf": csrf_of(page), "col.0": "name", "col.1": "phone", "col.2": "company", "list": "q3"}
    client.post(path, data=form)
    assert re.search(r'id="result-imported">1<', client.get(path).text)
    with Session(engine) as session:
        assert session.scalar(select(CustomerRecord.company)) == "ACME"


# -- the parts ----------------------------------------------------------------------------------


def test_the_upload_area_expires_uploads_and_removes_the_file_once_imported(tmp_path: Path) -> None:
    now = [1000.0]
    store = UploadStore(tmp_path / "up", ttl=60, clock=lambda: now[0])
    kept = store.save("me", "a.csv", b"x", lang="en")
    assert (tmp_path / "up").stat().st_mode & 0o777 == 0o700
    assert store.get(kept.id, "me") == kept
    assert store.get(kept.id, "someone else") is None
    assert store.get("../../etc", "me") is None
    store.finish(kept, {"list": "x"})
    assert not kept.source.exists()
    assert store.get(kept.id, "me") is not None  # the result stays for its downloads
    now[0] += 61
    later = store.save("me", "b.csv", b"y", lang="en")  # sweeps the expired one
    assert not kept.folder.exists()
    assert store.get(later.id, "me") is not None


def test_one_session_keeps_a_few_uploads_at_most(tmp_path: Path) -> None:
    store = UploadStore(tmp_path)
    made = [store.save("me", f"{n}.csv", b"x", lang="en") for n in range(7)]
    assert [store.get(u.id, "me") is not None for u in made] == [False, False, True, True, True, True, True]


def test_owner_keys_bind_user_and_session() -> None:
    assert upload_owner(SECRET, 1, "a") != upload_owner(SECRET, 1, "b")
    assert upload_owner(SECRET, 1, "a") != upload_owner(SECRET, 2, "a")
    assert upload_owner(SECRET, 1, "a") == upload_owner(SECRET, 1, "a")


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("C:\\Users\\王\\名单.csv", "名单.csv"),
        ("../../x.csv", "x.csv"),
        ("a\x00b\n.csv", "ab.csv"),
        ("", "upload"),
    ],
)
def test_file_names_lose_folders_and_control_characters(given: str, kept: str) -> None:
    assert safe_filename(given) == kept


def test_a_multipart_body_keeps_binary_files_and_utf8_names_whole() -> None:
    data = bytes(range(256)) * 3
    body = (
        b'--b\r\nContent-Disposition: form-data; name="csrf"\r\n\r\ntok\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="' + "名单.xlsx".encode() + b'"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--b--\r\n"
    )
    fields, files = parse_multipart("multipart/form-data; boundary=b", body)
    assert fields == {"csrf": "tok"}
    assert files["file"].filename == "名单.xlsx"
    assert files["file"].data == data


def test_a_preview_shows_broken_lines_and_what_it_could_recognise(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes('备注,号码\n"ok",13800000001\n"unclosed\n'.encode())
    shown = preview_file(path)
    assert shown.header == ["备注", "号码"]
    assert shown.columns == {0: "notes", 1: "phone"}
    assert shown.problem is None
    assert shown.rows[0].cells == ["ok", "13800000001"]
    (tmp_path / "b.csv").write_text("甲,乙\n1,2\n", encoding="utf-8")
    unknown = preview_file(tmp_path / "b.csv")
    assert unknown.columns == {}
    assert unknown.problem is not None
    assert column_problem(unknown.columns) == "upload.need_phone"
    assert column_problem({0: "phone", 1: "name", 2: "name"}) == "upload.one_each"


def test_a_mapping_names_every_column() -> None:
    assert mapping_of({1: "phone"}, 3) == {"#1": "ignore", "#2": "phone", "#3": "ignore"}
    with pytest.raises(ValueError, match="unknown field"):
        mapping_of({0: "password"}, 1)


def test_premium_leads_go_to_a_list_of_their_own_and_an_import_runs_once(
    client: TestClient, engine: Engine
) -> None:
    log_in(client, "boss")
    first = preview_path(client, gbk_csv())
    token = csrf_of(client.get(first).text)
    mapping = {"csrf": token, "col.0": "company", "col.1": "name", "col.2": "phone", "list": "spring"}
    assert client.post(first, data=mapping, follow_redirects=False).status_code == 303
    again = client.post(first, data=mapping)  # the form sent twice: the result, not a second import
    assert again.status_code == 200
    assert 'id="result"' in again.text
    assert len(audit_rows(engine, "lead_import")) == 1
    second = preview_path(client, gbk_csv([["电话"], ["13900000001"]]))
    refused = client.post(second, data={"csrf": token, "col.0": "phone", "list": "spring", "premium": "1"})
    assert refused.status_code == 400
    assert "exists and is not premium" in refused.text
    assert len(audit_rows(engine, "lead_import")) == 1  # nothing imported, nothing audited


def test_the_upload_form_says_its_limit(client: TestClient) -> None:
    log_in(client, "boss")
    page = client.get("/leads/import")
    assert page.status_code == 200
    assert "At most 20 MB." in page.text
    assert 'enctype="multipart/form-data"' in page.text
    assert 'href="/leads/import"' in client.get("/calls").text  # in the manager's menu
