"""`sliplink users create|list|disable|password|logout` and `sliplink keys create|list|revoke`.

Both work on the configured database (``SLIPLINK_DATABASE_URL`` or the embedded default),
migrating it first, and write the audit log as the ``cli`` actor.
"""

from __future__ import annotations

import sys

import typer

from store.access import Actor
from store.models import Role

users_app = typer.Typer(help="Web UI users (argon2 password hashes).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys for shop tills and scripts.", no_args_is_help=True)

CLI_ACTOR = Actor(name="cli", role=Role.admin)
ROLES = "shop, analyst, ml or admin"


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(keys_app, name="keys")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        _fail(f"--role: {value!r} is not a role; use {ROLES}")
        raise  # unreachable: _fail exits


def _scope():  # type: ignore[no-untyped-def]
    from store.db import migrate, session_scope
    from store.settings import get_settings

    migrate(get_settings().effective_database_url)
    return session_scope()


def _shop_id(session, shop: str | None) -> int | None:  # type: ignore[no-untyped-def]
    """A shop given by code (S01) or id."""
    if shop is None:
        return None
    from sqlmodel import select

    from store.models import Shop

    row = session.exec(select(Shop).where(Shop.code == shop)).first()
    if row is None and shop.isdigit():
        row = session.get(Shop, int(shop))
    if row is None:
        _fail(f"--shop: no shop with code or id {shop!r}")
    return row.id  # type: ignore[no-any-return]


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@users_app.command("create")
def users_create(
    username: str = typer.Argument(..., help="login name (lower-case letters, digits, . _ -)"),
    role: str = typer.Option(..., "--role", help=ROLES),
    shop: str | None = typer.Option(None, "--shop", help="shop code or id (shop role only)"),
    name: str = typer.Option("", "--name", help="display name"),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="read the password from stdin instead of prompting"
    ),
) -> None:
    """Create a user who logs in to the web UI."""
    from store import users
    from store.errors import DomainError

    the_role = _role(role)
    password = _read_password(password_stdin)
    try:
        with _scope() as session:
            user = users.create_user(
                session=session, username=username, password=password, role=the_role,
                shop_id=_shop_id(session, shop), display_name=name, actor=CLI_ACTOR,
            )  # fmt: skip
            shown = f"user {user.username} ({user.role.value}"
            shown += f", shop {user.shop_id})" if user.shop_id else ")"
    except DomainError as exc:
        _fail(exc.detail)
    typer.echo(f"created {shown}")


@users_app.command("list")
def users_list() -> None:
    """Users with role, shop, last login and whether they are disabled."""
    from store import users

    with _scope() as session:
        rows = users.list_users(session=session)
        typer.echo("username\trole\tshop\tlast_login\tstatus")
        for u in rows:
            last = u.last_login_at.isoformat(timespec="seconds") if u.last_login_at else "-"
            status = "disabled" if u.disabled_at else "active"
            typer.echo(f"{u.username}\t{u.role.value}\t{u.shop_id or '-'}\t{last}\t{status}")


@users_app.command("disable")
def users_disable(username: str = typer.Argument(...)) -> None:
    """Disable a user: their sessions end at the next request."""
    from store import users
    from store.errors import DomainError

    try:
        with _scope() as session:
            users.disable_user(session=session, username=username, actor=CLI_ACTOR)
    except DomainError as exc:
        _fail(exc.detail)
    typer.echo(f"disabled {username}")


@users_app.command("password")
def users_password(
    username: str = typer.Argument(...),
    password_stdin: bool = typer.Option(False, "--password-stdin"),
) -> None:
    """Set a new password (ends the user's existing sessions)."""
    from store import users
    from store.errors import DomainError

    password = _read_password(password_stdin)
    try:
        with _scope() as session:
            users.set_password(
                session=session, username=username, password=password, actor=CLI_ACTOR
            )
    except DomainError as exc:
        _fail(exc.detail)
    typer.echo(f"password changed for {username}")


@users_app.command("logout")
def users_logout(username: str = typer.Argument(...)) -> None:
    """End every web session of a user now (a lost laptop, a copied cookie)."""
    from store import users
    from store.errors import DomainError

    try:
        with _scope() as session:
            ended = users.end_all_sessions(session=session, username=username, actor=CLI_ACTOR)
    except DomainError as exc:
        _fail(exc.detail)
    typer.echo(f"ended {ended} session(s) of {username}")


@keys_app.command("create")
def keys_create(
    name: str = typer.Option(..., "--name", help="who or what uses the key, e.g. till-S01"),
    role: str = typer.Option(..., "--role", help=ROLES),
    shop: str | None = typer.Option(None, "--shop", help="shop code or id (shop role)"),
) -> None:
    """Create an API key; the key is printed once (stdout) and only its hash is stored."""
    from store.access import create_api_key
    from store.errors import DomainError

    the_role = _role(role)
    try:
        with _scope() as session:
            row, plaintext = create_api_key(
                session=session, name=name, role=the_role, shop_id=_shop_id(session, shop),
                actor=CLI_ACTOR,
            )  # fmt: skip
            key_id = row.id
    except DomainError as exc:
        _fail(exc.detail)
    typer.echo(f"created key {key_id} ({name}, {the_role.value}); store it now:", err=True)
    typer.echo(plaintext)


@keys_app.command("list")
def keys_list() -> None:
    """API keys (prefix only, never the key)."""
    from sqlmodel import col, select

    from store.models import ApiKey

    with _scope() as session:
        rows = session.exec(select(ApiKey).order_by(col(ApiKey.id))).all()
        typer.echo("id\tname\trole\tshop\tprefix\tcreated\tstatus")
        for k in rows:
            status = "revoked" if k.revoked_at else "active"
            created = k.created_at.isoformat(timespec="seconds")
            typer.echo(
                f"{k.id}\t{k.name}\t{k.role.value}\t{k.shop_id or '-'}\t{k.prefix}\t{created}"
                f"\t{status}"
            )


@keys_app.command("revoke")
def keys_revoke(key_id: int = typer.Argument(..., help="the key's id (see keys list)")) -> None:
    """Revoke an API key: running servers refuse it within 2 s."""
    from store.access import revoke_api_key
    from store.errors import DomainError

    try:
        with _scope() as session:
            revoke_api_key(session=session, key_id=key_id, actor=CLI_ACTOR)  # audited
    except DomainError as exc:
        _fail(exc.detail)
    typer.echo(f"revoked key {key_id}")
