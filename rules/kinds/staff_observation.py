"""Rule kind 17: a staff observation raises other alerts on the same pivot.

A concern logged by shop staff (distress, agitation, borrowing money, ...) is among the
indicators of harm the Gambling Commission's customer-interaction guidance asks operators to
act on.  The kind raises no alert of its own: the engine asks `boost` while deciding any
other rule's finding, and `rules.engine.apply_observation` raises open alerts when an
observation is logged.  Either way the alert goes one level up, once, within the window
(default 30 days).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from rules import context
from rules.types import Finding, Rule, Trigger
from store.alerts import StaffObservation
from store.models import Bet, Slip, as_utc


class StaffObservationKind:
    name = "staff_observation"
    defaults = {"kinds": ["distress", "agitation", "borrowing", "aggression"]}
    triggers: frozenset[str] = frozenset()

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        return []

    def pivots_of_observation(
        self, *, session: Session, observation: StaffObservation
    ) -> set[tuple[str, int]]:
        """The customer and the cluster the observation is about (directly or via its bet or
        slip)."""
        pivots: set[tuple[str, int]] = set()
        if observation.customer_id is not None:
            pivots.add(("customer", observation.customer_id))
        if observation.cluster_id is not None:
            pivots.add(("cluster", observation.cluster_id))
        bet_id = observation.bet_id
        slip_id = observation.slip_id
        if slip_id is not None and bet_id is None:
            slip = session.get(Slip, slip_id)
            bet_id = slip.bet_id if slip is not None else None
        if bet_id is not None:
            bet = session.get(Bet, bet_id)
            if bet is not None and bet.customer_id is not None:
                pivots.add(("customer", bet.customer_id))
            if slip_id is None:
                slip_id = context.slip_of_bet(session=session, bet_id=bet_id)
        if slip_id is not None:
            found = context.membership(session=session, slip_id=slip_id)
            if found is not None:
                pivots.add(("cluster", found[0]))
        return pivots

    def applies(self, rule: Rule, observation: StaffObservation) -> bool:
        kind = getattr(observation.kind, "value", observation.kind)
        return kind in set(rule.params["kinds"])

    def describe(self, observation: StaffObservation) -> str:
        kind = getattr(observation.kind, "value", observation.kind)
        shop = f", shop {observation.shop_id}" if observation.shop_id else ""
        return f"staff observed {kind} on {as_utc(observation.at):%Y-%m-%d}{shop}"

    def boost(
        self, *, session: Session, rule: Rule, pivot_kind: str, pivot_id: int, at: datetime
    ) -> str | None:
        """A description of the latest matching observation on the pivot within the window
        before ``at``, or None."""
        # an observation is about a customer or a cluster (above), never a selection or a bet
        if pivot_kind not in ("customer", "cluster"):
            return None
        since = at - (rule.window or timedelta(days=30))
        rows = session.exec(
            select(StaffObservation)
            .where(
                StaffObservation.at >= since,
                StaffObservation.at <= at,
                col(StaffObservation.kind).in_(list(rule.params["kinds"])),
            )
            .order_by(col(StaffObservation.at).desc())
        ).all()
        for obs in rows:
            if (pivot_kind, pivot_id) in self.pivots_of_observation(
                session=session, observation=obs
            ):
                return self.describe(obs)
        return None


KIND = StaffObservationKind()
