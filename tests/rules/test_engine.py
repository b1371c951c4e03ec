"""The engine: bands, deduplication, rising severity, snoozes, scope, rule versions and
back-testing (which writes nothing)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlmodel import select

from rules.engine import (
    active_rules,
    backtest,
    band_for,
    decide,
    run_event_rules,
    run_screening,
    sync_versions,
)
from rules.loader import EngineSettings, load_rules
from rules.types import Band, Finding, Scope, Severity, Trigger
from store.access import SYSTEM
from store.alerts import Alert, AlertEvent, RuleVersion, snooze
from store.models import AuditEntry
from tests.factories import make_customer, make_shop
from tests.rules.scenario import T0, activate, bet, cluster, days, hours, join


def shipped(rule_id: str):  # type: ignore[no-untyped-def]
    return next(r for r in load_rules([]) if r.id == rule_id)


def structuring_alerts(session, trigger, now):  # type: ignore[no-untyped-def]
    out = [
        a
        for a in run_event_rules(session=session, trigger=trigger, now=now)
        if a.rule_id == "structuring"
    ]
    session.commit()
    return out


def test_bands_and_decisions():
    bands = (Band(1.0, 2.0, Severity.medium, "m {value}"), Band(2.0, None, Severity.high, "h"))
    assert band_for(bands, 0.99) is None
    assert band_for(bands, 1.0).severity == Severity.medium  # type: ignore[union-attr]
    assert band_for(bands, 2.0).severity == Severity.high  # type: ignore[union-attr]
    rule = replace(shipped("structuring"), bands=bands)
    settings = EngineSettings(link_confidence_floor=0.9)
    f = Finding("cluster", 1, 1.5, {"x": 1}, {}, link_confidence=0.95)
    d = decide(rule, f, settings=settings)
    assert d is not None and (d.severity, d.inbox, d.reason) == (
        Severity.medium,
        "compliance",
        "m 1.5",
    )
    f.link_confidence = 0.5
    d = decide(rule, f, settings=settings)
    assert d is not None and (d.severity, d.inbox) == (Severity.low, "link_verification")
    d = decide(rule, f, settings=settings, boost="staff observed distress")
    assert d is not None and d.severity == Severity.medium  # down for the link, up for staff
    f.value = 0.5
    assert decide(rule, f, settings=settings) is None


def test_one_open_alert_per_rule_pivot_window(session):
    activate(session)
    c = make_customer(session)
    shop1, shop2 = make_shop(session), make_shop(session)
    b1 = bet(session, at=T0 - hours(5), stake=900, customer=c.id, shop=shop1.id)
    b2 = bet(session, at=T0, stake=900, customer=c.id, shop=shop2.id)
    [first] = structuring_alerts(
        session, Trigger(kind="bet_placed", at=T0, bet_id=b2.id, customer_id=c.id), T0
    )
    assert first.hits == 1 and first.evidence["bets"] == [b1.id, b2.id]
    # the same finding again adds nothing
    [same] = structuring_alerts(
        session, Trigger(kind="bet_placed", at=T0, bet_id=b2.id, customer_id=c.id), T0
    )
    assert same.id == first.id and same.hits == 1
    # new evidence joins the open alert; a higher band would raise its severity
    b3 = bet(session, at=T0 + hours(1), stake=900, customer=c.id, shop=shop1.id)
    [again] = structuring_alerts(
        session,
        Trigger(kind="bet_placed", at=T0 + hours(1), bet_id=b3.id, customer_id=c.id),
        T0 + hours(1),
    )
    assert again.id == first.id and again.hits == 2 and b3.id in again.evidence["bets"]
    actions = session.exec(select(AlertEvent.action).where(AlertEvent.alert_id == first.id)).all()
    assert list(actions) == ["raised", "evidence"]
    assert (
        session.exec(
            select(func.count()).select_from(Alert).where(Alert.rule_id == "structuring")
        ).one()
        == 1
    )
    audit = session.exec(select(AuditEntry).where(AuditEntry.action == "alert.raise")).all()
    assert [a.entity_id for a in audit] == [str(first.id)]
    # after the window has passed, a new alert opens
    b4 = bet(session, at=T0 + days(5), stake=900, customer=c.id, shop=shop1.id)
    b5 = bet(session, at=T0 + days(5) + hours(1), stake=900, customer=c.id, shop=shop2.id)
    [later] = structuring_alerts(
        session,
        Trigger(kind="bet_placed", at=b5.placed_at, bet_id=b5.id, customer_id=c.id),
        b5.placed_at,
    )
    assert later.id != first.id and later.evidence["bets"] == [b4.id, b5.id]


def test_severity_rises_when_a_higher_band_is_crossed(session):
    activate(session)
    first = bet(session, at=T0 - hours(3), stake=1000)
    k = cluster(session, [(first, 0.95)])
    second = bet(session, at=T0 - hours(2), stake=800)
    join(session, k, second, 0.95)
    trig = Trigger(kind="slip_clustered", at=T0 - hours(2), bet_id=second.id, cluster_id=k)
    [a] = [
        x
        for x in run_event_rules(session=session, trigger=trig, now=trig.at)
        if x.rule_id == "unidentified_over_threshold"
    ]
    assert a.severity == 3
    session.commit()
    third = bet(session, at=T0, stake=3300)  # 5,100 GBP = 3 x 1,700
    join(session, k, third, 0.95)
    trig = Trigger(kind="slip_clustered", at=T0, bet_id=third.id, cluster_id=k)
    [b] = [
        x
        for x in run_event_rules(session=session, trigger=trig, now=T0)
        if x.rule_id == "unidentified_over_threshold"
    ]
    assert b.id == a.id and b.severity == 4 and b.value == 3.0
    events = session.exec(
        select(AlertEvent).where(AlertEvent.alert_id == a.id, AlertEvent.action == "severity")
    ).all()
    assert [(e.detail["from"], e.detail["to"]) for e in events] == [(3, 4)]


def test_snooze_suppresses_but_counts(session):
    activate(session)
    c = make_customer(session)
    s1, s2 = make_shop(session), make_shop(session)
    bet(session, at=T0 - hours(5), stake=900, customer=c.id, shop=s1.id)
    b2 = bet(session, at=T0, stake=900, customer=c.id, shop=s2.id)
    snooze(
        session=session,
        rule_id="structuring",
        pivot_kind="customer",
        pivot_id=c.id,
        until=T0 + days(3650),
        actor=SYSTEM,
        reason="known trader",
    )
    session.commit()
    [a] = structuring_alerts(
        session, Trigger(kind="bet_placed", at=T0, bet_id=b2.id, customer_id=c.id), T0
    )
    assert a.suppressed and a.hits == 1
    b3 = bet(session, at=T0 + hours(1), stake=900, customer=c.id, shop=s1.id)
    [a2] = structuring_alerts(
        session,
        Trigger(kind="bet_placed", at=b3.placed_at, bet_id=b3.id, customer_id=c.id),
        b3.placed_at,
    )
    assert a2.id == a.id and a2.suppressed and a2.hits == 2
    # another rule on the same pivot is not snoozed
    other = make_customer(session)
    assert other.id != c.id


def test_scope_limits_rules_to_a_region(session):
    activate(session)
    north, south = make_shop(session, region="North"), make_shop(session, region="South")
    c = make_customer(session)
    bet(session, at=T0 - hours(5), stake=900, customer=c.id, shop=north.id)
    b2 = bet(session, at=T0, stake=900, customer=c.id, shop=south.id)
    rule = shipped("structuring")
    from rules.engine import _evaluate

    trig = Trigger(kind="bet_placed", at=T0, bet_id=b2.id, customer_id=c.id)
    assert len(_evaluate(session, replace(rule, scope=Scope("region", "South")), trig)) == 1
    assert _evaluate(session, replace(rule, scope=Scope("region", "East")), trig) == []
    assert len(_evaluate(session, replace(rule, scope=Scope("shop", north.code)), trig)) == 1


def test_rule_versions_follow_content(session):
    rule = shipped("structuring")
    [v1] = sync_versions(session=session, rules=[rule])
    [same] = sync_versions(session=session, rules=[replace(rule, source="moved.yaml")])
    changed = replace(rule, params={**rule.params, "min_transactions": 4})
    [v2] = sync_versions(session=session, rules=[changed])
    session.commit()
    assert (v1.version, same.version, v2.version) == (1, 1, 2)
    rows = session.exec(select(RuleVersion).where(RuleVersion.rule_id == "structuring")).all()
    assert sorted(r.version for r in rows) == [1, 2]
    assert {r.content["params"]["min_transactions"] for r in rows} == {3, 4}
    by_id = {r.id: r for r in active_rules(session=session)}
    # going back to the shipped content is a change too: every change makes a new version
    assert by_id["structuring"].version == 3


def test_alerts_record_the_rule_version(session):
    activate(session)
    rule = shipped("structuring")
    sync_versions(session=session, rules=[replace(rule, description="an older draft")])
    session.commit()
    c = make_customer(session)
    s1, s2 = make_shop(session), make_shop(session)
    bet(session, at=T0 - hours(5), stake=900, customer=c.id, shop=s1.id)
    b2 = bet(session, at=T0, stake=900, customer=c.id, shop=s2.id)
    [a] = structuring_alerts(
        session, Trigger(kind="bet_placed", at=T0, bet_id=b2.id, customer_id=c.id), T0
    )
    assert a.rule_version == 2


def test_backtest_counts_without_writing(session):
    activate(session)
    s1, s2 = make_shop(session), make_shop(session)
    for n in range(3):  # three customers split over two shops, on different days
        c = make_customer(session)
        bet(session, at=T0 + days(2 * n), stake=900, customer=c.id, shop=s1.id)
        bet(session, at=T0 + days(2 * n) + hours(2), stake=900, customer=c.id, shop=s2.id)
    quiet = make_customer(session)
    bet(session, at=T0 + days(1), stake=900, customer=quiet.id, shop=s1.id)
    before = session.exec(select(func.count()).select_from(Alert)).one()
    rule = shipped("structuring")
    result = backtest(session=session, rule=rule, start=T0 - days(1), end=T0 + days(10))
    assert result.alerts == 3 and result.by_severity == {"high": 3}
    assert result.triggers == 11  # one per midnight from 2 to 12 March
    draft = replace(rule, params={**rule.params, "min_shops": 3})
    assert backtest(session=session, rule=draft, start=T0 - days(1), end=T0 + days(10)).alerts == 0
    session.commit()
    assert session.exec(select(func.count()).select_from(Alert)).one() == before
    with pytest.raises(ValueError, match="end"):
        backtest(session=session, rule=rule, start=T0, end=T0 - timedelta(seconds=1))


def test_event_backtest_replays_bets(session):
    activate(session)
    c = make_customer(session)
    from tests.rules.scenario import excluded_since

    own = bet(session, at=T0 - days(40), stake=10, customer=c.id)
    k = cluster(session, [(own, 0.97)])
    excluded_since(session, c, T0 - days(20))
    for h in (0, 5):
        join(session, k, bet(session, at=T0 + hours(h), stake=10), 0.95)
    rule = replace(shipped("self_excluded_betting"))
    kind_triggers = rule.kind
    assert kind_triggers == "self_excluded"
    result = backtest(session=session, rule=rule, start=T0 - days(1), end=T0 + days(1))
    assert result.alerts == 1 and result.by_severity == {"critical": 1}


def test_screening_runs_scheduled_kinds_only(session):
    activate(session)
    assert run_screening(session=session, now=T0) == []


def test_daily_screening_posts_one_milestone(session):
    from store.alerts import Notification

    activate(session)
    bet(session, at=T0 - hours(20), stake=5)  # 1 March, 16:00
    run_screening(session=session, now=T0)
    run_event_rules(session=session, trigger=Trigger(kind="schedule", at=T0), now=T0)
    session.commit()
    rows = session.exec(select(Notification).where(Notification.kind == "milestone")).all()
    assert len(rows) == 1 and rows[0].data["day"] == "2026-03-01" and rows[0].data["bets"] == 1


def test_system_alerts_collect_repeats(session):
    from rules.engine import raise_system_alert

    a = raise_system_alert(session=session, kind="pipeline_flow", reason="no slips", figures={})
    b = raise_system_alert(
        session=session,
        kind="pipeline_flow",
        reason="still none",
        figures={"since_last_upload_s": 900.0},
    )
    session.commit()
    assert a.id == b.id and b.hits == 2 and b.inbox == "operations" and b.severity == 3
