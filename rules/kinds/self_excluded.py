"""Rule kind 1: a self-excluded customer betting.

Fires when a bet is placed on the account of a self-excluded customer, or when a slip joins
a handwriting cluster that holds a slip of an active self-excluded customer (UK Gambling
Commission LCCP SR 3.5.3: operators must take all reasonable steps to refuse service to a
self-excluded customer; paper slips at the counter are where a changed name slips through).
The link confidence rides on the finding, so the engine sends a possible match (below its
floor, default 0.9) one level down to link verification; below ``min_confidence`` nothing.
Value: the number of bets tied to the customer in the window, counted from the start of the
exclusion in the self-exclusion register when the customer has an entry in force.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, select

from rules import context
from rules.kinds._links import customers_of_cluster, link_confidence, trigger_cluster, window_of
from rules.types import Finding, Rule, Trigger
from store.models import Customer, CustomerStatus, as_utc


class SelfExcluded:
    name = "self_excluded"
    defaults = {"min_confidence": 0.7}
    triggers = frozenset({"bet_placed", "slip_clustered", "schedule"})
    # the bets behind its pivots: a join changes them unless a customer's own cluster grew
    # by the customer's slip (`rules.engine.join_changes`)
    join_reads = frozenset({"accounts", "anonymous"})

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        since, until = window_of(rule, trigger, timedelta(days=30))
        candidates: dict[int, Customer] = {}
        clusters: dict[int, list[int]] = {}  # customer id -> clusters to look in
        if trigger.kind == "schedule":
            for c in session.exec(
                select(Customer).where(Customer.status == CustomerStatus.self_excluded)
            ).all():
                candidates[c.id] = c  # type: ignore[index]
                clusters[c.id] = sorted(context.linked_clusters(session=session, customer_id=c.id))  # type: ignore[arg-type,index]
        else:
            # the cluster's customers first: the bet's own customer is usually one of them,
            # and then already in the session
            found = trigger_cluster(session=session, trigger=trigger)
            if found is not None:
                for c in customers_of_cluster(session=session, cluster_id=found[0]):
                    if c.status == CustomerStatus.self_excluded:
                        candidates[c.id] = c  # type: ignore[index]
                        clusters.setdefault(c.id, []).append(found[0])  # type: ignore[arg-type]
            if trigger.bet_id is not None:
                bet = context.bet(session=session, bet_id=trigger.bet_id)
                if bet is not None and bet.customer_id is not None:
                    own = session.get(Customer, bet.customer_id)
                    if own is not None and own.status == CustomerStatus.self_excluded:
                        candidates[own.id] = own  # type: ignore[index]
                        clusters.setdefault(own.id, [])  # type: ignore[arg-type]
        out = []
        for cid, customer in sorted(candidates.items()):
            f = self._finding(session, rule, customer, clusters.get(cid, []), since, until)
            if f is not None:
                out.append(f)
        return out

    def _finding(
        self, session: Session, rule: Rule, customer: Customer, cluster_ids: list[int], since, until
    ) -> Finding | None:  # type: ignore[no-untyped-def]
        cid = int(customer.id)  # type: ignore[arg-type]
        # only bets since the exclusion took effect count (the register's start date, when the
        # customer has an entry in force; otherwise the whole window)
        registered, started = exclusion_start(session, cid, until)
        if registered and started is None:
            return None  # the register says the exclusion was not in force then
        if started is not None:
            since = max(since, started)
        own = context.customer_rows(session=session, customer_id=cid, since=since, until=until)
        anchors = context.linked_clusters(session=session, customer_id=cid)
        linked = []
        for row in context.cluster_rows(
            session=session, cluster_ids=cluster_ids, since=since, until=until
        ):
            if row.customer_id == cid or row.cluster_id not in anchors:
                continue
            conf = link_confidence(row, anchors[row.cluster_id])
            if conf >= float(rule.params["min_confidence"]):
                linked.append((row, conf))
        if not own and not linked:
            return None
        rows = own + [r for r, _ in linked]
        # own-account bets need no handwriting link; otherwise the best link is the evidence
        best = None if own else max(c for _, c in linked)
        figures: dict[str, float | int | str] = {
            "customer_ref": customer.external_ref,
            "own_account_bets": len(own),
            "linked_bets": len(linked),
            "stake_total": round(sum(r.stake for r in rows), 2),
            "min_confidence": float(rule.params["min_confidence"]),
        }
        if best is not None:
            figures["link_confidence"] = round(best, 4)
        return Finding(
            pivot_kind="customer",
            pivot_id=cid,
            value=float(len(rows)),
            figures=figures,
            evidence=context.evidence(rows, customers=[cid]),
            window_start=since,
            window_end=until,
            link_confidence=best,
        )


def exclusion_start(
    session: Session, customer_id: int, at: datetime
) -> tuple[bool, datetime | None]:
    """(whether the register has entries for the customer, the start of the one in force at
    ``at`` or None)."""
    try:
        from store.trading import SelfExclusion
    except ImportError:  # the register is not installed: the status alone decides
        return False, None
    rows = session.exec(
        select(SelfExclusion.starts_on, SelfExclusion.ends_on).where(
            SelfExclusion.customer_id == customer_id
        )
    ).all()
    starts = [
        as_utc(start)
        for start, end in rows
        if as_utc(start) <= at and (end is None or as_utc(end) > at)
    ]
    return bool(rows), (min(starts) if starts else None)


KIND = SelfExcluded()
