"""API keys and the acting principal.  Keys are random 256-bit tokens, so a SHA-256 digest is
enough to store them (passwords, which are guessable, are hashed with argon2 elsewhere)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from store import audit
from store.errors import Invalid, NotFound
from store.models import ApiKey, Role, Shop, utcnow

KEY_PREFIX = "sl_"


@dataclass(frozen=True)
class Actor:
    """Who is acting: the key's name, its role and, for the shop role, its shop."""

    name: str
    role: Role
    shop_id: int | None = None
    key_id: int | None = None

    def has(self, *roles: Role) -> bool:
        return self.role == Role.admin or self.role in roles


SYSTEM = Actor(name="system", role=Role.admin)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(
    *,
    session: Session,
    name: str,
    role: Role,
    shop_id: int | None = None,
    actor: Actor = SYSTEM,
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext key, which is shown once and never stored."""
    if role == Role.shop and shop_id is None:
        raise Invalid("shop_id: a shop key needs shop_id")
    if shop_id is not None and session.get(Shop, shop_id) is None:
        raise NotFound(f"shop_id: shop {shop_id} not found")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name, prefix=plaintext[:10], key_hash=hash_key(plaintext), role=role, shop_id=shop_id
    )
    session.add(row)
    session.flush()
    audit.record(session, actor=actor.name, action="apikey.create", entity="api_key",
                 entity_id=row.id, after={"name": name, "role": role.value, "shop_id": shop_id,
                                          "prefix": row.prefix})  # fmt: skip
    return row, plaintext


# built once: on every request, building and keying the statement cost more CPU than the look-up
_BY_HASH = select(ApiKey).where(ApiKey.key_hash == bindparam("key_hash"))


def actor_for_key(*, session: Session, key: str) -> Actor | None:
    row = session.exec(_BY_HASH, params={"key_hash": hash_key(key)}).first()
    if row is None or row.revoked_at is not None:
        return None
    return Actor(name=row.name, role=row.role, shop_id=row.shop_id, key_id=row.id)


def list_api_keys(*, session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(col(ApiKey.id))).all())


def revoke_api_key(*, session: Session, key_id: int, actor: Actor = SYSTEM) -> ApiKey:
    """Revoke a key: its next request is refused (the check reads the row every time)."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"api key {key_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
        audit.record(session, actor=actor.name, action="apikey.revoke", entity="api_key",
                     entity_id=key_id, before={"name": row.name, "role": row.role})  # fmt: skip
    return row
