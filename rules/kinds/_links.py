"""Helpers shared by the handwriting-link kinds (1-5): windows, anchors, link confidences.

Not a kind (the leading underscore keeps it out of the registry).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from rules import context
from rules.context import BetRow
from rules.types import Rule, Trigger
from store.models import Customer


def window_of(rule: Rule, trigger: Trigger, default: timedelta) -> tuple[datetime, datetime]:
    """``[at - window, at]`` for the rule's window (``default`` when the rule has none)."""
    span = rule.window or default
    return trigger.at - span, trigger.at


def trigger_cluster(*, session: Session, trigger: Trigger) -> tuple[int, float] | None:
    """The cluster (and confidence) a trigger is about: its cluster, or its slip's, or the
    slip of its bet."""
    slip_id = trigger.slip_id
    if slip_id is None and trigger.bet_id is not None:
        slip_id = context.slip_of_bet(session=session, bet_id=trigger.bet_id)
    found = context.membership(session=session, slip_id=slip_id) if slip_id is not None else None
    if found is not None:
        return found
    if trigger.cluster_id is not None:
        return trigger.cluster_id, 1.0
    return None


def customers_of_cluster(*, session: Session, cluster_id: int) -> list[Customer]:
    """Known customers with at least one slip in the cluster (active model)."""
    return context.memo(
        session, ("customers_of_cluster", cluster_id), lambda: _customers(session, cluster_id)
    )


def _customers(session: Session, cluster_id: int) -> list[Customer]:
    from store.clustering import ClusterMember
    from store.models import Bet, Slip

    # one query: the customers themselves, not their ids then their rows
    members = (
        select(Bet.customer_id)
        .join(Slip, col(Slip.bet_id) == col(Bet.id))
        .join(ClusterMember, col(ClusterMember.slip_id) == col(Slip.id))
        .where(
            ClusterMember.cluster_id == cluster_id,
            ClusterMember.model_version == context.model_version(session),
            col(Bet.customer_id).is_not(None),
        )
    )
    return list(session.exec(select(Customer).where(col(Customer.id).in_(members))).all())


def link_confidence(row: BetRow, anchor: float) -> float:
    """How firmly a bet is tied to a customer through a cluster: the weaker of the bet slip's
    membership and the customer's strongest membership in that cluster."""
    return min(anchor, row.confidence if row.confidence is not None else 0.0)


def fx(params: Mapping[str, Any], currency: str) -> float:
    return float(params.get("fx_to_gbp", {}).get(currency.upper(), 1.0))


def min_value(rule: Rule) -> float:
    """The smallest value any band accepts: findings below it cannot become alerts."""
    return min(b.lower for b in rule.bands)
