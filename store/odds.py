"""The odds feed: price snapshots per selection and bookmaker, and the price movements
that matter to a trader (sharp drops across bookmakers, bets taken before a collapse)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median

from sqlalchemy import or_
from sqlmodel import Session, col, select

from store.models import Bet, BetStatus, Leg, as_utc, selection_key, utcnow
from store.trading import PriceSnapshot


def record_prices(*, session: Session, snapshots: list[dict]) -> int:  # type: ignore[type-arg]
    """Store a batch of snapshots: ``selection``, ``bookmaker``, ``odds``, optional ``event``,
    ``event_ref`` (the feed's stable event id) and ``at`` (default now)."""
    for snap in snapshots:
        at = snap.get("at")
        session.add(
            PriceSnapshot(
                selection=snap["selection"],
                selection_key=selection_key(snap["selection"]),
                event=snap.get("event") or "",
                event_ref=snap.get("event_ref") or None,
                bookmaker=snap["bookmaker"],
                odds=float(snap["odds"]),
                at=as_utc(at) if isinstance(at, datetime) else utcnow(),
            )
        )
    session.flush()
    return len(snapshots)


@dataclass(frozen=True)
class PriceDrop:
    selection_key: str
    bookmakers: int
    median_drop: float  # fraction, 0.4 = the price fell 40%
    from_odds: float
    to_odds: float


def price_drop(
    *,
    session: Session,
    selection: str,
    since: datetime,
    until: datetime,
    event_ref: str | None = None,
    opened_since: datetime | None = None,
) -> PriceDrop | None:
    """How far a selection's price fell across bookmakers between ``since`` and ``until``:
    per bookmaker first vs last price in the window, then the median over bookmakers.  With
    ``event_ref`` only that event's snapshots count ("Trap 1" runs in every greyhound race).
    With ``opened_since`` (before ``since``), a bookmaker's first price is the one in force
    when the window opened, its last snapshot in ``[opened_since, since)``, when there is one
    (a feed that posts only changes sends no price at the window's start)."""
    key = selection_key(selection)
    lo = since if opened_since is None else min(opened_since, since)
    query = select(PriceSnapshot).where(
        PriceSnapshot.selection_key == key, PriceSnapshot.at >= lo, PriceSnapshot.at <= until
    )
    if event_ref is not None:
        query = query.where(PriceSnapshot.event_ref == event_ref)
    rows = session.exec(query.order_by(col(PriceSnapshot.at), col(PriceSnapshot.id))).all()
    opening: dict[str, float] = {}
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for row in rows:
        if as_utc(row.at) < as_utc(since):
            opening[row.bookmaker] = row.odds
            continue
        first.setdefault(row.bookmaker, row.odds)
        last[row.bookmaker] = row.odds
    first = {b: opening.get(b, odds) for b, odds in first.items()}
    drops = [
        # a drop in implied terms on the winnings part: 11.0 -> 6.0 is (10 - 5) / 10 = 50%
        (first[b] - last[b]) / (first[b] - 1.0)
        for b in first
        if first[b] > 1.0
    ]
    if not drops:
        return None
    return PriceDrop(
        selection_key=key,
        bookmakers=len(drops),
        median_drop=float(median(drops)),
        from_odds=float(median(first.values())),
        to_odds=float(median(last.values())),
    )


def steamer_bets(
    *,
    session: Session,
    selection: str,
    current_odds: float,
    min_ratio: float = 1.5,
    window: timedelta = timedelta(hours=24),
    now: datetime,
    event_ref: str | None = None,
) -> list[Bet]:
    """Open bets on a selection taken at a price at least ``min_ratio`` times the price now:
    someone knew before the market did.  With ``event_ref``, legs naming another event's id
    are left out (legs without an id still count)."""
    key = selection_key(selection)
    query = (
        select(Bet)
        .join(Leg, Leg.bet_id == Bet.id)  # type: ignore[arg-type]
        .where(
            Leg.selection_key == key,
            Leg.odds >= current_odds * min_ratio,  # type: ignore[operator]
            Bet.placed_at >= now - window,
            Bet.status == BetStatus.open,
        )
    )
    if event_ref is not None:
        query = query.where(or_(col(Leg.event_ref).is_(None), col(Leg.event_ref) == event_ref))
    return list(session.exec(query.distinct().order_by(col(Bet.placed_at))).all())


def bets_at_longer_price(
    *,
    session: Session,
    selection: str,
    current_odds: float,
    min_fall: float,
    since: datetime,
    until: datetime,
    event_ref: str | None = None,
) -> list[tuple[int, float]]:
    """(bet id, the leg's price) of the bets on a selection placed in ``[since, until]`` at a
    price the market has since fallen from by ``min_fall`` or more (on the winnings part, as
    `price_drop`), not void and not settled by ``until``, oldest first.  With ``event_ref``,
    legs naming another event's id are left out (legs without an id still count)."""
    # the leg's winnings part fell at least min_fall to today's: (o - 1)(1 - f) >= now - 1
    # (a hair under, so that a fall of exactly min_fall counts despite rounding)
    longest_now = math.inf
    if min_fall < 1.0:
        longest_now = 1.0 + (current_odds - 1.0) / (1.0 - min_fall) - 1e-9
    query = (
        select(Bet.id, Leg.odds)
        .join(Leg, col(Leg.bet_id) == col(Bet.id))
        .where(
            Leg.selection_key == selection_key(selection),
            col(Leg.odds) >= longest_now,
            col(Bet.placed_at) >= since,
            col(Bet.placed_at) <= until,
            Bet.status != BetStatus.void,
            or_(col(Bet.settled_at).is_(None), col(Bet.settled_at) > until),
        )
    )
    if event_ref is not None:
        query = query.where(or_(col(Leg.event_ref).is_(None), col(Leg.event_ref) == event_ref))
    rows = session.exec(query.order_by(col(Bet.placed_at), col(Bet.id))).all()
    best: dict[int, float] = {}
    for bet_id, odds in rows:  # a bet with two legs on the selection counts once
        best[int(bet_id)] = max(best.get(int(bet_id), 0.0), float(odds))  # type: ignore[arg-type]
    return list(best.items())


@dataclass(frozen=True)
class MarketMove:
    """A sharp fall of one selection's price across bookmakers, and the open bets taken at a
    price that has since collapsed."""

    selection: str
    event_ref: str | None
    drop: PriceDrop
    steamer_bet_ids: list[int]


def sharp_drops(
    *,
    session: Session,
    selections: set[tuple[str, str | None]],
    now: datetime,
    window: timedelta = timedelta(hours=24),
    min_drop: float = 0.30,
    min_bookmakers: int = 2,
    min_price_ratio: float = 1.5,
) -> list[MarketMove]:
    """Of these (selection, event id) pairs, those whose price fell at least ``min_drop``
    (median over ``min_bookmakers`` or more) within ``window``; the steamer rule's defaults."""
    moves = []
    for selection, event_ref in sorted(selections, key=lambda s: (s[0], s[1] or "")):
        drop = price_drop(
            session=session, selection=selection, since=now - window, until=now,
            event_ref=event_ref,
        )  # fmt: skip
        if drop is None or drop.bookmakers < min_bookmakers or drop.median_drop < min_drop:
            continue
        bets = steamer_bets(
            session=session, selection=selection, current_odds=drop.to_odds,
            min_ratio=min_price_ratio, window=window, now=now, event_ref=event_ref,
        )  # fmt: skip
        moves.append(MarketMove(selection, event_ref, drop, [int(b.id) for b in bets]))  # type: ignore[arg-type]
    return moves


def notify_market_moves(
    *, session: Session, moves: list[MarketMove], now: datetime, actor: str
) -> list[MarketMove]:
    """Post each move to the staff feed, once per selection and event a day; returns those
    posted."""
    from store.alerts import Notification, notify

    posted = []
    for move in moves:
        entity_id = f"{move.drop.selection_key}@{move.event_ref or ''}"[:64]
        seen = session.exec(
            select(Notification.id).where(
                Notification.kind == "price_drop",
                Notification.entity_id == entity_id,
                col(Notification.at) >= now - timedelta(hours=24),
            )
        ).first()
        if seen is not None:
            continue
        d = move.drop
        message = (
            f"{move.selection}{f' ({move.event_ref})' if move.event_ref else ''}: price fell "
            f"{d.median_drop:.0%} at {d.bookmakers} bookmakers ({d.from_odds:g} -> {d.to_odds:g})"
        )
        if move.steamer_bet_ids:
            message += f"; {len(move.steamer_bet_ids)} open bet(s) taken at the long price"
        notify(
            session, actor=actor, kind="price_drop", message=message, entity="selection",
            entity_id=entity_id,
            data={"selection": move.selection, "event_ref": move.event_ref,
                  "median_drop": round(d.median_drop, 4), "bookmakers": d.bookmakers,
                  "from_odds": d.from_odds, "to_odds": d.to_odds,
                  "steamer_bet_ids": move.steamer_bet_ids},
        )  # fmt: skip
        posted.append(move)
    return posted
