"""Engines and sessions.  Engines are made once per process by `get_engine`, never at import."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from threading import Lock
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlmodel import Session, create_engine

from store.errors import Conflict

T = TypeVar("T")

_engines: dict[str, Engine] = {}
_lock = Lock()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    # WAL lets the API read while the in-process worker writes; foreign keys are off by default
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20)
    event.listen(engine, "checkin", _checked_in)
    event.listen(engine, "checkout", _pinger(engine))
    return engine


# A pooled connection is pinged before use only if it sat idle for longer than this: one
# back from a request a moment ago is alive (pool_pre_ping, a ping on every checkout, was a
# seventh of the round trips of a POST /bets).  Connections left idle across a server
# restart or an idle timeout are still pinged and replaced.
PING_AFTER_IDLE_S = 1.0


def _checked_in(_dbapi_conn: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _pinger(engine: Engine) -> Callable[[Any, Any, Any], None]:
    def ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since <= PING_AFTER_IDLE_S:
            return  # new, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # noqa: BLE001 - any failure: the pool connects afresh
            raise DisconnectionError(f"stale pooled connection: {exc}") from exc

    return ping_if_idle


def warm_pool(engine: Engine, connections: int) -> None:
    """Open up to ``connections`` pooled connections now (at server start) rather than
    under the first burst of requests; a no-op for SQLite's per-thread connections."""
    if engine.dialect.name == "sqlite":
        return
    held = []
    try:
        for _ in range(min(connections, engine.pool.size())):  # type: ignore[attr-defined]
            held.append(engine.connect())
    finally:
        for conn in held:
            conn.close()


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: the configured database)."""
    if url is None:
        from store.settings import get_settings

        url = get_settings().effective_database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
        return engine


def dispose_engines() -> None:
    """Drop pooled connections, e.g. after fork in a Celery worker process."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A unit of work: commits on success, rolls back on error.  Used by tasks and the CLI."""
    session = Session(engine or get_engine(), expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def add_unique(session: Session, row: T, *, conflict: str) -> T:
    """Add and flush ``row``; when it breaks a unique constraint, raise ``Conflict(conflict)``.
    The savepoint keeps the caller's transaction usable after the IntegrityError."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise Conflict(conflict) from None
    return row


def migrate(url: str | None = None, *, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic: the only way the schema changes."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, *, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def alembic_config(url: str | None = None):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    import migrations

    if url is None:
        from store.settings import get_settings

        url = get_settings().effective_database_url
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg
