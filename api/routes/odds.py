from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlmodel import col, select

from api.deps import AnalystUser, SessionDep
from store import odds
from store.models import selection_key, utcnow
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
def post_prices(prices_in: PricesIn, session: SessionDep, _actor: AnalystUser) -> dict[str, int]:
    """The odds feed: price snapshots per selection and bookmaker."""
    n = odds.record_prices(session=session, snapshots=[p.model_dump() for p in prices_in.prices])
    return {"stored": n}


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
