"""Open liability: what the operator stands to pay out, net of stakes, on open bets.

A selection is its name within its event: "Trap 1" runs in every greyhound race.  An event
is the feed's stable id when the leg carries one, else the event's name as the till wrote it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func
from sqlalchemy import select as sa_select
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
    keys: list[Any]
    if by == "shop":
        keys, labels = [col(Bet.shop_id)], []
    elif by == "event":
        keys, labels = [_event_key()], [func.min(Leg.event)]
    elif by == "selection":
        keys, labels = [col(Leg.selection_key), _event_key()], [func.min(Leg.event)]
    else:
        raise Invalid("by must be selection, event or shop")
    query = sa_select(
        *keys, *labels, func.count(func.distinct(Bet.id)), func.sum(Bet.total_stake), liability
    )
    if by != "shop":
        query = query.join(Leg, col(Leg.bet_id) == col(Bet.id))
    rows = session.execute(
        query.where(col(Bet.status) == BetStatus.open)
        .group_by(*keys)
        .order_by(liability.desc())
        .limit(limit)
    ).all()
    out: list[dict[str, object]] = []
    for row in rows:
        *head, n, stakes, li = row
        if by == "shop":
            item: dict[str, object] = {"shop": head[0]}
        elif by == "event":
            item = {"event": head[1], "event_key": head[0]}
        else:
            item = {"selection": head[0], "event": head[2], "event_key": head[1]}
        out.append(
            item
            | {
                "open_bets": n,
                "stakes": round(float(stakes or 0), 2),
                "liability": round(float(li or 0), 2),
            }
        )
    return out


def selection_liability_query(
    *, selection_key: str, event: str = "", event_ref: str | None = None
) -> Select:  # type: ignore[type-arg]
    """Open liability on a selection: within its event when the leg names one (by the feed's
    id, else by name), across every event otherwise."""
    return liability_statement(
        selection_key,
        event_ref=event_ref or None,
        event=event.lower() if event and not event_ref else None,
    )


def liability_statement(selection_key: Any, *, event_ref: Any = None, event: Any = None) -> Select:  # type: ignore[type-arg]
    """``selection_liability_query`` on values or SQL bind parameters (the counter check
    builds its statement once per shape): within the event of feed id ``event_ref``, else
    within the event named ``event`` (lower case) that has no feed id, else everywhere."""
    query = (
        select(func.sum(_liability()))
        .join(Leg, col(Leg.bet_id) == col(Bet.id))
        .where(col(Bet.status) == BetStatus.open, col(Leg.selection_key) == selection_key)
    )
    if event_ref is not None:
        return query.where(col(Leg.event_ref) == event_ref)
    if event is not None:
        return query.where(col(Leg.event_ref).is_(None), func.lower(Leg.event) == event)
    return query


def selection_liability(
    *, session: Session, selection_key: str, event: str = "", event_ref: str | None = None
) -> float:
    query = selection_liability_query(selection_key=selection_key, event=event, event_ref=event_ref)
    return float(session.execute(query).scalar_one() or 0)
