"""Journey in a real browser: an analyst logs in, someone copies the session cookie into
another browser, the analyst clicks "Log out", and the copied cookie no longer opens a page
or calls the API (the session is revoked on the server, not only deleted in one browser)."""

from __future__ import annotations

import httpx

from store import users
from tests.ui.conftest import login, screenshot


def test_log_out_ends_the_session_a_copied_cookie_was_using(live_server, page, chromium) -> None:
    base = live_server.url
    login(page, base, "ana", "/ui/feed")
    stolen = [c for c in page.context.cookies() if c["name"] == users.SESSION_COOKIE]
    assert len(stolen) == 1 and stolen[0]["httpOnly"] and stolen[0]["sameSite"] == "Lax"

    other = chromium.new_context()  # the thief's browser, holding a copy of the cookie
    try:
        other.add_cookies(stolen)
        thief = other.new_page()
        thief.goto(f"{base}/ui/feed")
        assert thief.url == f"{base}/ui/feed"  # the copy works while the session lives
        cookie = {users.SESSION_COOKIE: stolen[0]["value"]}
        assert httpx.get(f"{base}/bets", cookies=cookie).status_code == 200

        page.click("form.who button[type=submit]")  # "Log out"
        page.wait_for_url(f"{base}/login*")
        screenshot(page, "logged_out")

        thief.goto(f"{base}/ui/feed")
        assert thief.url.startswith(f"{base}/login")  # sent to the login form
        assert httpx.get(f"{base}/bets", cookies=cookie).status_code == 401
        page.goto(f"{base}/ui/feed")
        assert page.url.startswith(f"{base}/login")
    finally:
        other.close()

    with live_server.session() as s:  # the logout is on the audit trail
        from sqlmodel import select

        from store.models import AuditEntry

        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "user.logout")).one()
        assert entry.actor == "ana" and entry.remote_addr == "127.0.0.1"
