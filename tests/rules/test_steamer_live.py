"""Real-time steamer alerts (rule ``steamer_live``): the odds feed posts prices, the
in-process pipeline runs the ``odds_snapshot`` rules, and an alert names each punter who
took the long price shortly before it collapsed; near misses stay quiet."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import func, select

from rules.engine import backtest, run_event_rules
from rules.loader import BUILTIN_DIR, load_file
from rules.types import Trigger
from store.access import SYSTEM
from store.alerts import Alert
from store.bets import create_bet
from store.models import BetCreate
from store.odds import record_prices
from tests.factories import make_customer
from tests.rules.scenario import activate, cluster

RULE = load_file(BUILTIN_DIR / "steamer_live.yaml")[0]


@pytest.fixture
def feed(settings, keys):  # type: ignore[no-untyped-def]
    """An admin API client on an app with the in-process pipeline (rules run on its threads)."""
    from fastapi.testclient import TestClient

    from api.main import create_app
    from workers.pipeline import pipeline_for

    pipeline = pipeline_for(settings)
    app = create_app(settings, pipeline=pipeline)
    with TestClient(app, headers={"X-API-Key": keys.admin}) as client:
        yield client, pipeline
    pipeline.shutdown()


def _iso(at: datetime) -> str:
    return at.isoformat()


def _api_bet(client, *, customer: int, selection: str, odds: float, at: datetime) -> int:  # type: ignore[no-untyped-def]
    legs = [{"sport": "Horse Racing", "event": "4.10 Kempton", "selection": selection,
             "odds": odds}]  # fmt: skip
    resp = client.post(
        "/bets",
        json={"stake": 25.0, "customer_id": customer, "placed_at": _iso(at), "legs": legs},
    )
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


def _prices(selection: str, series: dict[str, list[tuple[float, datetime]]]) -> list[dict]:  # type: ignore[type-arg]
    return [
        {"selection": selection, "bookmaker": b, "odds": o, "at": _iso(at)}
        for b, points in series.items()
        for o, at in points
    ]


def _customer(client, ref: str) -> int:  # type: ignore[no-untyped-def]
    resp = client.post("/customers", json={"external_ref": ref})
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


def _steamer_alerts(client) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return list(client.get("/alerts", params={"rule": "steamer_live"}).json()["items"])


def test_odds_feed_collapse_raises_an_alert_on_the_punter_who_took_the_long_price(feed):
    client, pipeline = feed
    now = datetime.now(UTC).replace(microsecond=0)
    early, late = _customer(client, "C-EARLY"), _customer(client, "C-LATE")
    long_bet = _api_bet(client, customer=early, selection="Night Raider", odds=11.0,
                        at=now - timedelta(minutes=30))  # fmt: skip
    # a bet at the short price after the move is no steamer
    _api_bet(client, customer=late, selection="Night Raider", odds=5.0,
             at=now - timedelta(minutes=2))  # fmt: skip
    before, after = now - timedelta(minutes=50), now
    prices = _prices("Night Raider", {"A": [(11.0, before), (5.0, after)],
                                      "B": [(10.0, before), (4.5, after)],
                                      "C": [(12.0, before), (6.0, after)]})  # fmt: skip
    assert client.post("/odds", json={"prices": prices}).status_code == 201
    assert pipeline.wait_idle(timeout=60)
    [alert] = _steamer_alerts(client)
    assert (alert["pivot_kind"], alert["pivot_id"]) == ("customer", early)
    # winnings part: A 10 -> 4 (60%), B 9 -> 3.5 (61%), C 11 -> 5 (55%); median 60% = 2x 30%
    assert alert["severity"] == "high" and alert["inbox"] == "trading"
    assert alert["figures"]["median_drop_percent"] == 60.0
    assert alert["figures"]["bookmakers"] == 3
    assert alert["figures"]["best_bet_odds"] == 11.0
    assert "taken in the 60 minutes before its price collapsed 60%" in alert["reason"]
    detail = client.get(f"/alerts/{alert['id']}").json()
    assert [b["id"] for b in detail["bets"]] == [long_bet]
    # the feed repeats the price: the open alert is the same, no second one
    again = [{"selection": "night raider", "bookmaker": "A", "odds": 5.0}]
    assert client.post("/odds", json={"prices": again}).status_code == 201
    assert pipeline.wait_idle(timeout=60)
    assert [a["id"] for a in _steamer_alerts(client)] == [alert["id"]]


def test_odds_feed_near_misses_stay_quiet(feed):
    client, pipeline = feed
    now = datetime.now(UTC).replace(microsecond=0)
    punter = _customer(client, "C-NEAR")
    open_at = now - timedelta(minutes=50)
    for name in ("Slow Drift", "Lone Move", "Old News", "Long Slide"):
        at = now - timedelta(minutes=90 if name == "Old News" else 30)
        _api_bet(client, customer=punter, selection=name, odds=11.0, at=at)
    prices = (
        # a 25% and a 20% fall: the median is under 30%
        _prices("Slow Drift", {"A": [(11.0, open_at), (8.5, now)],
                               "B": [(11.0, open_at), (9.0, now)]})
        # a collapse at one bookmaker only
        + _prices("Lone Move", {"A": [(11.0, open_at), (3.0, now)]})
        # a real collapse, but the bet was taken 90 minutes before: outside the 60
        + _prices("Old News", {"A": [(11.0, open_at), (4.0, now)],
                               "B": [(11.0, open_at), (4.0, now)]})
        # 55% over three hours, but only 27% within the last hour (8.5 was in force at
        # its start)
        + _prices("Long Slide", {b: [(11.0, now - timedelta(hours=3)),
                                     (8.5, now - timedelta(minutes=70)), (6.5, now)]
                                 for b in ("A", "B")})
    )  # fmt: skip
    assert client.post("/odds", json={"prices": prices}).status_code == 201
    assert pipeline.wait_idle(timeout=60)
    assert _steamer_alerts(client) == []


# ---------------------------------------------------------------- the kind, engine and backtest
T = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _bet(session, *, selection: str, odds: float, at: datetime, customer: int | None,  # type: ignore[no-untyped-def]
         event_ref: str | None = None):  # fmt: skip
    leg: dict[str, Any] = {"sport": "Greyhounds", "event": "19:42 Romford", "selection": selection,
                           "odds": odds}  # fmt: skip
    if event_ref is not None:
        leg["event_ref"] = event_ref
    return create_bet(
        session=session,
        actor=SYSTEM,
        bet_in=BetCreate(stake=10, customer_id=customer, placed_at=at, legs=[leg]),
    )


def _collapse(session, selection: str, *, event_ref: str | None = None, to: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    snaps = []
    for bookmaker in ("A", "B"):
        for odds, at in ((9.0, T - timedelta(hours=2)), (to, T)):  # the feed posts changes
            snaps.append({"selection": selection, "bookmaker": bookmaker, "odds": odds, "at": at,
                          "event_ref": event_ref})  # fmt: skip
    record_prices(session=session, snapshots=snaps)


def test_an_anonymous_punter_is_alerted_by_cluster_and_another_event_does_not_count(session):
    activate(session)
    anonymous = _bet(session, selection="Trap 1", odds=9.0, at=T - timedelta(minutes=20),
                     customer=None, event_ref="R-1942")  # fmt: skip
    k = cluster(session, [(anonymous, 0.97)])
    # trap 1 of another race at the same price, same minutes: not this market
    _bet(session, selection="Trap 1", odds=9.0, at=T - timedelta(minutes=20),
         customer=make_customer(session).id, event_ref="R-2004")  # fmt: skip
    _collapse(session, "Trap 1", event_ref="R-1942")
    trigger = Trigger(kind="odds_snapshot", at=T, selection="trap 1", event_ref="R-1942")
    [alert] = run_event_rules(session=session, trigger=trigger, now=T)
    assert (alert.rule_id, alert.pivot_kind, alert.pivot_id) == ("steamer_live", "cluster", k)
    assert alert.evidence["bets"] == [anonymous.id]
    assert alert.figures["median_drop_percent"] == 75.0  # 8 -> 2 on the winnings part


def test_backtest_replays_the_odds_feed_without_writing(session):
    punter = make_customer(session)
    _bet(
        session, selection="Blue Flash", odds=9.0, at=T - timedelta(minutes=40), customer=punter.id
    )
    _bet(session, selection="Red Dust", odds=9.0, at=T - timedelta(minutes=40), customer=punter.id)
    _collapse(session, "Blue Flash")
    _collapse(session, "Red Dust", to=7.0)  # 25%: under the threshold
    session.commit()
    result = backtest(
        session=session, rule=RULE, start=T - timedelta(days=1), end=T + timedelta(hours=1)
    )
    # two selections priced at two times each
    assert result.triggers == 4
    assert result.alerts == 1 and result.by_severity == {"high": 1}
    assert result.pivots[0]["pivot_id"] == punter.id
    draft = replace(RULE, params={**RULE.params, "min_drop": 0.2, "min_bet_drop": 0.2})
    loose = backtest(
        session=session, rule=draft, start=T - timedelta(days=1), end=T + timedelta(hours=1)
    )
    assert loose.alerts == 1 and loose.pivots[0]["hits"] == 2
    assert session.exec(select(func.count()).select_from(Alert)).one() == 0


def test_odds_trigger_round_trips_through_json():
    trigger = Trigger(kind="odds_snapshot", at=T, selection="Trap 1", event_ref="R-1942")
    assert Trigger.from_json(trigger.to_json()) == trigger
