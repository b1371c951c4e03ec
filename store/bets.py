"""Bets and their legs: create, read, filter."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, inspect, null
from sqlalchemy import select as sa_select
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, col, select

from store import audit
from store.access import Actor
from store.errors import Forbidden, Invalid, NotFound
from store.models import (
    BET_LINES,
    Bet,
    BetCreate,
    BetPublic,
    BetStatus,
    Customer,
    CustomerStatus,
    Leg,
    LegPublic,
    Role,
    Shop,
    Slip,
    as_utc,
    selection_key,
    utcnow,
)


def create_bet(*, session: Session, bet_in: BetCreate, actor: Actor) -> Bet:
    """``write_bet``, the bet and its legs then in the session as ORM objects (persistent,
    as after a flush)."""
    new = write_bet(session=session, bet_in=bet_in, actor=actor)
    bet, legs = Bet(**new.row), [Leg(**leg) for leg in new.legs]
    for row in (bet, *legs):
        make_transient_to_detached(row)
        # a row of a rolled-back transaction whose id came round again (SQLite reuses them)
        stale = session.identity_map.get(inspect(row).key)
        if stale is not None:
            session.expunge(stale)
        session.add(row)
    session.info.setdefault("new_bet_legs", {})[bet.id] = legs
    return bet


@dataclass(frozen=True)
class NewBet:
    """A bet just written: its row and its legs' rows as inserted, ids included."""

    row: dict[str, Any]
    legs: list[dict[str, Any]]

    def public(self) -> BetPublic:
        return BetPublic.model_validate(
            self.row
            | {"anonymous": self.row["customer_id"] is None, "legs": self.legs, "slip_id": None}
        )


def write_bet(*, session: Session, bet_in: BetCreate, actor: Actor) -> NewBet:
    """Record a bet: its row, its legs and the audit entry, written with plain INSERTs (the
    ORM's flush of the same rows cost ~a fifth of a POST /bets, building the ORM objects
    another ~5%); the caller commits."""
    shop_id = bet_in.shop_id
    if actor.role == Role.shop:
        if shop_id is None:
            shop_id = actor.shop_id
        elif shop_id != actor.shop_id:
            raise Forbidden("a shop key can only record bets for its own shop")
    lines = BET_LINES.get(bet_in.bet_type, 1) * (2 if bet_in.each_way else 1)
    total = bet_in.total_stake if bet_in.total_stake is not None else bet_in.stake * lines
    odds = bet_in.odds if bet_in.odds is not None else _combined_odds(bet_in)
    now = utcnow()
    row: dict[str, Any] = {
        "shop_id": shop_id,
        "customer_id": bet_in.customer_id,
        "placed_at": as_utc(bet_in.placed_at) if bet_in.placed_at else now,
        "currency": bet_in.currency,
        "stake": round(bet_in.stake, 2),
        "total_stake": round(total, 2),
        "bet_type": bet_in.bet_type,
        "each_way": bet_in.each_way,
        "odds": odds,
        "potential_return": _potential_return(bet_in, odds),
        "description": bet_in.description,
        "sport": bet_in.legs[0].sport,
        "status": BetStatus.open,
        "returns": None,
        "settled_at": None,
        "created_at": now,
        "rules_pending_since": now,  # until its bet_placed rules ran (workers.pipeline)
    }
    conn = session.connection()
    checks = _checks(shop_id=shop_id, customer_id=bet_in.customer_id, actor=actor)
    if checks is None:
        row["id"] = conn.execute(_INSERT_BET, row).scalar_one()
    else:
        # the shop/customer check and the insert in one round trip: the row is inserted only
        # if they pass; when it is not, the look-up says why (and raises)
        bet_id = conn.execute(_INSERT_BET_CHECKED[checks], row).scalar_one_or_none()
        if bet_id is None:
            _check_references(session, shop_id=shop_id, customer_id=bet_in.customer_id,
                              actor=actor)  # fmt: skip
            # passed now: the shop or customer changed in between; insert as a check-then-
            # insert would have (the foreign keys still hold)
            bet_id = conn.execute(_INSERT_BET, row).scalar_one()
        row["id"] = bet_id
    legs = [
        leg_in.model_dump()
        | {
            "bet_id": row["id"],
            "position": position,
            "selection_key": selection_key(leg_in.selection),
            "event_start": as_utc(leg_in.event_start) if leg_in.event_start else None,
        }
        for position, leg_in in enumerate(bet_in.legs)
    ]
    for leg, leg_id in zip(legs, conn.execute(_INSERT_LEGS, legs).scalars().all(), strict=True):
        leg["id"] = leg_id
    audit.write(
        session, actor=actor.name, action="bet.create", entity="bet", entity_id=row["id"],
        after={"stake": row["stake"], "total_stake": row["total_stake"], "shop_id": shop_id,
               "customer_id": row["customer_id"]},
    )  # fmt: skip
    return NewBet(row, legs)


_BETS, _LEGS = Bet.__table__, Leg.__table__  # type: ignore[attr-defined]
# built once: building and keying a statement costs more CPU than running it here
_INSERT_BET = insert(_BETS).returning(_BETS.c.id)
_INSERT_LEGS = insert(_LEGS).returning(_LEGS.c.id, sort_by_parameter_order=True)


def _checks(
    *, shop_id: int | None, customer_id: int | None, actor: Actor
) -> tuple[bool, bool] | None:
    """(check the shop, check the customer), None when neither needs a look-up.  A shop
    key's own shop is known to exist (api_keys.shop_id references it)."""
    check_shop = shop_id is not None and not (actor.role == Role.shop and shop_id == actor.shop_id)
    if not check_shop and customer_id is None:
        return None
    return check_shop, customer_id is not None


def _check_references(
    session: Session, *, shop_id: int | None, customer_id: int | None, actor: Actor
) -> None:
    """The bet's shop exists and its customer exists and is not closed, in one round trip."""
    checks = _checks(shop_id=shop_id, customer_id=customer_id, actor=actor)
    if checks is None:
        return
    check_shop = checks[0]
    found_shop, status = (
        session.connection()
        .execute(
            _REFERENCES[checks],
            {"shop_id": shop_id, "customer_id": customer_id},
        )
        .one()
    )
    if check_shop and found_shop is None:
        raise NotFound(f"shop_id: shop {shop_id} not found")
    if customer_id is not None:
        if status is None:
            raise NotFound(f"customer_id: customer {customer_id} not found")
        if status == CustomerStatus.closed:
            raise Invalid(f"customer_id: customer {customer_id} is closed")


def _references() -> dict[tuple[bool, bool], Any]:
    """The look-up per (check the shop, check the customer): (shop id or NULL, customer
    status or NULL); on the tables (Core), not the ORM classes, which cost more per run."""
    shops, customers = Shop.__table__.c, Customer.__table__.c  # type: ignore[attr-defined]
    shop = sa_select(shops.id).where(shops.id == bindparam("shop_id")).scalar_subquery()
    customer = (
        sa_select(customers.status)
        .where(customers.id == bindparam("customer_id"))
        .scalar_subquery()
    )
    return {
        (s, c): sa_select(shop if s else null(), customer if c else null())
        for s in (True, False)
        for c in (True, False)
        if s or c
    }


_REFERENCES = _references()


def _inserts_checked() -> dict[tuple[bool, bool], Any]:
    """Per (check the shop, check the customer): INSERT INTO bets ... SELECT the row's values
    WHERE the shop exists and the customer exists and is not closed, RETURNING its id (no
    row when a check fails).  The values are typed binds, as in a plain INSERT."""
    shops, customers = Shop.__table__.c, Customer.__table__.c  # type: ignore[attr-defined]
    names = [c.name for c in _BETS.c if c.name != "id"]
    values = [bindparam(c.name, type_=c.type) for c in _BETS.c if c.name != "id"]
    shop_ok = sa_select(shops.id).where(shops.id == bindparam("shop_id")).exists()
    customer_ok = (
        sa_select(customers.id)
        .where(customers.id == bindparam("customer_id"))
        .where(customers.status != CustomerStatus.closed)
        .exists()
    )
    out: dict[tuple[bool, bool], Any] = {}
    for s in (True, False):
        for c in (True, False):
            if s or c:
                where = [cond for cond, on in ((shop_ok, s), (customer_ok, c)) if on]
                query = sa_select(*values).where(*where)
                out[s, c] = insert(_BETS).from_select(names, query).returning(_BETS.c.id)
    return out


_INSERT_BET_CHECKED = _inserts_checked()


def _combined_odds(bet_in: BetCreate) -> float | None:
    """Odds of a single or straight multiple; None for any leg at SP or a full-cover bet."""
    if bet_in.bet_type not in ("single", "double", "treble", "accumulator"):
        return None
    prices = [leg.odds for leg in bet_in.legs]
    if any(p is None for p in prices):
        return None
    return float(math.prod(p for p in prices if p is not None))


def _potential_return(bet_in: BetCreate, odds: float | None) -> float | None:
    if odds is None or bet_in.each_way:
        return None
    return round(bet_in.stake * odds, 2)


def get_bet(*, session: Session, bet_id: int, actor: Actor) -> Bet:
    bet = session.get(Bet, bet_id)
    if bet is None or (actor.role == Role.shop and bet.shop_id != actor.shop_id):
        # a shop must not learn that another shop's bet exists
        raise NotFound(f"bet {bet_id} not found")
    return bet


def bet_public(*, session: Session, bet: Bet) -> BetPublic:
    fresh = session.info.get("new_bet_legs", {}).get(bet.id)
    if fresh is not None:  # just created in this session: legs known, no slip yet
        legs, slip_id = fresh, None
    else:
        legs = session.exec(
            select(Leg).where(Leg.bet_id == bet.id).order_by(col(Leg.position))
        ).all()
        slip_id = session.exec(select(Slip.id).where(Slip.bet_id == bet.id)).first()
    return BetPublic.model_validate(
        bet,
        update={
            "anonymous": bet.customer_id is None,
            "legs": [LegPublic.model_validate(leg) for leg in legs],
            "slip_id": slip_id,
        },
    )


def list_bets(
    *,
    session: Session,
    actor: Actor,
    customer_id: int | None = None,
    shop_id: int | None = None,
    min_stake: float | None = None,
    max_stake: float | None = None,
    risk_category: str | None = None,
    selection: str | None = None,
    sport: str | None = None,
    placed_from: datetime | None = None,
    placed_to: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Bet], int]:
    """The staff feed's five filters (customer, unit stake range, risk category, selection,
    sport) plus shop and time range; newest first."""
    query = select(Bet)
    if actor.role == Role.shop:
        query = query.where(Bet.shop_id == actor.shop_id)
    if customer_id is not None:
        query = query.where(Bet.customer_id == customer_id)
    if shop_id is not None:
        query = query.where(Bet.shop_id == shop_id)
    if min_stake is not None:
        query = query.where(Bet.stake >= min_stake)
    if max_stake is not None:
        query = query.where(Bet.stake <= max_stake)
    if risk_category is not None:
        query = query.join(Customer, col(Customer.id) == col(Bet.customer_id)).where(
            Customer.risk_category == risk_category
        )
    if sport is not None:
        query = query.where(func.lower(Bet.sport) == sport.lower())
    if selection is not None:
        key = selection_key(selection)
        legs = select(Leg.bet_id).where(col(Leg.selection_key).contains(key))
        query = query.where(col(Bet.id).in_(legs))
    if placed_from is not None:
        query = query.where(Bet.placed_at >= as_utc(placed_from))
    if placed_to is not None:
        query = query.where(Bet.placed_at < as_utc(placed_to))
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(Bet.placed_at).desc(), col(Bet.id).desc()).limit(limit).offset(offset)
    ).all()
    return list(rows), int(total)
