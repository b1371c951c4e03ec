"""The counter's pre-acceptance check: accept, refer or reject a bet before it is taken."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import Select, bindparam, func, literal_column, true, union
from sqlalchemy import select as sa_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from store.clustering import (
    ClusterMember,
    Embedding,
    ModelActivation,
    customer_clusters_query,
)
from store.exposure import liability_statement
from store.models import (
    BET_LINES,
    Bet,
    BetCreate,
    BetStatus,
    Customer,
    CustomerStatus,
    Leg,
    Slip,
    selection_key,
    utcnow,
)


@dataclass(frozen=True)
class CheckLimits:
    """House limits before a customer's stake factor is applied (configurable in Settings)."""

    max_stake: float = 500.0
    max_potential_win: float = 25_000.0
    max_open_stake: float = 2_000.0
    max_selection_liability: float = 10_000.0
    repeat_bets: int = 3
    repeat_window: timedelta = timedelta(minutes=10)


@dataclass
class CheckResult:
    decision: str  # accept | refer | reject
    max_stake: float
    reasons: list[str] = field(default_factory=list)
    customer_ids: list[int] = field(default_factory=list)
    cluster_id: int | None = None
    link_confidence: float | None = None
    stake_factor: float = 1.0

    def refer(self, reason: str) -> None:
        self.reasons.append(reason)
        if self.decision == "accept":
            self.decision = "refer"

    def reject(self, reason: str) -> None:
        self.reasons.append(reason)
        self.decision = "reject"


def check_bet(
    *,
    session: Session,
    bet_in: BetCreate,
    limits: CheckLimits,
    linked_customer_ids: list[int] | None = None,
    cluster_id: int | None = None,
    link_confidence: float | None = None,
    matched_bet_ids: list[int] | None = None,
) -> CheckResult:
    """Decide on a bet about to be taken.

    ``linked_customer_ids`` are the accounts whose handwriting matches the slip (when a slip
    was given); with the accounts of the writer's cluster ``cluster_id`` and those the bet's
    customer is linked to by handwriting (unless an analyst turned inheritance off, see
    ``writer_customers``) the strictest factor and any exclusion among them applies, as if
    the bet were theirs, so writing a slip under another name does not get around a limit.
    The writer's open stake and repeated bets count the bets of those accounts, of the
    cluster and of the matching slips' bets ``matched_bet_ids``, anonymous ones too.
    """
    customers = writer_customers(
        session,
        customer_id=bet_in.customer_id,
        linked_ids=linked_customer_ids or [],
        cluster_id=cluster_id,
    )
    factor = min([c.stake_factor for c in customers], default=1.0)
    result = CheckResult(
        decision="accept",
        max_stake=round(limits.max_stake * factor, 2),
        customer_ids=[c.id for c in customers if c.id is not None],
        cluster_id=cluster_id,
        link_confidence=link_confidence,
        stake_factor=factor,
    )
    lines = BET_LINES.get(bet_in.bet_type, 1) * (2 if bet_in.each_way else 1)
    total = bet_in.total_stake or bet_in.stake * lines
    for c in customers:
        linked = c.id != bet_in.customer_id
        who = f"customer {c.external_ref}" + (" (handwriting match)" if linked else "")
        if c.status == CustomerStatus.self_excluded:
            result.reject(f"{who} is self-excluded")
        elif c.status == CustomerStatus.closed:
            result.reject(f"{who} has a closed account")
        for leg in bet_in.legs:
            if leg.sport in c.restricted_sports:
                result.reject(f"{who} is restricted from {leg.sport}")
        if "SP" in c.restricted_price_types and any(leg.odds is None for leg in bet_in.legs):
            result.reject(f"{who} is restricted from starting-price bets")
        if "early" in c.restricted_price_types and any(leg.odds for leg in bet_in.legs):
            result.refer(f"{who} is restricted from early prices")
    if bet_in.stake > result.max_stake:
        result.refer(
            f"unit stake {bet_in.stake:.2f} is over the maximum {result.max_stake:.2f}"
            + (f" (stake factor {factor:g})" if factor != 1.0 else "")
        )
    odds = [leg.odds for leg in bet_in.legs if leg.odds is not None]
    if len(odds) == len(bet_in.legs):
        win = bet_in.stake * _product(odds) - bet_in.stake
        max_win = limits.max_potential_win * factor
        if win > max_win:
            result.refer(f"potential win {win:.2f} is over the maximum {max_win:.2f}")
            result.max_stake = min(
                result.max_stake, round(max_win / max(_product(odds) - 1, 1e-9), 2)
            )
    figures = _figures(
        session,
        bet_in,
        customer_ids=result.customer_ids,
        cluster_id=cluster_id,
        bet_ids=matched_bet_ids or [],
        since=utcnow() - limits.repeat_window,
    )
    if "open_stake" in figures:
        open_stake = float(figures["open_stake"] or 0)
        whose = "open stakes" if cluster_id is None else "open stakes of the writer's cluster"
        if open_stake + total > limits.max_open_stake * factor:
            result.refer(
                f"{whose} {open_stake:.2f} + {total:.2f} would pass the limit "
                f"{limits.max_open_stake * factor:.2f}"
            )
        for i, leg in enumerate(bet_in.legs):
            recent = int(figures[f"recent_{i}"] or 0)
            if recent >= limits.repeat_bets:
                minutes = int(limits.repeat_window.total_seconds() // 60)
                result.refer(f"{recent} bets on {leg.selection} in the last {minutes} minutes")
    for i, leg in enumerate(bet_in.legs):
        if leg.odds is None:
            continue
        current = float(figures[f"liability_{i}"] or 0)
        added = bet_in.stake * leg.odds - total
        if current + added > limits.max_selection_liability:
            result.refer(
                f"liability on {leg.selection} would reach {current + added:.2f}, over "
                f"{limits.max_selection_liability:.2f}"
            )
    if result.decision == "reject":
        result.max_stake = 0.0
    return result


def writer_customers(
    session: Session,
    *,
    customer_id: int | None,
    linked_ids: list[int],
    cluster_id: int | None = None,
) -> list[Customer]:
    """The bet's customer first, then the other accounts whose limits apply, by id: the
    ``linked_ids`` (matched by the slip), the accounts of the writer's cluster ``cluster_id``
    (the cluster the slip would join) and, unless an analyst turned inheritance off for the
    bet's customer, the accounts sharing an active handwriting cluster of the active model
    with its known slips (``store.factoring.linked_customer_ids``).  One query: on a busy
    server every round trip waits for a core."""
    given = list(dict.fromkeys(i for i in [customer_id, *linked_ids] if i))
    if not given and cluster_id is None:
        return []
    statement = _customers_statement(
        inherit=customer_id is not None, cluster=cluster_id is not None
    )
    params = {"ids": given, "customer_id": customer_id, "cluster_id": cluster_id}
    rows = session.exec(statement, params=params).all()
    return sorted(rows, key=lambda c: (c.id != customer_id, c.id))


# The check's statements are built once per shape, with bind parameters: building and keying
# a SQLAlchemy statement of this size costs more server CPU than running it.


@cache
def _customers_statement(*, inherit: bool, cluster: bool) -> SelectOfScalar[Customer]:
    """Customers ``ids``, with ``cluster`` those of cluster ``cluster_id``'s slips and with
    ``inherit`` those ``customer_id`` inherits from."""
    ids: Any = select(Customer.id).where(col(Customer.id).in_(bindparam("ids", expanding=True)))
    if cluster:
        ids = union(
            ids,
            select(Bet.customer_id)
            .join(Slip, col(Slip.bet_id) == col(Bet.id))
            .join(ClusterMember, col(ClusterMember.slip_id) == col(Slip.id))
            .where(ClusterMember.cluster_id == bindparam("cluster_id")),
        )
    if inherit:
        # a union, not an OR of two INs: PostgreSQL answers an OR with a scan of customers
        customer_id: Any = bindparam("customer_id")
        inherits = (
            select(Customer.inherit_linked_factor)
            .where(Customer.id == customer_id)
            .scalar_subquery()
        )
        ids = union(ids, _inherited_ids(customer_id).where(inherits == true()))
    return select(Customer).where(col(Customer.id).in_(ids))


def _inherited_ids(customer_id: Any) -> Select:  # type: ignore[type-arg]
    """Customers of the active clusters (active model) holding a known slip of the customer,
    as ``store.factoring.linked_customer_ids`` finds them, as one SQL set."""
    # the active model: the latest activation, else the newest embedding's version.  LIMIT 1
    # written out, not a parameter: PostgreSQL plans a prepared statement once (a generic
    # plan) only when it costs no more than planning per value, and LIMIT $n costs much more
    one: Any = literal_column("1")
    version = func.coalesce(
        select(ModelActivation.version)
        .order_by(col(ModelActivation.id).desc())
        .limit(one)
        .scalar_subquery(),
        select(Embedding.model_version)
        .order_by(col(Embedding.id).desc())
        .limit(one)
        .scalar_subquery(),
        "",
    )
    clusters = customer_clusters_query(customer_id, version)
    member, slip, bet = aliased(ClusterMember), aliased(Slip), aliased(Bet)
    return (
        select(bet.customer_id)
        .join(slip, col(slip.bet_id) == col(bet.id))
        .join(member, col(member.slip_id) == col(slip.id))
        .where(col(member.cluster_id).in_(clusters), col(bet.customer_id).is_not(None))
    )


def _figures(
    session: Session,
    bet_in: BetCreate,
    *,
    customer_ids: list[int],
    cluster_id: int | None,
    bet_ids: list[int],
    since: datetime,
) -> dict[str, Any]:
    """Every figure the limits need, in one round trip to the database (on a busy server each
    round trip waits for a core): the open stake of the writer's bets (the accounts' bets,
    the cluster's slips' bets and the matched slips' bets), their recent bets on each leg's
    selection, and the open liability on each priced leg's selection in its event."""
    writer = (bool(customer_ids), cluster_id is not None, bool(bet_ids))
    legs = tuple(
        (leg.odds is not None, "ref" if leg.event_ref else "name" if leg.event else "")
        for leg in bet_in.legs
    )
    built = _figures_statement(writer if any(writer) else None, legs)
    if built is None:
        return {}
    statement, names = built
    params: dict[str, Any] = {
        "customer_ids": customer_ids, "cluster_id": cluster_id, "bet_ids": bet_ids, "since": since
    }  # fmt: skip
    for i, leg in enumerate(bet_in.legs):
        params |= {f"selection_{i}": selection_key(leg.selection), f"event_ref_{i}": leg.event_ref,
                   f"event_{i}": leg.event.lower()}  # fmt: skip
    row = session.execute(statement, params).one()
    return dict(zip(names, row, strict=True))


@lru_cache(maxsize=256)
def _figures_statement(
    writer: tuple[bool, bool, bool] | None, legs: tuple[tuple[bool, str], ...]
) -> tuple[Select, tuple[str, ...]] | None:  # type: ignore[type-arg]
    """The figures' statement for a shape: which sets identify the writer's bets (accounts,
    cluster, matched bets; None: nothing does), and per leg whether it is priced and how its
    event is named (feed id, name or neither)."""
    queries: dict[str, Any] = {}
    if writer is not None:
        writer_bets = _writer_bets(*writer)
        queries["open_stake"] = select(func.coalesce(func.sum(Bet.total_stake), 0)).where(
            col(Bet.id).in_(writer_bets), col(Bet.status) == BetStatus.open
        )
        for i in range(len(legs)):
            queries[f"recent_{i}"] = (
                select(func.count(func.distinct(Bet.id)))
                .join(Leg, col(Leg.bet_id) == col(Bet.id))
                .where(
                    col(Bet.id).in_(writer_bets),
                    col(Bet.placed_at) >= bindparam("since"),
                    col(Leg.selection_key) == bindparam(f"selection_{i}"),
                )
            )
    for i, (priced, event) in enumerate(legs):
        if priced:
            queries[f"liability_{i}"] = liability_statement(
                bindparam(f"selection_{i}"),
                event_ref=bindparam(f"event_ref_{i}") if event == "ref" else None,
                event=bindparam(f"event_{i}") if event == "name" else None,
            )
    if not queries:
        return None
    statement = sa_select(*(q.scalar_subquery() for q in queries.values()))
    return statement, tuple(queries)


def _writer_bets(by_customers: bool, by_cluster: bool, by_bets: bool) -> Select:  # type: ignore[type-arg]
    """The ids of the bets taken from this writer, as one SQL set: the accounts' bets
    (``customer_ids``), the cluster's slips' bets (``cluster_id``) and the matched slips'
    bets (``bet_ids``)."""
    parts = []
    if by_customers:
        parts.append(
            select(Bet.id).where(
                col(Bet.customer_id).in_(bindparam("customer_ids", expanding=True))
            )
        )
    if by_cluster:
        parts.append(
            select(Slip.bet_id)
            .join(ClusterMember, col(ClusterMember.slip_id) == col(Slip.id))
            .where(ClusterMember.cluster_id == bindparam("cluster_id"))
        )
    if by_bets:
        parts.append(select(Bet.id).where(col(Bet.id).in_(bindparam("bet_ids", expanding=True))))
    return parts[0] if len(parts) == 1 else union(*parts)  # type: ignore[return-value]


def _product(values: list[float]) -> float:
    out = 1.0
    for v in values:
        out *= v
    return out
