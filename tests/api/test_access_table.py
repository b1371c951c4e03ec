"""The access table (api/permissions.py) against the running app: it names exactly the routes
that authenticate, and every role gets exactly what the table says on every operation, over
API keys for the JSON API and over a logged-in browser session for the web UI."""

from __future__ import annotations

import re

import pytest
from fastapi import routing
from fastapi.testclient import TestClient

from api.deps import AnyUser, get_actor
from api.permissions import ALLOWED
from api.routes.ui import ui_session
from store import users
from store.access import SYSTEM
from store.models import Role
from tests.conftest import auth
from tests.factories import make_shop

PUBLIC = {"GET /healthz", "GET /readyz"}  # probes: no credentials, nothing to leak
MISSING = "999999"  # ids that exist nowhere: a refusal can only come from the role check
# streams until the client leaves: checked by the browser tests instead of a blocking call
STREAMS = {"GET /ui/feed/events"}
PASSWORD = "correct horse battery"


def _depends_on(dependant, targets) -> bool:  # type: ignore[no-untyped-def]
    return any(d.call in targets or _depends_on(d, targets) for d in dependant.dependencies)


def authenticated_operations(app) -> set[str]:  # type: ignore[no-untyped-def]
    """Every ``METHOD /template`` of the app whose route authenticates its caller."""
    found = set()
    for context in routing.iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, routing.APIRoute) and _depends_on(
            context.dependant, {get_actor, ui_session}
        ):
            found |= {f"{m} {context.path_format}" for m in route.methods}
    return found


def schema_operations(app) -> set[str]:  # type: ignore[no-untyped-def]
    return {
        f"{method.upper()} {path}"
        for path, ops in app.openapi()["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    }


def concrete(operation: str) -> tuple[str, str]:
    method, template = operation.split(" ", 1)
    return method, re.sub(r"\{[^}]+\}", MISSING, template)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_table_names_exactly_the_routes_that_authenticate(app) -> None:
    routes = authenticated_operations(app)
    assert len(routes) > 60
    assert sorted(routes - ALLOWED.keys()) == [], "routes missing from api/permissions.py"
    assert sorted(ALLOWED.keys() - routes) == [], "table entries for routes that do not exist"
    # and nothing in the OpenAPI schema escapes authentication but the probes
    assert sorted(schema_operations(app) - routes) == sorted(PUBLIC)
    assert all(ALLOWED[op] for op in ALLOWED)  # no operation closed to every role


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_each_role_against_every_api_operation(app, client, session, keys, role) -> None:
    key = keys.shop(make_shop(session).id) if role == Role.shop else getattr(keys, role.value)
    wrong = []
    checked = 0
    for operation in sorted(schema_operations(app) - PUBLIC):
        method, path = concrete(operation)
        resp = client.request(method, path, headers=auth(key))
        checked += 1
        body = resp.json() if resp.headers.get("content-type") == "application/json" else {}
        detail = str(body.get("detail", "")) if isinstance(body, dict) else ""
        if role in ALLOWED[operation]:
            if resp.status_code in (401, 403):
                wrong.append(f"{operation}: allowed but {resp.status_code} {detail[:120]}")
        elif resp.status_code != 403 or "needs the role" not in detail:
            wrong.append(f"{operation}: not allowed but {resp.status_code} {detail[:120]}")
    assert checked >= 55
    assert wrong == [], "\n".join(wrong)


def _csrf(browser: TestClient) -> str:
    page = browser.get("/ui/feed")
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def _login(app, name: str) -> TestClient:  # type: ignore[no-untyped-def]
    browser = TestClient(app)
    page = browser.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    resp = browser.post("/login", data={"username": name, "password": PASSWORD,
                                        "csrf_token": token}, follow_redirects=False)  # fmt: skip
    assert resp.status_code == 303, resp.text[:200]
    return browser


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_each_role_against_every_web_operation(app, session, role, monkeypatch) -> None:
    from argon2 import PasswordHasher

    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024,
                                                         parallelism=1))  # fmt: skip
    shop_id = make_shop(session).id if role == Role.shop else None
    users.create_user(session=session, username="who", password=PASSWORD, role=role,
                      shop_id=shop_id, actor=SYSTEM)  # fmt: skip
    session.commit()
    web = sorted(authenticated_operations(app) - schema_operations(app) - STREAMS)
    assert "POST /logout" in web and len(web) >= 15
    web.remove("POST /logout")  # last: it ends the session
    wrong = []
    with _login(app, "who") as browser:
        csrf = _csrf(browser)
        for operation in [*web, "POST /logout"]:
            method, path = concrete(operation)
            form = {"csrf_token": csrf, "reason": "test", "stake_factor": "0.5"}
            resp = browser.request(method, path, data=form, headers={"X-CSRF-Token": csrf},
                                   follow_redirects=False)  # fmt: skip
            refused = resp.status_code == 403
            to_login = resp.status_code == 303 and "/login" in resp.headers["location"]
            if role in ALLOWED[operation] and (refused or to_login) and operation != "POST /logout":
                wrong.append(f"{operation}: allowed but {resp.status_code}")
            if role not in ALLOWED[operation] and not refused:
                wrong.append(f"{operation}: not allowed but {resp.status_code}")
        assert resp.status_code == 303  # logged out
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_route_missing_from_the_table_is_closed_to_everyone(app, client) -> None:
    @app.get("/not-in-the-table")
    def unlisted(actor: AnyUser) -> dict[str, str]:
        return {"who": actor.name}

    resp = client.get("/not-in-the-table")  # the admin key
    assert resp.status_code == 403
    assert "not in the access table" in resp.json()["detail"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_refusal_names_the_operation_and_the_roles(client, keys) -> None:
    resp = client.post("/webhooks", json={}, headers=auth(keys.analyst))
    assert resp.status_code == 403
    assert resp.json()["detail"] == "POST /webhooks needs the role admin; you are analyst"


def test_the_table_keeps_the_roles_of_issue_9() -> None:
    """The policy itself: shop tills take bets and never see customers or reviews; ml reads
    for model work and changes nothing but models; only admins manage keys, users, webhooks
    and read the audit log through the API; admins may do everything."""
    customer_data = ("/customers", "/factoring", "/self-exclusions", "/exposure", "/reports",
                     "/alerts", "/observations", "/notifications", "/ui/customers",
                     "/ui/alerts", "/ui/audit")  # fmt: skip
    admin_only = ("/audit", "/keys", "/users", "/webhooks", "/rules/screening")
    for operation, roles in ALLOWED.items():
        method, path = operation.split(" ", 1)
        assert Role.admin in roles, operation
        if path.startswith(customer_data) and operation != "POST /observations":
            assert Role.shop not in roles and Role.ml not in roles, operation
        if path.startswith(admin_only):
            assert roles == {Role.admin}, operation
        if method != "GET" and not path.startswith(("/models/", "/logout")):
            assert Role.ml not in roles, operation
    assert Role.shop in ALLOWED["POST /bets"] and Role.shop in ALLOWED["POST /bets/{bet_id}/slip"]
    assert Role.ml in ALLOWED["GET /clusters/{cluster_id}"]
    assert Role.ml in ALLOWED["GET /slips/{slip_id}/image"]
