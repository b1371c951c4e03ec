"""Open liability: what the operator stands to pay out, net of stakes, on open bets."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, select

from store.errors import Invalid
from store.models import Bet, BetStatus, Leg


def _liability():  # type: ignore[no-untyped-def]
    # A multiple's whole potential payout is counted on each of its selections: conservative,
    # since any one leg's result can still leave the operator facing the full amount.
    return func.coalesce(Bet.potential_return, 0) - Bet.total_stake


def exposure(*, session: Session, by: str, limit: int = 20) -> list[dict[str, object]]:
    """Largest open liabilities by ``selection``, ``event`` or ``shop``."""
    if by == "shop":
        key = Bet.shop_id
        query = select(key, func.count(), func.sum(Bet.total_stake), func.sum(_liability()))
    elif by in ("selection", "event"):
        key = Leg.selection_key if by == "selection" else Leg.event
        query = select(
            key,
            func.count(func.distinct(Bet.id)),
            func.sum(Bet.total_stake),
            func.sum(_liability()),
        ).join(Leg, Leg.bet_id == Bet.id)  # type: ignore[arg-type]
    else:
        raise Invalid("by must be selection, event or shop")
    rows = session.exec(
        query.where(Bet.status == BetStatus.open)
        .group_by(key)
        .order_by(func.sum(_liability()).desc())
        .limit(limit)
    ).all()
    return [
        {
            by: k,
            "open_bets": n,
            "stakes": round(float(s or 0), 2),
            "liability": round(float(li or 0), 2),
        }
        for k, n, s, li in rows
    ]


def selection_liability(*, session: Session, selection_key: str) -> float:
    value = session.exec(
        select(func.sum(_liability()))
        .join(Leg, Leg.bet_id == Bet.id)  # type: ignore[arg-type]
        .where(Bet.status == BetStatus.open, Leg.selection_key == selection_key)
    ).one()
    return float(value or 0)
