from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from api.deps import AnalystUser, SessionDep
from store import factoring
from store.customers import get_customer

router = APIRouter(tags=["factoring"])


class FactoringIn(BaseModel):
    stake_factor: float | None = Field(None, gt=0, le=100, allow_inf_nan=False)
    restricted_sports: list[str] | None = None
    restricted_price_types: list[str] | None = None
    inherit_linked_factor: bool | None = Field(
        None, description="take the strictest factor of accounts linked by handwriting"
    )
    reason: str = Field(max_length=500, description="why: kept in the factoring history")


@router.get("/customers/{customer_id}/factoring")
def get_factoring(customer_id: int, session: SessionDep, _actor: AnalystUser) -> dict[str, object]:
    customer = get_customer(session=session, customer_id=customer_id)
    history = factoring.factoring_history(session=session, customer_id=customer_id)
    effective, linked = factoring.effective_factor(session=session, customer=customer)
    return {
        "customer_id": customer_id,
        "stake_factor": customer.stake_factor,
        "effective_stake_factor": effective,
        "inherit_linked_factor": customer.inherit_linked_factor,
        "linked_customers": linked,
        "restricted_sports": customer.restricted_sports,
        "restricted_price_types": customer.restricted_price_types,
        "history": [h.model_dump() for h in history],
    }


@router.put("/customers/{customer_id}/factoring")
def put_factoring(
    customer_id: int, factoring_in: FactoringIn, session: SessionDep, actor: AnalystUser
) -> dict[str, object]:
    factoring.set_factoring(
        session=session, customer_id=customer_id, actor=actor, reason=factoring_in.reason,
        stake_factor=factoring_in.stake_factor,
        restricted_sports=factoring_in.restricted_sports,
        restricted_price_types=factoring_in.restricted_price_types,
        inherit_linked_factor=factoring_in.inherit_linked_factor,
    )  # fmt: skip
    return get_factoring(customer_id, session, actor)


@router.get("/factoring.csv", response_class=Response)
def export_factoring(session: SessionDep, _actor: AnalystUser) -> Response:
    """Every customer's factoring as CSV for the operator's other systems."""
    return Response(factoring.export_csv(session=session), media_type="text/csv")


@router.post("/factoring/import")
async def import_factoring(
    request: Request, session: SessionDep, actor: AnalystUser
) -> dict[str, int]:
    """Apply a factoring CSV (same columns as the export); all rows or none."""
    text = (await request.body()).decode("utf-8-sig", "replace")
    return factoring.import_csv(session=session, text=text, actor=actor)
