"""Rule kind 2: linked accounts and bearding.

One handwriting cluster under two or more customer accounts (someone betting through other
people's accounts: "bearding", named in Gambling Commission enforcement cases), or one
account whose slips fall in two or more clusters (several writers behind one account).
Value: the number of accounts sharing the cluster (pivot: the cluster) or the number of
clusters under the account (pivot: the customer).  Link confidence: the weakest of the
accounts' strongest memberships, since every account must be tied in for the finding to hold.
"""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from rules import context
from rules.kinds._links import min_value, trigger_cluster
from rules.types import Finding, Rule, Trigger
from store.clustering import ClusterMember, ClusterStatus, WriterCluster
from store.models import Bet, Slip


class LinkedAccounts:
    name = "linked_accounts"
    defaults = {"min_accounts": 2, "min_clusters": 2, "min_slips_per_account": 1}
    triggers = frozenset({"slip_clustered", "schedule"})
    # a join changes its findings only by a customer's slip (`rules.engine.join_changes`)
    join_reads = frozenset({"accounts"})

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        since = trigger.at - rule.window if rule.window else None
        clusters: set[int] = set()
        customers: set[int] = set()
        if trigger.kind == "schedule":
            clusters, customers = self._screen(session, rule)
        else:
            found = trigger_cluster(session=session, trigger=trigger)
            if found is not None:
                clusters.add(found[0])
            if trigger.customer_id is not None:
                customers.add(trigger.customer_id)
            elif trigger.bet_id is not None:
                bet = context.bet(session=session, bet_id=trigger.bet_id)
                if bet is not None and bet.customer_id is not None:
                    customers.add(bet.customer_id)
        out = []
        for cluster_id in sorted(clusters):
            f = self._cluster_finding(session, rule, cluster_id, since, trigger)
            if f is not None:
                out.append(f)
        for customer_id in sorted(customers):
            f = self._customer_finding(session, rule, customer_id, since, trigger)
            if f is not None:
                out.append(f)
        return [f for f in out if f.value >= min_value(rule)]

    def _cluster_finding(
        self, session: Session, rule: Rule, cluster_id: int, since, trigger: Trigger
    ) -> Finding | None:  # type: ignore[no-untyped-def]
        rows = context.cluster_rows(
            session=session, cluster_ids=[cluster_id], since=since, until=trigger.at
        )
        per: dict[int, list[context.BetRow]] = {}
        for r in rows:
            if r.customer_id is not None:
                per.setdefault(r.customer_id, []).append(r)
        accounts = {
            c: rs for c, rs in per.items() if len(rs) >= int(rule.params["min_slips_per_account"])
        }
        if len(accounts) < int(rule.params["min_accounts"]):
            return None
        anchors = [max(r.confidence or 0.0 for r in rs) for rs in accounts.values()]
        evidence_rows = [r for rs in accounts.values() for r in rs]
        return Finding(
            pivot_kind="cluster",
            pivot_id=cluster_id,
            value=float(len(accounts)),
            figures={
                "accounts": len(accounts),
                "min_accounts": int(rule.params["min_accounts"]),
                "slips": len(evidence_rows),
                "what": "customer accounts share one handwriting cluster",
            },
            evidence=context.evidence(evidence_rows, clusters=[cluster_id]),
            window_start=since,
            window_end=trigger.at,
            link_confidence=min(anchors),
        )

    def _customer_finding(
        self, session: Session, rule: Rule, customer_id: int, since, trigger: Trigger
    ) -> Finding | None:  # type: ignore[no-untyped-def]
        rows = [
            r
            for r in context.customer_rows(
                session=session, customer_id=customer_id, since=since, until=trigger.at
            )
            if r.cluster_id is not None
        ]
        per: dict[int, list[context.BetRow]] = {}
        for r in rows:
            per.setdefault(r.cluster_id, []).append(r)  # type: ignore[arg-type]
        if len(per) < int(rule.params["min_clusters"]):
            return None
        anchors = [max(r.confidence or 0.0 for r in rs) for rs in per.values()]
        return Finding(
            pivot_kind="customer",
            pivot_id=customer_id,
            value=float(len(per)),
            figures={
                "clusters": len(per),
                "min_clusters": int(rule.params["min_clusters"]),
                "slips": len(rows),
                "what": "handwriting clusters under one account",
            },
            evidence=context.evidence(rows, customers=[customer_id]),
            window_start=since,
            window_end=trigger.at,
            link_confidence=min(anchors),
        )

    def _screen(self, session: Session, rule: Rule) -> tuple[set[int], set[int]]:
        """Clusters with slips of 2+ accounts and accounts with slips in 2+ clusters."""
        version = context.model_version(session)
        base = (
            select(ClusterMember.cluster_id, Bet.customer_id)
            .join(Slip, col(Slip.id) == col(ClusterMember.slip_id))
            .join(Bet, col(Bet.id) == col(Slip.bet_id))
            .join(WriterCluster, col(WriterCluster.id) == col(ClusterMember.cluster_id))
            .where(
                ClusterMember.model_version == version,
                WriterCluster.status == ClusterStatus.active,
                col(Bet.customer_id).is_not(None),
            )
            .distinct()
            .subquery()
        )
        clusters = session.exec(
            select(base.c.cluster_id)
            .group_by(base.c.cluster_id)
            .having(func.count() >= int(rule.params["min_accounts"]))
        ).all()
        customers = session.exec(
            select(base.c.customer_id)
            .group_by(base.c.customer_id)
            .having(func.count() >= int(rule.params["min_clusters"]))
        ).all()
        return {int(c) for c in clusters}, {int(c) for c in customers}


KIND = LinkedAccounts()
