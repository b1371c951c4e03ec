"""Handwriting clusters in the database: embeddings, clusters, memberships, their history,
human link decisions and the active model version.

The workers write these tables (``workers/pipeline.py``); everyone else reads them through
the helpers here.  Every write helper only adds/flushes: the caller commits.  Rows are keyed
by (slip id, model version), so re-running a task never duplicates an embedding or a
membership: inserts go through :func:`insert_or_ignore` (a savepoint + IntegrityError).
"""

from __future__ import annotations

import enum
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, delete, select

from store import audit
from store.errors import Conflict, Invalid, NotFound
from store.models import Bet, Slip, _enum, utcnow


class ClusterStatus(enum.StrEnum):
    active = "active"
    merged = "merged"
    dissolved = "dissolved"


class EventKind(enum.StrEnum):
    created = "created"
    grown = "grown"
    shrunk = "shrunk"
    merged = "merged"
    split = "split"  # type: ignore[assignment]
    dissolved = "dissolved"
    recluster = "recluster"


class Decision(enum.StrEnum):
    confirmed = "confirmed"
    rejected = "rejected"


# ---------------------------------------------------------------- tables
class Embedding(SQLModel, table=True):
    """One slip's writer embedding under one model version (float32 little-endian bytes)."""

    __tablename__ = "embeddings"
    __table_args__ = (UniqueConstraint("slip_id", "model_version"),)
    id: int | None = Field(default=None, primary_key=True)
    slip_id: int = Field(foreign_key="slips.id", ondelete="CASCADE", index=True)
    model_version: str = Field(max_length=64, index=True)
    vector: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    dim: int
    # False when preprocessing found no usable handwriting: stored, never clustered
    usable: bool = True
    quality: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow, nullable=False)

    def array(self) -> NDArray[np.float32]:
        return np.frombuffer(self.vector, dtype="<f4").astype(np.float32)


class WriterCluster(SQLModel, table=True):
    __tablename__ = "clusters"
    id: int | None = Field(default=None, primary_key=True)
    model_version: str = Field(max_length=64, index=True)
    status: ClusterStatus = Field(
        default=ClusterStatus.active, index=True, sa_type=_enum(ClusterStatus)
    )
    size: int = 0
    created_at: datetime = Field(default_factory=utcnow, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, nullable=False)


class ClusterMember(SQLModel, table=True):
    """The assignment of one slip under one model version.

    ``cluster_id`` is None for a slip left on its own (or without usable handwriting): the row
    still records that the slip was assigned, so the sweeper does not assign it again.  A row
    whose cluster changes is replaced (new id), which lets other processes refresh their
    in-memory view by reading rows newer than the last id they saw.
    """

    __tablename__ = "cluster_members"
    __table_args__ = (
        UniqueConstraint("slip_id", "model_version"),
        Index("ix_cluster_members_cluster_id", "cluster_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    slip_id: int = Field(foreign_key="slips.id", ondelete="CASCADE")
    model_version: str = Field(max_length=64, index=True)
    cluster_id: int | None = Field(default=None, foreign_key="clusters.id")
    confidence: float = 0.0
    joined_at: datetime = Field(default_factory=utcnow, nullable=False)


class ClusterEvent(SQLModel, table=True):
    """History of a cluster: created, grown, merged, split, dissolved; ``recluster`` marks a
    full re-clustering run (cluster_id None) so assigners know to rebuild their view."""

    __tablename__ = "cluster_events"
    id: int | None = Field(default=None, primary_key=True)
    cluster_id: int | None = Field(default=None, index=True)
    kind: EventKind = Field(sa_type=_enum(EventKind), index=True)
    at: datetime = Field(default_factory=utcnow, nullable=False)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class LinkDecision(SQLModel, table=True):
    """A human verdict on two slips: confirmed = same writer (must-link), rejected = not."""

    __tablename__ = "link_decisions"
    id: int | None = Field(default=None, primary_key=True)
    slip_a: int = Field(foreign_key="slips.id", ondelete="CASCADE", index=True)
    slip_b: int = Field(foreign_key="slips.id", ondelete="CASCADE", index=True)
    decision: Decision = Field(sa_type=_enum(Decision))
    actor: str = Field(max_length=100)
    note: str | None = Field(default=None, max_length=2000)
    at: datetime = Field(default_factory=utcnow, nullable=False)


class ModelActivation(SQLModel, table=True):
    """Which embedding model is active: the latest row wins (history kept for audit)."""

    __tablename__ = "model_activations"
    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(max_length=64, index=True)
    path: str | None = Field(default=None, max_length=1000)
    actor: str = Field(default="system", max_length=100)
    activated_at: datetime = Field(default_factory=utcnow, nullable=False)


# ---------------------------------------------------------------- idempotent inserts
T = TypeVar("T", bound=SQLModel)


def insert_or_ignore(
    session: Session, row: T, *, existing: Callable[[], T | None]
) -> tuple[T, bool]:
    """Insert ``row`` unless a unique constraint says it is already there.

    Returns ``(row, True)`` when inserted, ``(existing(), False)`` otherwise.  The savepoint
    keeps the caller's transaction usable after the IntegrityError (works on SQLite and
    PostgreSQL alike, where check-then-insert would race).
    """
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        found = existing()
        if found is None:
            raise
        return found, False
    return row, True


def store_embedding(
    *,
    session: Session,
    slip_id: int,
    model_version: str,
    vector: NDArray[np.float32],
    usable: bool,
    quality: dict[str, Any],
) -> tuple[Embedding, bool]:
    """Add the embedding of a slip under a model version; a second call returns the first."""
    v = np.ascontiguousarray(vector, dtype="<f4")
    row = Embedding(
        slip_id=slip_id,
        model_version=model_version,
        vector=v.tobytes(),
        dim=int(v.shape[0]),
        usable=usable,
        quality=quality,
    )
    return insert_or_ignore(
        session,
        row,
        existing=lambda: get_embedding(
            session=session, slip_id=slip_id, model_version=model_version
        ),
    )


def insert_embedding(
    *,
    session: Session,
    slip_id: int,
    model_version: str,
    vector: NDArray[np.float32],
    usable: bool,
    quality: dict[str, Any],
) -> bool:
    """``store_embedding`` in one statement (``INSERT ... ON CONFLICT DO NOTHING``, PostgreSQL
    and SQLite): no savepoint, no ORM object; returns whether it was inserted (False: the
    slip already has an embedding of that version).  The pipeline's extraction uses it."""
    v = np.ascontiguousarray(vector, dtype="<f4")
    values = {
        "slip_id": slip_id,
        "model_version": model_version,
        "vector": v.tobytes(),
        "dim": int(v.shape[0]),
        "usable": usable,
        "quality": quality,
        "created_at": utcnow(),
    }
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    statement = insert(Embedding).values(**values).on_conflict_do_nothing()
    inserted = session.execute(statement.returning(col(Embedding.id))).first()
    return inserted is not None


def get_embedding(*, session: Session, slip_id: int, model_version: str) -> Embedding | None:
    return session.exec(
        select(Embedding).where(
            Embedding.slip_id == slip_id, Embedding.model_version == model_version
        )
    ).first()


def get_membership(*, session: Session, slip_id: int, model_version: str) -> ClusterMember | None:
    return session.exec(
        select(ClusterMember).where(
            ClusterMember.slip_id == slip_id, ClusterMember.model_version == model_version
        )
    ).first()


def reset_slip(session: Session, slip_id: int) -> None:
    """Drop everything derived from a slip's image (it was replaced): embeddings under every
    model version and memberships, keeping cluster sizes right."""
    members = session.exec(select(ClusterMember).where(ClusterMember.slip_id == slip_id)).all()
    for m in members:
        if m.cluster_id is not None:
            cluster = session.get(WriterCluster, m.cluster_id)
            if cluster is not None:
                cluster.size = max(0, cluster.size - 1)
                cluster.updated_at = utcnow()
                if cluster.size == 0 and cluster.status == ClusterStatus.active:
                    cluster.status = ClusterStatus.dissolved
                session.add(cluster)
                session.add(
                    ClusterEvent(
                        cluster_id=cluster.id,
                        kind=EventKind.shrunk,
                        detail={"slip_ids": [slip_id], "reason": "replaced"},
                    )
                )
        session.delete(m)
    session.exec(delete(Embedding).where(col(Embedding.slip_id) == slip_id))  # type: ignore[call-overload]
    session.flush()


# ---------------------------------------------------------------- model versions
def active_model_version(*, session: Session) -> str:
    """The active embedding model version: the latest activation, else the version of the
    newest embedding, else "" (nothing embedded yet)."""
    row = session.exec(select(ModelActivation).order_by(col(ModelActivation.id).desc())).first()
    if row is not None:
        return row.version
    emb = session.exec(select(Embedding.model_version).order_by(col(Embedding.id).desc())).first()
    return emb or ""


def active_model(*, session: Session) -> ModelActivation | None:
    return session.exec(select(ModelActivation).order_by(col(ModelActivation.id).desc())).first()


def activate_model(
    *, session: Session, version: str, path: str | None, actor: str = "system"
) -> ModelActivation:
    """Make ``version`` the active model (audited); the pipeline re-embeds under it."""
    row = ModelActivation(version=version, path=path, actor=actor)
    session.add(row)
    audit.record(
        session,
        actor=actor,
        action="model.activate",
        entity="model",
        entity_id=version,
        after={"version": version, "path": path},
    )
    session.flush()
    return row


# ---------------------------------------------------------------- read helpers
def cluster_of_slip(
    *, session: Session, slip_id: int, model_version: str | None = None
) -> tuple[int, float] | None:
    """(cluster id, confidence) of a slip under the active model; None when on its own."""
    version = model_version or active_model_version(session=session)
    m = get_membership(session=session, slip_id=slip_id, model_version=version)
    if m is None or m.cluster_id is None:
        return None
    return m.cluster_id, float(m.confidence)


def cluster_slip_ids(*, session: Session, cluster_id: int) -> list[int]:
    rows = session.exec(
        select(ClusterMember.slip_id)
        .where(ClusterMember.cluster_id == cluster_id)
        .order_by(col(ClusterMember.slip_id))
    ).all()
    return [int(r) for r in rows]


def cluster_customers(*, session: Session, cluster_id: int) -> dict[int, int]:
    """Customer id -> number of that customer's (known) slips in the cluster."""
    rows = session.exec(
        select(Bet.customer_id, func.count())
        .join(Slip, col(Slip.bet_id) == col(Bet.id))
        .join(ClusterMember, col(ClusterMember.slip_id) == col(Slip.id))
        .where(ClusterMember.cluster_id == cluster_id, col(Bet.customer_id).is_not(None))
        .group_by(col(Bet.customer_id))
    ).all()
    return {int(c): int(n) for c, n in sorted(rows)}  # type: ignore[arg-type]


def customer_clusters_query(customer_id: Any, version: Any) -> Any:
    """SELECT of the active clusters under ``version`` holding a known slip of the customer
    (either argument may be a value or an SQL expression); rows may repeat."""
    return (
        select(ClusterMember.cluster_id)
        .join(Slip, col(Slip.id) == col(ClusterMember.slip_id))
        .join(Bet, col(Bet.id) == col(Slip.bet_id))
        .join(WriterCluster, col(WriterCluster.id) == col(ClusterMember.cluster_id))
        .where(
            Bet.customer_id == customer_id,
            ClusterMember.model_version == version,
            WriterCluster.status == ClusterStatus.active,
        )
    )


def clusters_of_customer(*, session: Session, customer_id: int) -> list[int]:
    """Active clusters (active model) holding at least one known slip of the customer."""
    version = active_model_version(session=session)
    rows = session.exec(customer_clusters_query(customer_id, version).distinct()).all()
    return sorted(int(r) for r in rows if r is not None)


def cluster_link(*, session: Session, cluster_id: int) -> dict[str, Any]:
    """Customers behind a cluster: known customers with slip counts, anonymous slips
    attributed to the leading customer (``cv.cluster.link_customers``) and the
    candidate-link flag (known slips of 2+ accounts)."""
    from cv.cluster import link_customers

    rows = session.exec(
        select(ClusterMember.slip_id, ClusterMember.confidence, Bet.customer_id)
        .join(Slip, col(Slip.id) == col(ClusterMember.slip_id))
        .join(Bet, col(Bet.id) == col(Slip.bet_id))
        .where(ClusterMember.cluster_id == cluster_id)
    ).all()
    if not rows:
        return {"customers": {}, "attributed": [], "candidate_link": False, "confidence": 0.0}
    linked = link_customers(
        {int(s): cluster_id for s, _, _ in rows},
        {int(s): (int(c) if c is not None else None) for s, _, c in rows},
        confidence={int(s): float(conf) for s, conf, _ in rows},
    )[cluster_id]
    return {
        "customers": linked.customers,
        "attributed": [
            {"slip_id": a.slip_id, "customer_id": a.customer_id, "confidence": a.confidence}
            for a in linked.attributed
        ],
        "candidate_link": linked.candidate_link,
        "confidence": linked.confidence,
    }


def slip_features(*, session: Session, slip_id: int) -> dict[str, object]:
    """What GET /slips/{id} shows about the pipeline: features (model version, dim, quality
    flags) under the active model and the slip's cluster."""
    version = active_model_version(session=session)
    emb = (
        get_embedding(session=session, slip_id=slip_id, model_version=version) if version else None
    )
    features = None
    if emb is not None:
        features = {
            "model_version": emb.model_version,
            "dim": emb.dim,
            "usable": emb.usable,
            "quality_flags": list((emb.quality or {}).get("flags", [])),
            "extracted_at": emb.created_at.isoformat(),
        }
    found = cluster_of_slip(session=session, slip_id=slip_id, model_version=version)
    out: dict[str, object] = {"features": features, "cluster_id": found[0] if found else None}
    return out


def account_vectors(
    *,
    session: Session,
    model_version: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[int, NDArray[np.float32]]:
    """Each customer's usable slip vectors under ``model_version``, bets placed in
    [``since``, ``until``]; customers in id order."""
    query = (
        select(Bet.customer_id, Embedding.vector)
        .join(Slip, col(Slip.bet_id) == col(Bet.id))
        .join(Embedding, col(Embedding.slip_id) == col(Slip.id))
        .where(
            Embedding.model_version == model_version,
            col(Embedding.usable).is_(True),
            col(Bet.customer_id).is_not(None),
        )
    )
    if since is not None:
        query = query.where(col(Bet.placed_at) >= since)
    if until is not None:
        query = query.where(col(Bet.placed_at) <= until)
    per: dict[int, list[NDArray[np.float32]]] = {}
    for customer_id, blob in session.exec(query).all():
        if customer_id is not None:
            per.setdefault(int(customer_id), []).append(np.frombuffer(blob, dtype="<f4"))
    return {c: np.stack(v) for c, v in sorted(per.items())}


#: Account profiles a reviewer's shortlist reads are kept this long (seconds) per database,
#: model version and window start day: every customer's vectors are read once, not per page
#: view, and a slip stored since shows in them within this time.
PROFILES_TTL = 600.0
_profiles: dict[tuple[str, str, str], tuple[float, Any]] = {}
_profiles_lock = threading.Lock()
_clock = time.monotonic  # the profiles' age (a test moves it on)


def account_profiles(*, session: Session, model_version: str, since: datetime | None) -> Any:
    """`cv.accounts.account_profiles` of every customer's usable slips under
    ``model_version`` in the window from ``since``'s day, cached for :data:`PROFILES_TTL`."""
    from cv.accounts import account_profiles as profiles_of

    day = since.date().isoformat() if since is not None else ""
    key = (str(session.get_bind().engine.url), model_version, day)
    now = _clock()
    with _profiles_lock:
        found = _profiles.get(key)
        if found is not None and found[0] > now:
            return found[1]
    start = datetime.fromisoformat(day).replace(tzinfo=since.tzinfo) if since else None
    vectors = account_vectors(session=session, model_version=model_version, since=start)
    profiles = profiles_of(vectors)
    with _profiles_lock:
        for stale in [k for k, (until, _) in _profiles.items() if until <= now]:
            del _profiles[stale]
        _profiles[key] = (now + PROFILES_TTL, profiles)
    return profiles


def clear_account_profiles() -> None:
    """Forget the cached profiles (a database emptied under the same address, in tests)."""
    with _profiles_lock:
        _profiles.clear()


def resembling_accounts(
    *, session: Session, slip_ids: list[int], model_version: str, k: int, since: datetime | None
) -> tuple[int, list[tuple[int, float, int]]]:
    """The customer accounts whose slips these slips' handwriting (one hand, e.g. a cluster's
    anonymous slips) most resembles: (slips with usable vectors, [(customer id, score, its
    slips)]) best first (`cv.accounts.likely_accounts`)."""
    from cv.accounts import likely_accounts

    rows = (
        session.exec(
            select(Embedding.vector).where(
                col(Embedding.slip_id).in_(slip_ids),
                Embedding.model_version == model_version,
                col(Embedding.usable).is_(True),
            )
        ).all()
        if slip_ids
        else []
    )
    if not rows:
        return 0, []
    slips = np.stack([np.frombuffer(blob, dtype="<f4") for blob in rows])
    profiles = account_profiles(session=session, model_version=model_version, since=since)
    return len(rows), [(int(c), s, n) for c, s, n in likely_accounts(slips, profiles, k=k)]


def likely_accounts_of_slip(
    *, session: Session, slip_id: int, k: int, since: datetime | None
) -> dict[str, Any]:
    """The customer accounts whose slips this slip's handwriting most resembles, under the
    active model: a reviewer's shortlist (a known customer's slip counts in its own account)."""
    from cv.accounts import ACCOUNT_MIN_SLIPS

    version = active_model_version(session=session)
    emb = get_embedding(session=session, slip_id=slip_id, model_version=version)
    if emb is None:
        raise Conflict(f"slip {slip_id}: no features under the active model {version!r} yet")
    if not emb.usable:
        flags = ", ".join((emb.quality or {}).get("flags", [])) or "none"
        raise Conflict(f"slip {slip_id}: no usable handwriting to compare (quality flags: {flags})")
    _, ranked = resembling_accounts(
        session=session, slip_ids=[slip_id], model_version=version, k=k, since=since
    )
    return {
        "slip_id": slip_id,
        "model_version": version,
        "since": since.date().isoformat() if since else None,
        "min_slips": ACCOUNT_MIN_SLIPS,
        "accounts": [
            {"customer_id": c, "score": round(score, 4), "slips": n} for c, score, n in ranked
        ],
    }


def link_constraints(
    *, session: Session, slip_ids: set[int] | None = None
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(must-link, cannot-link) slip pairs from human decisions; the latest decision on a
    pair wins.  Restricted to pairs inside ``slip_ids`` when given."""
    latest: dict[tuple[int, int], Decision] = {}
    for d in session.exec(select(LinkDecision).order_by(col(LinkDecision.id))).all():
        latest[(min(d.slip_a, d.slip_b), max(d.slip_a, d.slip_b))] = d.decision
    must: list[tuple[int, int]] = []
    cannot: list[tuple[int, int]] = []
    for pair, decision in sorted(latest.items()):
        if slip_ids is not None and not (pair[0] in slip_ids and pair[1] in slip_ids):
            continue
        (must if decision == Decision.confirmed else cannot).append(pair)
    return must, cannot


def record_link_decision(
    *, session: Session, slip_a: int, slip_b: int, decision: str, actor: str, note: str | None
) -> LinkDecision:
    """Store a human verdict on two slips (audited).  It binds every later re-clustering."""
    if slip_a == slip_b:
        raise Invalid("slip_b: must differ from slip_a")
    try:
        verdict = Decision(decision)
    except ValueError:
        raise Invalid("decision: must be 'confirmed' or 'rejected'") from None
    for name, sid in (("slip_a", slip_a), ("slip_b", slip_b)):
        if session.get(Slip, sid) is None:
            raise NotFound(f"{name}: slip {sid} not found")
    row = LinkDecision(slip_a=slip_a, slip_b=slip_b, decision=verdict, actor=actor, note=note)
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=f"link.{verdict.value}",
        entity="link_decision",
        entity_id=row.id,
        after={"slip_a": slip_a, "slip_b": slip_b, "decision": verdict.value, "note": note},
    )
    return row


# ---------------------------------------------------------------- listings for the API
def list_clusters(
    *,
    session: Session,
    min_size: int | None = None,
    customer_id: int | None = None,
    candidate_link: bool | None = None,
    status: str | None = "active",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Clusters of the active model with their customers, newest first."""
    version = active_model_version(session=session)
    query = select(WriterCluster).where(WriterCluster.model_version == version)
    if status:
        query = query.where(WriterCluster.status == status)
    if min_size is not None:
        query = query.where(WriterCluster.size >= min_size)
    if customer_id is not None:
        query = query.where(
            col(WriterCluster.id).in_(
                clusters_of_customer(session=session, customer_id=customer_id)
            )
        )
    query = query.order_by(col(WriterCluster.id).desc())
    if candidate_link is None:
        # paginate in SQL: only the page's customers are looked up
        total = session.exec(select(func.count()).select_from(query.subquery())).one()
        page = session.exec(query.offset(offset).limit(limit)).all()
        page_customers = _customers_by_cluster(session=session, ids=[c.id for c in page])  # type: ignore[misc]
        return [
            cluster_summary(
                c,
                customers=sorted(page_customers.get(c.id, Counter())),  # type: ignore[arg-type]
                candidate_link=len(page_customers.get(c.id, Counter())) >= 2,  # type: ignore[arg-type]
            )
            for c in page
        ], int(total)
    clusters = session.exec(query).all()
    customers_of = _customers_by_cluster(session=session, ids=[c.id for c in clusters])  # type: ignore[misc]
    items = []
    for c in clusters:
        custs = customers_of.get(c.id, Counter())  # type: ignore[arg-type]
        link = len(custs) >= 2
        if candidate_link is not None and link != candidate_link:
            continue
        items.append(cluster_summary(c, customers=sorted(custs), candidate_link=link))
    return items[offset : offset + limit], len(items)


def _customers_by_cluster(*, session: Session, ids: list[int]) -> dict[int, Counter[int]]:
    out: dict[int, Counter[int]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = session.exec(
            select(ClusterMember.cluster_id, Bet.customer_id)
            .join(Slip, col(Slip.id) == col(ClusterMember.slip_id))
            .join(Bet, col(Bet.id) == col(Slip.bet_id))
            .where(col(ClusterMember.cluster_id).in_(chunk), col(Bet.customer_id).is_not(None))
        ).all()
        for cid, cust in rows:
            out.setdefault(int(cid), Counter())[int(cust)] += 1  # type: ignore[arg-type]
    return out


def cluster_summary(
    c: WriterCluster, *, customers: list[int], candidate_link: bool
) -> dict[str, Any]:
    return {
        "id": c.id,
        "size": c.size,
        "status": c.status.value if isinstance(c.status, enum.Enum) else c.status,
        "model_version": c.model_version,
        "customers": customers,
        "candidate_link": candidate_link,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    }


def cluster_detail(*, session: Session, cluster_id: int) -> dict[str, Any]:
    cluster = session.get(WriterCluster, cluster_id)
    if cluster is None:
        raise NotFound(f"cluster {cluster_id} not found")
    rows = session.exec(
        select(ClusterMember, Bet)
        .join(Slip, col(Slip.id) == col(ClusterMember.slip_id))
        .join(Bet, col(Bet.id) == col(Slip.bet_id))
        .where(ClusterMember.cluster_id == cluster_id)
        .order_by(col(ClusterMember.slip_id))
    ).all()
    members = [
        {
            "slip_id": m.slip_id,
            "bet_id": b.id,
            "confidence": round(float(m.confidence), 4),
            "customer_id": b.customer_id,
            "shop_id": b.shop_id,
            "placed_at": b.placed_at,
            "stake": b.stake,
            "joined_at": m.joined_at,
        }
        for m, b in rows
    ]
    link = cluster_link(session=session, cluster_id=cluster_id)
    events = session.exec(
        select(ClusterEvent)
        .where(ClusterEvent.cluster_id == cluster_id)
        .order_by(col(ClusterEvent.id))
    ).all()
    out = cluster_summary(
        cluster, customers=sorted(link["customers"]), candidate_link=link["candidate_link"]
    )
    out |= {
        "members": members,
        "customer_slips": [{"customer_id": k, "slips": v} for k, v in link["customers"].items()],
        "attributed": link["attributed"],
        "confidence": round(float(link["confidence"]), 4),
        "events": [
            {
                "id": e.id,
                "kind": e.kind.value if isinstance(e.kind, enum.Enum) else e.kind,
                "at": e.at,
                "detail": e.detail,
            }
            for e in events
        ],
    }
    return out
