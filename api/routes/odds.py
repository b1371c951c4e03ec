from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlmodel import col, select

from api.deps import AnalystUser, SessionDep
from store import odds
from store.models import as_utc, selection_key, utcnow
from store.slips import after_commit
from store.trading import PriceSnapshot

router = APIRouter(prefix="/odds", tags=["odds"])


class PriceIn(BaseModel):
    selection: str = Field(min_length=1, max_length=200)
    event: str = Field("", max_length=200)
    event_ref: str | None = Field(None, min_length=1, max_length=100, description="feed event id")
    bookmaker: str = Field(min_length=1, max_length=64)
    odds: float = Field(gt=1.0, le=100_000, allow_inf_nan=False)
    at: datetime | None = None


class PricesIn(BaseModel):
    prices: list[PriceIn] = Field(min_length=1, max_length=5000)


@router.post("", status_code=201)
def post_prices(
    prices_in: PricesIn, request: Request, session: SessionDep, actor: AnalystUser
) -> dict[str, object]:
    """The odds feed: price snapshots per selection and bookmaker.  A sharp fall across
    bookmakers of a selection in the batch (30% or more of the winnings part at 2+
    bookmakers within 24 hours) goes to the staff feed with the bets taken before it; each
    selection of the batch then goes to the rules (``odds_snapshot``: the steamer alerts)."""
    n = odds.record_prices(session=session, snapshots=[p.model_dump() for p in prices_in.prices])
    now = utcnow()
    batch = {(selection_key(p.selection), p.event_ref): p.selection for p in prices_in.prices}
    pipeline = getattr(request.app.state, "pipeline", None)
    if pipeline is not None and hasattr(pipeline, "submit_rules"):
        latest: dict[tuple[str, str | None], datetime] = {}
        for p in prices_in.prices:
            key = (selection_key(p.selection), p.event_ref)
            at = as_utc(p.at) if p.at is not None else now
            latest[key] = max(latest.get(key, at), at)
        for (sel, ref), at in sorted(latest.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            trigger = {"kind": "odds_snapshot", "at": at.isoformat(), "selection": batch[sel, ref],
                       "event_ref": ref}  # fmt: skip
            after_commit(session, partial(pipeline.submit_rules, trigger))
    moves = odds.sharp_drops(
        session=session, selections={(name, ref) for (_, ref), name in batch.items()}, now=now
    )
    odds.notify_market_moves(session=session, moves=moves, now=now, actor=actor.name)
    return {
        "stored": n,
        "price_drops": [
            {"selection": m.selection, "event_ref": m.event_ref,
             "median_drop": round(m.drop.median_drop, 4), "bookmakers": m.drop.bookmakers,
             "steamer_bet_ids": m.steamer_bet_ids}
            for m in moves
        ],
    }  # fmt: skip


@router.get("/{selection}")
def selection_prices(
    selection: str,
    session: SessionDep,
    _actor: AnalystUser,
    hours: int = Query(24, ge=1, le=24 * 14),
    event_ref: str | None = Query(None, min_length=1, max_length=100),
) -> dict[str, object]:
    """A selection's recent prices, its move across bookmakers and the bets taken before it."""
    now = utcnow()
    since = now - timedelta(hours=hours)
    query = select(PriceSnapshot).where(
        PriceSnapshot.selection_key == selection_key(selection), PriceSnapshot.at >= since
    )
    if event_ref is not None:
        query = query.where(PriceSnapshot.event_ref == event_ref)
    rows = session.exec(query.order_by(col(PriceSnapshot.at))).all()
    drop = odds.price_drop(
        session=session, selection=selection, since=since, until=now, event_ref=event_ref
    )
    steamers = []
    if drop is not None:
        steamers = odds.steamer_bets(
            session=session, selection=selection, current_odds=drop.to_odds,
            window=timedelta(hours=hours), now=now, event_ref=event_ref,
        )  # fmt: skip
    return {
        "selection": selection,
        "prices": [r.model_dump() for r in rows],
        "drop": None if drop is None else drop.__dict__,
        "bets_before_drop": [b.id for b in steamers],
    }
