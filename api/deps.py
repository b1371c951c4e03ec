"""Named dependency types: the request's session and the acting principal with its role."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader
from sqlmodel import Session

from api import permissions
from store.access import Actor, key_cache_epoch, read_actor_for_key, recent_actor_for_key
from store.db import get_engine, session_scope
from store.settings import Settings


@contextmanager
def request_session(request: Request) -> Iterator[Session]:
    """The request's unit of work: committed at the end, then any after-commit callbacks."""
    engine = request.app.state.engine if hasattr(request.app.state, "engine") else get_engine()
    with session_scope(engine) as session:
        # audit entries written in this request say where it came from (store.audit.record)
        session.info["remote_addr"] = request.client.host if request.client else None
        yield session
    # reached only after the commit; a closed session keeps its info
    for callback in session.info.pop("after_commit", []):
        callback()


def get_session(request: Request) -> Iterator[Session]:
    """One session per request (``request_session``)."""
    with request_session(request) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def _app_settings(request: Request) -> Settings:
    # async: no I/O, and a sync dependency costs a hop to the thread pool on every request
    return request.app.state.settings  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(_app_settings)]

_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="sliplink API key")


async def get_actor(request: Request, key: str | None = Depends(_api_key)) -> Actor:
    """The caller, authenticated by API key or session cookie and admitted by the access
    table (``api.permissions``) to this operation.

    async: a key seen in the last ``store.access.KEY_CACHE_SECONDS`` is known without I/O,
    so it costs no hop to the thread pool; otherwise its row is read on a worker thread."""
    if not key:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            key = auth[7:].strip()
    if not key:
        actor = await run_in_threadpool(_session_actor, request)
        if actor is None:
            raise Unauthenticated("missing API key (X-API-Key header or Authorization: Bearer)")
        return permissions.admit(request, actor)
    key_hash, found = recent_actor_for_key(key)
    if found is None:
        found = await _read_key_once(request, key_hash)
    if found is None:
        raise Unauthenticated("invalid or revoked API key")
    return permissions.admit(request, found)


# the key reads in flight, per event loop, app, key hash and revocation epoch
_KEY_READS: dict[tuple[object, object, str, int], asyncio.Future[Actor | None]] = {}


async def _read_key_once(request: Request, key_hash: str) -> Actor | None:
    """The key's row read on a worker thread, once for all the requests that miss the cache
    together: a till's burst at start-up, or when its kept principal expires, would
    otherwise read the same row once per request (2026-12-06: 16 reads at once per server
    process, more threads than pooled connections).  A read that began before a revocation
    (``key_cache_epoch``) is not shared with requests that arrive after it."""
    slot = (asyncio.get_running_loop(), request.app, key_hash, key_cache_epoch())
    read = _KEY_READS.get(slot)
    if read is None:
        read = asyncio.ensure_future(run_in_threadpool(_read_key, request, key_hash))
        _KEY_READS[slot] = read
        read.add_done_callback(lambda _: _KEY_READS.pop(slot, None))
    return await asyncio.shield(read)  # one caller cancelled does not cancel the others'


def _read_key(request: Request, key_hash: str) -> Actor | None:
    with Session(request.app.state.engine) as session:
        return read_actor_for_key(session=session, key_hash=key_hash)


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _session_actor(request: Request) -> Actor | None:
    """The web UI's path: a signed session cookie; state changes also need its CSRF token.

    API-key requests never reach here, so scripts need no CSRF token."""
    from store import users

    cookie = request.cookies.get(users.SESSION_COOKIE)
    if not cookie:
        return None
    with Session(request.app.state.engine) as session:
        user_session = users.read_session(
            cookie, session=session, secret=request.app.state.settings.secret_key
        )
    if user_session is None:
        return None
    if request.method not in _SAFE_METHODS and not users.csrf_ok(
        user_session, request.headers.get("x-csrf-token")
    ):
        from store.errors import Forbidden

        raise Forbidden("CSRF token missing or wrong: send the X-CSRF-Token header")
    request.state.user_session = user_session
    return user_session.actor


class Unauthenticated(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


AnyUser = Annotated[Actor, Depends(get_actor)]
# The names below say at the route which roles it is meant for; the access table
# (api/permissions.py) is what admits or refuses, so the decision lives in one place.
ShopUser = AnyUser
AnalystUser = AnyUser
MLUser = AnyUser
AdminUser = AnyUser
