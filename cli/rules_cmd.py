"""`sliplink rules list|validate|backtest`: the rules as data the team can read, check and
replay over stored history before switching a change on.

``validate`` needs no database.  ``list`` and ``backtest`` use the configured database
(``SLIPLINK_DATABASE_URL`` or the embedded default, migrated first); ``backtest`` writes
nothing: its session is rolled back.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

rules_app = typer.Typer(help="Rules: list, validate rule files, back-test.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(rules_app, name="rules")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _date(value: str, option: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"{option}: {value!r} is not an ISO date (YYYY-MM-DD or YYYY-MM-DDTHH:MM)")
        raise
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _session():  # type: ignore[no-untyped-def]
    from sqlmodel import Session

    from store.db import get_engine, migrate
    from store.settings import get_settings

    url = get_settings().effective_database_url
    migrate(url)
    return Session(get_engine(url), expire_on_commit=False)


def _load(paths: list[Path]):  # type: ignore[no-untyped-def]
    from rules.loader import RuleFileError, load_rules

    try:
        return load_rules([str(p) for p in paths] or None)
    except RuleFileError as exc:
        _fail(str(exc))
        raise


@rules_app.command("validate")
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="extra rule files or dirs")] = None,
) -> None:
    """Load and validate the builtin rules plus PATHS; errors name file, rule and field."""
    from rules.loader import RuleFileError, load_engine_settings

    rules = _load(list(paths or []))
    try:
        load_engine_settings([str(p) for p in paths or [] if p.is_dir()])
    except RuleFileError as exc:
        _fail(str(exc))
    enabled = sum(r.enabled for r in rules)
    typer.echo(f"{len(rules)} rules OK ({enabled} enabled)")


@rules_app.command("list")
def list_rules(
    paths: Annotated[list[Path] | None, typer.Argument(help="extra rule files or dirs")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The rules with their stored versions and the precision of their closed cases."""
    from rules.engine import active_rules
    from rules.loader import format_duration
    from store.alerts import rule_precision

    _load(list(paths or []))
    with _session() as session:
        rules = active_rules(session=session, paths=[str(p) for p in paths or []])
        precision = rule_precision(session=session)
        session.commit()  # new versions of changed rules are recorded
    rows = []
    for r in rules:
        stats = precision.get(r.id) or {}
        rows.append(
            {
                "id": r.id,
                "version": r.version,
                "kind": r.kind,
                "enabled": r.enabled,
                "inbox": r.inbox,
                "window": format_duration(r.window),
                "closed": stats.get("closed", 0),
                "precision": stats.get("precision"),
                "source": r.source,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'id':32} {'v':>3} {'on':3} {'inbox':18} {'window':7} {'closed':>6} precision")
    for row in rows:
        p = "-" if row["precision"] is None else f"{row['precision']:.2f}"
        typer.echo(
            f"{row['id']:32} {row['version']:>3} {'yes' if row['enabled'] else 'no':3} "
            f"{row['inbox']:18} {row['window'] or '-':7} {row['closed']:>6} {p}"
        )


@rules_app.command("backtest")
def backtest_cmd(
    rule_id: Annotated[str, typer.Argument(metavar="RULE", help="rule id")],
    start: Annotated[str, typer.Option("--from", help="start date (ISO, UTC)")],
    end: Annotated[str, typer.Option("--to", help="end date (ISO, UTC), exclusive")],
    draft: Annotated[Path | None, typer.Option("--file", help="a draft rule file")] = None,
    out: Annotated[Path | None, typer.Option("--json", help="also write JSON here")] = None,
) -> None:
    """Alerts RULE (or a --file draft of it) would have raised over stored history.

    Nothing is raised or written.
    """
    from sqlmodel import col, select

    from rules.engine import backtest
    from rules.loader import RuleFileError, content_hash, load_file
    from store.alerts import RuleVersion

    t0, t1 = _date(start, "--from"), _date(end, "--to")
    if t1 <= t0:
        _fail("--to: must be after --from")
    if draft is not None:
        try:
            candidates = load_file(draft)
        except RuleFileError as exc:
            _fail(str(exc))
            raise
    else:
        candidates = _load([])
    matches = [r for r in candidates if r.id == rule_id]
    if not matches:
        known = ", ".join(sorted(r.id for r in candidates))
        _fail(f"RULE: no rule {rule_id!r} (known: {known})")
    rule = matches[0]
    session = _session()
    try:
        digest = content_hash(rule)
        stored = session.exec(
            select(RuleVersion.version)
            .where(RuleVersion.rule_id == rule.id, RuleVersion.content_hash == digest)
            .order_by(col(RuleVersion.version).desc())
        ).first()
        from dataclasses import replace

        rule = replace(rule, version=stored or 0)
        result = backtest(session=session, rule=rule, start=t0, end=t1)
    finally:
        session.rollback()
        session.close()
    label = f"version {rule.version}" if rule.version else "draft (not a stored version)"
    typer.echo(f"rule {rule.id} ({label}) from {t0:%Y-%m-%d %H:%M} to {t1:%Y-%m-%d %H:%M} UTC")
    typer.echo(f"  triggers replayed: {result.triggers}")
    typer.echo(f"  alerts it would raise: {result.alerts}")
    for name in ("critical", "high", "medium", "low"):
        if result.by_severity.get(name):
            typer.echo(f"    {name}: {result.by_severity[name]}")
    for inbox, n in sorted(result.by_inbox.items()):
        typer.echo(f"    inbox {inbox}: {n}")
    if result.precision is not None:
        typer.echo(
            f"  precision of closed cases: {result.precision:.2f} ({result.closed_cases} closed)"
        )
    if out is not None:
        out.write_text(json.dumps(result.to_json(), indent=2, default=str))
