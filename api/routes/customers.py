from __future__ import annotations

from fastapi import APIRouter, Query

from api.deps import AnalystUser, SessionDep
from store import customers
from store.models import CustomerCreate, CustomerPublic, CustomerUpdate

router = APIRouter(prefix="/customers", tags=["customers"])


@router.post("", status_code=201, response_model=CustomerPublic)
def create_customer(
    customer_in: CustomerCreate, session: SessionDep, actor: AnalystUser
) -> CustomerPublic:
    customer = customers.create_customer(session=session, customer_in=customer_in, actor=actor)
    return CustomerPublic.model_validate(customer)


@router.get("", response_model=list[CustomerPublic])
def list_customers(
    session: SessionDep,
    _actor: AnalystUser,
    risk_category: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> list[CustomerPublic]:
    rows = customers.list_customers(
        session=session, risk_category=risk_category, limit=limit, offset=offset
    )
    return [CustomerPublic.model_validate(c) for c in rows]


@router.get("/{customer_id}", response_model=CustomerPublic)
def get_customer(customer_id: int, session: SessionDep, _actor: AnalystUser) -> CustomerPublic:
    return CustomerPublic.model_validate(
        customers.get_customer(session=session, customer_id=customer_id)
    )


@router.patch("/{customer_id}", response_model=CustomerPublic)
def update_customer(
    customer_id: int, customer_in: CustomerUpdate, session: SessionDep, actor: AnalystUser
) -> CustomerPublic:
    customer = customers.update_customer(
        session=session, customer_id=customer_id, customer_in=customer_in, actor=actor
    )
    return CustomerPublic.model_validate(customer)
