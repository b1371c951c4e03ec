"""Pooled PostgreSQL connections are pinged only after sitting idle: one used a moment ago is
handed out as is, one idle for longer whose server process went away is replaced."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text

from store import db
from tests.conftest import PG_ADMIN_URL


@pytest.mark.postgres
def test_an_idle_connection_to_a_gone_backend_is_replaced(postgres_database, monkeypatch):
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.2)
    engine = db.make_engine(postgres_database)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as conn:  # back a moment ago: the same connection, no ping
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() == pid
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        time.sleep(0.4)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        engine.dispose()
        admin.dispose()
