"""`sliplink rules validate|list|backtest` on a real SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from cli.main import app
from rules.loader import BUILTIN_DIR
from tests.factories import make_customer, make_shop
from tests.rules.scenario import T0, activate, bet, days, hours

runner = CliRunner()


@pytest.fixture
def cli_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from store.db import get_engine, migrate
    from store.settings import get_settings

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("SLIPLINK_DATABASE_URL", url)
    get_settings.cache_clear()
    migrate(url)
    yield get_engine(url)
    get_settings.cache_clear()


def test_validate(tmp_path):
    ok = runner.invoke(app, ["rules", "validate"])
    assert ok.exit_code == 0 and "rules OK" in ok.output
    bad = tmp_path / "bad.yaml"
    text = (BUILTIN_DIR / "05_structuring.yaml").read_text()
    bad.write_text(
        text.replace("id: structuring", "id: draft_structuring").replace(
            "min_shops: 2", "min_shops: two"
        )
    )
    result = runner.invoke(app, ["rules", "validate", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}: rule 'draft_structuring': params.min_shops: expected int" in result.output


def test_list_and_backtest(cli_db, tmp_path):
    with Session(cli_db) as session:
        activate(session)
        s1, s2 = make_shop(session), make_shop(session)
        for n in range(2):
            c = make_customer(session)
            bet(session, at=T0 + days(n), stake=900, customer=c.id, shop=s1.id)
            bet(session, at=T0 + days(n) + hours(1), stake=900, customer=c.id, shop=s2.id)
    listed = runner.invoke(app, ["rules", "list"])
    assert listed.exit_code == 0 and "structuring" in listed.output
    out = tmp_path / "bt.json"
    result = runner.invoke(
        app,
        [
            "rules",
            "backtest",
            "structuring",
            "--from",
            "2026-03-01",
            "--to",
            "2026-03-10",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "alerts it would raise: 2" in result.output and "(version 1)" in result.output
    assert '"alerts": 2' in out.read_text()
    draft = tmp_path / "draft.yaml"
    text = (BUILTIN_DIR / "05_structuring.yaml").read_text()
    draft.write_text(text.replace("min_shops: 2", "min_shops: 3"))
    result = runner.invoke(
        app,
        [
            "rules",
            "backtest",
            "structuring",
            "--from",
            "2026-03-01",
            "--to",
            "2026-03-10",
            "--file",
            str(draft),
        ],
    )
    assert "alerts it would raise: 0" in result.output and "draft" in result.output
    bad = runner.invoke(
        app, ["rules", "backtest", "structuring", "--from", "2026-03-10", "--to", "2026-03-01"]
    )
    assert bad.exit_code == 2 and "--to" in bad.output
    with Session(cli_db) as session:
        from sqlalchemy import func
        from sqlmodel import select

        from store.alerts import Alert

        assert session.exec(select(func.count()).select_from(Alert)).one() == 0
