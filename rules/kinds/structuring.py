"""Rule kind 5: structuring (splitting money to stay under the due-diligence threshold).

Two shapes, from the Gambling Commission's guidance on the Money Laundering Regulations:
``min_transactions`` (3) or more bets each between ``near_lower`` (60%) and ``near_upper``
(99%) of ``threshold_gbp`` within ``near_hours`` (72 h); or the threshold reached in
``split_hours`` (24 h) across ``min_shops`` (2) or more shops without any single bet
reaching it.  Value: the stronger of (near-threshold bets / min_transactions) and
(split total / threshold, when spread over enough shops); 1.0 = the rule's line.
Pivot: the customer when known, otherwise the cluster (its linked bets included).
"""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, col, select

from rules import context
from rules.context import BetRow
from rules.kinds._links import fx, min_value
from rules.types import Finding, Rule, Trigger
from store.clustering import ClusterMember
from store.models import Bet, Slip


class Structuring:
    name = "structuring"
    defaults = {
        "threshold_gbp": 1700.0,
        "near_lower": 0.6,
        "near_upper": 0.99,
        "min_transactions": 3,
        "near_hours": 72.0,
        "split_hours": 24.0,
        "min_shops": 2,
        "fx_to_gbp": {"GBP": 1.0, "EUR": 0.85},
    }
    triggers = frozenset({"bet_placed", "slip_clustered", "schedule"})
    # the bets behind its pivots: a join changes them unless a customer's own cluster grew
    # by the customer's slip (`rules.engine.join_changes`)
    join_reads = frozenset({"accounts", "anonymous"})

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        if trigger.kind == "schedule":
            pivots = self._screen(session, rule, trigger)
        else:
            pivot = None
            if trigger.bet_id is not None:
                pivot = context.pivot_of_bet(session=session, bet_id=trigger.bet_id)
            elif trigger.customer_id is not None:
                pivot = ("customer", trigger.customer_id)
            if pivot is None and trigger.cluster_id is not None:
                pivot = ("cluster", trigger.cluster_id)
            pivots = [pivot] if pivot else []
        out = []
        for pivot_kind, pivot_id in pivots:
            f = self._finding(session, rule, pivot_kind, pivot_id, trigger)
            if f is not None and f.value >= min_value(rule):
                out.append(f)
        return out

    def _finding(
        self, session: Session, rule: Rule, pivot_kind: str, pivot_id: int, trigger: Trigger
    ) -> Finding | None:
        p = rule.params
        threshold = float(p["threshold_gbp"])
        until = trigger.at
        near_since = until - timedelta(hours=float(p["near_hours"]))
        split_since = until - timedelta(hours=float(p["split_hours"]))
        rows = context.bet_rows_of_pivot(
            session=session,
            pivot_kind=pivot_kind,
            pivot_id=pivot_id,
            since=min(near_since, split_since),
            until=until,
        )
        lo, hi = float(p["near_lower"]) * threshold, float(p["near_upper"]) * threshold
        gbp = {r.bet_id: r.stake * fx(p, r.currency) for r in rows}
        near = [r for r in rows if r.placed_at >= near_since and lo <= gbp[r.bet_id] <= hi]
        day = [r for r in rows if r.placed_at >= split_since]
        day_total = sum(gbp[r.bet_id] for r in day)
        day_shops = {r.shop_id for r in day if r.shop_id is not None}
        split = (
            day_total >= threshold
            and len(day_shops) >= int(p["min_shops"])
            and all(gbp[r.bet_id] < threshold for r in day)
        )
        near_score = len(near) / int(p["min_transactions"])
        split_score = day_total / threshold if split else 0.0
        if not near and not split:
            return None
        used = near if near_score >= split_score else day
        return Finding(
            pivot_kind=pivot_kind,
            pivot_id=pivot_id,
            value=round(max(near_score, split_score), 4),
            figures={
                "near_threshold_bets": len(near),
                "min_transactions": int(p["min_transactions"]),
                "near_lower_gbp": round(lo, 2),
                "near_upper_gbp": round(hi, 2),
                "day_total_gbp": round(day_total, 2),
                "day_shops": len(day_shops),
                "threshold_gbp": threshold,
            },
            evidence=context.evidence(used),
            window_start=near_since,
            window_end=until,
            link_confidence=_link(used, pivot_kind, pivot_id),
        )

    def _screen(self, session: Session, rule: Rule, trigger: Trigger) -> list[tuple[str, int]]:
        """Pivots with a near-threshold bet in the last ``near_hours`` or bets in 2+ shops in
        the last ``split_hours``."""
        p = rule.params
        hours = max(float(p["near_hours"]), float(p["split_hours"]))
        since = trigger.at - timedelta(hours=hours)
        rate = max([1.0, *map(float, p["fx_to_gbp"].values())])
        rows = session.exec(
            select(  # type: ignore[call-overload]
                Bet.customer_id,
                Bet.shop_id,
                Bet.total_stake,
                Bet.placed_at,
                ClusterMember.cluster_id,
            )
            .outerjoin(Slip, col(Slip.bet_id) == col(Bet.id))
            .outerjoin(
                ClusterMember,
                (col(ClusterMember.slip_id) == col(Slip.id))
                & (col(ClusterMember.model_version) == context.model_version(session)),
            )
            .where(Bet.placed_at >= since, Bet.placed_at <= trigger.at)
        ).all()
        lo = float(p["near_lower"]) * float(p["threshold_gbp"]) / rate
        near: dict[tuple[str, int], int] = {}
        shops: dict[tuple[str, int], set[int]] = {}
        for customer_id, shop_id, stake, _, cluster_id in rows:
            # the pivot of a bet: its customer when known, otherwise its cluster
            if customer_id is not None:
                keys = [("customer", int(customer_id))]
            else:
                keys = [("cluster", int(cluster_id))] if cluster_id is not None else []
            for key in keys:
                if float(stake) >= lo:
                    near[key] = near.get(key, 0) + 1
                if shop_id is not None:
                    shops.setdefault(key, set()).add(int(shop_id))
        candidates = {k for k, n in near.items() if n >= 1} | {
            k for k, s in shops.items() if len(s) >= int(p["min_shops"])
        }
        return sorted(candidates)


def _link(rows: list[BetRow], pivot_kind: str, pivot_id: int) -> float | None:
    """The weakest handwriting link among the bets that are not the pivot customer's own."""
    if pivot_kind == "customer":
        linked = [r for r in rows if r.customer_id != pivot_id]
    else:
        linked = rows if len(rows) > 1 else []
    if not linked:
        return None
    return min(r.confidence if r.confidence is not None else 0.0 for r in linked)


KIND = Structuring()
