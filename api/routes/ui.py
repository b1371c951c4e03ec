"""The web UI: server-rendered pages (Jinja2) for shop staff and the risk team.

Pages read through the store services; actions are small fetch calls to the JSON API with the
session's CSRF token.  Login sets a signed, HttpOnly, SameSite=Lax session cookie
(``store.users``).  Roles: ``shop`` sees its own shop's bets and the upload page; ``ml`` sees
no customer names and no customer 360; ``analyst`` and ``admin`` see everything.
"""

from __future__ import annotations

import hmac
import importlib.util
import json
import secrets
import threading
import time
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import func
from sqlmodel import Session, col, select

from api import permissions
from api.deps import AnyUser, SessionDep
from store import customers as customer_store
from store import users
from store.access import Actor
from store.errors import DomainError, Forbidden, Invalid, NotFound
from store.models import (
    AuditEntry,
    Bet,
    BetStatus,
    Customer,
    CustomerStatus,
    CustomerUpdate,
    Leg,
    Role,
    Shop,
    Slip,
    as_utc,
    utcnow,
)

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
templates = Jinja2Templates(directory=UI_DIR / "templates")
router = APIRouter(include_in_schema=False)

LOGIN_CSRF_COOKIE = "sliplink_login_csrf"
# risk colours of the feed: red = risk customer or watchlist, purple = new registration,
# green = good customer, neutral otherwise (anonymous bets included)
RED_CATEGORIES = frozenset({"high", "watch", "watchlist", "risk", "risky"})
GREEN_CATEGORIES = frozenset({"good", "vip"})
NEW_REGISTRATION = timedelta(days=30)


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


# ---------------------------------------------------------------- session for pages
class LoginRequired(Exception):
    pass


def ui_session(request: Request, session: SessionDep) -> users.UserSession:
    cookie = request.cookies.get(users.SESSION_COOKIE)
    user_session = (
        users.read_session(cookie, session=session, secret=request.app.state.settings.secret_key)
        if cookie
        else None
    )
    if user_session is None:
        raise LoginRequired()
    request.state.user_session = user_session
    permissions.admit(request, user_session.actor)  # the one access table
    return user_session


UISession = Annotated[users.UserSession, Depends(ui_session)]


def require(user_session: users.UserSession, *roles: Role) -> Actor:
    actor = user_session.actor
    if not actor.has(*roles):
        raise Forbidden(f"this page needs the role {', '.join(r.value for r in roles)}")
    return actor


def check_form_csrf(user_session: users.UserSession, token: str | None) -> None:
    if not users.csrf_ok(user_session, token):
        raise Forbidden("CSRF token missing or wrong: reload the page and try again")


def customer_label(customer: Customer | None, actor: Actor) -> str:
    """How a customer is named to this actor: the ml role never sees names."""
    if customer is None:
        return "anonymous"
    if actor.role == Role.ml:
        return f"customer #{customer.id}"
    return customer.name or customer.external_ref


def risk_colour(customer: Customer | None, placed_at: datetime | None = None) -> str:
    if customer is None:
        return "neutral"
    category = (customer.risk_category or "").lower()
    if category in RED_CATEGORIES:
        return "red"
    if category == "new":
        return "purple"
    if customer.registered_at is not None:
        at = as_utc(placed_at) if placed_at else utcnow()
        if timedelta(0) <= at - as_utc(customer.registered_at) <= NEW_REGISTRATION:
            return "purple"
    if category in GREEN_CATEGORIES:
        return "green"
    return "neutral"


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    user_session = getattr(request.state, "user_session", None)
    base = {
        "me": user_session.actor if user_session else None,
        "csrf_token": user_session.csrf_token if user_session else "",
        "Role": Role,
        "features": {
            "clusters": has_module("store.clustering"),
            "alerts": has_module("store.alerts"),
        },
    }
    return templates.TemplateResponse(request, name, base | context, status_code=status_code)


# ---------------------------------------------------------------- login / logout
@router.get("/", response_class=RedirectResponse)
def home() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=303)


@router.get("/ui", response_class=RedirectResponse)
def ui_home(request: Request, user_session: UISession) -> RedirectResponse:
    if user_session.actor.role == Role.shop:
        return RedirectResponse("/ui/upload", status_code=303)
    return RedirectResponse("/ui/feed", status_code=303)


def _secure(request: Request) -> bool:
    # production sits behind TLS (maybe terminated by a proxy): cookies only travel over https
    return request.url.scheme == "https" or request.app.state.settings.environment == "production"


def _safe_next(target: str | None) -> str:
    # only local paths: never an open redirect to another site
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None, error: str | None = None) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = render(
        request, "login.html", {"next": _safe_next(next), "error": error, "login_csrf": token}
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login",
        secure=_secure(request),
    )  # fmt: skip
    return response


# Failed logins per username in this process: after MAX_FAILURES within LOCK_SECONDS the
# name is refused until the window passes (slows password guessing; argon2 makes each try dear).
MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60
_failures: dict[str, deque[float]] = defaultdict(deque)
_failures_lock = threading.Lock()


def _recent_failures(name: str, now: float) -> deque[float]:
    times = _failures[name]
    while times and now - times[0] > LOCK_SECONDS:
        times.popleft()
    return times


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/ui",
) -> Response:
    limits = getattr(request.app.state, "rate_limits", {})
    if "login" in limits:
        # per client address, before any password is hashed (api.ratelimit)
        from api import ratelimit

        ratelimit.enforce(limits["login"], request, what="login attempts")
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf_token):
        return RedirectResponse(
            f"/login?error=form+expired,+try+again&next={quote(_safe_next(next))}", 303
        )
    client = request.client.host if request.client else None
    name = username.strip().lower()[:64]
    with _failures_lock:
        locked = len(_recent_failures(name, time.monotonic())) >= MAX_FAILURES
    if locked:
        return render(
            request,
            "login.html",
            {"next": _safe_next(next), "login_csrf": expected, "username": username,
             "error": "too many failed attempts: wait 15 minutes and try again"},
            status_code=429,
        )  # fmt: skip
    user = users.authenticate(
        session=session, username=username, password=password, remote_addr=client
    )
    if user is None:
        with _failures_lock:
            _recent_failures(name, time.monotonic()).append(time.monotonic())
        # the failed attempt is audited: commit it, then answer the form again
        session.commit()
        return render(
            request,
            "login.html",
            {"next": _safe_next(next), "error": "wrong username or password",
             "login_csrf": expected, "username": username},
            status_code=401,
        )  # fmt: skip
    with _failures_lock:
        _failures.pop(name, None)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        users.SESSION_COOKIE,
        users.issue_session(user, session=session, secret=request.app.state.settings.secret_key,
                            remote_addr=client, user_agent=request.headers.get("user-agent")),
        max_age=users.SESSION_SECONDS, httponly=True, samesite="lax", path="/",
        secure=_secure(request),
    )  # fmt: skip
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(
    request: Request,
    session: SessionDep,
    user_session: UISession,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    check_form_csrf(user_session, csrf_token)
    # revoked in the database: a copy of the cookie (stolen, or in another tab) stops working
    users.end_session(session=session, user_session=user_session,
                      remote_addr=request.client.host if request.client else None)  # fmt: skip
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(users.SESSION_COOKIE, path="/")
    return response


# ---------------------------------------------------------------- upload (shop staff)
@router.get("/ui/upload", response_class=HTMLResponse)
def upload_page(request: Request, session: SessionDep, user_session: UISession) -> Response:
    actor = require(user_session, Role.shop, Role.analyst)
    # bets still waiting for their slip, among the most recent ones (never a scan of history)
    query = select(Bet)
    if actor.role == Role.shop:
        query = query.where(Bet.shop_id == actor.shop_id)
    recent = session.exec(query.order_by(col(Bet.id).desc()).limit(500)).all()
    recent_ids = [b.id for b in recent]
    with_slip = (
        set(session.exec(select(Slip.bet_id).where(col(Slip.bet_id).in_(recent_ids))).all())
        if recent_ids
        else set()
    )
    waiting = [b for b in recent if b.id not in with_slip][:100]
    legs = _legs_by_bet(session, [b.id for b in waiting])  # type: ignore[misc]
    shops = [] if actor.role == Role.shop else customer_store.list_shops(session=session)
    return render(
        request,
        "upload.html",
        {"waiting": [(b, legs.get(b.id, [])) for b in waiting], "shops": shops},  # type: ignore[arg-type]
    )


@router.get("/ui/lookup/customer")
def lookup_customer(
    session: SessionDep, user_session: UISession, ref: str = Query(min_length=1, max_length=64)
) -> JSONResponse:
    """Customer id for a loyalty-card reference (what a shop till knows); no other fields."""
    row = session.exec(select(Customer).where(Customer.external_ref == ref.strip())).first()
    if row is None:
        raise NotFound(f"ref: no customer with reference {ref!r}")
    if row.status == CustomerStatus.closed:
        raise Invalid(f"ref: customer {ref!r} is closed")
    return JSONResponse({"id": row.id})


# ---------------------------------------------------------------- customers
@router.get("/ui/customers", response_class=HTMLResponse)
def customers_page(
    request: Request,
    session: SessionDep,
    user_session: UISession,
    q: str | None = Query(None, max_length=200),
    risk_category: str | None = Query(None, max_length=32),
) -> Response:
    require(user_session, Role.analyst)
    query = select(Customer)
    if q:
        like = f"%{q.strip().lower()}%"
        query = query.where(
            func.lower(Customer.name).like(like) | func.lower(Customer.external_ref).like(like)
        )
    if risk_category:
        query = query.where(Customer.risk_category == risk_category)
    rows = session.exec(query.order_by(col(Customer.id)).limit(200)).all()
    categories = session.exec(select(Customer.risk_category).distinct()).all()
    return render(
        request,
        "customers.html",
        {"rows": rows, "q": q or "", "risk_category": risk_category or "",
         "categories": sorted(categories), "colour": risk_colour},
    )  # fmt: skip


def customer_summary(session: Session, customer_id: int) -> dict[str, Any]:
    """Bets, stakes, returns and P&L of a customer (customer's view: returns - stakes)."""
    rows = session.exec(select(Bet).where(Bet.customer_id == customer_id)).all()
    settled = [b for b in rows if b.status != BetStatus.open]
    staked = sum(b.total_stake for b in rows)
    settled_stake = sum(b.total_stake for b in settled)
    returns = sum(b.returns or 0.0 for b in settled)
    return {
        "bets": len(rows),
        "open": sum(1 for b in rows if b.status == BetStatus.open),
        "staked": round(staked, 2),
        "settled_stake": round(settled_stake, 2),
        "returns": round(returns, 2),
        "pnl": round(returns - settled_stake, 2),
        "won": sum(1 for b in rows if b.status == BetStatus.won),
        "lost": sum(1 for b in rows if b.status == BetStatus.lost),
    }


@router.get("/ui/customers/{customer_id}", response_class=HTMLResponse)
def customer_page(
    customer_id: int, request: Request, session: SessionDep, user_session: UISession
) -> Response:
    require(user_session, Role.analyst)
    customer = customer_store.get_customer(session=session, customer_id=customer_id)
    bets = session.exec(
        select(Bet)
        .where(Bet.customer_id == customer_id)
        .order_by(col(Bet.placed_at).desc())
        .limit(200)
    ).all()
    legs = _legs_by_bet(session, [b.id for b in bets])  # type: ignore[misc]
    shops = {s.id: s for s in customer_store.list_shops(session=session)}
    slips = _slips_by_bet(session, [b.id for b in bets])  # type: ignore[misc]
    history = session.exec(
        select(AuditEntry)
        .where(AuditEntry.entity == "customer", AuditEntry.entity_id == str(customer_id))
        .order_by(col(AuditEntry.at).desc())
    ).all()
    clusters = _customer_clusters(session, customer_id)
    alerts = _alerts_of(session, pivot_kind="customer", pivot_id=customer_id)
    return render(
        request,
        "customer.html",
        {"c": customer, "bets": bets, "legs": legs, "shops": shops, "slips": slips,
         "summary": customer_summary(session, customer_id), "history": history,
         "clusters": clusters, "alerts": alerts, "colour": risk_colour(customer),
         "statuses": [s.value for s in CustomerStatus],
         "factoring": _factoring_view(session, customer)},
    )  # fmt: skip


def _split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@router.post("/ui/customers/{customer_id}/factoring")
def update_factoring(
    customer_id: int,
    session: SessionDep,
    user_session: UISession,
    stake_factor: Annotated[float, Form(gt=0, le=100, allow_inf_nan=False)],
    risk_category: Annotated[str, Form(min_length=1, max_length=32)],
    status: Annotated[CustomerStatus, Form()],
    reason: Annotated[str, Form(max_length=500)] = "",
    restricted_sports: Annotated[str, Form(max_length=1000)] = "",
    restricted_price_types: Annotated[list[str] | None, Form()] = None,
    inherit_linked_factor: Annotated[str | None, Form(max_length=8)] = None,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """The customer 360's factoring form (a plain HTML form, so CSRF travels as a field).

    Factor and restrictions go through ``store.factoring`` (history with who and why); risk
    category and status through the customer service; both are audited."""
    check_form_csrf(user_session, csrf_token)
    actor = require(user_session, Role.analyst)
    customer = customer_store.get_customer(session=session, customer_id=customer_id)
    profile: dict[str, Any] = {"risk_category": risk_category.strip(), "status": status}
    profile_changes = {k: v for k, v in profile.items() if getattr(customer, k) != v}
    factoring_wanted: dict[str, Any] = {
        "stake_factor": stake_factor,
        "restricted_sports": sorted(set(_split_list(restricted_sports))),
        "restricted_price_types": sorted(set(restricted_price_types or [])),
    }
    if has_module("store.factoring"):
        factoring_wanted["inherit_linked_factor"] = inherit_linked_factor is not None
    factoring_changes = {
        k: v for k, v in factoring_wanted.items() if getattr(customer, k, None) != v
    }
    if factoring_changes and not reason.strip():
        raise Invalid("reason: say why the factoring changes (kept in its history)")
    if factoring_changes and has_module("store.factoring"):
        from store import factoring

        factoring.set_factoring(
            session=session, customer_id=customer_id, actor=actor, reason=reason.strip(),
            **factoring_changes,
        )  # fmt: skip
    elif factoring_changes:
        profile_changes |= factoring_changes
    if profile_changes:
        customer_store.update_customer(
            session=session,
            customer_id=customer_id,
            customer_in=CustomerUpdate(**profile_changes),
            actor=actor,
        )
    return RedirectResponse(f"/ui/customers/{customer_id}?saved=1#factoring", status_code=303)


def _factoring_view(session: Session, customer: Customer) -> dict[str, Any]:
    """Effective factor (strictest of the accounts linked by handwriting) and the history."""
    if not has_module("store.factoring"):
        return {"effective": customer.stake_factor, "linked": [], "history": [],
                "price_types": ["SP", "early", "board"]}  # fmt: skip
    from store import factoring

    effective, linked = factoring.effective_factor(session=session, customer=customer)
    return {
        "effective": effective,
        "linked": linked,
        "history": factoring.factoring_history(session=session, customer_id=customer.id),  # type: ignore[arg-type]
        "price_types": sorted(factoring.PRICE_TYPES),
    }


# ---------------------------------------------------------------- clusters (pipeline's tables)
def _customer_clusters(session: Session, customer_id: int) -> list[dict[str, Any]]:
    if not has_module("store.clustering"):
        return []
    from store import clustering

    out = []
    for cluster_id in clustering.clusters_of_customer(session=session, customer_id=customer_id):
        counts = clustering.cluster_customers(session=session, cluster_id=cluster_id)
        linked = [session.get(Customer, cid) for cid in counts if cid != customer_id]
        out.append(
            {"id": cluster_id, "counts": counts, "linked": [c for c in linked if c is not None],
             "size": len(clustering.cluster_slip_ids(session=session, cluster_id=cluster_id))}
        )  # fmt: skip
    return out


def _alerts_of(session: Session, *, pivot_kind: str, pivot_id: int) -> list[Any]:
    model = _alert_model()
    if model is None:
        return []
    return list(
        session.exec(
            select(model)
            .where(model.pivot_kind == pivot_kind, model.pivot_id == pivot_id)
            .order_by(col(model.created_at).desc())
            .limit(100)
        ).all()
    )


def _alert_model() -> Any:
    """The rules engineer's Alert table, or None while it is not installed."""
    module = _alerts_module()
    return getattr(module, "Alert", None) if module is not None else None


def _alerts_module() -> Any:
    if not has_module("store.alerts"):
        return None
    try:
        return importlib.import_module("store.alerts")
    except Exception:  # noqa: BLE001 - a half-installed alerts module hides the pages only
        return None


@router.get("/ui/clusters", response_class=HTMLResponse)
def clusters_page(
    request: Request,
    session: SessionDep,
    user_session: UISession,
    min_size: int = Query(2, ge=1),
    candidate_link: bool = False,
) -> Response:
    actor = require(user_session, Role.analyst, Role.ml)
    if not has_module("store.clustering"):
        return render(request, "unavailable.html", {"what": "Handwriting clusters"})
    from store import clustering

    model_version = clustering.active_model_version(session=session)
    query = select(clustering.WriterCluster).where(
        clustering.WriterCluster.status == "active",
        clustering.WriterCluster.size >= min_size,
    )
    if model_version:
        query = query.where(clustering.WriterCluster.model_version == model_version)
    rows = session.exec(
        query.order_by(col(clustering.WriterCluster.updated_at).desc()).limit(300)
    ).all()
    items = []
    for cluster in rows:
        counts = clustering.cluster_customers(session=session, cluster_id=cluster.id)  # type: ignore[arg-type]
        if candidate_link and len(counts) < 2:
            continue
        people = [(session.get(Customer, cid), n) for cid, n in counts.items()]
        items.append(
            {"c": cluster, "customers": [(p, customer_label(p, actor), n)
                                         for p, n in people if p is not None]}
        )  # fmt: skip
    return render(
        request,
        "clusters.html",
        {"items": items, "min_size": min_size, "candidate_link": candidate_link,
         "model_version": model_version},
    )  # fmt: skip


@router.get("/ui/clusters/{cluster_id}", response_class=HTMLResponse)
def cluster_page(
    cluster_id: int, request: Request, session: SessionDep, user_session: UISession
) -> Response:
    actor = require(user_session, Role.analyst, Role.ml)
    if not has_module("store.clustering"):
        return render(request, "unavailable.html", {"what": "Handwriting clusters"})
    from store import clustering

    cluster = session.get(clustering.WriterCluster, cluster_id)
    if cluster is None:
        raise NotFound(f"cluster {cluster_id} not found")
    slip_ids = clustering.cluster_slip_ids(session=session, cluster_id=cluster_id)
    events = session.exec(
        select(clustering.ClusterEvent)
        .where(clustering.ClusterEvent.cluster_id == cluster_id)
        .order_by(col(clustering.ClusterEvent.at))
    ).all()
    context = evidence_context(session, actor=actor, slip_ids=slip_ids)
    resembles = _resembling(session, cluster, context["cards"], actor=actor)
    return render(
        request,
        "cluster.html",
        {"cluster": cluster, "events": events, "resembles": resembles} | context,
    )


#: The accounts a cluster's anonymous slips are compared with: bets of these last days, as
#: the matching_accounts rule's window.
RESEMBLING_DAYS = 180


def _resembling(
    session: Session, cluster: Any, cards: list[dict[str, Any]], *, actor: Actor
) -> Any:
    """The customer accounts a cluster's anonymous slips most resemble, for the reviewer."""
    from store import clustering

    anonymous = [int(c["slip"].id) for c in cards if c["customer"] is None]
    used, ranked = clustering.resembling_accounts(
        session=session,
        slip_ids=anonymous,
        model_version=cluster.model_version,
        k=3,
        since=datetime.now(UTC) - timedelta(days=RESEMBLING_DAYS),
    )
    if not used:
        return None
    accounts = []
    for customer_id, score, slips in ranked:
        customer = session.get(Customer, customer_id)
        accounts.append(
            {
                "id": customer_id,
                "label": customer_label(customer, actor),
                "score": score,
                "slips": slips,
                "link": actor.role != Role.ml,  # the ml role has no customer pages
            }
        )
    return SimpleNamespace(slips=used, days=RESEMBLING_DAYS, accounts=accounts)


def _confidences(session: Session, slip_ids: list[int]) -> dict[int, float]:
    if not has_module("store.clustering"):
        return {}
    from store import clustering

    out = {}
    for slip_id in slip_ids:
        found = clustering.cluster_of_slip(session=session, slip_id=slip_id)
        if found is not None:
            out[slip_id] = found[1]
    return out


def _decisions(session: Session, slip_ids: list[int], *, actor: Actor) -> list[Any]:
    if not has_module("store.clustering") or not slip_ids:
        return []
    from store import clustering

    model = clustering.LinkDecision
    rows = list(
        session.exec(
            select(model)
            .where(col(model.slip_a).in_(slip_ids) | col(model.slip_b).in_(slip_ids))
            .order_by(col(model.at).desc())
        ).all()
    )
    if actor.role != Role.ml:
        return rows
    # the ml role learns the verdicts, not who gave them or their notes (which name people)
    return [SimpleNamespace(decision=d.decision, slip_a=d.slip_a, slip_b=d.slip_b, at=d.at,
                            actor="a reviewer", note=None) for d in rows]  # fmt: skip


def evidence_context(
    session: Session, *, actor: Actor, slip_ids: list[int], bet_ids: list[int] | None = None
) -> dict[str, Any]:
    """What a review page shows: slips (with their bets), customers, shops, a bet timeline."""
    slips = session.exec(select(Slip).where(col(Slip.id).in_(slip_ids))).all() if slip_ids else []
    all_bet_ids = sorted({s.bet_id for s in slips} | set(bet_ids or []))
    bets = (
        session.exec(
            select(Bet).where(col(Bet.id).in_(all_bet_ids)).order_by(col(Bet.placed_at))
        ).all()
        if all_bet_ids
        else []
    )
    bet_by_id = {b.id: b for b in bets}
    legs = _legs_by_bet(session, all_bet_ids)
    customer_ids = sorted({b.customer_id for b in bets if b.customer_id is not None})
    customers = {cid: session.get(Customer, cid) for cid in customer_ids}
    shops = {s.id: s for s in customer_store.list_shops(session=session)}
    slip_by_bet = {s.bet_id: s for s in slips}
    confidences = _confidences(session, [s.id for s in slips])  # type: ignore[misc]
    cards = []
    for slip in sorted(slips, key=lambda s: (bet_by_id[s.bet_id].placed_at, s.id)):
        bet = bet_by_id[slip.bet_id]
        customer = customers.get(bet.customer_id) if bet.customer_id else None
        cards.append(
            {"slip": slip, "bet": bet, "legs": legs.get(bet.id, []),  # type: ignore[arg-type]
             "customer": customer, "label": customer_label(customer, actor),
             "shop": shops.get(bet.shop_id), "confidence": confidences.get(slip.id),  # type: ignore[arg-type]
             "colour": risk_colour(customer, bet.placed_at)}
        )  # fmt: skip
    per_customer: dict[int | None, dict[str, Any]] = {}
    for bet in bets:
        entry = per_customer.setdefault(bet.customer_id, {"bets": 0, "stake": 0.0, "shops": set()})
        entry["bets"] += 1
        entry["stake"] += bet.total_stake
        entry["shops"].add(bet.shop_id)
    involved = [
        {"customer": customers.get(cid) if cid else None,
         "label": customer_label(customers.get(cid) if cid else None, actor),
         "colour": risk_colour(customers.get(cid) if cid else None),
         "bets": v["bets"], "stake": round(v["stake"], 2),
         "shops": sorted(shops[s].code for s in v["shops"] if s in shops)}
        for cid, v in per_customer.items()
    ]  # fmt: skip
    shop_rows = Counter(b.shop_id for b in bets)
    timeline = [
        {"bet": b, "legs": legs.get(b.id, []), "slip": slip_by_bet.get(b.id),  # type: ignore[arg-type]
         "label": customer_label(customers.get(b.customer_id) if b.customer_id else None, actor),
         "shop": shops.get(b.shop_id)}  # type: ignore[arg-type]
        for b in bets
    ]  # fmt: skip
    return {
        "cards": cards,
        "involved": involved,
        "shops_involved": [(shops.get(sid), n) for sid, n in shop_rows.items()],
        "timeline": timeline,
        "decisions": _decisions(session, [s.id for s in slips], actor=actor),  # type: ignore[misc]
        "can_decide": actor.has(Role.analyst),
        "max_stake": max((b.total_stake for b in bets), default=0.0) or 1.0,
    }


# ---------------------------------------------------------------- handwriting boxes
class _DigestCache:
    """The last ``size`` results computed for stored images, keyed by the image's digest only
    (so a replaced slip never shows stale ones, and the cache holds no image bytes)."""

    def __init__(self, size: int) -> None:
        self.size, self._items, self._lock = size, OrderedDict[str, Any](), threading.Lock()

    def get(self, digest: str, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if digest in self._items:
                self._items.move_to_end(digest)
                return self._items[digest]
        value = compute()  # outside the lock: a slow image does not hold up the others
        with self._lock:
            self._items[digest] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


# few masks (a 1.2 MP mask holds 1.2 MB): enough for one page's boxes and letters to share
# one separation a slip; boxes and glyphs are small
_MASKS, _BOXES, _GLYPHS = _DigestCache(8), _DigestCache(512), _DigestCache(128)


def _hand_mask_for(sha256: str, png: bytes):  # type: ignore[no-untyped-def]  # -> bool array
    def separate():  # type: ignore[no-untyped-def]
        from cv.imageio import decode_greyscale
        from cv.preprocess import handwriting_mask

        image, _ = decode_greyscale(png, max_pixels=200_000_000)
        return handwriting_mask(image)

    return _MASKS.get(sha256, separate)


def _boxes_for(sha256: str, png: bytes) -> tuple[tuple[int, int, int, int], ...]:
    from cv.preprocess import boxes_of_mask

    def boxes() -> tuple[tuple[int, int, int, int], ...]:
        found = boxes_of_mask(_hand_mask_for(sha256, png))
        return tuple(tuple(int(v) for v in box) for box in found)  # type: ignore[misc]

    return _BOXES.get(sha256, boxes)  # type: ignore[no-any-return]


@router.get("/ui/slips/{slip_id}/boxes")
def slip_boxes(slip_id: int, session: SessionDep, actor: AnyUser) -> JSONResponse:
    """Handwriting regions of a stored slip as (row0, col0, row1, col1), computed on request
    by ``cv.preprocess.handwriting_boxes`` and cached per image digest."""
    from store import slips as slip_store

    slip = slip_store.get_slip(session=session, slip_id=slip_id, actor=actor)
    png = slip_store.slip_png(session=session, slip_id=slip_id)
    try:
        boxes = _boxes_for(slip.sha256, png)
    except Exception as exc:  # noqa: BLE001 - an overlay is optional; the image still shows
        return JSONResponse({"width": slip.width, "height": slip.height, "boxes": [],
                             "error": f"{type(exc).__name__}"})  # fmt: skip
    return JSONResponse(
        {"width": slip.width, "height": slip.height, "boxes": [list(b) for b in boxes]},
        headers={"Cache-Control": "private, max-age=3600"},
    )


def _glyphs_for(sha256: str, png: bytes):  # type: ignore[no-untyped-def]  # -> cv.glyphs.Glyphs
    from cv.glyphs import glyphs_of_mask

    return _GLYPHS.get(sha256, lambda: glyphs_of_mask(_hand_mask_for(sha256, png)))


@router.get("/ui/slips/{slip_id}/letters")
def slip_letters(
    slip_id: int,
    session: SessionDep,
    actor: AnyUser,
    other: Annotated[int, Query(description="the slip to compare with")],
    top: Annotated[int, Query(ge=1, le=40)] = 12,
) -> JSONResponse:
    """The letters of two stored slips compared (``cv.glyphs``): glyph pairs that are each
    other's closest match in shape, most alike first, as boxes in each slip's own pixels,
    and the two slips' letter-match score.  Evidence for a person reviewing a link; it does
    not change any cluster."""
    from store import slips as slip_store

    if other == slip_id:
        raise Invalid("other: compare a slip with a different slip")
    slips = [slip_store.get_slip(session=session, slip_id=i, actor=actor) for i in (slip_id, other)]
    pngs = [slip_store.slip_png(session=session, slip_id=i) for i in (slip_id, other)]
    try:
        a, b = (_glyphs_for(s.sha256, png) for s, png in zip(slips, pngs, strict=True))
    except Exception as exc:  # noqa: BLE001 - evidence is optional; the review page still works
        return JSONResponse({"slip": slip_id, "other": other, "pairs": [], "score": None,
                             "error": type(exc).__name__})  # fmt: skip
    from cv.glyphs import compare_glyphs, different_writer_share

    match = compare_glyphs(a, b, top=top)
    return JSONResponse(
        {
            "slip": slip_id,
            "other": other,
            "glyphs": [len(a), len(b)],
            "score": match.score,
            # of different writers' pairs with as many letters (real handwriting), the share
            # that scored lower; None where that reference has too few such pairs
            "different_writers_below": different_writer_share(match.score, min(len(a), len(b))),
            "pairs": [
                {"slip": a.boxes[i].tolist(), "other": b.boxes[j].tolist(), "similarity": s}
                for i, j, s in match.pairs
            ],
        },
        headers={"Cache-Control": "private, max-age=3600"},
    )


# ---------------------------------------------------------------- alerts (rules' tables)
SEVERITY_ORDER = {"low": 1, "medium": 2, "high": 3, "critical": 4}


@router.get("/ui/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    session: SessionDep,
    user_session: UISession,
    severity: str | None = Query(None, max_length=16),
    rule_id: str | None = Query(None, max_length=100),
    shop_id: int | None = None,
    status: str | None = Query(None, max_length=32),
    inbox: str | None = Query(None, max_length=32),
    sort: str = Query("severity", pattern="^(severity|newest|oldest|rule)$"),
) -> Response:
    actor = require(user_session, Role.analyst)
    model = _alert_model()
    if model is None:
        return render(request, "unavailable.html", {"what": "The alert queue"})
    query = select(model)
    if hasattr(model, "suppressed"):
        # a snoozed rule's alerts are kept for the record, not queued
        query = query.where(model.suppressed == False)  # noqa: E712
    if severity:
        query = query.where(_severity_column(model) == _severity_value(model, severity))
    if rule_id:
        query = query.where(model.rule_id == rule_id)
    if status:
        query = query.where(model.status == status)
    if inbox:
        query = query.where(model.inbox == inbox)
    rows = list(session.exec(query.order_by(col(model.created_at).desc()).limit(1000)).all())
    shops_by_alert = {a.id: _alert_shops(session, a) for a in rows}
    if shop_id is not None:
        rows = [a for a in rows if shop_id in shops_by_alert[a.id]]
    if sort == "severity":
        rows.sort(key=lambda a: (-_severity_rank(a), -a.created_at.timestamp()))
    elif sort == "oldest":
        rows.reverse()
    elif sort == "rule":
        rows.sort(key=lambda a: (a.rule_id, -_severity_rank(a)))
    all_rules = session.exec(select(model.rule_id).distinct()).all()
    statuses = session.exec(select(model.status).distinct()).all()
    inboxes = session.exec(select(model.inbox).distinct()).all()
    shops = {s.id: s for s in customer_store.list_shops(session=session)}
    items = [
        {"a": a, "severity": _severity_name(a), "pivot": _pivot_label(session, a, actor),
         "shops": [shops[s].code for s in shops_by_alert[a.id] if s in shops]}
        for a in rows[:500]
    ]  # fmt: skip
    return render(
        request,
        "alerts.html",
        {"items": items, "total": len(rows), "f": {"severity": severity or "",
         "rule_id": rule_id or "", "shop_id": shop_id or "", "status": status or "",
         "inbox": inbox or "", "sort": sort},
         "rules": sorted(str(r) for r in all_rules), "statuses": sorted(str(s) for s in statuses),
         "inboxes": sorted(str(i) for i in inboxes), "shops": list(shops.values()),
         "severities": list(SEVERITY_ORDER)},
    )  # fmt: skip


def _severity_column(model: Any) -> Any:
    return model.severity


def _severity_value(model: Any, name: str) -> Any:
    # the rules engineer may store the severity as its name or as the IntEnum's number
    column = model.__table__.c.severity
    python_type = getattr(column.type, "python_type", str)
    if python_type is int:
        return SEVERITY_ORDER.get(name.lower(), 0)
    return name.lower()


def _severity_name(alert: Any) -> str:
    value = alert.severity
    if isinstance(value, int):
        for name, rank in SEVERITY_ORDER.items():
            if rank == value:
                return name
    return str(getattr(value, "name", value)).lower()


def _severity_rank(alert: Any) -> int:
    return SEVERITY_ORDER.get(_severity_name(alert), 0)


def _evidence(alert: Any) -> dict[str, list[int]]:
    evidence = getattr(alert, "evidence", None) or {}
    if isinstance(evidence, str):
        evidence = json.loads(evidence)
    return {k: [int(v) for v in vals] for k, vals in evidence.items() if isinstance(vals, list)}


def _alert_shops(session: Session, alert: Any) -> set[int]:
    evidence = _evidence(alert)
    shops = set(evidence.get("shops", []))
    if not shops and evidence.get("bets"):
        shops = {
            s
            for s in session.exec(
                select(Bet.shop_id).where(col(Bet.id).in_(evidence["bets"][:500]))
            ).all()
            if s is not None
        }
    return shops


def _pivot_label(session: Session, alert: Any, actor: Actor) -> str:
    if alert.pivot_kind == "customer":
        return customer_label(session.get(Customer, alert.pivot_id), actor)
    named = _figures(alert).get(alert.pivot_kind)
    if isinstance(named, str) and named:
        return f"{alert.pivot_kind} {named}"
    return f"{alert.pivot_kind} #{alert.pivot_id}"


@router.get("/ui/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(
    alert_id: int, request: Request, session: SessionDep, user_session: UISession
) -> Response:
    actor = require(user_session, Role.analyst)
    model = _alert_model()
    if model is None:
        return render(request, "unavailable.html", {"what": "Alert review"})
    alert = session.get(model, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    evidence = _evidence(alert)
    slip_ids = list(evidence.get("slips", []))
    bet_ids = list(evidence.get("bets", []))
    if not slip_ids and bet_ids:
        slip_ids = list(session.exec(select(Slip.id).where(col(Slip.bet_id).in_(bet_ids))).all())  # type: ignore[arg-type]
    context = evidence_context(session, actor=actor, slip_ids=slip_ids[:40], bet_ids=bet_ids)
    history = _alert_events(session, alert_id)
    notes = [e for e in history if e.action == "note"]
    return render(
        request,
        "alert.html",
        {"a": alert, "severity": _severity_name(alert), "evidence": evidence,
         "pivot": _pivot_label(session, alert, actor), "history": history, "notes": notes,
         "figures": _figures(alert), "outcomes": _outcomes()} | context,
    )  # fmt: skip


def _outcomes() -> list[str]:
    module = _alerts_module()
    outcome = getattr(module, "Outcome", None) if module is not None else None
    return [o.value for o in outcome] if outcome is not None else []


def _figures(alert: Any) -> dict[str, Any]:
    figures = getattr(alert, "figures", None) or {}
    return json.loads(figures) if isinstance(figures, str) else dict(figures)


def _alert_events(session: Session, alert_id: int) -> list[Any]:
    module = _alerts_module()
    if module is None or not hasattr(module, "alert_history"):
        return []
    return list(module.alert_history(session=session, alert_id=alert_id))


# ---------------------------------------------------------------- reports
def _day_bounds(day: str | None) -> tuple[datetime, datetime]:
    if day:
        try:
            start = datetime.fromisoformat(day).replace(tzinfo=UTC)
        except ValueError:
            raise Invalid("day: expected YYYY-MM-DD") from None
    else:
        now = utcnow()
        start = datetime(now.year, now.month, now.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


@router.get("/ui/reports", response_class=HTMLResponse)
def reports_page(
    request: Request,
    session: SessionDep,
    user_session: UISession,
    day: str | None = Query(None, max_length=10),
) -> Response:
    actor = require(user_session, Role.analyst, Role.ml)
    start, end = _day_bounds(day)
    activity = day_activity(session, start=start, end=end)
    model = _alert_model()
    alerts_by_rule: Counter[str] = Counter()
    alerts_by_severity: Counter[str] = Counter()
    if model is not None:
        in_day = (model.created_at >= start, model.created_at < end)
        for rule_id, n in session.exec(
            select(model.rule_id, func.count()).where(*in_day).group_by(model.rule_id)
        ).all():
            alerts_by_rule[rule_id] += n
        for level, n in session.exec(
            select(model.severity, func.count()).where(*in_day).group_by(model.severity)
        ).all():
            alerts_by_severity[_severity_name(SimpleNamespace(severity=level))] += n
    daily: dict[str, Any] = {}
    if has_module("store.reports"):
        from store import reports

        daily = reports.daily_activity(session=session, day=start.date(), top=8)
    top_customers = [
        (session.get(Customer, row["customer_id"]), row["stake"])
        for row in daily.get("top_customers", [])
    ]
    stats = activity["totals"] | {
        "returns": daily.get("returns"),
        "hold_percent": daily.get("hold_percent"),
        "alerts": sum(alerts_by_rule.values()),
    }
    return render(
        request,
        "reports.html",
        {"day": start.date().isoformat(), "prev": (start - timedelta(days=1)).date().isoformat(),
         "next": (start + timedelta(days=1)).date().isoformat(), "stats": stats,
         "by_hour": activity["by_hour"], "stake_by_shop": activity["stake_by_shop"],
         "bets_by_sport": activity["bets_by_sport"],
         "alerts_by_rule": sorted(alerts_by_rule.items()),
         "alerts_by_severity": alerts_by_severity, "alerts_enabled": model is not None,
         "staff": activity["staff"], "reviews": activity["reviews"],
         "show_staff": actor.has(Role.analyst),
         "top_customers": [(c, customer_label(c, actor), stake) for c, stake in top_customers],
         "top_clusters": daily.get("top_clusters", []),
         "latest_day": _latest_day(session) if not stats["bets"] else None},
    )  # fmt: skip


REVIEW_ACTIONS = ("link.", "alert.", "customer.update", "customer.factoring", "cluster.")


def _hour_of(session: Session, column: Any) -> Any:
    """The UTC hour of a timestamp column, in SQL (grouped by the database, not in Python)."""
    if session.get_bind().dialect.name == "sqlite":
        return sa.cast(func.strftime("%H", column), sa.Integer)
    return sa.cast(func.extract("hour", func.timezone("UTC", column)), sa.Integer)


def day_activity(session: Session, *, start: datetime, end: datetime) -> dict[str, Any]:
    """A day's bets and staff activity, aggregated by the database (a large operator takes
    about a million bets a day, which must never be loaded row by row)."""
    in_day = (col(Bet.placed_at) >= start, col(Bet.placed_at) < end)
    n, stakes, customers, anonymous, shops_used = session.execute(
        sa.select(
            func.count(),
            func.coalesce(func.sum(Bet.total_stake), 0),
            func.count(func.distinct(Bet.customer_id)),
            func.coalesce(func.sum(sa.case((col(Bet.customer_id).is_(None), 1), else_=0)), 0),
            func.count(func.distinct(Bet.shop_id)),
        ).where(*in_day)
    ).one()
    hour = _hour_of(session, Bet.placed_at)
    by_hour = [0] * 24
    for h, k in session.exec(select(hour, func.count()).where(*in_day).group_by(hour)).all():
        by_hour[int(h)] = int(k)
    codes = {s.id: s.code for s in customer_store.list_shops(session=session)}
    stake_by_shop = sorted(
        (codes.get(shop_id, "(none)") if shop_id is not None else "(none)", round(float(t), 2))
        for shop_id, t in session.exec(
            select(Bet.shop_id, func.sum(Bet.total_stake)).where(*in_day).group_by(col(Bet.shop_id))
        ).all()
    )
    bets_by_sport = [
        (sport or "?", int(k))
        for sport, k in session.exec(
            select(Bet.sport, func.count())
            .where(*in_day)
            .group_by(Bet.sport)
            .order_by(func.count().desc(), col(Bet.sport))
            .limit(12)
        ).all()
    ]
    in_audit_day = (AuditEntry.at >= start, AuditEntry.at < end)
    staff: dict[str, dict[str, int]] = defaultdict(dict)
    for who, action, k in session.exec(
        select(AuditEntry.actor, AuditEntry.action, func.count())
        .where(*in_audit_day)
        .group_by(AuditEntry.actor, AuditEntry.action)
    ).all():
        staff[who][action] = int(k)
    reviews = session.exec(
        select(AuditEntry)
        .where(
            *in_audit_day,
            sa.or_(*(col(AuditEntry.action).startswith(p) for p in REVIEW_ACTIONS)),
            AuditEntry.action != "alert.raise",
        )
        .order_by(col(AuditEntry.at).desc())
        .limit(200)
    ).all()
    return {
        "totals": {"bets": int(n), "stakes": round(float(stakes), 2),
                   "customers": int(customers), "anonymous": int(anonymous),
                   "shops": int(shops_used)},
        "by_hour": by_hour,
        "stake_by_shop": stake_by_shop,
        "bets_by_sport": bets_by_sport,
        "staff": sorted((who, acts, sum(acts.values())) for who, acts in staff.items()),
        "reviews": list(reviews),
    }  # fmt: skip


def _latest_day(session: Session) -> str | None:
    latest = session.exec(select(func.max(Bet.placed_at))).one()
    return as_utc(latest).date().isoformat() if latest else None


# ---------------------------------------------------------------- audit log
@router.get("/ui/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    session: SessionDep,
    user_session: UISession,
    actor: str = Query("", max_length=100),
    action: str = Query("", max_length=64),
    entity: str = Query("", max_length=64),
    entity_id: str = Query("", max_length=64),
) -> Response:
    require(user_session, Role.analyst)
    query = select(AuditEntry)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        query = query.where(col(AuditEntry.action).startswith(action))
    if entity:
        query = query.where(AuditEntry.entity == entity)
    if entity_id:
        query = query.where(AuditEntry.entity_id == entity_id)
    rows = session.exec(query.order_by(col(AuditEntry.id).desc()).limit(300)).all()
    return render(
        request,
        "audit.html",
        {"rows": rows, "f": {"actor": actor, "action": action, "entity": entity,
                             "entity_id": entity_id}},
    )  # fmt: skip


# ---------------------------------------------------------------- shared helpers
def _legs_by_bet(session: Session, bet_ids: list[int]) -> dict[int, list[Leg]]:
    out: dict[int, list[Leg]] = defaultdict(list)
    if not bet_ids:
        return out
    for leg in session.exec(
        select(Leg).where(col(Leg.bet_id).in_(bet_ids)).order_by(col(Leg.position))
    ).all():
        out[leg.bet_id].append(leg)
    return out


def _slips_by_bet(session: Session, bet_ids: list[int]) -> dict[int, Slip]:
    if not bet_ids:
        return {}
    return {s.bet_id: s for s in session.exec(select(Slip).where(col(Slip.bet_id).in_(bet_ids)))}


def shops_by_id(session: Session) -> dict[int, Shop]:
    return {s.id: s for s in customer_store.list_shops(session=session)}  # type: ignore[misc]


# ---------------------------------------------------------------- install: static, headers
_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'"
)
# Swagger UI and ReDoc load their scripts from a CDN and run inline code
_NO_CSP = ("/docs", "/redoc", "/openapi.json")


class SecurityHeaders:
    """A pure ASGI middleware (streams such as the SSE feed pass through untouched)."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
                ]
                if not path.startswith(_NO_CSP):
                    extra.append((b"content-security-policy", _CSP.encode()))
                if https:
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                if path.startswith(("/ui", "/login")) and b"cache-control" not in names:
                    extra.append((b"cache-control", b"no-store"))
                headers += [(k, v) for k, v in extra if k not in names]
                message = dict(message, headers=headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith("/ui/static") or path.startswith("/ui/feed/"):
        return False
    if path.startswith("/ui/slips/") and path.endswith(("/boxes", "/letters")):
        return False  # JSON the review pages fetch
    if path.startswith("/ui/lookup"):
        return False
    return path.startswith("/ui") or path.startswith("/login") or path == "/logout"


def install(app: FastAPI) -> None:
    """Static files, the security headers, and HTML renderings of errors on UI pages."""
    app.mount("/ui/static", StaticFiles(directory=UI_DIR / "static"), name="ui-static")
    app.add_middleware(SecurityHeaders)  # type: ignore[arg-type]
    json_handler = app.exception_handlers.get(DomainError)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _exc: LoginRequired) -> Response:
        if not _wants_html(request):
            return JSONResponse({"detail": "log in first"}, status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        if _wants_html(request):
            return render(
                request, "error.html", {"status": exc.status_code, "detail": exc.detail},
                status_code=exc.status_code,
            )  # fmt: skip
        if json_handler is not None:
            return await json_handler(request, exc)  # type: ignore[no-any-return,misc]
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
