"""The live bet feed: a server-rendered page, server-sent events for new bets, and the
"runs on selections" panel (selections that took at least x of the last y bets).

New bets are found by polling the bets table for ids above the last one sent (about once a
second per open feed): it works the same whether bets arrive through this process, another
API process or a Celery worker, with no message bus to run.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from sqlalchemy import func
from sqlmodel import Session, col, select

from api.deps import AnyUser, SessionDep
from api.routes.ui import (
    UISession,
    _legs_by_bet,
    _slips_by_bet,
    customer_label,
    render,
    risk_colour,
    shops_by_id,
    templates,
)
from store import bets as bet_store
from store.access import Actor
from store.errors import Invalid
from store.models import Bet, Customer, Leg, Role, selection_key

router = APIRouter(include_in_schema=False)

POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0
# an open stream ends after this long and EventSource reconnects by itself (Last-Event-ID
# carries the cursor); short enough that a server shutting down is not held up for long
STREAM_SECONDS = 5 * 60


@dataclass(frozen=True)
class FeedFilter:
    """The feed's filters: customer, unit stake range, risk category, selection, sport."""

    customer: str | None = None
    min_stake: float | None = None
    max_stake: float | None = None
    risk_category: str | None = None
    selection: str | None = None
    sport: str | None = None

    def query_string(self) -> str:
        from urllib.parse import urlencode

        pairs = {k: v for k, v in self.__dict__.items() if v not in (None, "")}
        return urlencode(pairs)


def _customer_id(session: Session, customer: str | None) -> int | None | bool:
    """A customer filter may be an id or a reference; False when nothing matches."""
    if not customer:
        return None
    text = customer.strip()
    row = session.exec(select(Customer).where(Customer.external_ref == text)).first()
    if row is not None:
        return row.id  # type: ignore[return-value]
    if text.lstrip("#").isdigit():
        return int(text.lstrip("#"))
    return False


def _stake(value: str | float | None, name: str) -> float | None:
    """A stake bound from a form: blank means no bound (an HTML form sends empty fields)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except ValueError:
        raise Invalid(f"{name}: not a number") from None
    if not math.isfinite(number) or number < 0:
        raise Invalid(f"{name}: must be a number >= 0")
    return number


def feed_filter(
    customer: str | None = Query(None, max_length=64),
    min_stake: str | None = Query(None, max_length=20),
    max_stake: str | None = Query(None, max_length=20),
    risk_category: str | None = Query(None, max_length=32),
    selection: str | None = Query(None, max_length=200),
    sport: str | None = Query(None, max_length=64),
) -> FeedFilter:
    def blank(v: str | None) -> str | None:
        return v.strip() if v and v.strip() else None

    return FeedFilter(
        customer=blank(customer), min_stake=_stake(min_stake, "min_stake"),
        max_stake=_stake(max_stake, "max_stake"),
        risk_category=blank(risk_category), selection=blank(selection), sport=blank(sport),
    )  # fmt: skip


# the filters as query parameters, shared by the page and its event stream
FeedFilterDep = Annotated[FeedFilter, Depends(feed_filter)]


def filtered_bets(
    session: Session, *, actor: Actor, f: FeedFilter, limit: int = 100
) -> tuple[list[Bet], int]:
    customer_id = _customer_id(session, f.customer)
    if customer_id is False:
        return [], 0
    return bet_store.list_bets(
        session=session, actor=actor, customer_id=customer_id,  # type: ignore[arg-type]
        min_stake=f.min_stake, max_stake=f.max_stake, risk_category=f.risk_category,
        selection=f.selection, sport=f.sport, limit=limit,
    )  # fmt: skip


def matches(bet: Bet, legs: list[Leg], customer: Customer | None, f: FeedFilter,
            customer_id: int | None) -> bool:  # fmt: skip
    """The same filters as ``store.bets.list_bets``, applied to one new bet."""
    if customer_id is not None and bet.customer_id != customer_id:
        return False
    if f.min_stake is not None and bet.stake < f.min_stake:
        return False
    if f.max_stake is not None and bet.stake > f.max_stake:
        return False
    if f.risk_category is not None and (
        customer is None or customer.risk_category != f.risk_category
    ):
        return False
    if f.sport is not None and bet.sport.lower() != f.sport.lower():
        return False
    if f.selection is not None:
        key = selection_key(f.selection)
        if not any(key in leg.selection_key for leg in legs):
            return False
    return True


def bet_rows(session: Session, bets: list[Bet], *, actor: Actor) -> list[dict[str, Any]]:
    """What one feed row shows, for the template (names redacted for the ml role)."""
    ids = [b.id for b in bets]
    legs = _legs_by_bet(session, ids)  # type: ignore[arg-type]
    slips = _slips_by_bet(session, ids)  # type: ignore[arg-type]
    shops = shops_by_id(session)
    customer_ids = {b.customer_id for b in bets if b.customer_id is not None}
    customers = (
        {c.id: c for c in session.exec(select(Customer).where(col(Customer.id).in_(customer_ids)))}
        if customer_ids
        else {}
    )
    rows = []
    for bet in bets:
        customer = customers.get(bet.customer_id) if bet.customer_id else None
        rows.append(
            {"bet": bet, "legs": legs.get(bet.id, []), "slip": slips.get(bet.id),  # type: ignore[arg-type]
             "shop": shops.get(bet.shop_id), "customer": customer,  # type: ignore[arg-type]
             "label": customer_label(customer, actor),
             "colour": risk_colour(customer, bet.placed_at),
             "category": customer.risk_category if customer else "",
             "link_customer": customer is not None and actor.has(Role.analyst)}
        )  # fmt: skip
    return rows


@router.get("/ui/feed", response_class=HTMLResponse)
def feed_page(
    request: Request,
    session: SessionDep,
    user_session: UISession,
    f: FeedFilterDep,
    x: int = Query(3, ge=2, le=1000),
    y: int = Query(50, ge=2, le=5000),
) -> Response:
    actor = user_session.actor
    bets, total = filtered_bets(session, actor=actor, f=f, limit=100)
    last_id = session.exec(_scoped(select(func.max(Bet.id)), actor)).one() or 0
    categories = sorted(
        c for c in session.exec(select(Customer.risk_category).distinct()).all() if c
    )
    # suggestions from recent bets only: a DISTINCT over every bet ever taken is too dear
    recent_sports = session.exec(
        _scoped(select(Bet.sport), actor).order_by(col(Bet.id).desc()).limit(2000)
    ).all()
    sports = sorted({s for s in recent_sports if s})
    return render(
        request,
        "feed.html",
        {"rows": bet_rows(session, bets, actor=actor), "total": total, "f": f,
         "qs": f.query_string(), "last_id": last_id, "categories": categories,
         "sports": sports, "x": x, "y": y,
         "runs": runs_on_selections(session, actor=actor, x=x, y=y)},
    )  # fmt: skip


def _scoped(query: Any, actor: Actor) -> Any:
    if actor.role == Role.shop:
        return query.where(Bet.shop_id == actor.shop_id)
    return query


def runs_on_selections(session: Session, *, actor: Actor, x: int, y: int) -> list[dict[str, Any]]:
    """Selections that took at least ``x`` of the last ``y`` bets (by placement time)."""
    recent = session.exec(
        _scoped(select(Bet.id, Bet.stake, Bet.total_stake), actor)
        .order_by(col(Bet.placed_at).desc(), col(Bet.id).desc())
        .limit(y)
    ).all()
    if not recent:
        return []
    stake = {bet_id: total for bet_id, _unit, total in recent}
    legs = session.exec(select(Leg).where(col(Leg.bet_id).in_(list(stake)))).all()
    bets_of: dict[str, set[int]] = defaultdict(set)
    shown: dict[str, Leg] = {}
    for leg in legs:
        key = leg.selection_key or selection_key(leg.selection)
        bets_of[key].add(leg.bet_id)
        shown.setdefault(key, leg)
    runs = [
        {"selection": shown[key].selection, "sport": shown[key].sport,
         "event": shown[key].event, "count": len(ids),
         "stake": round(sum(stake[i] for i in ids), 2), "bets": sorted(ids, reverse=True)}
        for key, ids in bets_of.items()
        if len(ids) >= x
    ]  # fmt: skip
    runs.sort(key=lambda r: (-r["count"], -r["stake"]))
    return runs[:50]


@router.get("/ui/feed/runs")
def runs(
    session: SessionDep,
    actor: AnyUser,
    x: int = Query(3, ge=2, le=1000),
    y: int = Query(50, ge=2, le=5000),
) -> JSONResponse:
    return JSONResponse(
        {"x": x, "y": y, "runs": runs_on_selections(session, actor=actor, x=x, y=y)}
    )


def _new_rows(engine: Any, actor: Actor, f: FeedFilter, after: int) -> tuple[list[str], int]:
    """Rendered rows of the bets newer than ``after`` that pass the filter; the new cursor."""
    with Session(engine, expire_on_commit=False) as session:
        query = _scoped(select(Bet), actor).where(col(Bet.id) > after)
        new: list[Bet] = list(session.exec(query.order_by(col(Bet.id)).limit(200)).all())
        if not new:
            return [], after
        cursor = max(int(b.id) for b in new if b.id is not None)
        customer_id = _customer_id(session, f.customer)
        if customer_id is False:
            return [], cursor
        rows = bet_rows(session, new, actor=actor)
        template = templates.get_template("_bet_row.html")
        out = []
        for row in rows:
            customer = row["customer"]
            if matches(row["bet"], row["legs"], customer, f, customer_id):  # type: ignore[arg-type]
                html = template.render(r=row, me=actor, Role=Role)
                out.append(json.dumps({"id": row["bet"].id, "html": html}))
        return out, cursor


@router.get("/ui/feed/events")
async def feed_events(
    request: Request,
    actor: AnyUser,
    f: FeedFilterDep,
    after: int = Query(0, ge=0),
) -> StreamingResponse:
    """Server-sent events: ``bet`` events carrying ``{"id", "html"}`` for each new bet that
    passes the filters, newest last; ``runs`` nudges the page to refresh its runs panel."""
    engine = request.app.state.engine
    last_event = request.headers.get("last-event-id", "")
    cursor = max(after, int(last_event) if last_event.isdigit() else 0)

    async def stream() -> AsyncIterator[str]:
        nonlocal cursor
        started = last_beat = time.monotonic()
        yield "retry: 2000\n\n"
        while time.monotonic() - started < STREAM_SECONDS:
            if await request.is_disconnected():
                return
            rows, new_cursor = await run_in_threadpool(_new_rows, engine, actor, f, cursor)
            for data in rows:
                yield f"event: bet\ndata: {data}\n\n"
            if new_cursor != cursor:
                cursor = new_cursor
                yield f"id: {cursor}\nevent: runs\ndata: {{}}\n\n"
            if time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                last_beat = time.monotonic()
                yield ": keep-alive\n\n"
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
