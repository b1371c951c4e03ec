"""Rule kind 4: an unidentified customer over the due-diligence threshold.

The Money Laundering Regulations 2017 (reg. 27(5)) require customer due diligence for casino
transactions of EUR 2,000 or more, in one operation or in linked ones; the Gambling
Commission applies the same figure to betting shops' risk assessments.  Anonymous stakes, or
collected winnings, of one handwriting cluster are summed over ``24 h`` (the rule's window)
across shops; ``threshold_gbp`` is the configured sterling equivalent.
Value: the larger of the two sums divided by the threshold (1.0 = at the threshold).
Pivot: the cluster.  Link confidence: the weakest membership among the summed slips when
more than one slip is summed (one slip rests on no link).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from rules import context
from rules.kinds._links import fx, min_value, trigger_cluster, window_of
from rules.types import Finding, Rule, Trigger
from store.clustering import ClusterMember
from store.models import Bet, Slip


class UnidentifiedOverThreshold:
    name = "unidentified_over_threshold"
    defaults = {"threshold_gbp": 1700.0, "fx_to_gbp": {"GBP": 1.0, "EUR": 0.85}}
    triggers = frozenset({"slip_clustered", "bet_settled", "schedule"})
    # only the cluster's anonymous bets count (`rules.engine.join_changes`)
    join_reads = frozenset({"anonymous"})

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        since, until = window_of(rule, trigger, timedelta(hours=24))
        if trigger.kind == "schedule":
            clusters = self._screen(session, rule, since, until)
        else:
            found = trigger_cluster(session=session, trigger=trigger)
            clusters = [found[0]] if found else []
        out = []
        for cluster_id in clusters:
            f = self._finding(session, rule, cluster_id, since, until)
            if f is not None and f.value >= min_value(rule):
                out.append(f)
        return out

    def _finding(
        self, session: Session, rule: Rule, cluster_id: int, since, until
    ) -> Finding | None:  # type: ignore[no-untyped-def]
        p = rule.params
        threshold = float(p["threshold_gbp"])
        placed = [
            r
            for r in context.cluster_rows(
                session=session, cluster_ids=[cluster_id], since=since, until=until
            )
            if r.customer_id is None
        ]
        settled = [
            r
            for r in context.cluster_rows(
                session=session, cluster_ids=[cluster_id], since=since, until=until, settled=True
            )
            if r.customer_id is None and r.returns
        ]
        stakes = sum(r.stake * fx(p, r.currency) for r in placed)
        winnings = sum((r.returns or 0.0) * fx(p, r.currency) for r in settled)
        if not placed and not settled:
            return None
        used = {r.bet_id: r for r in (placed if stakes >= winnings else settled)}
        rows = list({r.bet_id: r for r in placed + settled}.values())
        conf = None
        if len(used) > 1:
            conf = min(r.confidence if r.confidence is not None else 0.0 for r in used.values())
        shops = {r.shop_id for r in rows if r.shop_id is not None}
        return Finding(
            pivot_kind="cluster",
            pivot_id=cluster_id,
            value=round(max(stakes, winnings) / threshold, 4),
            figures={
                "stakes_gbp": round(stakes, 2),
                "winnings_gbp": round(winnings, 2),
                "threshold_gbp": threshold,
                "bets": len(placed),
                "settled_bets": len(settled),
                "shops": len(shops),
                "hours": round((until - since).total_seconds() / 3600, 1),
            },
            evidence=context.evidence(rows, clusters=[cluster_id]),
            window_start=since,
            window_end=until,
            link_confidence=conf,
        )

    def _screen(self, session: Session, rule: Rule, since, until) -> list[int]:  # type: ignore[no-untyped-def]
        """Clusters whose anonymous stakes or returns in the window could reach the lowest
        band (summed at the largest exchange rate, so none is missed)."""
        p = rule.params
        rate = max([1.0, *map(float, p["fx_to_gbp"].values())])
        floor = min_value(rule) * float(p["threshold_gbp"]) / rate
        found: set[int] = set()
        for column, amount in ((Bet.placed_at, Bet.total_stake), (Bet.settled_at, Bet.returns)):
            rows = session.exec(
                select(ClusterMember.cluster_id)
                .join(Slip, col(Slip.id) == col(ClusterMember.slip_id))
                .join(Bet, col(Bet.id) == col(Slip.bet_id))
                .where(
                    ClusterMember.model_version == context.model_version(session),
                    col(ClusterMember.cluster_id).is_not(None),
                    col(Bet.customer_id).is_(None),
                    col(column) >= since,
                    col(column) <= until,
                )
                .group_by(col(ClusterMember.cluster_id))
                .having(func.coalesce(func.sum(amount), 0) >= floor)
            ).all()
            found |= {int(c) for c in rows if c is not None}
        return sorted(found)


KIND = UnidentifiedOverThreshold()
