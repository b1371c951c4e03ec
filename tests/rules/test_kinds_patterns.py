"""Betting-pattern kinds (rules 6-16): each shipped rule fires on a crafted positive and stays
quiet on a near miss, on SQLite and PostgreSQL, with exact figures and evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from rules.kinds import REGISTRY
from rules.loader import BUILTIN_DIR, load_file
from rules.types import Finding, Rule, Trigger
from store.models import Bet, BetStatus
from tests.factories import make_bet, make_customer, make_shop

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, midday UTC


def shipped(name: str, **params: Any) -> Rule:
    """The rule shipped in rules/builtin/<name>.yaml, with some params overridden."""
    rule = load_file(BUILTIN_DIR / f"{name}.yaml")[0]
    if params:
        from dataclasses import replace

        rule = replace(rule, params={**rule.params, **params})
    return rule


def bet(
    session: Session,
    *,
    at: datetime,
    stake: float,
    customer: int | None = None,
    shop: int | None = None,
    odds: float | None = 2.0,
    status: str = "open",
    returns: float | None = None,
    settled_at: datetime | None = None,
    legs: list[dict[str, Any]] | None = None,
    bet_type: str = "single",
) -> Bet:
    """A bet placed at ``at``, then settled as given (written straight to the store)."""
    legs = legs or [{"sport": "Horse Racing", "event": "3.15 Ascot", "selection": "Golden Arrow",
                     "odds": odds}]  # fmt: skip
    b = make_bet(session, stake=stake, customer_id=customer, shop_id=shop, placed_at=at,
                 legs=legs, bet_type=bet_type)  # fmt: skip
    if status != "open":
        b.status = BetStatus(status)
        if returns is None:
            returns = {"lost": 0.0, "void": b.total_stake}.get(status, b.potential_return or 0.0)
        b.returns = returns
        b.settled_at = settled_at or at + timedelta(minutes=10)
        session.add(b)
        session.commit()
    return b


def run(session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
    kind = REGISTRY[rule.kind]
    assert trigger.kind in kind.triggers
    return kind.evaluate(session=session, rule=rule, trigger=trigger)


def placed(b: Bet) -> Trigger:
    return Trigger(kind="bet_placed", at=b.placed_at, bet_id=b.id)


def settled(b: Bet) -> Trigger:
    return Trigger(kind="bet_settled", at=b.settled_at or b.placed_at, bet_id=b.id)


def schedule(at: datetime) -> Trigger:
    return Trigger(kind="schedule", at=at)


def severity(rule: Rule, value: float) -> str | None:
    for band in rule.bands:
        if band.lower <= value and (band.upper is None or value < band.upper):
            return band.severity.name
    return None


def reason(rule: Rule, finding: Finding) -> str:
    for band in rule.bands:
        if band.lower <= finding.value and (band.upper is None or finding.value < band.upper):
            return band.reason.format(value=finding.value, **finding.figures)
    raise AssertionError("no band")


# ---------------------------------------------------------------- rule 6: high spend
def test_high_spend_stakes_fire_and_near_miss_stays_quiet(session: Session) -> None:
    rule = shipped("high_spend")
    shop = make_shop(session)
    punter = make_customer(session)
    careful = make_customer(session)
    bets = [bet(session, customer=punter.id, shop=shop.id, at=T0 - timedelta(days=d),
                stake=2_500.0) for d in (29, 20, 10)]  # fmt: skip
    last = bet(session, customer=punter.id, shop=shop.id, at=T0, stake=2_500.0)
    # outside the 30-day window: does not count towards stakes
    bet(session, customer=punter.id, shop=shop.id, at=T0 - timedelta(days=31), stake=5_000.0)
    for d in (29, 20, 10, 0):  # GBP 9,999.99 in 30 days, nothing settled
        bet(session, customer=careful.id, shop=shop.id, at=T0 - timedelta(days=d),
            stake=2_499.99 if d == 0 else 2_500.0)  # fmt: skip

    found = run(session, rule, placed(last))
    assert len(found) == 1
    f = found[0]
    assert (f.pivot_kind, f.pivot_id) == ("customer", punter.id)
    assert f.figures["staked_gbp"] == 10_000.0
    assert f.figures["stake_threshold_gbp"] == 10_000
    assert f.figures["crossed"] == "stakes"
    assert f.value == 1.0
    assert severity(rule, f.value) == "medium"
    assert "staked GBP 10,000.00 in 30 days" in reason(rule, f)
    assert set(f.evidence["bets"]) >= {b.id for b in [*bets, last]}
    assert f.evidence["customers"] == [punter.id]
    assert f.link_confidence is None

    # the scheduled screening finds the same customer and only them
    screened = run(session, rule, schedule(T0 + timedelta(minutes=1)))
    assert [(f.pivot_kind, f.pivot_id) for f in screened] == [("customer", punter.id)]

    near = session.exec(select(Bet).where(Bet.customer_id == careful.id)).all()
    assert run(session, rule, placed(max(near, key=lambda b: b.placed_at))) == []


def test_high_spend_net_loss_and_exemption(session: Session) -> None:
    rule = shipped("high_spend")
    loser = make_customer(session)
    verified = make_customer(session, risk_category="sof_verified")
    for c in (loser, verified):
        for d in (80, 40):
            b = bet(session, customer=c.id, at=T0 - timedelta(days=d), stake=2_500.0,
                    status="lost")  # fmt: skip
    found = run(session, rule, settled(b))  # the verified customer's bet: exempt
    assert found == []
    last = session.exec(select(Bet).where(Bet.customer_id == loser.id)).all()[-1]
    found = run(session, rule, settled(last))
    assert len(found) == 1
    assert found[0].figures["net_loss_gbp"] == 5_000.0
    assert found[0].figures["crossed"] == "net loss"
    assert found[0].figures["staked_gbp"] == 2_500.0  # only the bet 40 days ago is in 30 days
