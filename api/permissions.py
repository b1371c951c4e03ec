"""Who may call what: one table of operations and the roles allowed to call each.

Every authenticated route reaches this module through ``api.deps.get_actor`` (API keys and
cookie sessions) or ``api.routes.ui.ui_session`` (web pages), and ``admit`` is the only
place that lets a role in or turns it away.  An operation missing from the table is refused
to every role, so a new route is closed until someone decides who may use it (and
``tests/api/test_access_table.py`` fails until then).

Roles (issue 9): ``shop`` takes bets and uploads slips for its own shop; ``analyst`` reviews
alerts, clusters, customers and factoring; ``ml`` works on models and evaluation and never
sees customers' personal data (``api.privacy`` masks it in every JSON answer); ``admin``
manages users, keys, rules and settings and may do everything.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request, routing

from store.access import Actor
from store.errors import Forbidden
from store.models import Role

SHOP, ANALYST, ML, ADMIN = Role.shop, Role.analyst, Role.ml, Role.admin
EVERYONE = frozenset(Role)
COUNTER = frozenset({SHOP, ANALYST, ADMIN})  # takes bets and slips at the counter
RISK = frozenset({ANALYST, ADMIN})  # reviews customers, alerts, money
MODELS = frozenset({ANALYST, ML, ADMIN})  # handwriting clusters and their evaluation
ADMINS = frozenset({ADMIN})
ML_ONLY = frozenset({ML, ADMIN})  # changes the model that serves

# "METHOD /path/template" -> roles.  Shop scoping (a till sees only its own shop) happens in
# the store services on top of this; this table only says who may call the operation at all.
ALLOWED: dict[str, frozenset[Role]] = {
    # bets and slips
    "POST /bets": COUNTER,
    "GET /bets": EVERYONE,
    "GET /bets/{bet_id}": EVERYONE,
    "POST /bets/{bet_id}/slip": COUNTER,
    "GET /slips/{slip_id}": EVERYONE,
    "GET /slips/{slip_id}/image": EVERYONE,
    "GET /slips/{slip_id}/accounts": RISK,  # names the customers a slip resembles
    "POST /checks": COUNTER,
    "POST /observations": COUNTER,
    # shops and events: reference data everyone reads, few write
    "GET /shops": EVERYONE,
    "GET /shops/{shop_id}": EVERYONE,
    "POST /shops": ADMINS,
    "PATCH /shops/{shop_id}": ADMINS,
    "GET /events": EVERYONE,
    "GET /events/next-races": EVERYONE,
    "POST /events": RISK,
    "POST /events/{event_id}/results": RISK,
    # customers, money and compliance
    "GET /customers": RISK,
    "POST /customers": RISK,
    "GET /customers/{customer_id}": RISK,
    "PATCH /customers/{customer_id}": RISK,
    "GET /customers/{customer_id}/factoring": RISK,
    "PUT /customers/{customer_id}/factoring": RISK,
    "GET /factoring.csv": RISK,
    "POST /factoring/import": RISK,
    "GET /exposure": RISK,
    "POST /odds": RISK,
    "GET /odds/{selection}": RISK,
    "GET /self-exclusions": RISK,
    "POST /self-exclusions": RISK,
    "POST /self-exclusions/import": RISK,
    "POST /self-exclusions/{exclusion_id}/reinstatement": RISK,
    "GET /reports/daily": RISK,
    "GET /reports/staff": RISK,
    "GET /reports/bets": RISK,
    "GET /reports/pnl": RISK,
    # handwriting clusters: ml reads them to evaluate models; only reviewers decide links
    "GET /clusters": MODELS,
    "GET /clusters/{cluster_id}": MODELS,
    "POST /links": RISK,
    # embedding model versions: everyone on models reads them; ml and admin roll them out
    "GET /models": MODELS,
    "GET /models/rollout": MODELS,
    "GET /models/{version}": MODELS,
    "GET /models/{version}/report/{name}": MODELS,
    "POST /models/{version}/activate": ML_ONLY,
    "POST /models/rollback": ML_ONLY,
    "POST /models/rollout/cancel": ML_ONLY,
    # alerts and cases
    "GET /alerts": RISK,
    "GET /alerts/{alert_id}": RISK,
    "POST /alerts/{alert_id}/assign": RISK,
    "POST /alerts/{alert_id}/status": RISK,
    "POST /alerts/{alert_id}/escalate": RISK,
    "POST /alerts/{alert_id}/snooze": RISK,
    "POST /alerts/{alert_id}/notes": RISK,
    "GET /observations": RISK,
    "GET /notifications": RISK,
    "GET /rules": RISK,
    # administration
    "POST /rules/screening": ADMINS,
    "GET /webhooks": ADMINS,
    "POST /webhooks": ADMINS,
    "GET /webhooks/deliveries": ADMINS,
    "GET /audit": ADMINS,
    "GET /keys": ADMINS,
    "POST /keys": ADMINS,
    "POST /keys/{key_id}/revoke": ADMINS,
    "POST /users/{username}/logout": ADMINS,
    # web UI (not in the OpenAPI schema): pages and the JSON they fetch
    "GET /ui": EVERYONE,
    "POST /logout": EVERYONE,
    "GET /ui/feed": EVERYONE,
    "GET /ui/feed/runs": EVERYONE,
    "GET /ui/feed/events": EVERYONE,
    "GET /ui/slips/{slip_id}/boxes": EVERYONE,
    "GET /ui/slips/{slip_id}/letters": MODELS,  # review evidence: clusters and alerts pages
    "GET /ui/upload": COUNTER,
    "GET /ui/lookup/customer": COUNTER,
    "GET /ui/customers": RISK,
    "GET /ui/customers/{customer_id}": RISK,
    "POST /ui/customers/{customer_id}/factoring": RISK,
    "GET /ui/clusters": MODELS,
    "GET /ui/clusters/{cluster_id}": MODELS,
    "GET /ui/alerts": RISK,
    "GET /ui/alerts/{alert_id}": RISK,
    "GET /ui/reports": MODELS,
    "GET /ui/audit": RISK,
    "GET /ui/models": MODELS,
    "GET /ui/models/{version}": MODELS,
    "GET /ui/models/{version}/report/{name}": MODELS,
}


def operation_of(request: Request) -> str:
    """``"METHOD /path/template"`` of the route serving this request."""
    method = "GET" if request.method == "HEAD" else request.method
    route = request.scope.get("route")
    templates = getattr(request.app.state, "route_templates", None)
    if templates is None:
        templates = request.app.state.route_templates = route_templates(request.app)
    path = templates.get(id(route)) or getattr(route, "path_format", request.url.path)
    return f"{method} {path}"


def route_templates(app: Any) -> dict[int, str]:
    """Each API route's full path template (prefixes of included routers applied)."""
    return {
        id(context.original_route): context.path_format
        for context in routing.iter_route_contexts(app.routes)
        if isinstance(context.original_route, routing.APIRoute) and context.path_format
    }


def admit(request: Request, actor: Actor) -> Actor:
    """Let ``actor`` through to this request's operation, or raise Forbidden."""
    operation = operation_of(request)
    allowed = ALLOWED.get(operation)
    if allowed is None:
        raise Forbidden(f"{operation} is not in the access table (api/permissions.py)")
    if actor.role not in allowed:
        roles = ", ".join(sorted(r.value for r in allowed))
        raise Forbidden(f"{operation} needs the role {roles}; you are {actor.role.value}")
    request.state.actor = actor
    request.state.mask_personal = actor.role == Role.ml
    return actor
