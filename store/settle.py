"""Settling bets from results, and re-settling when a result changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from betting.settlement import LegResult, LegSettlement, Outcome, settle
from store import audit
from store.access import Actor
from store.errors import Invalid, NotFound
from store.models import Bet, BetStatus, Leg, Slip, selection_key, utcnow
from store.trading import Event, EventStatus, SelectionResult

_STATUS = {
    Outcome.won: BetStatus.won,
    Outcome.placed: BetStatus.placed,
    Outcome.lost: BetStatus.lost,
    Outcome.void: BetStatus.void,
}


def record_results(
    *, session: Session, event_id: int, results: list[dict], actor: Actor
) -> tuple[list[SelectionResult], list[Bet]]:
    """Store (or correct) an event's results, then settle or re-settle every affected bet.

    Each result: ``selection``, ``result`` (won/placed/lost/void), optional ``dead_heat``,
    ``rule4``, ``starting_price``.  Runners not listed count as lost once results exist.
    """
    event = session.get(Event, event_id)
    if event is None:
        raise NotFound(f"event {event_id} not found")
    stored = []
    for i, item in enumerate(results):
        try:
            outcome = LegResult(item["result"])
        except (KeyError, ValueError):
            raise Invalid(f"results[{i}].result must be won, placed, lost or void") from None
        key = selection_key(item["selection"])
        row = session.exec(
            select(SelectionResult).where(
                SelectionResult.event_id == event_id, SelectionResult.selection_key == key
            )
        ).first()
        before = (
            None
            if row is None
            else {"result": row.result, "dead_heat": row.dead_heat, "rule4": row.rule4}
        )
        if row is None:
            row = SelectionResult(
                event_id=event_id, selection=item["selection"], selection_key=key, result=outcome
            )
        row.result = outcome
        row.dead_heat = float(item.get("dead_heat", 1.0))
        row.rule4 = float(item.get("rule4", 0.0))
        row.starting_price = item.get("starting_price")
        row.updated_at = utcnow()
        session.add(row)
        stored.append(row)
        audit.record(
            session,
            actor=actor.name,
            action="result.record",
            entity="event",
            entity_id=event_id,
            before=before,
            after={"selection": item["selection"], "result": outcome.value},
        )
    event.status = EventStatus.result
    session.add(event)
    session.flush()
    return stored, settle_event_bets(session=session, event=event)


def leg_events(session: Session, leg: Leg) -> list[Event]:
    """The events a leg may belong to.  By the feed's stable id when the leg carries one and
    an event has it; otherwise by event name and start date, never taking an event whose own
    stable id differs from the leg's (two meetings can both run a "3.15")."""
    if leg.event_ref:
        event = session.exec(select(Event).where(Event.external_id == leg.event_ref)).first()
        if event is not None:
            return [event]
    if not leg.event:
        return []
    events = session.exec(
        select(Event)
        .where(func.lower(Event.name) == leg.event.lower())
        .order_by(col(Event.start_time), col(Event.id))
    ).all()
    return [
        e
        for e in events
        if (leg.event_start is None or e.start_time.date() == leg.event_start.date())
        and (leg.event_ref is None or e.external_id is None)
    ]


def _event_legs(session: Session, event: Event) -> list[Leg]:
    """Legs linked to ``event`` (see :func:`leg_events`)."""
    by_name = select(Leg).where(func.lower(Leg.event) == event.name.lower())
    candidates = {leg.id: leg for leg in session.exec(by_name).all()}
    if event.external_id:
        by_ref = select(Leg).where(Leg.event_ref == event.external_id)
        candidates |= {leg.id: leg for leg in session.exec(by_ref).all()}
    return [
        leg
        for leg in candidates.values()
        if any(e.id == event.id for e in leg_events(session, leg))
    ]


def settle_event_bets(*, session: Session, event: Event) -> list[Bet]:
    """Settle (or re-settle) the bets with a leg in ``event`` whose legs all have results."""
    bet_ids = sorted({leg.bet_id for leg in _event_legs(session, event)})
    changed = []
    for bet_id in bet_ids:
        bet = session.get(Bet, bet_id)
        if bet is not None and settle_bet(session=session, bet=bet):
            changed.append(bet)
    return changed


def _leg_result(session: Session, leg: Leg) -> tuple[SelectionResult, Event] | None:
    for event in leg_events(session, leg):
        if event.status != EventStatus.result and event.status != EventStatus.abandoned:
            continue
        row = session.exec(
            select(SelectionResult).where(
                SelectionResult.event_id == event.id,
                SelectionResult.selection_key == leg.selection_key,
            )
        ).first()
        if row is None:
            # an abandoned event voids every leg; otherwise an unlisted runner lost
            verdict = "void" if event.status == EventStatus.abandoned else "lost"
            row = SelectionResult(
                event_id=event.id,  # type: ignore[arg-type]
                selection=leg.selection,
                selection_key=leg.selection_key,
                result=verdict,
            )
        return row, event
    return None


def settle_bet(*, session: Session, bet: Bet) -> bool:
    """Settle one bet when every leg has a result.  Returns True when status or returns
    changed (first settlement or re-settlement after a corrected result)."""
    legs = session.exec(select(Leg).where(Leg.bet_id == bet.id).order_by(col(Leg.position))).all()
    outcomes = []
    for leg in legs:
        found = _leg_result(session, leg)
        if found is None:
            return False
        result, event = found
        odds = leg.odds or result.starting_price
        if odds is None and result.result not in ("lost", "void"):
            return False  # an SP bet waits for its starting price
        outcomes.append(
            LegSettlement(
                result=LegResult(result.result),
                odds=odds or 1.0,
                place_fraction=event.place_fraction,
                dead_heat=result.dead_heat,
                rule4=result.rule4,
            )
        )
    try:
        settled = settle(
            bet_type=bet.bet_type, unit_stake=bet.stake, each_way=bet.each_way, legs=outcomes
        )
    except ValueError:
        return False  # a bet type that needs a trader (forecasts, odd leg counts)
    status = _STATUS[settled.outcome]
    if bet.status == status and bet.returns == settled.returns:
        return False
    before = {"status": bet.status, "returns": bet.returns}
    resettle = bet.status != BetStatus.open
    bet.status, bet.returns, bet.settled_at = status, settled.returns, utcnow()
    session.add(bet)
    audit.record(
        session,
        actor="system",
        action="bet.resettle" if resettle else "bet.settle",
        entity="bet",
        entity_id=bet.id,
        before=before,
        after={"status": status, "returns": settled.returns},
    )
    return True


def profit_and_loss(
    *, session: Session, by: str, start: datetime, end: datetime
) -> list[dict[str, object]]:
    """Operator P&L of settled bets (stakes taken minus returns paid) by customer, handwriting
    cluster, shop or day."""
    from store.clustering import ClusterMember, active_model_version

    keys: dict[str, Any] = {
        "customer": col(Bet.customer_id),
        "shop": col(Bet.shop_id),
        "day": func.date(Bet.placed_at),
        "cluster": col(ClusterMember.cluster_id),
    }
    if by not in keys:
        raise Invalid("by must be customer, cluster, shop or day")
    key = keys[by]
    query = select(key, func.count(), func.sum(Bet.total_stake), func.sum(Bet.returns))
    if by == "cluster":
        query = (
            query.join(Slip, col(Slip.bet_id) == col(Bet.id))
            .join(ClusterMember, col(ClusterMember.slip_id) == col(Slip.id))
            .where(ClusterMember.model_version == active_model_version(session=session))
        )
    rows = session.exec(
        query.where(Bet.placed_at >= start, Bet.placed_at < end, Bet.status != BetStatus.open)
        .group_by(key)
        .order_by(key)
    ).all()
    out = []
    for k, n, stakes, returns in rows:
        stakes, returns = float(stakes or 0), float(returns or 0)
        label = str(k) if by == "day" else k
        profit = round(stakes - returns, 2)
        out.append(
            {
                by: label,
                "bets": n,
                "stakes": round(stakes, 2),
                "returns": round(returns, 2),
                "profit": profit,
            }
        )
    return out
