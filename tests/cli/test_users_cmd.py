"""`sliplink users ...` and `sliplink keys ...` on a fresh SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app


@pytest.fixture
def cli_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from store.db import dispose_engines, migrate, session_scope
    from store.settings import get_settings

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("SLIPLINK_DATABASE_URL", url)
    get_settings.cache_clear()
    migrate(url)
    from store.access import SYSTEM
    from store.customers import create_shop
    from store.db import get_engine
    from store.models import ShopCreate

    with session_scope(get_engine(url)) as s:
        create_shop(session=s, shop_in=ShopCreate(code="S01", name="One"), actor=SYSTEM)
    yield url
    get_settings.cache_clear()
    dispose_engines()


def run(*args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), input=stdin)


def test_users_create_list_disable_password(cli_db: str) -> None:
    made = run("users", "create", "Till.One", "--role", "shop", "--shop", "S01",
               "--password-stdin", stdin="a long enough password\n")  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "created user till.one (shop, shop 1)" in made.output
    listed = run("users", "list")
    assert listed.exit_code == 0 and "till.one\tshop\t1\t-\tactive" in listed.output
    assert run("users", "disable", "till.one").exit_code == 0
    assert "till.one\tshop\t1\t-\tdisabled" in run("users", "list").output
    changed = run("users", "password", "till.one", "--password-stdin", stdin="another long one\n")
    assert changed.exit_code == 0

    from sqlmodel import Session

    from store import users
    from store.db import get_engine

    with Session(get_engine(cli_db)) as s:
        row = users.user_by_name(session=s, username="till.one")
        assert row is not None and row.password_hash.startswith("$argon2id$")
        # disabled: even the new password is refused
        assert (
            users.authenticate(session=s, username="till.one", password="another long one") is None
        )


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["users", "create", "ana", "--role", "boss"], "x" * 12, "--role: 'boss' is not a role"),
        (["users", "create", "ana", "--role", "analyst"], "short", "password: at least 10"),
        (["users", "create", "ana", "--role", "shop"], "x" * 12, "shop_id: a shop user needs"),
        (["users", "create", "ana", "--role", "shop", "--shop", "S99"], "x" * 12,
         "--shop: no shop with code or id 'S99'"),
        (["users", "disable", "nobody"], None, "user 'nobody' not found"),
        (["keys", "revoke", "99"], None, "api key 99 not found"),
    ],
)  # fmt: skip
def test_bad_arguments_fail_with_one_line(cli_db: str, args, stdin, message) -> None:  # type: ignore[no-untyped-def]
    if stdin is not None:
        args = [*args, "--password-stdin"]
        stdin += "\n"
    result = run(*args, stdin=stdin)
    assert result.exit_code == 2 and message in result.output, result.output


def test_keys_create_list_revoke(cli_db: str) -> None:
    made = run("keys", "create", "--name", "till-S01", "--role", "shop", "--shop", "S01")
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("sl_") and len(key) > 40
    listed = run("keys", "list").output
    assert f"1\ttill-S01\tshop\t1\t{key[:10]}" in listed and listed.rstrip().endswith("active")
    assert run("keys", "revoke", "1").exit_code == 0
    assert run("keys", "list").output.rstrip().endswith("revoked")
    assert key not in run("keys", "list").output
