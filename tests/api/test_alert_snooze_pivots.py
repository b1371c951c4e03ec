"""Snoozing alerts whose pivot is not a customer or a cluster: a selection (rules 13, 15) and
a group of tickets named by its first bet (rule 14), through the HTTP API and the engine."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session

from rules.engine import run_event_rules
from rules.types import Trigger
from store.access import SYSTEM
from store.alerts import Alert, snooze
from store.errors import Invalid
from tests.factories import make_bet, make_customer, make_shop
from tests.rules.scenario import T0, activate, hours

FAV = [{"sport": "Horse Racing", "event": "2.40 Kempton", "selection": "Big Fav", "odds": 11.0}]
OUTSIDERS = [
    {"sport": "Horse Racing", "event": f"{h}.00 Kempton", "selection": name, "odds": 6.0}
    for h, name in ((1, "Far Away"), (2, "No Hope"), (3, "Last Chance"))
]


def _placed(session: Session, at, **bet) -> tuple[int, list[Alert]]:  # type: ignore[no-untyped-def]
    b = make_bet(session, placed_at=at, **bet)
    trigger = Trigger(kind="bet_placed", at=at, bet_id=b.id, customer_id=b.customer_id)
    alerts = run_event_rules(session=session, trigger=trigger, now=at)
    session.commit()
    return int(b.id), alerts  # type: ignore[arg-type]


def _only(alerts: list[Alert], rule_id: str) -> Alert:
    [alert] = [a for a in alerts if a.rule_id == rule_id]
    return alert


def test_a_selection_alert_can_be_snoozed_and_keeps_counting(client, engine):
    with Session(engine, expire_on_commit=False) as session:
        activate(session)
        shop = make_shop(session).id
        _placed(session, T0 - hours(1), stake=2_500.0, shop_id=shop, legs=FAV)
        # 2 x (27,500 - 2,500) = 50,000 open liability on Big Fav: the limit
        second, alerts = _placed(session, T0, stake=2_500.0, shop_id=shop, legs=FAV)
        alert = _only(alerts, "liability_limit")
        assert (alert.pivot_kind, alert.suppressed) == ("selection", False)
        alert_id, selection = int(alert.id), alert.pivot_id  # type: ignore[arg-type]

    until = (T0 + timedelta(days=3650)).isoformat()
    r = client.post(f"/alerts/{alert_id}/snooze", json={"until": until, "reason": "ante-post"})
    assert r.status_code == 200, r.text
    assert r.json()["suppressed"] is True and r.json()["snoozed_until"].startswith("2036")
    assert alert_id not in [i["id"] for i in client.get("/alerts").json()["items"]]

    with Session(engine, expire_on_commit=False) as session:
        third, alerts = _placed(session, T0 + hours(1), stake=100.0, shop_id=shop, legs=FAV)
        again = _only(alerts, "liability_limit")
        # the same alert: the new bet is added as evidence, the alert stays suppressed
        assert (again.id, again.pivot_id, again.suppressed) == (alert_id, selection, True)
        assert again.hits == 2 and third in again.evidence["bets"]
    history = [h["action"] for h in client.get(f"/alerts/{alert_id}").json()["history"]]
    assert history == ["raised", "snooze", "evidence"]


def test_a_ticket_group_alert_can_be_snoozed(client, engine):
    with Session(engine, expire_on_commit=False) as session:
        activate(session)
        shop, c1, c2 = make_shop(session).id, make_customer(session).id, make_customer(session).id
        common = {"stake": 10.0, "shop_id": shop, "legs": OUTSIDERS, "bet_type": "treble"}
        first, _ = _placed(session, T0 - hours(3), customer_id=c1, **common)
        _, alerts = _placed(session, T0, customer_id=c2, **common)
        alert = _only(alerts, "linked_outsider_multiples")
        assert (alert.pivot_kind, alert.pivot_id) == ("bet", first)
    r = client.post(
        f"/alerts/{alert.id}/snooze", json={"until": (T0 + timedelta(days=365)).isoformat()}
    )
    assert r.status_code == 200 and r.json()["suppressed"] is True
    with Session(engine, expire_on_commit=False) as session:
        third, alerts = _placed(session, T0 + hours(1), customer_id=c1, **common)
        again = _only(alerts, "linked_outsider_multiples")
        assert (again.id, again.suppressed, again.hits) == (alert.id, True, 2)


def test_snooze_refuses_an_unknown_pivot_kind(session):
    with pytest.raises(Invalid, match="pivot_kind: must be one of customer, cluster"):
        snooze(
            session=session,
            rule_id="liability_limit",
            pivot_kind="shop",
            pivot_id=1,
            until=T0 + timedelta(days=3650),
            actor=SYSTEM,
        )
