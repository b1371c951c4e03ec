"""`sliplink users logout NAME` ends every web session of the user, and says how many."""

from __future__ import annotations

from sqlmodel import Session, select

from tests.cli.test_users_cmd import cli_db, run  # noqa: F401 - the fixture

PASSWORD = "a long enough password"


def test_users_logout_revokes_every_session(cli_db: str) -> None:  # noqa: F811
    from store import users
    from store.db import get_engine
    from store.models import AuditEntry

    made = run("users", "create", "ana", "--role", "analyst", "--password-stdin",
               stdin=PASSWORD + "\n")  # fmt: skip
    assert made.exit_code == 0, made.output
    engine = get_engine(cli_db)
    with Session(engine) as s:
        ana = users.user_by_name(session=s, username="ana")
        cookies = [users.issue_session(ana, session=s, secret="k") for _ in range(2)]  # type: ignore[arg-type]
        s.commit()
        assert all(users.read_session(c, session=s, secret="k") for c in cookies)
    ended = run("users", "logout", "ana")
    assert ended.exit_code == 0 and "ended 2 session(s) of ana" in ended.output
    with Session(engine) as s:
        assert not any(users.read_session(c, session=s, secret="k") for c in cookies)
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "user.logout_all")).one()
        assert entry.actor == "cli" and entry.after == {"sessions_ended": 2}
    missing = run("users", "logout", "nobody")
    assert missing.exit_code == 2 and "user 'nobody' not found" in missing.output
