from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminUser, AnyUser, SessionDep
from store import customers
from store.models import ShopCreate, ShopPublic, ShopUpdate

router = APIRouter(prefix="/shops", tags=["shops"])


@router.post("", status_code=201, response_model=ShopPublic)
def create_shop(shop_in: ShopCreate, session: SessionDep, actor: AdminUser) -> ShopPublic:
    return ShopPublic.model_validate(
        customers.create_shop(session=session, shop_in=shop_in, actor=actor)
    )


@router.get("", response_model=list[ShopPublic])
def list_shops(session: SessionDep, _actor: AnyUser) -> list[ShopPublic]:
    return [ShopPublic.model_validate(s) for s in customers.list_shops(session=session)]


@router.get("/{shop_id}", response_model=ShopPublic)
def get_shop(shop_id: int, session: SessionDep, _actor: AnyUser) -> ShopPublic:
    return ShopPublic.model_validate(customers.get_shop(session=session, shop_id=shop_id))


@router.patch("/{shop_id}", response_model=ShopPublic)
def update_shop(
    shop_id: int, shop_in: ShopUpdate, session: SessionDep, actor: AdminUser
) -> ShopPublic:
    return ShopPublic.model_validate(
        customers.update_shop(session=session, shop_id=shop_id, shop_in=shop_in, actor=actor)
    )
