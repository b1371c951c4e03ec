from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlmodel import col, select

from api.deps import AnalystUser, SessionDep
from store import exclusions
from store.models import as_utc
from store.trading import SelfExclusion

router = APIRouter(prefix="/self-exclusions", tags=["self-exclusion"])


class ExclusionIn(BaseModel):
    reference: str = Field(min_length=1, max_length=64)
    name: str | None = Field(None, max_length=200)
    nominated_shops: list[str] = Field(default_factory=list)
    start: datetime
    end: datetime | None = None
    customer_id: int | None = None


@router.get("")
def list_exclusions(session: SessionDep, _actor: AnalystUser) -> list[SelfExclusion]:
    return list(session.exec(select(SelfExclusion).order_by(col(SelfExclusion.id))).all())


@router.post("", status_code=201)
def add_own_exclusion(
    exclusion_in: ExclusionIn, session: SessionDep, actor: AnalystUser
) -> SelfExclusion:
    """The operator's own exclusion of a customer."""
    return exclusions.add_exclusion(
        session=session, actor=actor, source="own", reference=exclusion_in.reference,
        starts_on=as_utc(exclusion_in.start),
        ends_on=as_utc(exclusion_in.end) if exclusion_in.end else None,
        name=exclusion_in.name, nominated_shops=exclusion_in.nominated_shops,
        customer_id=exclusion_in.customer_id,
    )  # fmt: skip


@router.post("/import")
async def import_register(
    request: Request, session: SessionDep, actor: AnalystUser
) -> dict[str, int]:
    """Import the multi-operator register as CSV:
    ``reference,name,nominated_shops,start,end,customer_ref`` (shops separated by ';')."""
    text = (await request.body()).decode("utf-8-sig", "replace")
    return exclusions.import_register(session=session, text=text, actor=actor)


@router.post("/{exclusion_id}/reinstatement")
def request_reinstatement(
    exclusion_id: int, session: SessionDep, actor: AnalystUser
) -> SelfExclusion:
    """Ask for reinstatement after the exclusion ends; it takes effect after 24 h cooling-off."""
    return exclusions.request_reinstatement(session=session, exclusion_id=exclusion_id, actor=actor)
