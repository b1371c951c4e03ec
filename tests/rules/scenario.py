"""Crafted handwriting links for the rules tests: slips and cluster rows written straight to
the store (the pipeline's own tests cover how real slips get there)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session

from store.clustering import ClusterMember, ModelActivation, WriterCluster
from store.models import Bet, Customer, Slip
from tests.factories import make_bet

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, midday UTC
MODEL = "test-model-v1"


def activate(session: Session) -> None:
    """Make ``MODEL`` the active embedding model version."""
    session.add(ModelActivation(version=MODEL, path=None))
    session.commit()


def bet(
    session: Session,
    *,
    at: datetime,
    stake: float,
    customer: int | None = None,
    shop: int | None = None,
    **extra: Any,
) -> Bet:
    legs = [
        {
            "sport": extra.pop("sport", "Horse Racing"),
            "event": "3.15 Ascot",
            "selection": "Golden Arrow",
            "odds": 3.0,
        }
    ]
    return make_bet(
        session, stake=stake, customer_id=customer, shop_id=shop, placed_at=at, legs=legs, **extra
    )


def slip(session: Session, b: Bet) -> Slip:
    digest = hashlib.sha256(f"slip-of-bet-{b.id}".encode()).hexdigest()
    s = Slip(bet_id=b.id, sha256=digest, width=40, height=30, original_type="png")  # type: ignore[arg-type]
    session.add(s)
    session.commit()
    return s


def cluster(session: Session, members: list[tuple[Bet, float]]) -> int:
    """A cluster of the bets' slips (made when missing) with the given membership
    confidences; returns the cluster id."""
    c = WriterCluster(model_version=MODEL, size=len(members))
    session.add(c)
    session.flush()
    for b, conf in members:
        s = _slip_of(session, b)
        session.add(
            ClusterMember(
                slip_id=s.id,
                model_version=MODEL,
                cluster_id=c.id,  # type: ignore[arg-type]
                confidence=conf,
            )
        )
    session.commit()
    return int(c.id)  # type: ignore[arg-type]


def join(session: Session, cluster_id: int, b: Bet, conf: float) -> Slip:
    s = _slip_of(session, b)
    session.add(
        ClusterMember(
            slip_id=s.id,
            model_version=MODEL,
            cluster_id=cluster_id,  # type: ignore[arg-type]
            confidence=conf,
        )
    )
    session.commit()
    return s


def _slip_of(session: Session, b: Bet) -> Slip:
    from sqlmodel import select

    found = session.exec(select(Slip).where(Slip.bet_id == b.id)).first()
    return found or slip(session, b)


def excluded_since(session: Session, customer: Customer, at: datetime) -> None:
    """Mark the customer self-excluded from ``at`` (status and a register entry)."""
    from store.models import CustomerStatus
    from store.trading import SelfExclusion

    customer.status = CustomerStatus.self_excluded
    session.add(customer)
    session.add(
        SelfExclusion(
            source="own", reference=f"SE-{customer.id}", starts_on=at, customer_id=customer.id
        )
    )
    session.commit()


def days(n: float) -> timedelta:
    return timedelta(days=n)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)
