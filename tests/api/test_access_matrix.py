"""Every JSON route refuses callers without credentials, and the analyst-only resources refuse
a shop till: the role check is enforced in one place and nothing slipped past it."""

from __future__ import annotations

import re

import pytest

from tests.conftest import auth
from tests.factories import make_shop

PUBLIC = {"/healthz", "/readyz", "/metrics", "/login", "/logout"}
NOT_API = ("/ui", "/static", "/docs", "/redoc", "/openapi")
ANALYST_ONLY = (
    "/alerts",
    "/customers",
    "/clusters",
    "/reports",
    "/exposure",
    "/factoring",
    "/odds",
    "/self-exclusions",
    "/links",
    "/webhooks",
    "/rules",
)


def _api_routes(app):  # type: ignore[no-untyped-def]
    """Every documented operation (the OpenAPI schema is the API's own list of routes)."""
    for path, operations in app.openapi()["paths"].items():
        if path in PUBLIC or path.startswith(NOT_API):
            continue
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        for method in sorted(operations):
            if method in ("get", "post", "put", "patch", "delete"):
                yield method.upper(), concrete


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_api_route_needs_credentials(app, client):
    routes = list(_api_routes(app))
    assert len(routes) > 40
    anonymous = {"X-API-Key": ""}
    open_routes = [
        (m, p) for m, p in routes if client.request(m, p, headers=anonymous).status_code != 401
    ]
    assert open_routes == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_shop_till_cannot_reach_analyst_resources(app, client, session, keys):
    till = auth(keys.shop(make_shop(session).id))
    allowed = [
        (m, p)
        for m, p in _api_routes(app)
        if p.startswith(ANALYST_ONLY)
        and client.request(m, p, headers=till).status_code not in (403, 404)
    ]
    assert allowed == []
