"""Administration over the API: the audit log (read only), API keys, ending a user's sessions.

The audit log has no write route at all: entries are made by the services, inside the same
transaction as the change they describe, and the database refuses UPDATE and DELETE.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from sqlmodel import col, select

from api.deps import AdminUser, SessionDep
from store import users
from store.access import create_api_key, list_api_keys, revoke_api_key
from store.errors import Conflict
from store.models import ApiKey, AuditEntry, AuditPublic, Role

router = APIRouter(tags=["admin"])


class AuditPage(BaseModel):
    items: list[AuditPublic]
    next_before_id: int | None = Field(description="pass as before_id for the next page")


@router.get("/audit", response_model=AuditPage)
def read_audit(
    session: SessionDep,
    _actor: AdminUser,
    actor: str | None = Query(None, max_length=100, description="who acted"),
    action: str | None = Query(None, max_length=64, description="e.g. bet.create"),
    entity: str | None = Query(None, max_length=64),
    entity_id: str | None = Query(None, max_length=64),
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = Query(None, ge=1, le=2**62, description="entries older than this"),
    limit: int = Query(100, ge=1, le=1000),
) -> AuditPage:
    """Audit entries, newest first (who, what, when, from where, before and after)."""
    query = select(AuditEntry)
    equal = {"actor": actor, "action": action, "entity": entity, "entity_id": entity_id}
    for name, value in equal.items():
        if value is not None:
            query = query.where(getattr(AuditEntry, name) == value)
    if since is not None:
        query = query.where(col(AuditEntry.at) >= since)
    if until is not None:
        query = query.where(col(AuditEntry.at) < until)
    if before_id is not None:
        query = query.where(col(AuditEntry.id) < before_id)
    rows = session.exec(query.order_by(col(AuditEntry.id).desc()).limit(limit + 1)).all()
    items = [AuditPublic.model_validate(r, from_attributes=True) for r in rows[:limit]]
    return AuditPage(items=items, next_before_id=items[-1].id if len(rows) > limit else None)


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="who or what uses the key")
    role: Role
    shop_id: int | None = Field(None, ge=1, le=2**62, description="the shop role needs one")


class KeyPublic(BaseModel):
    id: int
    name: str
    prefix: str
    role: Role
    shop_id: int | None
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    key: str = Field(description="the key itself: shown this once, only its hash is stored")


def _key_public(row: ApiKey) -> KeyPublic:
    return KeyPublic.model_validate(row, from_attributes=True)


@router.get("/keys", response_model=list[KeyPublic])
def list_keys(session: SessionDep, _actor: AdminUser) -> list[KeyPublic]:
    """API keys: prefixes, roles and status, never the keys."""
    return [_key_public(row) for row in list_api_keys(session=session)]


@router.post("/keys", status_code=201, response_model=KeyCreated)
def create_key(body: KeyIn, session: SessionDep, actor: AdminUser) -> KeyCreated:
    row, plaintext = create_api_key(
        session=session, name=body.name, role=body.role, shop_id=body.shop_id, actor=actor
    )
    return KeyCreated(**_key_public(row).model_dump(), key=plaintext)


@router.post("/keys/{key_id}/revoke", response_model=KeyPublic)
def revoke_key(key_id: int, session: SessionDep, actor: AdminUser) -> KeyPublic:
    """Revoke a key: refused from its next request to this process, by every other API
    process within ``store.access.KEY_CACHE_SECONDS`` (2 s).  Not the key of this very
    request: an admin locking themselves out is a mistake (another admin key or the CLI can
    do it)."""
    if actor.key_id == key_id:
        raise Conflict(f"key {key_id} is the key of this request: revoke it with another key")
    return _key_public(revoke_api_key(session=session, key_id=key_id, actor=actor))


class SessionsEnded(BaseModel):
    username: str
    sessions_ended: int


@router.post("/users/{username}/logout", response_model=SessionsEnded)
def logout_everywhere(
    session: SessionDep, actor: AdminUser, username: str = Path(max_length=64)
) -> SessionsEnded:
    """End every web session of a user at once (a lost laptop, a copied cookie)."""
    ended = users.end_all_sessions(session=session, username=username, actor=actor)
    return SessionsEnded(username=username.strip().lower(), sessions_ended=ended)
