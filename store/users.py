"""People who log in to the web UI: argon2 password hashes and server-side sessions.

API keys (``store.access``) stay the way scripts and shop tills authenticate; a user is a
person with a password, a role and, for shop staff, a shop.  A login makes a row in
``user_sessions``; the cookie carries a random token (only its SHA-256 is stored), signed
with the settings' secret key, and the CSRF token is derived from it.  Logging out revokes
the row, so a copied cookie stops working too; changing a password or disabling the user
revokes all of the user's sessions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import Field, Session, SQLModel, col, delete, select

from store import audit
from store.access import Actor
from store.db import add_unique
from store.errors import Invalid, NotFound
from store.models import Role, Shop, _enum, as_utc, utcnow

SESSION_COOKIE = "sliplink_session"
SESSION_SECONDS = 12 * 3600
MIN_PASSWORD = 10
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
# argon2id with the library's defaults (RFC 9106 "second recommended" profile: t=3, 64 MiB).
_hasher = PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # verified against when the username is unknown, so timing does not reveal which names exist
    return _hasher.hash("not-a-real-password-" + secrets.token_hex(8))


class User(SQLModel, table=True):
    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True, index=True)
    display_name: str = Field(default="", max_length=200)
    password_hash: str = Field(max_length=255)
    role: Role = Field(sa_type=_enum(Role))
    shop_id: int | None = Field(default=None, foreign_key="shops.id")
    created_at: datetime = Field(default_factory=utcnow, nullable=False)
    password_changed_at: datetime = Field(default_factory=utcnow, nullable=False)
    last_login_at: datetime | None = None
    disabled_at: datetime | None = None


@dataclass(frozen=True)
class UserSession:
    """A verified session: the user's actor and the CSRF token bound to this session."""

    user_id: int
    actor: Actor
    csrf_token: str
    expires_at: float
    session_id: int


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"password: at least {MIN_PASSWORD} characters")


def create_user(
    *,
    session: Session,
    username: str,
    password: str,
    role: Role,
    shop_id: int | None = None,
    display_name: str = "",
    actor: Actor,
) -> User:
    username = username.strip().lower()
    if not _USERNAME.match(username):
        raise Invalid("username: 2-64 characters, lower-case letters, digits, '.', '_' or '-'")
    _check_password_strength(password)
    if role == Role.shop and shop_id is None:
        raise Invalid("shop_id: a shop user needs a shop")
    if role != Role.shop and shop_id is not None:
        raise Invalid("shop_id: only shop users belong to a shop")
    if shop_id is not None and session.get(Shop, shop_id) is None:
        raise NotFound(f"shop_id: shop {shop_id} not found")
    user = User(
        username=username,
        display_name=display_name,
        password_hash=hash_password(password),
        role=role,
        shop_id=shop_id,
    )
    add_unique(session, user, conflict=f"username: {username!r} already exists")
    audit.record(session, actor=actor.name, action="user.create", entity="user",
                 entity_id=user.id, after={"username": username, "role": role.value,
                                           "shop_id": shop_id})  # fmt: skip
    return user


def get_user(*, session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def user_by_name(*, session: Session, username: str) -> User | None:
    name = username.strip().lower()
    return session.exec(select(User).where(User.username == name)).first()


def list_users(*, session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(col(User.username))).all())


def disable_user(*, session: Session, username: str, actor: Actor) -> User:
    user = user_by_name(session=session, username=username)
    if user is None:
        raise NotFound(f"user {username!r} not found")
    if user.disabled_at is None:
        user.disabled_at = utcnow()
        session.add(user)
        _revoke_all(session, user.id)  # type: ignore[arg-type]
        audit.record(session, actor=actor.name, action="user.disable", entity="user",
                     entity_id=user.id, after={"username": user.username})  # fmt: skip
    return user


def set_password(*, session: Session, username: str, password: str, actor: Actor) -> User:
    user = user_by_name(session=session, username=username)
    if user is None:
        raise NotFound(f"user {username!r} not found")
    _check_password_strength(password)
    user.password_hash = hash_password(password)
    user.password_changed_at = utcnow()
    session.add(user)
    _revoke_all(session, user.id)  # type: ignore[arg-type]
    audit.record(session, actor=actor.name, action="user.password", entity="user",
                 entity_id=user.id)  # fmt: skip
    return user


def actor_of(user: User) -> Actor:
    return Actor(name=user.username, role=user.role, shop_id=user.shop_id)


def authenticate(
    *, session: Session, username: str, password: str, remote_addr: str | None = None
) -> User | None:
    """The user when the password matches and the account is enabled, else None (audited)."""
    user = user_by_name(session=session, username=username)
    ok: bool
    try:
        ok = _hasher.verify(user.password_hash if user else _dummy_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if user is None or not ok or user.disabled_at is not None:
        audit.record(session, actor=username.strip().lower()[:100] or "?",
                     action="user.login_failed", entity="user",
                     entity_id=user.id if user else "", remote_addr=remote_addr)  # fmt: skip
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    session.add(user)
    audit.record(session, actor=user.username, action="user.login", entity="user",
                 entity_id=user.id, remote_addr=remote_addr)  # fmt: skip
    return user


# ---------------------------------------------------------------- server-side sessions
class LoginSession(SQLModel, table=True):
    """One web UI login.  The cookie carries a random token; only its SHA-256 is stored, and
    the row is what makes the cookie valid, so logging out (or an admin) can end it."""

    __tablename__ = "user_sessions"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, nullable=False)
    expires_at: datetime = Field(nullable=False)
    revoked_at: datetime | None = None
    remote_addr: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=200)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, purpose: str, payload: str) -> str:
    key = hashlib.sha256(f"sliplink:{purpose}:{secret}".encode()).digest()
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _at(now: float | None) -> datetime:
    return utcnow() if now is None else datetime.fromtimestamp(now, UTC)


def csrf_token_for(secret: str, nonce: str) -> str:
    return _sign(secret, "csrf", nonce)


def issue_session(
    user: User,
    *,
    session: Session,
    secret: str,
    lifetime: int = SESSION_SECONDS,
    now: float | None = None,
    remote_addr: str | None = None,
    user_agent: str | None = None,
) -> str:
    """Start a session for ``user`` (a row in ``user_sessions``); returns the cookie value.

    The cookie is signed as well, so forged values are refused before any database read."""
    started = _at(now)
    token = secrets.token_urlsafe(32)
    expires = started + timedelta(seconds=lifetime)
    # sessions long expired are of no use to anyone: drop them as new ones are made
    session.exec(  # type: ignore[call-overload]
        delete(LoginSession).where(col(LoginSession.expires_at) < started - timedelta(days=7))
    )
    session.add(LoginSession(user_id=user.id, token_hash=_token_hash(token),  # type: ignore[arg-type]
                             created_at=started, expires_at=expires, remote_addr=remote_addr,
                             user_agent=(user_agent or "")[:200] or None))  # fmt: skip
    session.flush()
    body = {"u": user.id, "e": int(expires.timestamp()), "n": token}
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_sign(secret, 'session', payload)}"


def read_session(
    value: str, *, session: Session, secret: str, now: float | None = None
) -> UserSession | None:
    """The session a cookie value stands for, or None when forged, expired or revoked."""
    payload, _, signature = value.partition(".")
    if not payload or not hmac.compare_digest(signature, _sign(secret, "session", payload)):
        return None
    try:
        body = json.loads(_unb64(payload))
        user_id, token = int(body["u"]), str(body["n"])
    except (ValueError, KeyError, TypeError):
        return None
    at = _at(now)
    row = session.exec(
        select(LoginSession).where(LoginSession.token_hash == _token_hash(token))
    ).first()
    if row is None or row.user_id != user_id or row.revoked_at is not None:
        return None
    if as_utc(row.expires_at) <= at:
        return None
    user = session.get(User, user_id)
    if user is None or user.disabled_at is not None:
        return None
    return UserSession(
        user_id=user_id,
        actor=actor_of(user),
        csrf_token=csrf_token_for(secret, token),
        expires_at=as_utc(row.expires_at).timestamp(),
        session_id=row.id,  # type: ignore[arg-type]
    )


def csrf_ok(user_session: UserSession, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(str(token), user_session.csrf_token)


def end_session(
    *, session: Session, user_session: UserSession, remote_addr: str | None = None
) -> None:
    """Logout: the session's row is revoked, so its cookie stops working everywhere at once."""
    row = session.get(LoginSession, user_session.session_id)
    if row is None or row.revoked_at is not None:
        return
    row.revoked_at = utcnow()
    session.add(row)
    audit.record(session, actor=user_session.actor.name, action="user.logout", entity="user",
                 entity_id=user_session.user_id, remote_addr=remote_addr)  # fmt: skip


def _revoke_all(session: Session, user_id: int) -> int:
    rows = session.exec(
        select(LoginSession).where(
            LoginSession.user_id == user_id, col(LoginSession.revoked_at).is_(None)
        )
    ).all()
    now = utcnow()
    for row in rows:
        row.revoked_at = now
        session.add(row)
    return len(rows)


def end_all_sessions(*, session: Session, username: str, actor: Actor) -> int:
    """Log a user out everywhere (a lost laptop, a stolen cookie); returns how many ended."""
    user = user_by_name(session=session, username=username)
    if user is None:
        raise NotFound(f"user {username!r} not found")
    ended = _revoke_all(session, user.id)  # type: ignore[arg-type]
    audit.record(session, actor=actor.name, action="user.logout_all", entity="user",
                 entity_id=user.id, after={"sessions_ended": ended})  # fmt: skip
    return ended


def active_sessions(*, session: Session, user_id: int) -> list[LoginSession]:
    return list(
        session.exec(
            select(LoginSession)
            .where(
                LoginSession.user_id == user_id,
                col(LoginSession.revoked_at).is_(None),
                col(LoginSession.expires_at) > utcnow(),
            )
            .order_by(col(LoginSession.id))
        ).all()
    )
