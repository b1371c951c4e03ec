"""API keys and the acting principal.  Keys are random 256-bit tokens, so a SHA-256 digest is
enough to store them (passwords, which are guessable, are hashed with argon2 elsewhere)."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import bindparam, event
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


# ---------------------------------------------------------------- recently seen keys
# A valid key's principal is kept in memory for KEY_CACHE_SECONDS after it was read, so a
# busy till does not read its key's row on every request.  The bound on revocation: a key
# revoked through this process (the API's /keys/{id}/revoke) is refused by it at once; one
# revoked elsewhere (the CLI, another API process or machine) is refused everywhere within
# KEY_CACHE_SECONDS.  Unknown and revoked keys are never kept, so a new key works at once.
KEY_CACHE_SECONDS = 2.0
_KEY_CACHE_MAX = 10_000  # distinct keys; beyond it the cache starts over
_key_cache: dict[str, tuple[Actor, float]] = {}
_key_cache_lock = threading.Lock()
_key_cache_epoch = 0  # bumped by every revocation: a look-up that overlapped one is not kept


def recent_actor_for_key(key: str) -> tuple[str, Actor | None]:
    """(the key's hash, its principal if read from the database less than KEY_CACHE_SECONDS
    ago); no I/O, so the API can call it on its event loop."""
    key_hash = hash_key(key)
    hit = _key_cache.get(key_hash)
    if hit is not None and time.monotonic() - hit[1] < KEY_CACHE_SECONDS:
        return key_hash, hit[0]
    return key_hash, None


def key_cache_epoch() -> int:
    """Bumped by every revocation (``forget_recent_keys``)."""
    return _key_cache_epoch


def read_actor_for_key(*, session: Session, key_hash: str) -> Actor | None:
    """The key's principal read from the database (None: unknown or revoked); a valid one is
    kept for ``recent_actor_for_key``."""
    global _key_cache_epoch
    epoch, read_at = _key_cache_epoch, time.monotonic()
    row = session.exec(_BY_HASH, params={"key_hash": key_hash}).first()
    if row is None or row.revoked_at is not None:
        return None
    actor = Actor(name=row.name, role=row.role, shop_id=row.shop_id, key_id=row.id)
    with _key_cache_lock:
        if epoch == _key_cache_epoch:  # no revocation since the read began
            if len(_key_cache) >= _KEY_CACHE_MAX:
                _key_cache.clear()
            _key_cache[key_hash] = (actor, read_at)
    return actor


def forget_recent_keys() -> None:
    """Drop every kept principal (a key was revoked: the next request reads its row)."""
    global _key_cache_epoch
    with _key_cache_lock:
        _key_cache_epoch += 1
        _key_cache.clear()


def list_api_keys(*, session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(col(ApiKey.id))).all())


def revoke_api_key(*, session: Session, key_id: int, actor: Actor = SYSTEM) -> ApiKey:
    """Revoke a key: its next request to this process is refused, to any other process
    within ``KEY_CACHE_SECONDS``."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"api key {key_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
        # refused by this process from now on: dropped now, and again once the revocation is
        # committed (a request reading the row in between saw it unrevoked and kept it)
        forget_recent_keys()
        event.listen(session, "after_commit", lambda _s: forget_recent_keys(), once=True)
        audit.record(session, actor=actor.name, action="apikey.revoke", entity="api_key",
                     entity_id=key_id, before={"name": row.name, "role": row.role})  # fmt: skip
    return row
