from __future__ import annotations

from fastapi import APIRouter, Query

from api.deps import AnalystUser, SessionDep
from store.exposure import exposure

router = APIRouter(prefix="/exposure", tags=["exposure"])


@router.get("")
def largest_exposures(
    session: SessionDep,
    _actor: AnalystUser,
    by: str = Query("selection", pattern="^(selection|event|shop)$"),
    limit: int = Query(20, ge=1, le=500),
) -> list[dict[str, object]]:
    """Open liability (potential payouts less stakes) by selection, event or shop, largest first."""
    return exposure(session=session, by=by, limit=limit)
