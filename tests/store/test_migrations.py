from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError

from store.db import downgrade, migrate

TABLES = {"shops", "customers", "bets", "legs", "slips", "slip_images", "audit_log", "api_keys",
          "users", "user_sessions"}  # fmt: skip


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(db_url):
    assert TABLES <= _tables(db_url)
    downgrade(db_url)
    assert not TABLES & _tables(db_url)
    migrate(db_url)
    assert TABLES <= _tables(db_url)


def test_audit_log_is_append_only_in_the_database(db_url):
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_log (at, actor, action, entity, entity_id) "
                          "VALUES (CURRENT_TIMESTAMP, 'me', 'x', 'y', '1')"))  # fmt: skip
    for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor FROM audit_log")).scalar_one() == "me"
    engine.dispose()


@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_migrated_schema_matches_the_models(db_url):
    # the models and the migrations describe one schema: a column, index or constraint added
    # to one and not the other shows up here (expression indexes cannot be compared on SQLite)
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import store.models  # noqa: F401  (registers the tables)

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    finally:
        engine.dispose()
    assert diff == []
