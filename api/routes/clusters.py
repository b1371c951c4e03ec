"""Handwriting clusters and the analysts' link decisions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import AnalystUser, SessionDep
from store import clustering

router = APIRouter(tags=["clusters"])


class ClusterItem(BaseModel):
    id: int
    size: int
    status: str
    model_version: str
    customers: list[int]
    candidate_link: bool
    created_at: datetime
    updated_at: datetime


class ClusterPage(BaseModel):
    items: list[ClusterItem]
    total: int
    limit: int
    offset: int


class LinkIn(BaseModel):
    slip_a: int
    slip_b: int
    decision: str = Field(description="confirmed | rejected")
    note: str | None = Field(default=None, max_length=2000)


class LinkOut(BaseModel):
    id: int
    slip_a: int
    slip_b: int
    decision: str
    actor: str
    note: str | None
    at: datetime


@router.get("/clusters", response_model=ClusterPage)
def list_clusters(
    session: SessionDep,
    actor: AnalystUser,
    min_size: int | None = Query(None, ge=1),
    customer_id: int | None = None,
    candidate_link: bool | None = None,
    status: str | None = Query(
        "active",
        pattern="^(active|merged|dissolved)?$",
        description="active | merged | dissolved; empty = all",
    ),
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> ClusterPage:
    """Clusters of the active model, newest first."""
    items, total = clustering.list_clusters(
        session=session,
        min_size=min_size,
        customer_id=customer_id,
        candidate_link=candidate_link,
        status=status or None,
        limit=limit,
        offset=offset,
    )
    return ClusterPage(
        items=[ClusterItem(**i) for i in items], total=total, limit=limit, offset=offset
    )


@router.get("/clusters/{cluster_id}")
def get_cluster(cluster_id: int, session: SessionDep, actor: AnalystUser) -> dict[str, Any]:
    """A cluster with its members, customers (slip counts, attributed anonymous slips) and
    history."""
    return clustering.cluster_detail(session=session, cluster_id=cluster_id)


@router.post("/links", status_code=201, response_model=LinkOut)
def post_link(link: LinkIn, session: SessionDep, actor: AnalystUser) -> LinkOut:
    """Confirm or reject that two slips share a writer: binding on every re-clustering."""
    row = clustering.record_link_decision(
        session=session,
        slip_a=link.slip_a,
        slip_b=link.slip_b,
        decision=link.decision,
        actor=actor.name,
        note=link.note,
    )
    return LinkOut(
        id=row.id,  # type: ignore[arg-type]
        slip_a=row.slip_a,
        slip_b=row.slip_b,
        decision=row.decision.value,  # type: ignore[arg-type]
        actor=row.actor,
        note=row.note,
        at=row.at,
    )
