"""Read-only queries the kinds share: pivots, the bets behind a pivot, handwriting links.

The pivot of a bet is its customer when known, otherwise the handwriting cluster of its slip.
A customer pivot's bets are the customer's own bets plus every bet whose slip sits in a
cluster linked to the customer (a cluster holding at least one of the customer's slips).
All clustering reads use the active model version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import bindparam, case, func, literal_column, null, or_, true, union, union_all
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from store.alerts import RuleVersion
from store.clustering import (
    ClusterMember,
    ClusterStatus,
    Embedding,
    ModelActivation,
    WriterCluster,
    active_model_version,
)
from store.models import Bet, Customer, Leg, Shop, Slip, as_utc

T = TypeVar("T")


@dataclass(frozen=True)
class BetRow:
    """The fields of a bet the kinds compare, with its slip and cluster membership."""

    bet_id: int
    placed_at: datetime
    shop_id: int | None
    customer_id: int | None
    stake: float  # total stake, in the bet's currency
    currency: str
    sport: str
    returns: float | None
    settled_at: datetime | None
    slip_id: int | None
    cluster_id: int | None
    confidence: float | None  # of the slip's cluster membership
    status: str = ""  # BetStatus value
    odds: float | None = None


def model_version(session: Session) -> str:
    """The active model version, cached on the session for the length of one evaluation
    (dropping ``session.info["rules_model_version"]`` also drops the `memo` entries)."""
    cached = session.info.get("rules_model_version")
    if cached is None:
        session.info.pop("rules_memo", None)
        cached = session.info["rules_model_version"] = active_model_version(session=session)
    return str(cached)


def distinct_writers_bound(session: Session) -> float | None:
    """The active model's calibrated "different writers" bound (the registry's copy of
    `cv.cluster.Calibration.distinct_writers`), None when the model has none."""
    from store.models_registry import ModelVersion

    version = model_version(session)

    def read() -> float | None:
        found = session.exec(
            select(ModelVersion.distinct_writers).where(ModelVersion.version == version)
        ).first()
        return None if found is None else float(found)

    return memo(session, ("distinct_writers", version), read)


def memo(session: Session, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
    """Remember a query's result for the rest of one engine run (the engine clears it at the
    start of every run): several rules ask for the same slip, cluster or pivot bets."""
    model_version(session)  # a new evaluation (no cached version) starts with an empty memo
    cache = session.info.setdefault("rules_memo", {})
    if key not in cache:
        cache[key] = compute()
    return cache[key]  # type: ignore[no-any-return]


def reset(session: Session) -> None:
    """Forget the model version and memoised reads (start of an engine run)."""
    session.info.pop("rules_model_version", None)
    session.info.pop("rules_memo", None)
    session.info.pop("rules_horizon", None)
    session.info.pop("rules_versions_stamp", None)


def start(session: Session, bet_id: int | None = None) -> None:
    """Start an engine run: `reset`, then one read of what every run asks first (each a round
    trip of its own before): the active model version, a stamp of ``rule_versions`` (its row
    count and largest id: the engine's cache of rule versions holds while it is unchanged)
    and, for a bet's trigger, the bet with its slip, that slip's membership, its legs and the
    known customers of that slip's cluster (one row per leg and customer)."""
    reset(session)
    params = {} if bet_id is None else {"bet_id": bet_id}
    session.flush()
    rows = session.exec(_statement("start", bet_id is not None), params=params).all()
    if not rows:  # no such bet: the version and stamp on their own
        rows = session.exec(_statement("start"), params={}).all()
    version, count, largest = rows[0][-3:]
    session.info["rules_model_version"] = str(version or "")
    session.info["rules_versions_stamp"] = (int(count), largest)
    memo_ = session.info["rules_memo"] = {}
    if bet_id is None:
        return
    found, slip_id, cluster_id, confidence = rows[0][:4]
    memo_[("bet", bet_id)] = found
    memo_[("slip_of_bet", bet_id)] = slip_id
    if slip_id is not None:
        memo_[("membership", slip_id)] = (
            None if cluster_id is None else (int(cluster_id), float(confidence))
        )
    legs = {r[4].id: r[4] for r in rows if r[4] is not None}
    # the pattern kinds' per-run look-ups (`rules.kinds._pattern_common.bet_legs`)
    memo_[("rules.kinds.patterns",)] = {
        ("legs", bet_id): sorted(legs.values(), key=lambda leg: leg.position)
    }
    if cluster_id is not None:  # `rules.kinds._links.customers_of_cluster`
        known = {r[5].id: r[5] for r in rows if r[5] is not None}
        memo_[("customers_of_cluster", int(cluster_id))] = [known[k] for k in sorted(known)]


def bet(*, session: Session, bet_id: int) -> Bet | None:
    """The bet, held for the engine run (the session's identity map is weak: without a
    reference every kind asking for the trigger's bet would read it again)."""
    return memo(session, ("bet", bet_id), lambda: _bet(session, bet_id))


def _bet(session: Session, bet_id: int) -> Bet | None:
    """The bet with its slip and that slip's membership, in one query (every event run asks
    for all three); the slip and membership go to the memo of `slip_of_bet` / `membership`."""
    row = session.exec(
        _statement("bet"), params={"bet_id": bet_id, "version": model_version(session)}
    ).first()
    if row is None:
        return None
    found, slip_id, cluster_id, confidence = row
    cache = session.info["rules_memo"]
    cache[("slip_of_bet", bet_id)] = slip_id
    if slip_id is not None:
        cache[("membership", slip_id)] = (
            None if cluster_id is None else (int(cluster_id), float(confidence))
        )
    return found  # type: ignore[no-any-return]


def slip_of_bet(*, session: Session, bet_id: int) -> int | None:
    return memo(
        session,
        ("slip_of_bet", bet_id),
        lambda: session.exec(select(Slip.id).where(Slip.bet_id == bet_id)).first(),
    )


def membership(*, session: Session, slip_id: int) -> tuple[int, float] | None:
    """(cluster id, confidence) of a slip in an active cluster, None when on its own."""
    return memo(session, ("membership", slip_id), lambda: _membership(session, slip_id))


def _membership(session: Session, slip_id: int) -> tuple[int, float] | None:
    row = session.exec(
        select(ClusterMember.cluster_id, ClusterMember.confidence).where(
            ClusterMember.slip_id == slip_id,
            ClusterMember.model_version == model_version(session),
            col(ClusterMember.cluster_id).is_not(None),
        )
    ).first()
    if row is None or row[0] is None:
        return None
    return int(row[0]), float(row[1])


def pivot_of_bet(*, session: Session, bet_id: int) -> tuple[str, int] | None:
    """``("customer", id)`` when the bet names a customer, else ``("cluster", id)`` of its
    slip, else None (an anonymous bet whose slip is not clustered yet)."""
    found_bet = bet(session=session, bet_id=bet_id)
    if found_bet is None:
        return None
    if found_bet.customer_id is not None:
        return "customer", found_bet.customer_id
    slip_id = slip_of_bet(session=session, bet_id=bet_id)
    found = membership(session=session, slip_id=slip_id) if slip_id is not None else None
    return ("cluster", found[0]) if found else None


def only_customers_slips(
    *, session: Session, cluster_id: int, slip_id: int, customer_id: int
) -> bool:
    """Whether the cluster holds other slips (active model) and every one of them is on a bet
    of the customer: the cluster was already the customer's, and holds no one else's bets."""
    mine = func.sum(case((col(Bet.customer_id) == customer_id, 1), else_=0))
    others, of_customer = session.exec(
        select(func.count(), mine)  # type: ignore[call-overload]
        .select_from(ClusterMember)
        .join(Slip, col(Slip.id) == col(ClusterMember.slip_id), isouter=True)
        .join(Bet, col(Bet.id) == col(Slip.bet_id), isouter=True)
        .where(
            ClusterMember.cluster_id == cluster_id,
            ClusterMember.model_version == model_version(session),
            ClusterMember.slip_id != slip_id,
        )
    ).one()
    return int(others or 0) > 0 and int(of_customer or 0) == int(others)


def linked_clusters(*, session: Session, customer_id: int) -> dict[int, float]:
    """Active clusters holding a slip of the customer -> the strongest such membership
    confidence (how firmly the customer's own handwriting anchors the cluster)."""
    return dict(
        memo(session, ("linked_clusters", customer_id), lambda: _linked(session, customer_id))
    )


def _linked(session: Session, customer_id: int) -> dict[int, float]:
    rows = session.exec(
        _statement("linked"), params={"customer_id": customer_id, "version": model_version(session)}
    ).all()
    out: dict[int, float] = {}
    for cid, conf in rows:
        if cid is not None:
            out[int(cid)] = max(out.get(int(cid), 0.0), float(conf))
    return out


# the bet columns a BetRow needs: selected as columns, not ORM objects (hydrating a Bet costs
# more than the query on a warm index)
_BET_COLUMNS = (
    Bet.id,
    Bet.placed_at,
    Bet.shop_id,
    Bet.customer_id,
    Bet.total_stake,
    Bet.currency,
    Bet.sport,
    Bet.returns,
    Bet.settled_at,
    Bet.status,
    Bet.odds,
)


def cluster_rows(
    *,
    session: Session,
    cluster_ids: Iterable[int],
    since: datetime | None = None,
    until: datetime | None = None,
    settled: bool = False,
) -> list[BetRow]:
    """Bets whose slips sit in the given clusters, placed (``settled=True``: settled) in
    ``[since, until]``."""
    ids = tuple(sorted(set(cluster_ids)))
    if not ids:
        return []
    # a read of more clusters (a customer's linked clusters) over the window serves too
    for key, entries in list(session.info.get("rules_memo", {}).items()):
        if key[:2] == ("covered", "cluster_rows") and key[3] == settled and set(ids) < set(key[2]):
            rows = _cut(entries, since, until, settled)
            if rows is not None:
                return [r for r in rows if r.cluster_id in ids]
    if not settled:
        _prefetch_clusters(session, ids, since, until)
    return _covered(
        session,
        ("cluster_rows", ids, settled),
        since,
        until,
        settled,
        lambda lo, hi: _cluster_rows(session, ids, lo, hi, settled),
    )


def _prefetch_clusters(
    session: Session, ids: tuple[int, ...], since: datetime | None, until: datetime | None
) -> None:
    """A first read of clusters' bets within the run's horizon takes the bets placed *or
    settled* in it, in one statement, filed for both (a kind asking for the day's settled
    bets of the same clusters, e.g. winnings collected, then needs no read of its own)."""
    placed = _entries(session, ("cluster_rows", ids, False))
    if _cut(placed, since, until, False) is not None:
        return
    horizon = session.info.get("rules_horizon")
    lo, hi = _load_window(session, since, until, False)
    if horizon is None or lo is None or hi is None or (lo, hi) != (min(lo, horizon[0]), horizon[1]):
        return
    query = _statement("cluster_rows_either", True, True)
    params = {"ids": list(ids), "version": model_version(session), "since": lo, "until": hi}
    rows = [_row(r) for r in _core_rows(session, query, params)]
    placed.append((lo, hi, rows))
    _entries(session, ("cluster_rows", ids, True)).append((lo, hi, rows))


def _entries(
    session: Session, key: tuple[Any, ...]
) -> list[tuple[datetime | None, datetime | None, list[BetRow]]]:
    model_version(session)  # a new evaluation starts with an empty memo
    return session.info.setdefault("rules_memo", {}).setdefault(("covered", *key), [])  # type: ignore[no-any-return]


def _cut(
    entries: list[tuple[datetime | None, datetime | None, list[BetRow]]],
    since: datetime | None,
    until: datetime | None,
    settled: bool,
) -> list[BetRow] | None:
    """The rows of ``[since, until]`` from an entry whose window covers it, else None."""
    for e_since, e_until, rows in entries:
        if (e_since is None or (since is not None and e_since <= since)) and (
            e_until is None or (until is not None and e_until >= until)
        ):
            # the bounds once, not per row (an event run cuts a few dozen windows)
            lo = None if since is None else as_utc(since)
            hi = None if until is None else as_utc(until)
            times = [(r.settled_at if settled else r.placed_at, r) for r in rows]
            return [
                r
                for at, r in times
                if at is not None and (lo is None or at >= lo) and (hi is None or at <= hi)
            ]
    return None


def _load_window(
    session: Session, since: datetime | None, until: datetime | None, settled: bool
) -> tuple[datetime | None, datetime | None]:
    """What a miss reads: at least the run's horizon (`set_horizon`) when the request falls
    in it, so that the first rule to ask loads what every later one needs."""
    horizon = session.info.get("rules_horizon")
    if horizon is None or settled or since is None or until is None:
        return since, until
    h_since, h_until = horizon
    if h_since <= as_utc(until) <= h_until:
        return min(as_utc(since), h_since), h_until
    return since, until


def _covered(
    session: Session,
    key: tuple[Any, ...],
    since: datetime | None,
    until: datetime | None,
    settled: bool,
    compute: Callable[[datetime | None, datetime | None], list[BetRow]],
) -> list[BetRow]:
    """Rows for ``[since, until]``, cut from an earlier read of the same key over a window
    that covers it (rules ask for 90 d, 30 d, 72 h and 24 h of the same pivot in one run)."""
    entries = _entries(session, key)
    found = _cut(entries, since, until, settled)
    if found is not None:
        return found
    lo, hi = _load_window(session, since, until, settled)
    entries.append((lo, hi, compute(lo, hi)))
    return _cut(entries[-1:], since, until, settled) or []


def set_horizon(session: Session, since: datetime, until: datetime) -> None:
    """Declare the span of history this engine run reads (an event trigger: the longest
    look-back of the event rules up to the trigger): a pivot's bets are then read once over
    it and every rule's window is cut from that read (`reset` forgets it)."""
    model_version(session)
    session.info["rules_horizon"] = (as_utc(since), as_utc(until))


def _cluster_rows(
    session: Session,
    ids: tuple[int, ...],
    since: datetime | None,
    until: datetime | None,
    settled: bool,
) -> list[BetRow]:
    query = _statement("cluster_rows", since is not None, until is not None, settled)
    params = {"ids": list(ids), "version": model_version(session), "since": since, "until": until}
    return [_row(r) for r in _core_rows(session, query, params)]


def customer_rows(
    *,
    session: Session,
    customer_id: int,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[BetRow]:
    """The customer's own bets (with their slips and clusters when there are any)."""
    return _covered(
        session,
        ("customer_rows", customer_id),
        since,
        until,
        False,
        lambda lo, hi: _customer_rows(session, customer_id, lo, hi),
    )


def _customer_rows(
    session: Session, customer_id: int, since: datetime | None, until: datetime | None
) -> list[BetRow]:
    query = _statement("customer_rows", since is not None, until is not None)
    params = {"customer_id": customer_id, "version": model_version(session)}
    params |= {"since": since, "until": until}
    return [_row(r) for r in _core_rows(session, query, params)]


def _prefetch_customer(
    session: Session,
    customer_id: int,
    clusters: tuple[int, ...],
    since: datetime | None,
    until: datetime | None,
) -> None:
    """Read a customer pivot's own bets and its linked clusters' bets in one query (a UNION
    of two indexed selections of bet ids; ``customer_id = :c OR id IN (...)`` in one
    condition would defeat both indexes) and file them under `customer_rows` and
    `cluster_rows`."""
    own_entries = _entries(session, ("customer_rows", customer_id))
    linked_entries = _entries(session, ("cluster_rows", clusters, False))
    if not clusters or (
        _cut(own_entries, since, until, False) is not None
        and _cut(linked_entries, since, until, False) is not None
    ):
        return
    lo, hi = _load_window(session, since, until, False)
    query = _statement("customer_and_clusters", lo is not None, hi is not None)
    params = {"customer_id": customer_id, "ids": list(clusters), "version": model_version(session)}
    params |= {"since": lo, "until": hi}
    rows = [_row(r) for r in _core_rows(session, query, params)]
    own_entries.append((lo, hi, [r for r in rows if r.customer_id == customer_id]))
    linked_entries.append((lo, hi, [r for r in rows if r.cluster_id in clusters]))


def _prefetch_customer_links(
    session: Session, customer_id: int, since: datetime | None, until: datetime | None
) -> None:
    """The first read of a customer pivot in a run (its linked clusters not known yet), over
    the run's horizon: the linked clusters and the bets of `_prefetch_customer` in one
    statement (the clusters as tagged rows; the bets read the clusters from a CTE), filed
    under `linked_clusters`, `customer_rows` and `cluster_rows`."""
    model_version(session)
    cache = session.info.setdefault("rules_memo", {})
    if ("linked_clusters", customer_id) in cache:
        return
    lo, hi = _load_window(session, since, until, False)
    if lo is None or hi is None:
        return  # an unbounded read: the two statements of `_prefetch_customer`
    params = {"customer_id": customer_id, "version": model_version(session)}
    rows = _core_rows(session, _statement("customer_links"), params | {"since": lo, "until": hi})
    linked: dict[int, float] = {}
    bets = []
    for r in rows:
        if r[0] == "linked":
            cid = int(r[-2])
            linked[cid] = max(linked.get(cid, 0.0), float(r[-1]))
        else:
            bets.append(_row(r[1:]))
    cache[("linked_clusters", customer_id)] = linked
    own = [r for r in bets if r.customer_id == customer_id]
    _entries(session, ("customer_rows", customer_id)).append((lo, hi, own))
    if linked:  # bets placed or settled in the window: filed for both (see `_prefetch_clusters`)
        clusters = tuple(sorted(linked))
        in_linked = [r for r in bets if r.cluster_id in linked]
        _entries(session, ("cluster_rows", clusters, False)).append((lo, hi, in_linked))
        _entries(session, ("cluster_rows", clusters, True)).append((lo, hi, in_linked))


def bet_rows_of_pivot(
    *,
    session: Session,
    pivot_kind: str,
    pivot_id: int,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[BetRow]:
    """`bets_of_pivot` as `BetRow` s (one per bet), oldest first (kept for the run: the
    kinds ask for the same pivot and window several times)."""
    key = ("pivot_rows", pivot_kind, pivot_id, since, until)
    return list(
        memo(session, key, lambda: _pivot_rows(session, pivot_kind, pivot_id, since, until))
    )


def _pivot_rows(
    session: Session,
    pivot_kind: str,
    pivot_id: int,
    since: datetime | None,
    until: datetime | None,
) -> list[BetRow]:
    if pivot_kind == "cluster":
        rows = cluster_rows(session=session, cluster_ids=[pivot_id], since=since, until=until)
    elif pivot_kind == "customer":
        _prefetch_customer_links(session, pivot_id, since, until)
        clusters = linked_clusters(session=session, customer_id=pivot_id)
        _prefetch_customer(session, pivot_id, tuple(sorted(clusters)), since, until)
        own = customer_rows(session=session, customer_id=pivot_id, since=since, until=until)
        linked = cluster_rows(session=session, cluster_ids=clusters, since=since, until=until)
        rows = own + linked
    else:
        raise ValueError(f"pivot_kind: expected customer or cluster, got {pivot_kind!r}")
    unique = {r.bet_id: r for r in rows}
    return sorted(unique.values(), key=lambda r: (r.placed_at, r.bet_id))


def bets_of_pivot(
    *,
    session: Session,
    pivot_kind: str,
    pivot_id: int,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Bet]:
    """The bets behind a pivot placed in ``[since, until]``, oldest first."""
    ids = [
        r.bet_id
        for r in bet_rows_of_pivot(
            session=session, pivot_kind=pivot_kind, pivot_id=pivot_id, since=since, until=until
        )
    ]
    if not ids:
        return []
    bets = {b.id: b for b in session.exec(select(Bet).where(col(Bet.id).in_(ids))).all()}
    return [bets[i] for i in ids]


def bet_row(*, session: Session, bet_id: int) -> BetRow | None:
    row = session.exec(select(*_BET_COLUMNS).where(Bet.id == bet_id)).first()  # type: ignore[call-overload]
    if row is None:
        return None
    slip_id = slip_of_bet(session=session, bet_id=bet_id)
    found = membership(session=session, slip_id=slip_id) if slip_id is not None else None
    return _row((*row, slip_id, *(found or (None, None))))


def customer(*, session: Session, customer_id: int) -> Customer | None:
    return session.get(Customer, customer_id)


def shop_matches(
    *, session: Session, shop_ids: Iterable[int], scope_kind: str, value: str | None
) -> bool:
    """Whether any of the shops is in the scope (``region`` name or ``shop`` code)."""
    if scope_kind == "all":
        return True
    ids = sorted(set(shop_ids))
    if not ids:
        return False
    shops = session.exec(select(Shop).where(col(Shop.id).in_(ids))).all()
    if scope_kind == "region":
        return any(s.region == value for s in shops)
    return any(s.code == value for s in shops)


def evidence(rows: Iterable[BetRow], **extra: Iterable[int]) -> dict[str, list[int]]:
    """The evidence dict of a finding from its bets (plus extra ids per key)."""
    rows = list(rows)
    out = {
        "bets": sorted({r.bet_id for r in rows}),
        "slips": sorted({r.slip_id for r in rows if r.slip_id is not None}),
        "clusters": sorted({r.cluster_id for r in rows if r.cluster_id is not None}),
        "customers": sorted({r.customer_id for r in rows if r.customer_id is not None}),
        "shops": sorted({r.shop_id for r in rows if r.shop_id is not None}),
    }
    for key, ids in extra.items():
        out[key] = sorted(set(out.get(key, [])) | set(ids))
    return out


def to_gbp(amount: float, currency: str, fx_to_gbp: dict[str, float]) -> float:
    """Convert with the rule's configured rates; an unknown currency counts at par (logged in
    the figures by the caller) rather than silently dropping a bet."""
    return float(amount) * float(fx_to_gbp.get(currency.upper(), 1.0))


def core_rows(session: Session, query: Any, params: dict[str, Any]) -> list[Any]:
    """`_core_rows` for the kinds' own prebuilt column-only statements."""
    return _core_rows(session, query, params)


def _core_rows(session: Session, query: Any, params: dict[str, Any]) -> list[Any]:
    """Rows of a column-only statement through the session's connection: the ORM's result
    handling costs a third of such a read and loads no objects here.  The session is flushed
    first, as the ORM's own execution would (the kinds read what the caller just added)."""
    session.flush()
    return list(session.connection().execute(query, _bound(params)).all())


def _bound(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters of a prebuilt statement: window bounds as UTC, absent ones left out."""
    return {
        k: (as_utc(v) if isinstance(v, datetime) else v) for k, v in params.items() if v is not None
    }


@cache
def _statement(name: str, lower: bool = False, upper: bool = False, settled: bool = False):  # type: ignore[no-untyped-def]
    """The engine's hot reads, built once with bound parameters (building a statement costs
    about as much CPU as running it on a warm index, and an event run makes a dozen)."""
    version: Any = bindparam("version")
    if name == "start":  # see `start`; ``lower``: with the bet of ``bet_id``
        active = func.coalesce(
            select(ModelActivation.version)
            .order_by(col(ModelActivation.id).desc())
            .limit(1)
            .scalar_subquery(),
            select(Embedding.model_version)
            .order_by(col(Embedding.id).desc())
            .limit(1)
            .scalar_subquery(),
            "",
        )
        stamp = (
            select(func.count()).select_from(RuleVersion).scalar_subquery(),
            select(func.max(RuleVersion.id)).scalar_subquery(),
        )
        if not lower:
            return select(active, *stamp)
        # the known customers of the bet slip's cluster (`customers_of_cluster`): a derived
        # table that depends on the parameter only, so it is read once, by index
        slip, member, other = aliased(Slip), aliased(ClusterMember), aliased(Bet)
        cluster_of_bet = (
            select(member.cluster_id)
            .join(slip, col(slip.id) == col(member.slip_id))
            .where(col(slip.bet_id) == bindparam("bet_id"), col(member.model_version) == active)
            .scalar_subquery()
        )
        slip2, member2 = aliased(Slip), aliased(ClusterMember)
        known = (
            select(col(other.customer_id).label("customer_id"))
            .join(slip2, col(slip2.bet_id) == col(other.id))
            .join(member2, col(member2.slip_id) == col(slip2.id))
            .where(
                col(member2.cluster_id) == cluster_of_bet,
                col(member2.model_version) == active,
                col(other.customer_id).is_not(None),
            )
            .distinct()
            .subquery("known")
        )
        return (
            select(Bet, Slip.id, ClusterMember.cluster_id, ClusterMember.confidence, Leg, Customer)  # type: ignore[call-overload]
            .add_columns(active, *stamp)
            .outerjoin(Slip, col(Slip.bet_id) == col(Bet.id))
            .outerjoin(
                ClusterMember,
                (col(ClusterMember.slip_id) == col(Slip.id))
                & (col(ClusterMember.model_version) == active),
            )
            .outerjoin(Leg, col(Leg.bet_id) == col(Bet.id))
            .outerjoin(known, true())
            .outerjoin(Customer, col(Customer.id) == known.c.customer_id)
            .where(col(Bet.id) == bindparam("bet_id"))
        )
    member_of_slip = (col(ClusterMember.slip_id) == col(Slip.id)) & (
        col(ClusterMember.model_version) == version
    )
    if name == "bet":
        return (
            select(Bet, Slip.id, ClusterMember.cluster_id, ClusterMember.confidence)  # type: ignore[call-overload]
            .outerjoin(Slip, col(Slip.bet_id) == col(Bet.id))
            .outerjoin(ClusterMember, member_of_slip)
            .where(col(Bet.id) == bindparam("bet_id"))
        )
    linked = (
        select(ClusterMember.cluster_id, ClusterMember.confidence)
        .join(Slip, col(Slip.id) == col(ClusterMember.slip_id))
        .join(Bet, col(Bet.id) == col(Slip.bet_id))
        .join(WriterCluster, col(WriterCluster.id) == col(ClusterMember.cluster_id))
        .where(
            col(Bet.customer_id) == bindparam("customer_id"),
            col(ClusterMember.model_version) == version,
            WriterCluster.status == ClusterStatus.active,
        )
    )
    if name == "linked":
        return linked
    column = col(Bet.settled_at) if settled else col(Bet.placed_at)
    bounds: list[Any] = []
    if lower:
        bounds.append(column >= bindparam("since"))
    if upper:
        bounds.append(column <= bindparam("until"))
    # placed or settled in [since, until] (`_prefetch_clusters`, `_prefetch_customer_links`)
    either = or_(
        col(Bet.placed_at).between(bindparam("since"), bindparam("until")),
        col(Bet.settled_at).between(bindparam("since"), bindparam("until")),
    )
    if name == "cluster_rows_either":
        name, bounds = "cluster_rows", [either]
    rows = select(*_BET_COLUMNS, Slip.id, ClusterMember.cluster_id, ClusterMember.confidence)  # type: ignore[call-overload]
    in_clusters = col(ClusterMember.cluster_id).in_(bindparam("ids", expanding=True))
    if name == "cluster_rows":
        return (
            rows.join(Slip, col(Slip.bet_id) == col(Bet.id))
            .join(ClusterMember, col(ClusterMember.slip_id) == col(Slip.id))
            .where(in_clusters, col(ClusterMember.model_version) == version, *bounds)
        )
    customer = col(Bet.customer_id) == bindparam("customer_id")
    rows = rows.outerjoin(Slip, col(Slip.bet_id) == col(Bet.id)).outerjoin(
        ClusterMember, member_of_slip
    )
    if name == "customer_rows":
        return rows.where(customer, *bounds)
    if name == "customer_and_clusters":
        # a UNION of two indexed selections of bet ids (``customer_id = :c OR id IN (...)``
        # in one condition would defeat both indexes)
        own_ids = select(Bet.id).where(customer, *bounds)
        linked_ids = (
            select(Slip.bet_id)
            .join(ClusterMember, col(ClusterMember.slip_id) == col(Slip.id))
            .where(in_clusters, col(ClusterMember.model_version) == version)
        )
        return rows.where(col(Bet.id).in_(union(own_ids, linked_ids)), *bounds)
    if name == "customer_links":  # `_prefetch_customer_links`: "customer_and_clusters" with
        # the linked clusters read in the same statement (a CTE, and tagged rows of their own)
        links = (
            linked.with_only_columns(
                col(ClusterMember.cluster_id),
                func.max(ClusterMember.confidence).label("confidence"),
            )
            .group_by(col(ClusterMember.cluster_id))
            .cte("links")
        )
        own_ids = select(Bet.id).where(customer, either)
        linked_ids = (
            select(Slip.bet_id)
            .join(ClusterMember, col(ClusterMember.slip_id) == col(Slip.id))
            .where(
                col(ClusterMember.cluster_id).in_(select(links.c.cluster_id)),
                col(ClusterMember.model_version) == version,
            )
        )
        bet_part = (
            select(literal_column("'bet'"), *_BET_COLUMNS, Slip.id, ClusterMember.cluster_id,  # type: ignore[call-overload]
                   ClusterMember.confidence)
            .select_from(Bet)
            .outerjoin(Slip, col(Slip.bet_id) == col(Bet.id))
            .outerjoin(ClusterMember, member_of_slip)
            .where(col(Bet.id).in_(union(own_ids, linked_ids)), either)
        )  # fmt: skip
        nulls = [null()] * (len(_BET_COLUMNS) + 1)
        link_part = select(  # type: ignore[call-overload]
            literal_column("'linked'"), *nulls, links.c.cluster_id, links.c.confidence
        )
        return union_all(bet_part, link_part)
    raise ValueError(f"no statement {name!r}")


def _between(query, since: datetime | None, until: datetime | None, *, settled: bool = False):  # type: ignore[no-untyped-def]
    column = col(Bet.settled_at) if settled else col(Bet.placed_at)
    if since is not None:
        query = query.where(column >= as_utc(since))
    if until is not None:
        query = query.where(column <= as_utc(until))
    return query


def _row(r: Any) -> BetRow:
    """A BetRow from ``(*_BET_COLUMNS, slip id, cluster id, confidence)``."""
    bet_id, placed, shop, customer_id, stake, currency, sport, returns, settled = r[:9]
    status, odds, slip_id, cluster_id, conf = r[9], r[10], r[11], r[12], r[13]
    return BetRow(
        bet_id=int(bet_id),
        placed_at=as_utc(placed),
        shop_id=shop,
        customer_id=customer_id,
        stake=float(stake),
        currency=currency,
        sport=sport,
        returns=None if returns is None else float(returns),
        settled_at=as_utc(settled) if settled else None,
        slip_id=None if slip_id is None else int(slip_id),
        cluster_id=None if cluster_id is None else int(cluster_id),
        confidence=None if conf is None or cluster_id is None else float(conf),
        status=str(getattr(status, "value", status)),
        odds=None if odds is None else float(odds),
    )
