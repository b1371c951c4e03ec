"""Open liability: what the operator stands to pay out, net of stakes, on open bets.

A selection is its name within its event: "Trap 1" runs in every greyhound race.  An event
is the feed's stable id when the leg carries one, else the event's name as the till wrote it.
"""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from store.errors import Invalid
from store.models import Bet, BetStatus, Leg


def _liability():  # type: ignore[no-untyped-def]
    # A multiple's whole potential payout is counted on each of its selections: conservative,
    # since any one leg's result can still leave the operator facing the full amount.
    return func.coalesce(Bet.potential_return, 0) - Bet.total_stake


def _event_key():  # type: ignore[no-untyped-def]
    return func.coalesce(Leg.event_ref, func.lower(Leg.event))


def exposure(*, session: Session, by: str, limit: int = 20) -> list[dict[str, object]]:
    """Largest open liabilities by ``selection`` (within its event), ``event`` or ``shop``."""
    liability = func.sum(_liability())
    if by == "shop":
        keys = [Bet.shop_id]
        query = select(Bet.shop_id, func.count(), func.sum(Bet.total_stake), liability)
    elif by == "event":
        keys = [_event_key()]
        query = select(
            keys[0], func.min(Leg.event), func.count(func.distinct(Bet.id)),
            func.sum(Bet.total_stake), liability,
        ).join(Leg, Leg.bet_id == Bet.id)  # type: ignore[arg-type]  # fmt: skip
    elif by == "selection":
        keys = [Leg.selection_key, _event_key()]
        query = select(
            *keys, func.min(Leg.event), func.count(func.distinct(Bet.id)),
            func.sum(Bet.total_stake), liability,
        ).join(Leg, Leg.bet_id == Bet.id)  # type: ignore[arg-type]  # fmt: skip
    else:
        raise Invalid("by must be selection, event or shop")
    rows = session.exec(
        query.where(Bet.status == BetStatus.open)
        .group_by(*keys)
        .order_by(liability.desc())
        .limit(limit)
    ).all()
    out: list[dict[str, object]] = []
    for row in rows:
        *head, n, stakes, li = row
        item: dict[str, object] = {}
        if by == "shop":
            item["shop"] = head[0]
        elif by == "event":
            item |= {"event": head[1], "event_key": head[0]}
        else:
            item |= {"selection": head[0], "event": head[2], "event_key": head[1]}
        out.append(
            item
            | {
                "open_bets": n,
                "stakes": round(float(stakes or 0), 2),
                "liability": round(float(li or 0), 2),
            }
        )
    return out


def selection_liability(
    *, session: Session, selection_key: str, event: str = "", event_ref: str | None = None
) -> float:
    """Open liability on a selection: within its event when the leg names one (by the feed's
    id, else by name), across every event otherwise."""
    query = (
        select(func.sum(_liability()))
        .join(Leg, Leg.bet_id == Bet.id)  # type: ignore[arg-type]
        .where(Bet.status == BetStatus.open, Leg.selection_key == selection_key)
    )
    if event_ref:
        query = query.where(Leg.event_ref == event_ref)
    elif event:
        query = query.where(col(Leg.event_ref).is_(None), func.lower(Leg.event) == event.lower())
    return float(session.exec(query).one() or 0)
