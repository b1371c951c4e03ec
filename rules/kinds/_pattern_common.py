"""Shared queries of the betting-pattern kinds (rules 6-16): pivots, windows, evidence.

Skipped by `rules.kinds.discover` (leading underscore). Everything here reads; nothing writes.

A *pivot* is what a finding is about: the customer when the bet names one, otherwise the
handwriting cluster of the bet's slip. A customer pivot's bets are the customer's own bets plus
those whose slips sit in a cluster holding one of the customer's slips; a cluster pivot's bets
are those whose slips sit in the cluster. An event run reads a pivot's bets once over its
horizon (`pivot_rows`); every rule's windows, totals and medians are cut from that read.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, union_all
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from rules import context
from rules.kinds._links import customers_of_cluster
from rules.types import Rule, Trigger
from store.clustering import ClusterMember, ClusterStatus, WriterCluster
from store.models import Bet, BetStatus, Customer, Leg, Slip, as_utc

# Settled with a result that moved money; void bets are refunded and count neither as stakes
# nor as losses.
SETTLED = (BetStatus.won, BetStatus.lost, BetStatus.placed)
NOT_VOID = col(Bet.status) != BetStatus.void


# ---------------------------------------------------------------- small helpers
def params_of(rule: Rule, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The kind's defaults overridden by the rule's params (the loader merges too; a `Rule`
    built by hand may carry only some keys)."""
    return {**defaults, **dict(rule.params)}


def window_of(rule: Rule, default: timedelta) -> timedelta:
    return rule.window if rule.window is not None else default


def utc(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they are UTC."""
    return as_utc(value)


def money(value: Any) -> float:
    return round(float(value or 0.0), 2)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def _cache(session: Session) -> dict[Any, Any]:
    """This engine run's look-ups shared by the pattern kinds (bet, legs, pivot, linked
    clusters), kept in `rules.context.memo`, which the engine clears at the start of every run;
    the weak identity map of the session would otherwise reload the bet for every kind."""
    return context.memo(session, ("rules.kinds.patterns",), dict)


# ---------------------------------------------------------------- pivots
def pivot_rows(
    session: Session, pivot_kind: str, pivot_id: int, *, since: datetime, until: datetime
) -> list[context.BetRow]:
    """The pivot's bets placed in ``(since, until]``, oldest first.

    Read through `rules.context.bet_rows_of_pivot`: in an event run the first rule to ask
    loads the run's whole horizon (the customer's own bets, the customer's linked clusters,
    and those clusters' bets: three indexed queries, or one for a cluster) and every other
    window of every rule is cut from it in memory.  (A single ``customer_id = :c OR id IN
    (...)`` condition, the earlier form, cost one aggregate query per rule and window.)
    """
    rows = context.bet_rows_of_pivot(
        session=session, pivot_kind=pivot_kind, pivot_id=pivot_id, since=since, until=until
    )
    return [r for r in rows if r.placed_at > since]


def pivot_ids_clause(
    session: Session, pivot_kind: str, pivot_id: int, *, since: datetime, until: datetime
) -> ColumnElement[bool]:
    """SQL condition on ``bets`` selecting the pivot's bets placed in ``(since, until]`` by
    id (for the kinds that join legs): a primary-key lookup."""
    ids = [r.bet_id for r in pivot_rows(session, pivot_kind, pivot_id, since=since, until=until)]
    return col(Bet.id).in_(ids)


def linked_clusters(session: Session, customer_id: int) -> list[int]:
    """Active clusters holding at least one of the customer's own slips."""
    return sorted(context.linked_clusters(session=session, customer_id=customer_id))


def pivot_of_bet(session: Session, bet: Bet) -> tuple[str, int] | None:
    """The customer when known, otherwise the handwriting cluster of the bet's slip."""
    if bet.customer_id is not None:
        return "customer", bet.customer_id
    return context.pivot_of_bet(session=session, bet_id=bet.id)  # type: ignore[arg-type]


def trigger_bet(session: Session, trigger: Trigger) -> Bet | None:
    """The bet behind a trigger: ``bet_id``, or the bet of ``slip_id``.

    Held for the engine run (see `_cache`).
    """
    cache = _cache(session)
    key = ("bet", trigger)
    if key not in cache:
        bet = None
        if trigger.bet_id is not None:
            bet = context.bet(session=session, bet_id=trigger.bet_id)
        elif trigger.slip_id is not None:
            slip = session.get(Slip, trigger.slip_id)
            bet = session.get(Bet, slip.bet_id) if slip is not None else None
        cache[key] = bet
    return cache[key]  # type: ignore[no-any-return]


def bet_legs(session: Session, bet_id: int) -> list[Leg]:
    """The legs of a bet in position order (held for the engine run, like `trigger_bet`)."""
    cache = _cache(session)
    key = ("legs", bet_id)
    if key not in cache:
        cache[key] = list(
            session.exec(select(Leg).where(Leg.bet_id == bet_id).order_by(col(Leg.position))).all()
        )
    return list(cache[key])


def event_pivot(session: Session, trigger: Trigger) -> tuple[str, int, datetime, Bet | None] | None:
    """(pivot kind, pivot id, anchor time, bet) of an event trigger.

    The anchor is the bet's placement time (so a back-test over history sees the windows the
    bet saw), else the trigger time.
    """
    bet = trigger_bet(session, trigger)
    if bet is not None:
        cache = _cache(session)
        key = ("pivot", trigger)
        if key not in cache:
            cache[key] = pivot_of_bet(session, bet)
        pivot = cache[key]
        if pivot is None:
            return None
        return pivot[0], pivot[1], utc(bet.placed_at), bet
    if trigger.customer_id is not None:
        return "customer", trigger.customer_id, utc(trigger.at), None
    if trigger.cluster_id is not None:
        return "cluster", trigger.cluster_id, utc(trigger.at), None
    return None


def event_pivots(session: Session, trigger: Trigger) -> list[tuple[str, int, datetime, Bet | None]]:
    """`event_pivot`, plus for ``slip_clustered`` the known customers of the cluster the slip
    joined: their totals now include the cluster's bets (a customer pivot's linked bets)."""
    found = event_pivot(session, trigger)
    out = [found] if found is not None else []
    if trigger.kind != "slip_clustered":
        return out
    cluster_id = trigger.cluster_id
    if cluster_id is None and found is not None and found[0] == "cluster":
        cluster_id = found[1]
    if cluster_id is None:
        return out
    anchor = found[2] if found is not None else utc(trigger.at)
    bet = found[3] if found is not None else None
    seen = {(k, i) for k, i, _, _ in out}
    known = customers_of_cluster(session=session, cluster_id=cluster_id)  # held for the run
    for customer_id in sorted(int(c.id) for c in known):  # type: ignore[arg-type]
        if ("customer", customer_id) not in seen:
            out.append(("customer", customer_id, anchor, bet))
    return out


def schedule_pivots(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    where: Iterable[ColumnElement[bool]] = (),
    having: ColumnElement[bool] | None = None,
) -> list[tuple[str, int]]:
    """Pivots worth evaluating in a scheduled screening of ``[since, until]``: those whose
    bets in the window (filtered by ``where``) pass ``having``, an aggregate over ``bets``.

    Aggregate queries, so that a screening over a million bets evaluates only the pivots near
    a threshold: every customer over their own bets; the customers whose active clusters hold
    bets in the window that are not their own, over their own bets plus those; and clusters
    holding an anonymous bet in the window (the pivot of an anonymous bet) over all their
    bets.
    """
    version = context.model_version(session)
    conds = [col(Bet.placed_at) >= since, col(Bet.placed_at) <= until, *where]
    link = (
        select(col(Bet.customer_id).label("customer_id"),
               col(ClusterMember.cluster_id).label("cluster_id"))
        .join(Slip, col(Slip.bet_id) == col(Bet.id))
        .join(ClusterMember, col(ClusterMember.slip_id) == col(Slip.id))
        .join(WriterCluster, col(WriterCluster.id) == col(ClusterMember.cluster_id))
        .where(col(Bet.customer_id).is_not(None), ClusterMember.model_version == version,
               WriterCluster.status == ClusterStatus.active)
        .distinct()
        .subquery("link")
    )  # fmt: skip
    member, slip, bet = aliased(ClusterMember), aliased(Slip), aliased(Bet)
    # the bets a link adds to a customer in the window: bets of the customer's clusters that
    # are not the customer's own (anonymous, or another account's)
    extra = (
        select(link.c.customer_id.label("pivot_id"), col(bet.id).label("bet_id"))
        .select_from(link)
        .join(member, (col(member.cluster_id) == link.c.cluster_id)
              & (col(member.model_version) == version))
        .join(slip, col(slip.id) == col(member.slip_id))
        .join(bet, col(bet.id) == col(slip.bet_id))
        .where(col(bet.customer_id).is_distinct_from(link.c.customer_id),
               col(bet.placed_at) >= since, col(bet.placed_at) <= until)
        .cte("extra")
    )  # fmt: skip
    # those customers' own bets plus the extra ones: disjoint (a slip sits in one cluster),
    # so UNION ALL, with no sort to remove duplicates
    own: Any = select(col(Bet.customer_id).label("pivot_id"), col(Bet.id).label("bet_id")).where(
        col(Bet.customer_id).in_(select(extra.c.pivot_id)), *conds
    )
    pairs = union_all(own, select(extra.c.pivot_id, extra.c.bet_id)).subquery("pairs")
    linked_customers = (
        select(pairs.c.pivot_id)
        .join(Bet, col(Bet.id) == pairs.c.bet_id)
        .where(*conds)
        .group_by(pairs.c.pivot_id)
    )
    # every other customer: one hash aggregate over their own bets (exact when unlinked)
    customers = (
        select(col(Bet.customer_id))
        .where(col(Bet.customer_id).is_not(None), *conds)
        .group_by(col(Bet.customer_id))
    )
    clusters = (
        select(col(ClusterMember.cluster_id))
        .join(Slip, col(Slip.id) == col(ClusterMember.slip_id))
        .join(Bet, col(Bet.id) == col(Slip.bet_id))
        .where(col(ClusterMember.cluster_id).is_not(None), ClusterMember.model_version == version,
               *conds)
        .group_by(col(ClusterMember.cluster_id))
        .having(func.count(col(Bet.id)).filter(col(Bet.customer_id).is_(None)) > 0)
    )  # fmt: skip
    if having is not None:
        customers = customers.having(having)
        linked_customers = linked_customers.having(having)
        clusters = clusters.having(having)
    pivots = [("customer", int(c)) for c in session.exec(customers).all() if c is not None]
    pivots += [("customer", int(c)) for c in session.exec(linked_customers).all() if c is not None]
    pivots += [("cluster", int(c)) for c in session.exec(clusters).all() if c is not None]
    return sorted(set(pivots))


def pivots_to_evaluate(
    session: Session,
    trigger: Trigger,
    *,
    since: datetime,
    until: datetime,
    where: Iterable[ColumnElement[bool]] = (),
    having: ColumnElement[bool] | None = None,
) -> list[tuple[str, int, datetime, Bet | None]]:
    """Event triggers: the one pivot of the trigger. Schedule triggers: one pivot named by the
    trigger (``customer_id`` / ``cluster_id``), else every candidate of `schedule_pivots`."""
    if trigger.kind != "schedule" or trigger.bet_id is not None:
        return event_pivots(session, trigger)
    at = utc(trigger.at)
    if trigger.customer_id is not None:
        return [("customer", trigger.customer_id, at, None)]
    if trigger.cluster_id is not None:
        return [("cluster", trigger.cluster_id, at, None)]
    return [
        (kind, pid, at, None)
        for kind, pid in schedule_pivots(
            session, since=since, until=until, where=where, having=having
        )  # fmt: skip
    ]


def customer_risk_category(session: Session, customer_id: int) -> str | None:
    return session.exec(select(Customer.risk_category).where(Customer.id == customer_id)).first()


# ---------------------------------------------------------------- evidence
def evidence_of(
    session: Session,
    bet_ids: Sequence[int],
    *,
    pivot_kind: str | None = None,
    pivot_id: int | None = None,
    cap: int = 200,
) -> tuple[dict[str, list[int]], float | None]:
    """Evidence ids around ``bet_ids`` (kept in the given order, at most ``cap`` bets) and the
    link confidence: the lowest membership confidence of the handwriting links the finding
    rests on (bets of a cluster pivot; a customer pivot's bets that are not the customer's
    own), None when it rests on no link."""
    ids = list(dict.fromkeys(int(b) for b in bet_ids))[: max(cap, 0)]
    if not ids:
        return {"bets": []}, None
    rows = session.exec(
        select(Bet.id, Bet.customer_id, Bet.shop_id, Slip.id)
        .join(Slip, col(Slip.bet_id) == col(Bet.id), isouter=True)
        .where(col(Bet.id).in_(ids))
    ).all()
    customers = sorted({int(c) for _, c, _, _ in rows if c is not None})
    shops = sorted({int(s) for _, _, s, _ in rows if s is not None})
    slip_of = {int(b): int(s) for b, _, _, s in rows if b is not None and s is not None}
    customer_of = {int(b): c for b, c, _, _ in rows if b is not None}
    evidence: dict[str, list[int]] = {"bets": ids, "customers": customers, "shops": shops}
    if slip_of:
        evidence["slips"] = [slip_of[b] for b in ids if b in slip_of]
    confidence: float | None = None
    if slip_of:
        members = session.exec(
            select(ClusterMember.slip_id, ClusterMember.cluster_id, ClusterMember.confidence).where(
                col(ClusterMember.slip_id).in_(list(slip_of.values())),
                ClusterMember.model_version == context.model_version(session),
                col(ClusterMember.cluster_id).is_not(None),
            )
        ).all()
        by_slip = {int(s): (int(c), float(conf)) for s, c, conf in members if c is not None}
        clusters = sorted({c for c, _ in by_slip.values()})
        if clusters:
            evidence["clusters"] = clusters
        linked = []
        for bet_id, slip_id in slip_of.items():
            if slip_id not in by_slip:
                continue
            if pivot_kind == "cluster" and len(ids) > 1:
                linked.append(by_slip[slip_id][1])
            elif pivot_kind == "customer" and customer_of.get(bet_id) != pivot_id:
                linked.append(by_slip[slip_id][1])
        if linked:
            confidence = min(linked)
    return evidence, confidence


def evidence_from(
    bet_ids: Sequence[int],
    known: Mapping[int, tuple[int | None, int | None, int | None, int | None]],
    *,
    cap: int = 200,
) -> dict[str, list[int]] | None:
    """`evidence_of` without a link confidence, from rows a kind has already read: bet id ->
    (customer, shop, slip, cluster of the slip in the active model); None when a bet is not
    among them."""
    ids = list(dict.fromkeys(int(b) for b in bet_ids))[: max(cap, 0)]
    if not ids:
        return {"bets": []}
    if any(b not in known for b in ids):
        return None
    rows = [known[b] for b in ids]
    evidence: dict[str, list[int]] = {
        "bets": ids,
        "customers": sorted({int(c) for c, _, _, _ in rows if c is not None}),
        "shops": sorted({int(s) for _, s, _, _ in rows if s is not None}),
    }
    slips = [int(known[b][2]) for b in ids if known[b][2] is not None]  # type: ignore[arg-type]
    if slips:
        evidence["slips"] = slips
    clusters = sorted({int(k) for _, _, s, k in rows if s is not None and k is not None})
    if clusters:
        evidence["clusters"] = clusters
    return evidence


def ratio(value: float, threshold: float) -> float:
    """``value / threshold``; a threshold of 0 disables the criterion (ratio 0)."""
    return float(value) / float(threshold) if threshold > 0 else 0.0


def crossed(parts: Iterable[tuple[str, bool]]) -> str:
    """'stakes and net loss' style text naming the criteria that crossed their threshold."""
    names = [name for name, hit in parts if hit]
    return " and ".join(names) if names else "none"


def pivot_sums(
    session: Session,
    pivot_kind: str,
    pivot_id: int,
    *,
    since: datetime,
    until: datetime,
    fx_to_gbp: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Staked (non-void bets) and net loss (settled bets) in GBP of the pivot's bets placed in
    ``(since, until]``, aggregated in SQL per currency.

    ``fx_to_gbp`` maps a currency code to its GBP rate; an unlisted currency counts at par
    (GBP shops are the norm; a missing rate must not hide a bet).
    """
    return pivot_sums_since(session, pivot_kind, pivot_id, sinces=[since], until=until,
                            fx_to_gbp=fx_to_gbp)[0]  # fmt: skip


def pivot_sums_since(
    session: Session,
    pivot_kind: str,
    pivot_id: int,
    *,
    sinces: Sequence[datetime],
    until: datetime,
    fx_to_gbp: Mapping[str, float] | None = None,
) -> list[dict[str, float]]:
    """`pivot_sums` for several windows ``(since, until]`` sharing one end, from one read of
    the pivot's bets (`pivot_rows`)."""
    rows = pivot_rows(session, pivot_kind, pivot_id, since=min(sinces), until=until)
    rates = {str(k).upper(): float(v) for k, v in (fx_to_gbp or {}).items()}
    out = []
    for since in sinces:
        staked = settled_staked = returns = 0.0
        bets = 0
        for r in rows:
            if r.placed_at <= since or r.status == BetStatus.void:
                continue
            rate = rates.get(r.currency.upper(), 1.0)
            staked += r.stake * rate
            bets += 1
            if r.status in SETTLED:
                settled_staked += r.stake * rate
                returns += (r.returns or 0.0) * rate
        out.append({
            "staked": money(staked),
            "settled_staked": money(settled_staked),
            "returns": money(returns),
            "net_loss": money(settled_staked - returns),
            "bets": bets,
        })  # fmt: skip
    return out


def pivot_bet_ids(
    session: Session,
    pivot_kind: str,
    pivot_id: int,
    *,
    since: datetime,
    until: datetime,
    limit: int = 200,
) -> list[int]:
    """The pivot's non-void bets placed in ``(since, until]``, newest first, at most ``limit``."""
    rows = pivot_rows(session, pivot_kind, pivot_id, since=since, until=until)
    live = [r for r in rows if r.status != BetStatus.void]
    live.sort(key=lambda r: (r.placed_at, r.bet_id), reverse=True)
    return [r.bet_id for r in live[: max(limit, 0)]]
