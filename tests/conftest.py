"""Shared fixtures: a real database per backend (SQLite file, PostgreSQL server), built with
`alembic upgrade head`, and an API client with keys for each role."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
PG_ADMIN_URL = os.environ.get(
    "SLIPLINK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for every test (migrating once keeps tests fast)."""
    from store.db import migrate

    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, migrated to head; dropped at the end."""
    name = f"sliplink_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the suite must fail, never skip, without PostgreSQL
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    from store.db import dispose_engines, migrate

    migrate(url)
    yield url
    dispose_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_all(url: str) -> None:
    """Empty every table the migrations made (all but Alembic's own)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        names = (
            conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version'"
                )
            )
            .scalars()
            .all()
        )
        if names:
            tables = ", ".join(f'"{name}"' for name in names)
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test runs once on SQLite and once on PostgreSQL, on an empty migrated schema."""
    if request.param == "sqlite":
        path = tmp_path / "sliplink.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_database")
        _truncate_all(url)
        yield url
    from store.clustering import clear_account_profiles
    from store.db import dispose_engines

    dispose_engines()
    clear_account_profiles()  # the next test's database may have this one's address


@pytest.fixture
def settings(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    from store.settings import Settings

    return Settings(environment="test", database_url=db_url, data_dir=tmp_path / "data")


@pytest.fixture
def engine(settings):  # type: ignore[no-untyped-def]
    from store.db import get_engine

    return get_engine(settings.effective_database_url)


@pytest.fixture
def session(engine):  # type: ignore[no-untyped-def]
    from sqlmodel import Session

    with Session(engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def app(settings):  # type: ignore[no-untyped-def]
    from api.main import create_app

    return create_app(settings, pipeline=None)


class Keys:
    """Plaintext API keys per role, created in the test database."""

    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        self.engine = engine
        from store.models import Role

        self.admin = self.make(role=Role.admin)
        self.analyst = self.make(role=Role.analyst)
        self.ml = self.make(role=Role.ml)

    def make(self, *, role, shop_id: int | None = None) -> str:  # type: ignore[no-untyped-def]
        from sqlmodel import Session

        from store.access import create_api_key

        with Session(self.engine) as session:
            _, key = create_api_key(
                session=session, name=f"test-{role}-{shop_id}", role=role, shop_id=shop_id
            )
            session.commit()
        return key

    def shop(self, shop_id: int) -> str:
        from store.models import Role

        return self.make(role=Role.shop, shop_id=shop_id)


@pytest.fixture
def keys(engine) -> Keys:  # type: ignore[no-untyped-def]
    return Keys(engine)


@pytest.fixture
def client(app, keys):  # type: ignore[no-untyped-def]
    """An admin client; pass other keys per request with ``headers=auth(key)``."""
    from fastapi.testclient import TestClient

    with TestClient(app, headers={"X-API-Key": keys.admin}) as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"X-API-Key": key}
