"""Steamer rule: bets taken before a price collapsed across bookmakers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rules.kinds.steamer import KIND
from rules.loader import BUILTIN_DIR, load_file
from rules.types import Trigger
from store.access import SYSTEM
from store.bets import create_bet
from store.models import BetCreate
from store.odds import record_prices
from tests.factories import make_customer

NOW = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)


def _setup(session, *, late_prices):  # type: ignore[no-untyped-def]
    customer = make_customer(session)
    legs = [
        {"sport": "Horse Racing", "event": "7.45 Wolves", "selection": "Quick Silver", "odds": 11.0}
    ]
    early = create_bet(
        session=session,
        actor=SYSTEM,
        bet_in=BetCreate(
            stake=50, customer_id=customer.id, placed_at=NOW - timedelta(hours=3), legs=legs
        ),
    )
    legs[0]["odds"] = 5.0
    create_bet(
        session=session,
        actor=SYSTEM,
        bet_in=BetCreate(
            stake=50,
            customer_id=make_customer(session).id,
            placed_at=NOW - timedelta(hours=1),
            legs=legs,
        ),
    )
    snaps = []
    for bookmaker, late in late_prices.items():
        snaps.append(
            {
                "selection": "Quick Silver",
                "bookmaker": bookmaker,
                "odds": 11.0,
                "at": NOW - timedelta(hours=5),
            }
        )
        snaps.append(
            {
                "selection": "Quick Silver",
                "bookmaker": bookmaker,
                "odds": late,
                "at": NOW - timedelta(minutes=5),
            }
        )
    record_prices(session=session, snapshots=snaps)
    session.flush()
    return customer, early


def test_steamer_fires_for_the_bet_taken_before_the_collapse(session):
    customer, early = _setup(session, late_prices={"A": 5.0, "B": 6.0, "C": 4.5})
    rule = load_file(BUILTIN_DIR / "steamer.yaml")[0]
    findings = KIND.evaluate(session=session, rule=rule, trigger=Trigger(kind="schedule", at=NOW))
    assert len(findings) == 1
    f = findings[0]
    assert (f.pivot_kind, f.pivot_id) == ("customer", customer.id)
    assert f.evidence["bets"] == [early.id]
    assert f.figures["median_drop_percent"] == 60.0  # (10 - 4) / 10 at bookmaker A
    assert f.value == 2.0


def test_steamer_quiet_on_a_small_drift_or_one_bookmaker(session):
    _setup(session, late_prices={"A": 8.5, "B": 9.0})  # 25% and 20% falls: under 30%
    rule = load_file(BUILTIN_DIR / "steamer.yaml")[0]
    trigger = Trigger(kind="schedule", at=NOW)
    assert KIND.evaluate(session=session, rule=rule, trigger=trigger) == []
    session.rollback()
    _setup(session, late_prices={"A": 3.0})  # a big fall at one bookmaker only
    assert KIND.evaluate(session=session, rule=rule, trigger=trigger) == []
