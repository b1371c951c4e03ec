"""Rule kind 3: stake-factor evasion.

A factored (stake factor below ``factor_below``) or restricted (sports or price types)
customer's handwriting cluster betting under other accounts or anonymously above that
customer's own limit: ``stake_factor x max_stake_gbp`` per bet, or any stake on a restricted
sport (counted as ``restricted_ratio`` times the limit).  Value: the largest ratio of a
bet's stake to the customer's limit.  Pivot: the factored customer.
"""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, select

from rules import context
from rules.kinds._links import (
    customers_of_cluster,
    fx,
    link_confidence,
    min_value,
    trigger_cluster,
    window_of,
)
from rules.types import Finding, Rule, Trigger
from store.models import Customer


def is_factored(customer: Customer, factor_below: float) -> bool:
    return (
        customer.stake_factor < factor_below
        or bool(customer.restricted_sports)
        or bool(customer.restricted_price_types)
    )


class StakeFactorEvasion:
    name = "stake_factor_evasion"
    defaults = {
        "max_stake_gbp": 500.0,
        "factor_below": 1.0,
        "restricted_ratio": 10.0,
        "min_confidence": 0.5,
        "fx_to_gbp": {"GBP": 1.0, "EUR": 0.85},
    }
    triggers = frozenset({"slip_clustered", "schedule"})
    # the bets behind its pivots: a join changes them unless a customer's own cluster grew
    # by the customer's slip (`rules.engine.join_changes`)
    join_reads = frozenset({"accounts", "anonymous"})

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        since, until = window_of(rule, trigger, timedelta(days=30))
        factor_below = float(rule.params["factor_below"])
        targets: dict[int, tuple[Customer, list[int]]] = {}
        if trigger.kind == "schedule":
            for c in session.exec(select(Customer)).all():
                if is_factored(c, factor_below):
                    anchors = context.linked_clusters(session=session, customer_id=c.id)  # type: ignore[arg-type]
                    if anchors:
                        targets[c.id] = (c, sorted(anchors))  # type: ignore[index]
        else:
            found = trigger_cluster(session=session, trigger=trigger)
            if found is not None:
                for c in customers_of_cluster(session=session, cluster_id=found[0]):
                    if is_factored(c, factor_below):
                        targets[c.id] = (c, [found[0]])  # type: ignore[index]
        out = []
        for _, (customer, clusters) in sorted(targets.items()):
            f = self._finding(session, rule, customer, clusters, since, until)
            if f is not None and f.value >= min_value(rule):
                out.append(f)
        return out

    def _finding(
        self, session: Session, rule: Rule, customer: Customer, clusters: list[int], since, until
    ) -> Finding | None:  # type: ignore[no-untyped-def]
        p = rule.params
        cid = int(customer.id)  # type: ignore[arg-type]
        limit = float(customer.stake_factor) * float(p["max_stake_gbp"])
        restricted = {s.lower() for s in customer.restricted_sports or []}
        anchors = context.linked_clusters(session=session, customer_id=cid)
        offending = []
        for row in context.cluster_rows(
            session=session, cluster_ids=clusters, since=since, until=until
        ):
            if row.customer_id == cid or row.cluster_id not in anchors:
                continue
            conf = link_confidence(row, anchors[row.cluster_id])
            if conf < float(p["min_confidence"]):
                continue
            stake = row.stake * fx(p, row.currency)
            ratio = stake / limit if limit > 0 else float(p["restricted_ratio"])
            if row.sport.lower() in restricted:
                ratio = max(ratio, float(p["restricted_ratio"]))
            if ratio > 1.0:
                offending.append((row, conf, ratio, stake))
        if not offending:
            return None
        worst = max(offending, key=lambda o: o[2])
        rows = [o[0] for o in offending]
        return Finding(
            pivot_kind="customer",
            pivot_id=cid,
            value=round(worst[2], 4),
            figures={
                "customer_ref": customer.external_ref,
                "stake_factor": float(customer.stake_factor),
                "limit_gbp": round(limit, 2),
                "max_stake_gbp": round(worst[3], 2),
                "bets_over_limit": len(offending),
                "anonymous_bets": sum(1 for r in rows if r.customer_id is None),
                "other_accounts": len({r.customer_id for r in rows if r.customer_id is not None}),
                "restricted_sports": ", ".join(sorted(restricted)) or "none",
            },
            evidence=context.evidence(rows, customers=[cid]),
            window_start=since,
            window_end=until,
            link_confidence=max(o[1] for o in offending),
        )


KIND = StakeFactorEvasion()
