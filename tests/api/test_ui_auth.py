"""Web UI login, sessions, roles, CSRF and security headers (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from api.routes.feed import FeedFilter, _new_rows, matches, runs_on_selections
from api.routes.ui import risk_colour
from store import users
from store.access import SYSTEM, Actor
from store.models import AuditEntry, Customer, Leg, Role, utcnow
from tests.factories import make_bet, make_customer, make_shop

PASSWORD = "correct horse battery"


def make_user(session: Session, name: str, role: Role, shop_id: int | None = None) -> None:
    users.create_user(session=session, username=name, password=PASSWORD, role=role,
                      shop_id=shop_id, actor=SYSTEM)  # fmt: skip
    session.commit()


def login(client: TestClient, name: str, password: str = PASSWORD, next: str = "/ui"):  # type: ignore[no-untyped-def]
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    return client.post(
        "/login",
        data={"username": name, "password": password, "csrf_token": token, "next": next},
        follow_redirects=False,
    )


def csrf_of(client: TestClient) -> str:
    page = client.get("/ui/feed")
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


@pytest.fixture(autouse=True)
def fresh_login_throttle() -> None:
    from api.routes import ui

    ui._failures.clear()


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id with small cost parameters: the same code path, a fraction of the ~0.5 s a
    production-strength hash takes here (one test below keeps the real parameters)."""
    from argon2 import PasswordHasher

    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024,
                                                         parallelism=1))  # fmt: skip


def test_production_hash_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    from argon2 import extract_parameters

    monkeypatch.undo()  # the module's own hasher
    stored = users.hash_password("x" * 12)
    params = extract_parameters(stored)
    assert stored.startswith("$argon2id$")
    assert params.memory_cost >= 65536 and params.time_cost >= 2


@pytest.fixture
def browser(app):  # type: ignore[no-untyped-def]
    """A client with no API key: it authenticates like a browser, by cookie."""
    with TestClient(app) as c:
        yield c


def test_login_sets_an_httponly_lax_cookie_and_redirects(browser, session) -> None:
    make_user(session, "alice", Role.analyst)
    assert browser.get("/ui/feed", follow_redirects=False).headers["location"] == (
        "/login?next=/ui/feed"
    )
    resp = login(browser, "alice", next="/ui/feed")
    assert resp.status_code == 303 and resp.headers["location"] == "/ui/feed"
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith(users.SESSION_COOKIE + "=")
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    page = browser.get("/ui/feed")
    assert page.status_code == 200 and "Live bet feed" in page.text
    row = session.exec(select(users.User).where(users.User.username == "alice")).one()
    assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash


def test_wrong_password_unknown_user_and_disabled_user_are_refused(browser, session) -> None:
    make_user(session, "alice", Role.analyst)
    assert login(browser, "alice", "wrong password!").status_code == 401
    assert login(browser, "nobody", PASSWORD).status_code == 401
    assert users.SESSION_COOKIE not in browser.cookies
    failed = session.exec(select(AuditEntry).where(AuditEntry.action == "user.login_failed")).all()
    assert len(failed) == 2
    users.disable_user(session=session, username="alice", actor=SYSTEM)
    session.commit()
    assert login(browser, "alice").status_code == 401


def test_repeated_failures_lock_the_name_for_a_while(browser, session) -> None:
    from api.routes import ui

    make_user(session, "alice", Role.analyst)
    for _ in range(ui.MAX_FAILURES):
        assert login(browser, "alice", "wrong password!").status_code == 401
    locked = login(browser, "alice")
    assert locked.status_code == 429 and "too many failed attempts" in locked.text
    assert users.SESSION_COOKIE not in browser.cookies
    assert login(browser, "bob-other").status_code == 401  # other names are not locked


def test_login_attempts_are_rate_limited_per_client(app, session) -> None:
    from api.ratelimit import SlidingWindow

    app.state.rate_limits["login"] = SlidingWindow(limit=2, seconds=60)
    make_user(session, "alice", Role.analyst)
    with TestClient(app) as c:
        assert login(c, "alice", "wrong password!").status_code == 401
        assert login(c, "bob", "wrong password!").status_code == 401
        refused = login(c, "alice")
        assert refused.status_code == 429 and "too many login attempts" in refused.text


def test_login_form_needs_its_csrf_token(browser, session) -> None:
    make_user(session, "alice", Role.analyst)
    form = {"username": "alice", "password": PASSWORD, "csrf_token": "forged"}
    resp = browser.post("/login", data=form, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login?error=")
    assert users.SESSION_COOKIE not in browser.cookies


def test_next_never_redirects_off_site(browser, session) -> None:
    make_user(session, "alice", Role.analyst)
    assert login(browser, "alice", next="//evil.example/x").headers["location"] == "/ui"
    assert login(browser, "alice", next="https://evil.example").headers["location"] == "/ui"


def test_cookie_session_calls_the_json_api_with_csrf_on_writes(browser, session) -> None:
    shop = make_shop(session)
    make_user(session, "alice", Role.analyst)
    login(browser, "alice")
    assert browser.get("/bets").status_code == 200
    bet = {"stake": 2.0, "shop_id": shop.id, "legs": [{"sport": "Darts", "selection": "Price"}]}
    refused = browser.post("/bets", json=bet)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert browser.post("/bets", json=bet, headers={"X-CSRF-Token": "nope"}).status_code == 403
    ok = browser.post("/bets", json=bet, headers={"X-CSRF-Token": csrf_of(browser)})
    assert ok.status_code == 201


def test_api_keys_need_no_csrf_and_unauthenticated_calls_get_401(client, browser) -> None:
    assert client.post("/shops", json={"code": "K1", "name": "Key shop"}).status_code == 201
    assert browser.get("/bets").status_code == 401


def test_tampered_expired_and_stale_cookies_are_refused(session, settings) -> None:
    make_user(session, "alice", Role.analyst)
    user = users.user_by_name(session=session, username="alice")
    secret = settings.secret_key
    value = users.issue_session(user, session=session, secret=secret, now=1000.0)  # type: ignore[arg-type]
    session.commit()
    ok = users.read_session(value, session=session, secret=secret, now=1000.0 + 60)
    assert ok is not None and ok.actor == Actor(name="alice", role=Role.analyst)
    later = 1000.0 + users.SESSION_SECONDS + 1
    assert users.read_session(value, session=session, secret=secret, now=later) is None
    payload, sig = value.split(".")
    assert users.read_session(payload + "." + sig[::-1], session=session, secret=secret,
                              now=1001.0) is None  # fmt: skip
    assert users.read_session(value, session=session, secret="another secret", now=1001.0) is None
    users.set_password(session=session, username="alice", password="a new long password",
                       actor=SYSTEM)  # fmt: skip
    session.commit()
    assert users.read_session(value, session=session, secret=secret, now=1001.0) is None


def test_disabling_a_user_ends_their_session(browser, session) -> None:
    make_user(session, "alice", Role.analyst)
    login(browser, "alice")
    assert browser.get("/ui/feed", follow_redirects=False).status_code == 200
    users.disable_user(session=session, username="alice", actor=SYSTEM)
    session.commit()
    assert browser.get("/ui/feed", follow_redirects=False).status_code == 303
    assert browser.get("/bets").status_code == 401


def test_shop_staff_see_only_their_shop(browser, session) -> None:
    mine, other = make_shop(session), make_shop(session)
    own = make_bet(session, shop_id=mine.id, legs=[{"sport": "Golf", "selection": "Mine Here"}])
    make_bet(session, shop_id=other.id, legs=[{"sport": "Golf", "selection": "Elsewhere Bet"}])
    make_user(session, "till", Role.shop, shop_id=mine.id)
    login(browser, "till")
    feed = browser.get("/ui/feed").text
    assert "Mine Here" in feed and "Elsewhere Bet" not in feed
    assert [b["id"] for b in browser.get("/bets").json()["items"]] == [own.id]
    upload = browser.get("/ui/upload")
    assert upload.status_code == 200
    waiting = re.findall(r'<option value="(\d+)">Bet', upload.text)
    assert waiting == [str(own.id)]  # its own bet waiting for a slip, not the other shop's
    for page in ("/ui/customers", "/ui/alerts", "/ui/reports", "/ui/audit"):
        resp = browser.get(page)
        assert resp.status_code == 403 and "Not allowed" in resp.text, page


def test_ml_role_sees_no_customer_names(browser, session) -> None:
    customer = make_customer(session, name="Zebedee Quill")
    make_bet(session, customer_id=customer.id)
    make_user(session, "mel", Role.ml)
    login(browser, "mel")
    feed = browser.get("/ui/feed")
    assert feed.status_code == 200
    assert "Zebedee" not in feed.text and f"customer #{customer.id}" in feed.text
    assert browser.get(f"/ui/customers/{customer.id}").status_code == 403
    assert browser.get(f"/customers/{customer.id}").status_code == 403


def test_security_headers_on_pages_and_api(browser, client, session) -> None:
    make_user(session, "alice", Role.analyst)
    for resp in (browser.get("/login"), client.get("/bets")):
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
        assert "script-src 'self'" in resp.headers["content-security-policy"]
    login(browser, "alice")
    assert browser.get("/ui/feed").headers["cache-control"] == "no-store"
    assert "content-security-policy" not in client.get("/docs").headers


def test_factoring_form_needs_csrf_and_a_reason_and_is_audited(browser, session) -> None:
    customer = make_customer(session)
    make_user(session, "alice", Role.analyst)
    login(browser, "alice")
    form = {"stake_factor": "0.25", "risk_category": "watch", "status": "active",
            "restricted_sports": "Football, Tennis", "restricted_price_types": ["SP", "early"],
            "inherit_linked_factor": "1"}  # fmt: skip
    url = f"/ui/customers/{customer.id}/factoring"
    assert browser.post(url, data=form, follow_redirects=False).status_code == 403
    form["csrf_token"] = csrf_of(browser)
    no_reason = browser.post(url, data=form, follow_redirects=False)
    assert no_reason.status_code == 422 and "reason" in no_reason.text
    form["reason"] = "steamer on Saturday"
    assert browser.post(url, data=form, follow_redirects=False).status_code == 303
    session.expire_all()
    row = session.get(Customer, customer.id)
    assert row is not None and row.stake_factor == 0.25 and row.risk_category == "watch"
    assert row.restricted_sports == ["Football", "Tennis"]
    assert row.restricted_price_types == ["SP", "early"]
    actions = {
        e.action: e
        for e in session.exec(select(AuditEntry).where(AuditEntry.actor == "alice")).all()
    }
    assert actions["customer.factoring"].after["reason"] == "steamer on Saturday"  # type: ignore[index]
    assert actions["customer.update"].after == {"risk_category": "watch"}
    page = browser.get(f"/ui/customers/{customer.id}").text
    assert "stake_factor 1.0 → 0.25" in page and "steamer on Saturday" in page
    # the same values again change nothing and need no reason
    del form["reason"]
    assert browser.post(url, data=form, follow_redirects=False).status_code == 303


def test_logout_needs_csrf_and_clears_the_cookie(browser, session) -> None:
    make_user(session, "alice", Role.analyst)
    login(browser, "alice")
    token = csrf_of(browser)
    assert browser.post("/logout", data={}, follow_redirects=False).status_code == 403
    resp = browser.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert resp.status_code == 303 and users.SESSION_COOKIE not in browser.cookies


def test_pages_render_for_an_analyst(browser, session) -> None:
    customer = make_customer(session, risk_category="watch")
    make_bet(session, customer_id=customer.id)
    make_user(session, "alice", Role.analyst)
    login(browser, "alice")
    for page in ("/ui/feed", "/ui/upload", "/ui/customers", f"/ui/customers/{customer.id}",
                 "/ui/clusters", "/ui/alerts", "/ui/reports", "/ui/audit",
                 "/ui/feed?selection=golden&min_stake=1&sport=horse+racing"):  # fmt: skip
        resp = browser.get(page)
        assert resp.status_code == 200, (page, resp.text[:500])
    assert browser.get("/ui/customers/99999").status_code == 404


# ---------------------------------------------------------------- feed logic, exact answers
def test_risk_colours() -> None:
    now = utcnow()
    assert risk_colour(None) == "neutral"
    assert risk_colour(Customer(external_ref="a", risk_category="watch")) == "red"
    assert risk_colour(Customer(external_ref="a", risk_category="high")) == "red"
    assert risk_colour(Customer(external_ref="a", risk_category="new")) == "purple"
    recent = Customer(external_ref="a", risk_category="good", registered_at=now - timedelta(days=3))
    assert risk_colour(recent, now) == "purple"
    old = Customer(external_ref="a", risk_category="good", registered_at=now - timedelta(days=300))
    assert risk_colour(old, now) == "green"
    assert risk_colour(Customer(external_ref="a", risk_category="normal")) == "neutral"


def test_runs_on_selections_counts_the_last_y_bets(session) -> None:
    def bet(selection: str, minutes: int) -> None:
        make_bet(session, placed_at=utcnow() - timedelta(minutes=minutes),
                 legs=[{"sport": "Horse Racing", "selection": selection}])  # fmt: skip

    for minutes, selection in enumerate(["Golden Arrow", "golden  arrow", "Blue", "GOLDEN ARROW",
                                         "Blue", "Red"]):  # fmt: skip
        bet(selection, minutes)
    bet("Blue", 100)  # oldest: outside the last 6
    runs = runs_on_selections(session, actor=SYSTEM, x=2, y=6)
    assert [(r["selection"].lower(), r["count"]) for r in runs] == [
        ("golden arrow", 3),
        ("blue", 2),
    ]
    assert runs_on_selections(session, actor=SYSTEM, x=3, y=7)[1]["count"] == 3
    assert runs_on_selections(session, actor=SYSTEM, x=4, y=7) == []


def test_new_rows_respect_the_filters_and_advance_the_cursor(session, engine) -> None:
    watch = make_customer(session, risk_category="watch")
    first = make_bet(session)
    a = make_bet(session, customer_id=watch.id, stake=20.0,
                 legs=[{"sport": "Tennis", "selection": "Serena"}])  # fmt: skip
    make_bet(session, stake=20.0, legs=[{"sport": "Tennis", "selection": "Serena"}])
    f = FeedFilter(risk_category="watch", sport="tennis", min_stake=10)
    rows, cursor = _new_rows(engine, SYSTEM, f, first.id)  # type: ignore[arg-type]
    assert cursor == first.id + 2  # type: ignore[operator]
    assert len(rows) == 1 and f'"id": {a.id}' in rows[0] and "risk-red" in rows[0]
    assert _new_rows(engine, SYSTEM, f, cursor) == ([], cursor)
    legs = list(session.exec(select(Leg).where(Leg.bet_id == a.id)).all())
    assert matches(a, legs, watch, FeedFilter(selection="SER"), None)
    assert not matches(a, legs, watch, FeedFilter(max_stake=19.99), None)
    assert not matches(a, legs, watch, FeedFilter(), customer_id=watch.id + 1)  # type: ignore[operator]


def test_sse_endpoint_needs_auth(browser, client) -> None:
    assert browser.get("/ui/feed/events").status_code == 401
    assert client.get("/ui/feed/runs?x=2&y=5").json() == {"x": 2, "y": 5, "runs": []}


def test_lookup_customer_returns_only_the_id(browser, session) -> None:
    shop = make_shop(session)
    customer = make_customer(session, external_ref="CARD-77", name="Secret Name")
    make_user(session, "till", Role.shop, shop_id=shop.id)
    login(browser, "till")
    resp = browser.get("/ui/lookup/customer?ref=CARD-77")
    assert resp.json() == {"id": customer.id}
    assert browser.get("/ui/lookup/customer?ref=NOPE").status_code == 404


def test_names_are_escaped_in_pages_and_live_rows(browser, session, engine) -> None:
    evil = make_customer(session, name="<script>alert(1)</script>")
    first = make_bet(session)
    make_bet(session, customer_id=evil.id)
    make_user(session, "alice", Role.analyst)
    login(browser, "alice")
    page = browser.get("/ui/feed").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)" in page
    rows, _ = _new_rows(engine, SYSTEM, FeedFilter(), first.id)  # type: ignore[arg-type]
    assert "<script>" not in rows[0] and "&lt;script&gt;" in rows[0]


def test_new_rows_of_a_shop_are_only_its_own(session, engine) -> None:
    mine, other = make_shop(session), make_shop(session)
    first = make_bet(session)
    make_bet(session, shop_id=other.id)
    own = make_bet(session, shop_id=mine.id)
    till = Actor(name="till", role=Role.shop, shop_id=mine.id)
    rows, cursor = _new_rows(engine, till, FeedFilter(), first.id)  # type: ignore[arg-type]
    assert [f'"id": {own.id}' in r for r in rows] == [True] and cursor == own.id


def test_day_activity_is_aggregated_by_the_database(session) -> None:
    from datetime import UTC, datetime

    from api.routes.ui import day_activity
    from store import audit

    day = datetime(2026, 3, 4, tzinfo=UTC)
    s1, s2 = make_shop(session, code="A1"), make_shop(session, code="B2")
    customer = make_customer(session)

    def bet(hour: int, minute: int, *, shop, stake: float, sport: str, who=None) -> None:  # type: ignore[no-untyped-def]
        make_bet(session, shop_id=shop.id, stake=stake, customer_id=who,
                 placed_at=day.replace(hour=hour, minute=minute),
                 legs=[{"sport": sport, "selection": "X"}])  # fmt: skip

    bet(0, 5, shop=s1, stake=2.0, sport="Golf", who=customer.id)
    bet(9, 59, shop=s1, stake=3.0, sport="Golf")
    bet(9, 0, shop=s2, stake=5.5, sport="Darts", who=customer.id)
    bet(23, 59, shop=s2, stake=1.0, sport="Golf")
    make_bet(session, placed_at=day.replace(day=5, hour=0), stake=99.0)  # the next day
    audit.record(session, actor="ana", action="link.confirmed", entity="link_decision")
    audit.record(session, actor="ana", action="alert.assign", entity="alert")
    audit.record(session, actor="system", action="alert.raise", entity="alert")
    session.commit()
    # audit entries are stamped now: ask for today's audit window separately
    out = day_activity(session, start=day, end=day + timedelta(days=1))
    assert out["totals"] == {"bets": 4, "stakes": 11.5, "customers": 1, "anonymous": 2,
                             "shops": 2}  # fmt: skip
    hours = out["by_hour"]
    assert (hours[0], hours[9], hours[23], sum(hours)) == (1, 2, 1, 4)
    assert out["stake_by_shop"] == [("A1", 5.0), ("B2", 6.5)]
    assert out["bets_by_sport"] == [("Golf", 3), ("Darts", 1)]
    now = utcnow()
    today = day_activity(session, start=now - timedelta(hours=1), end=now + timedelta(hours=1))
    staff = {who: acts for who, acts, _ in today["staff"]}
    assert staff["ana"] == {"link.confirmed": 1, "alert.assign": 1}
    assert sorted(e.action for e in today["reviews"]) == ["alert.assign", "link.confirmed"]
