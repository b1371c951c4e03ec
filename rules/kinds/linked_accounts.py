"""Rule kind 2: linked accounts and bearding.

One handwriting cluster under two or more customer accounts (someone betting through other
people's accounts: "bearding", named in Gambling Commission enforcement cases), or one
account whose slips fall in two or more clusters of different writers (several writers
behind one account).  Value: the number of accounts sharing the cluster (pivot: the cluster)
or the number of different writers under the account (pivot: the customer).  Link
confidence: the weakest of the accounts' strongest memberships, since every account must be
tied in for the finding to hold.

Two clusters under one account are usually one writer whose slips the clusterer split:
its operating point keeps pairwise precision at 0.98 and links only part of each writer's
slips (the demo's four "clusters under one account" alerts were all such splits, their
slips' mean cosine 0.40-0.43).  So clusters count as different writers only when the
account's slips in them are far apart: mean cosine below ``max_cluster_similarity``; unset
(the default), the active model's calibrated bound (`cv.cluster.distinct_writers_bound`,
measured on its fit folds; the shipped model's 0.1635: one writer's slips split in two fall
below it for 9.1 % of the 77 held-out real-handwriting writers, 1.7 % of 60 held-out
generated ones), else :data:`FALLBACK_MAX_CLUSTER_SIMILARITY` (0.2) for a model calibrated
before session 14 (at 0.2: 20.8 % of the held-out real-handwriting writers).
Fit folds flatter real handwriting (0.2 let 5.6 % of the shipped model's fit-fold UNIPEN
writers' halves through, and 20.8 % of held-out ones), hence a calibration of its own
(bench/ACCURACY.md, session 14).  Clusters whose slips have no stored vector of the active
model count as different writers.
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
    defaults = {
        "min_accounts": 2,
        "min_clusters": 2,
        "min_slips_per_account": 1,
        # None: the active model's calibrated bound (a number here overrides it)
        "max_cluster_similarity": None,
    }
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
        bound = max_cluster_similarity(session, rule)
        writers = _distinct_writers(session, per, bound)
        if writers < int(rule.params["min_clusters"]):
            return None  # one writer's slips split over clusters
        anchors = [max(r.confidence or 0.0 for r in rs) for rs in per.values()]
        return Finding(
            pivot_kind="customer",
            pivot_id=customer_id,
            value=float(writers),
            figures={
                "clusters": len(per),
                "writers": writers,
                "min_clusters": int(rule.params["min_clusters"]),
                "slips": len(rows),
                "max_cluster_similarity": round(bound, 4),
                "what": "handwriting clusters of different writers under one account",
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

#: The bound for a model whose calibration has none: chosen in session 12 on its fit folds
#: (one writer's halves below 0.2 for 2.4 % of writers), before models carried their own.
FALLBACK_MAX_CLUSTER_SIMILARITY = 0.2


def max_cluster_similarity(session: Session, rule: Rule) -> float:
    """The rule's ``max_cluster_similarity``, else the active model's calibrated bound, else
    the fallback: a model's cosines have their own scale, so a fixed number would not survive
    a refit."""
    value = rule.params.get("max_cluster_similarity")
    if value is None:
        value = context.distinct_writers_bound(session)
    return float(FALLBACK_MAX_CLUSTER_SIMILARITY if value is None else value)


def _distinct_writers(
    session: Session, per: dict[int, list[context.BetRow]], max_similarity: float
) -> int:
    """How many writers the account's slips in these clusters make: clusters whose slips'
    mean cosine (active model's vectors) reaches ``max_similarity`` count as one writer."""
    import numpy as np

    from store.clustering import Embedding

    slip_cluster = {r.slip_id: c for c, rs in per.items() for r in rs if r.slip_id is not None}
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    if slip_cluster:
        found = session.exec(
            select(Embedding.slip_id, Embedding.vector).where(
                Embedding.model_version == context.model_version(session),
                col(Embedding.slip_id).in_(sorted(slip_cluster)),
            )
        ).all()
        for slip_id, blob in found:
            v = np.frombuffer(blob, dtype="<f4").astype(np.float64)
            v = v / max(float(np.linalg.norm(v)), 1e-12)
            c = slip_cluster[slip_id]
            sums[c] = sums.get(c, 0.0) + v
            counts[c] = counts.get(c, 0) + 1
    parent = {c: c for c in per}

    def root(c: int) -> int:
        while parent[c] != c:
            c = parent[c]
        return c

    known = sorted(sums)
    for i, a in enumerate(known):
        for b in known[i + 1 :]:
            # the mean cosine over every slip pair of the two clusters
            if float(sums[a] @ sums[b]) / (counts[a] * counts[b]) >= max_similarity:
                parent[root(b)] = root(a)
    return len({root(c) for c in per})
