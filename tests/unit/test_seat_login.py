"""The seat page's rep log-in off loopback, its sessions and throttle, the password command, parked counts."""

from __future__ import annotations

import re
import stat
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.commands.seat_password import seat_password
from agent.seat.web.app import make_seat_app
from agent.seat.web.bus import SeatBus
from agent.seat.web.context import SeatContext
from agent.seat.web.login import HASH_FILE_NAME, SeatLogin, arrived_on_loopback, write_password
from agent.web.guard import allowed_hosts
from agent.web.passwords import LoginRateLimiter, verify_password

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PASSWORD = "seat password 1"
LAN = "192.0.2.2"


def csrf_in(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def seat_app(tmp_path: Path, *, login: bool = True, health: dict[str, int] | None = None) -> SeatContext:
    return SeatContext(
        bus=SeatBus(),
        seat="seat-7",
        hosts=allowed_hosts(LAN),
        login=SeatLogin(tmp_path / HASH_FILE_NAME) if login else None,
        health=(lambda: health) if health is not None else None,
    )


def client(context: SeatContext, host: str = LAN, address: str = "192.0.2.50") -> TestClient:
    return TestClient(make_seat_app(context), base_url=f"http://{host}", client=(address, 50000))


def log_in(browser: TestClient, password: str = PASSWORD):
    token = csrf_in(browser.get("/login").text)
    return browser.post("/login", data={"password": password, "csrf": token}, follow_redirects=False)


@pytest.mark.parametrize(
    ("server", "client_addr", "loopback"),
    [
        (("127.0.0.1", 8330), ("192.0.2.9", 1), True),
        (("::1", 8330), None, True),
        (("::ffff:127.0.0.1", 8330), None, True),
        ((LAN, 8330), ("127.0.0.1", 1), False),
        (("0.0.0.0", 8330), None, False),
        (("/run/seat.sock", None), None, True),
        (("testserver", 80), ("127.0.0.1", 1), True),
        (("testserver", 80), ("testclient", 1), False),
    ],
)
def test_loopback_is_where_the_request_arrived(
    server: tuple[str, int | None], client_addr: tuple[str, int] | None, loopback: bool
) -> None:
    assert arrived_on_loopback({"type": "http", "server": server, "client": client_addr}) is loopback


def test_on_loopback_nothing_changes(tmp_path: Path) -> None:
    browser = client(seat_app(tmp_path), host="127.0.0.1", address="127.0.0.1")
    page = browser.get("/")
    assert page.status_code == 200
    assert 'id="logout-form"' not in page.text
    assert browser.get("/api/state").status_code == 200
    assert browser.get("/login", follow_redirects=False).headers["location"] == "/"


def test_from_the_network_without_a_password_nothing_is_served(tmp_path: Path) -> None:
    for context in (seat_app(tmp_path), seat_app(tmp_path, login=False)):
        browser = client(context)
        first = browser.get("/", follow_redirects=False)
        assert first.status_code == 303
        assert first.headers["location"] == "/login"
        assert "content-security-policy" in first.headers
        form = browser.get("/login")
        assert "cti-agent seat-password" in form.text
        assert 'id="login-form"' not in form.text
        for method, path in (("GET", "/api/state"), ("GET", "/events"), ("POST", "/api/dial")):
            assert browser.request(method, path).status_code == 401, path
        assert browser.get("/healthz").status_code == 200


def test_rep_logs_in_from_the_network_and_logs_out_for_good(tmp_path: Path) -> None:
    write_password(tmp_path / HASH_FILE_NAME, PASSWORD)
    browser = client(seat_app(tmp_path))
    assert browser.get("/api/state").status_code == 401
    form = browser.get("/login")
    assert "This page is reached over the network" in form.text
    before = browser.cookies.get("cti_seat")
    assert log_in(browser, "wrong password").status_code == 401
    done = log_in(browser)
    assert done.status_code == 303
    assert done.headers["location"] == "/"
    after = browser.cookies.get("cti_seat")
    assert after
    assert after != before  # a fresh session id at log-in: a planted one is never promoted
    page = browser.get("/")
    assert page.status_code == 200
    assert 'id="logout-form"' in page.text
    assert browser.get("/api/state").status_code == 200
    copy = TestClient(browser.app, base_url=f"http://{LAN}", cookies={"cti_seat": after})
    assert copy.get("/api/state").status_code == 200
    # A log-out without the page's token is refused.
    assert browser.post("/logout", data={"csrf": "nope"}).status_code == 403
    out = browser.post("/logout", data={"csrf": csrf_in(page.text)}, follow_redirects=False)
    assert out.status_code == 303
    assert out.headers["location"] == "/login"
    assert copy.get("/api/state").status_code == 401  # the session is gone server-side


def test_log_in_needs_the_forms_token(tmp_path: Path) -> None:
    write_password(tmp_path / HASH_FILE_NAME, PASSWORD)
    browser = client(seat_app(tmp_path))
    browser.get("/login")
    refused = browser.post("/login", data={"password": PASSWORD, "csrf": "forged"}, follow_redirects=False)
    assert refused.status_code == 403
    other = client(seat_app(tmp_path))
    stolen = csrf_in(other.get("/login").text)
    assert browser.post("/login", data={"password": PASSWORD, "csrf": stolen}).status_code == 403


def test_wrong_passwords_are_throttled_per_address_only(tmp_path: Path) -> None:
    write_password(tmp_path / HASH_FILE_NAME, PASSWORD)
    context = seat_app(tmp_path)
    guesser = client(context, address="192.0.2.66")
    for _ in range(5):
        assert log_in(guesser, "wrong password").status_code == 401
    throttled = log_in(guesser)
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "1"
    assert "Too many wrong passwords" in throttled.text
    # The rep at their own desk elsewhere is not kept out.
    rep = TestClient(guesser.app, base_url=f"http://{LAN}", client=("192.0.2.50", 50000))
    assert log_in(rep).status_code == 303


def test_a_new_password_ends_every_session(tmp_path: Path) -> None:
    path = tmp_path / HASH_FILE_NAME
    write_password(path, PASSWORD)
    browser = client(seat_app(tmp_path))
    log_in(browser)
    assert browser.get("/api/state").status_code == 200
    write_password(path, "another password")
    assert browser.get("/api/state").status_code == 401
    assert log_in(browser, "another password").status_code == 303
    assert browser.get("/api/state").status_code == 200
    path.unlink()
    assert browser.get("/api/state").status_code == 401


def test_sessions_expire_and_are_bounded(tmp_path: Path) -> None:
    now = [0.0]
    write_password(tmp_path / HASH_FILE_NAME, PASSWORD)
    login = SeatLogin(
        tmp_path / HASH_FILE_NAME,
        session_seconds=60,
        max_sessions=3,
        limiter=LoginRateLimiter(),
        clock=lambda: now[0],
    )
    first = login.start()
    assert login.logged_in(first)
    now[0] = 61
    assert not login.logged_in(first)
    ids = [login.start() for _ in range(5)]
    assert [login.logged_in(i) for i in ids] == [False, False, True, True, True]
    assert not login.logged_in(None)
    assert login.check(PASSWORD)
    assert not login.check("nope nope nope")


def test_seat_password_command(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    runner = CliRunner()
    done = runner.invoke(seat_password, ["--password-stdin", "--config", str(config)], input=PASSWORD + "\n")
    assert done.exit_code == 0, done.output
    stored = tmp_path / "data" / HASH_FILE_NAME
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    text = stored.read_text(encoding="ascii")
    assert PASSWORD not in text
    assert verify_password(PASSWORD, text.strip())
    short = runner.invoke(seat_password, ["--password-stdin", "--config", str(config)], input="short\n")
    assert short.exit_code == 1
    assert "at least 8" in short.output
    assert verify_password(PASSWORD, stored.read_text(encoding="ascii").strip())  # left as it was
    prompted = runner.invoke(seat_password, ["--config", str(config)], input="prompted pw 1\nprompted pw 1\n")
    assert prompted.exit_code == 0, prompted.output
    assert verify_password("prompted pw 1", stored.read_text(encoding="ascii").strip())
    removed = runner.invoke(seat_password, ["--remove", "--config", str(config)])
    assert removed.exit_code == 0
    assert not stored.exists()


@pytest.mark.parametrize(
    ("lang", "storage_text", "sync_text"),
    [
        ("en", "2 call(s) parked: not stored in the database", "5 record(s) parked: not sent to the centre"),
        ("zh-CN", "2 通电话已搁置：未写入数据库", "5 条记录已搁置：未发送到中心"),
    ],
)
def test_the_page_shows_parked_counts_when_there_are_any(
    tmp_path: Path, lang: str, storage_text: str, sync_text: str
) -> None:
    counts = {"storage_parked": 2, "sync_parked": 5, "sync_backlog": 9}
    local = client(seat_app(tmp_path, health=counts), host="127.0.0.1", address="127.0.0.1")
    page = local.get(f"/?lang={lang}").text
    assert re.search(r'<p id="parked" class="parked" role="status">', page)
    assert storage_text in page
    assert sync_text in page
    counts.update(storage_parked=0, sync_parked=0)
    quiet = local.get(f"/?lang={lang}").text
    assert '<p id="parked" class="parked" role="status" hidden>' in quiet
    assert local.get("/api/state").json()["sync_parked"] == 0


def test_a_failing_health_callback_does_not_break_the_page(tmp_path: Path) -> None:
    def broken() -> dict[str, int]:
        raise RuntimeError("no counts")

    context = SeatContext(bus=SeatBus(), seat="s", health=broken)
    local = TestClient(make_seat_app(context), base_url="http://127.0.0.1")
    page = local.get("/")
    assert page.status_code == 200
    assert '<p id="parked" class="parked" role="status" hidden>' in page.text
