"""Customers and shops: create, read, update (every change audited)."""

from __future__ import annotations

from sqlmodel import Session, col, select

from store import audit
from store.access import Actor
from store.db import add_unique
from store.errors import NotFound
from store.models import (
    Customer,
    CustomerCreate,
    CustomerUpdate,
    Shop,
    ShopCreate,
    ShopUpdate,
    as_utc,
    utcnow,
)


def create_shop(*, session: Session, shop_in: ShopCreate, actor: Actor) -> Shop:
    shop = Shop.model_validate(shop_in)
    add_unique(session, shop, conflict=f"code: a shop with code {shop_in.code!r} already exists")
    audit.record(session, actor=actor.name, action="shop.create", entity="shop",
                 entity_id=shop.id, after=shop_in.model_dump())  # fmt: skip
    return shop


def get_shop(*, session: Session, shop_id: int) -> Shop:
    shop = session.get(Shop, shop_id)
    if shop is None:
        raise NotFound(f"shop {shop_id} not found")
    return shop


def list_shops(*, session: Session) -> list[Shop]:
    return list(session.exec(select(Shop).order_by(col(Shop.code))).all())


def update_shop(*, session: Session, shop_id: int, shop_in: ShopUpdate, actor: Actor) -> Shop:
    shop = get_shop(session=session, shop_id=shop_id)
    before = shop.model_dump(include=set(shop_in.model_fields_set))
    shop.sqlmodel_update(shop_in.model_dump(exclude_unset=True))
    session.add(shop)
    audit.record(session, actor=actor.name, action="shop.update", entity="shop",
                 entity_id=shop_id, before=before,
                 after=shop_in.model_dump(exclude_unset=True))  # fmt: skip
    return shop


def create_customer(*, session: Session, customer_in: CustomerCreate, actor: Actor) -> Customer:
    data = customer_in.model_dump()
    if data.get("registered_at"):
        data["registered_at"] = as_utc(data["registered_at"])
    customer = Customer.model_validate(data)
    add_unique(
        session,
        customer,
        conflict=f"external_ref: a customer with ref {customer_in.external_ref!r} already exists",
    )
    audit.record(session, actor=actor.name, action="customer.create", entity="customer",
                 entity_id=customer.id, after=customer_in.model_dump())  # fmt: skip
    return customer


def get_customer(*, session: Session, customer_id: int) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id} not found")
    return customer


def list_customers(
    *, session: Session, risk_category: str | None = None, limit: int = 100, offset: int = 0
) -> list[Customer]:
    query = select(Customer)
    if risk_category is not None:
        query = query.where(Customer.risk_category == risk_category)
    return list(session.exec(query.order_by(col(Customer.id)).limit(limit).offset(offset)).all())


def update_customer(
    *, session: Session, customer_id: int, customer_in: CustomerUpdate, actor: Actor
) -> Customer:
    customer = get_customer(session=session, customer_id=customer_id)
    changes = customer_in.model_dump(exclude_unset=True)
    before = {k: getattr(customer, k) for k in changes}
    customer.sqlmodel_update(changes)
    customer.updated_at = utcnow()
    session.add(customer)
    audit.record(session, actor=actor.name, action="customer.update", entity="customer",
                 entity_id=customer_id, before=before, after=changes)  # fmt: skip
    return customer
