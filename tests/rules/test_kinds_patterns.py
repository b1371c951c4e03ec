"""Betting-pattern kinds (rules 6-16): each shipped rule fires on a crafted positive and stays
quiet on a near miss, on SQLite and PostgreSQL, with exact figures and evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from rules import context
from rules.kinds import REGISTRY
from rules.kinds.price_beating import starting_price
from rules.loader import BUILTIN_DIR, load_file
from rules.types import Finding, Rule, Trigger
from store.access import SYSTEM
from store.bets import create_bet
from store.models import Bet, BetCreate, BetStatus
from tests.factories import make_customer, make_shop

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
    """A bet placed at ``at``, then settled as given, through the store's own `create_bet`
    (flushed, not committed: the kinds read in the same transaction, and PostgreSQL commits
    would dominate the run time)."""
    legs = legs or [{"sport": "Horse Racing", "event": "3.15 Ascot", "selection": "Golden Arrow",
                     "odds": odds}]  # fmt: skip
    bet_in = BetCreate(stake=stake, customer_id=customer, shop_id=shop, placed_at=at, legs=legs,
                       bet_type=bet_type)  # fmt: skip
    b = create_bet(session=session, bet_in=bet_in, actor=SYSTEM)
    if status != "open":
        b.status = BetStatus(status)
        if returns is None:
            returns = {"lost": 0.0, "void": b.total_stake}.get(status, b.potential_return or 0.0)
        b.returns = returns
        b.settled_at = settled_at or at + timedelta(minutes=10)
        session.add(b)
        session.flush()
    return b


def run(session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
    kind = REGISTRY[rule.kind]
    assert trigger.kind in kind.triggers
    context.reset(session)  # a new run, as the engine starts one: nothing cached from the last
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
    _high_spend_net_loss_and_exemption(session)  # more customers, same database


def _high_spend_net_loss_and_exemption(session: Session) -> None:
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


def cluster_of(session: Session, bets: list[Bet], *, confidence: list[float]) -> int:
    """Put the bets' slips (made here) into one active handwriting cluster of model v1."""
    from store.clustering import ClusterMember, ModelActivation, WriterCluster
    from store.models import Slip

    if session.exec(select(ModelActivation)).first() is None:
        session.add(ModelActivation(version="v1", path=None))
    cluster = WriterCluster(model_version="v1", size=len(bets))
    session.add(cluster)
    session.flush()
    for b, conf in zip(bets, confidence, strict=True):
        slip = Slip(bet_id=b.id, sha256=f"{b.id:064x}", width=10, height=10, original_type="png")
        session.add(slip)
        session.flush()
        session.add(ClusterMember(slip_id=slip.id, model_version="v1", cluster_id=cluster.id,
                                  confidence=conf))  # fmt: skip
    session.flush()
    assert cluster.id is not None
    return cluster.id


# ---------------------------------------------------------------- rule 8: stake spike
def test_stake_spike_grades_the_ratio_to_the_median(session: Session) -> None:
    rule = shipped("stake_spike")
    c = make_customer(session)
    for i in range(10):  # median 10: stakes 6..14
        bet(session, customer=c.id, at=T0 - timedelta(days=80 - i), stake=6.0 + i * 8 / 9)
    bet(session, customer=c.id, at=T0 - timedelta(days=91), stake=1.0)  # outside 90 days
    spike = bet(session, customer=c.id, at=T0, stake=100.0)
    [f] = run(session, rule, placed(spike))
    assert f.figures["median_stake_gbp"] == 10.0
    assert f.figures["prior_bets"] == 10
    assert f.value == pytest.approx(10.0)
    assert severity(rule, f.value) == "high"
    assert f.evidence["bets"][0] == spike.id and len(f.evidence["bets"]) == 11
    assert "GBP 100.00 is 10.0x the median stake GBP 10.00 of 10 bets" in reason(rule, f)

    near = bet(session, customer=c.id, at=T0 + timedelta(minutes=1), stake=54.99)
    # 11 prior bets now (the spike is one of them): median 10.44 -> 5.27x is still a spike
    [g] = run(session, rule, placed(near))
    assert severity(rule, g.value) == "medium"
    _stake_spike_quiet_below_ratio_or_with_few_prior_bets(session)  # more customers, same database


def _stake_spike_quiet_below_ratio_or_with_few_prior_bets(session: Session) -> None:
    rule = shipped("stake_spike")
    c, d = make_customer(session), make_customer(session)
    for i in range(10):
        bet(session, customer=c.id, at=T0 - timedelta(days=i + 1), stake=10.0)
    for i in range(9):
        bet(session, customer=d.id, at=T0 - timedelta(days=i + 1), stake=10.0)
    assert run(session, rule, placed(bet(session, customer=c.id, at=T0, stake=49.99))) == []
    assert run(session, rule, placed(bet(session, customer=d.id, at=T0, stake=500.0))) == []


# ---------------------------------------------------------------- rule 9: spend velocity
def test_spend_velocity_medium_and_high(session: Session) -> None:
    rule = shipped("spend_velocity")
    c = make_customer(session)
    for d in (13, 9, 5):
        bet(session, customer=c.id, at=T0 - timedelta(days=d), stake=2_500.0)
    bet(session, customer=c.id, at=T0 - timedelta(days=14, minutes=1), stake=9_000.0)  # outside
    last = bet(session, customer=c.id, at=T0, stake=2_499.99)
    assert run(session, rule, placed(last)) == []  # GBP 9,999.99: near miss
    more = bet(session, customer=c.id, at=T0 + timedelta(hours=1), stake=0.01)
    [f] = run(session, rule, placed(more))
    assert f.value == 10_000.0 and f.figures["bets"] == 5
    assert severity(rule, f.value) == "medium"
    assert "GBP 10,000.00 staked over 5 bets in 14 days" in reason(rule, f)
    big = bet(session, customer=c.id, at=T0 + timedelta(hours=2), stake=10_000.0)
    [g] = run(session, rule, placed(big))
    assert severity(rule, g.value) == "high" and g.value == 20_000.0
    [s] = run(session, rule, schedule(T0 + timedelta(hours=3)))
    assert (s.pivot_kind, s.pivot_id, s.value) == ("customer", c.id, 20_000.0)
    _spend_velocity_counts_handwriting_linked_anonymous_bets(session)


def _spend_velocity_counts_handwriting_linked_anonymous_bets(session: Session) -> None:
    rule = shipped("spend_velocity")
    c = make_customer(session)
    own = bet(session, customer=c.id, at=T0 - timedelta(days=2), stake=4_000.0)
    anon = [bet(session, at=T0 - timedelta(days=d), stake=3_000.0) for d in (1, 0)]
    cid = cluster_of(session, [own, *anon], confidence=[0.97, 0.91, 0.88])
    # anchored at the customer's own bet, 2 days ago: only GBP 4,000 so far
    assert run(session, rule, placed(own)) == []
    found = run(session, rule, schedule(T0 + timedelta(minutes=1)))
    by_pivot = {(x.pivot_kind, x.pivot_id): x for x in found}
    # the customer's total includes the linked anonymous slips; the cluster pivot (the pivot
    # of the anonymous bets) holds the same three slips
    assert {("customer", c.id), ("cluster", cid)} <= set(by_pivot)
    assert by_pivot[("cluster", cid)].value == 10_000.0
    f = by_pivot[("customer", c.id)]
    assert f.value == 10_000.0
    assert f.link_confidence == 0.88
    assert f.evidence["clusters"] == [cid]
    assert sorted(f.evidence["bets"]) == sorted([own.id, *(a.id for a in anon)])
    # the last anonymous slip joining the cluster re-evaluates the cluster and its customer
    joined = Trigger(kind="slip_clustered", at=T0, bet_id=anon[-1].id, cluster_id=cid)
    found = run(session, rule, joined)
    assert sorted((x.pivot_kind, x.pivot_id, x.value) for x in found) == [
        ("cluster", cid, 10_000.0),
        ("customer", c.id, 10_000.0),
    ]


# ---------------------------------------------------------------- rule 10: session intensity
def test_session_intensity_bet_count(session: Session) -> None:
    rule = shipped("session_intensity")
    c = make_customer(session)
    # 39 bets in the 4 hours up to T0 (the first exactly 4 h before T0 is outside: (start, end])
    bet(session, customer=c.id, at=T0 - timedelta(hours=4), stake=1.0)
    bets = [bet(session, customer=c.id, at=T0 - timedelta(minutes=6 * i), stake=1.0)
            for i in range(39)]  # fmt: skip
    assert run(session, rule, placed(bets[0])) == []
    fortieth = bet(session, customer=c.id, at=T0 + timedelta(minutes=1), stake=1.0)
    [f] = run(session, rule, placed(fortieth))
    assert f.figures["session_bets"] == 40 and f.figures["crossed"] == "bet count"
    assert f.value == 1.0 and severity(rule, f.value) == "medium"
    assert len(f.evidence["bets"]) == 40 and fortieth.id in f.evidence["bets"]
    _session_intensity_session_loss_on_settlement(session)  # more customers, same database


def _session_intensity_session_loss_on_settlement(session: Session) -> None:
    rule = shipped("session_intensity")
    c, d = make_customer(session), make_customer(session)
    # the first bet settles last: the session still ends at the later bet and counts both
    first = bet(session, customer=c.id, at=T0, stake=1_000.0, status="lost",
                settled_at=T0 + timedelta(hours=2))  # fmt: skip
    bet(session, customer=c.id, at=T0 + timedelta(hours=1), stake=1_000.0, status="lost")
    [f] = run(session, rule, settled(first))
    assert f.figures["session_loss_gbp"] == 2_000.0 and f.figures["crossed"] == "session loss"
    assert f.window_end == T0 + timedelta(hours=1)
    near = bet(session, customer=d.id, at=T0, stake=1_000.0, status="lost")
    bet(session, customer=d.id, at=T0 + timedelta(hours=1), stake=999.99, status="lost")
    assert run(session, rule, settled(near)) == []


# ---------------------------------------------------------------- rule 11: chasing losses
def _losses_then(session: Session, c: int, start: datetime, stake: float) -> Bet:
    for i in range(3):
        bet(session, customer=c, at=start + timedelta(minutes=15 * i), stake=10.0,
            status="lost")  # fmt: skip
    return bet(session, customer=c, at=start + timedelta(minutes=45), stake=stake,
               status="won", returns=stake * 2)  # fmt: skip


def test_chasing_losses_twice_in_a_day(session: Session) -> None:
    rule = shipped("chasing_losses")
    c = make_customer(session)
    first = _losses_then(session, c.id, T0 - timedelta(hours=6), 20.0)
    second = _losses_then(session, c.id, T0 - timedelta(hours=2), 25.0)
    [f] = run(session, rule, placed(second))
    assert f.value == 2.0 and severity(rule, f.value) == "medium"
    assert f.figures["chase_bets"] == f"{first.id}, {second.id}"
    assert f.figures["first_chase_mean_loss_stake_gbp"] == 10.0
    assert f.figures["largest_multiple"] == 2.5
    assert len(f.evidence["bets"]) == 8
    assert "2 times in 24 hours" in reason(rule, f)
    _chasing_losses_near_misses(session)  # more customers, same database


def _chasing_losses_near_misses(session: Session) -> None:
    rule = shipped("chasing_losses")
    c, d = make_customer(session), make_customer(session)
    _losses_then(session, c.id, T0 - timedelta(hours=6), 20.0)
    low = _losses_then(session, c.id, T0 - timedelta(hours=2), 19.99)  # 1.999x: not a chase
    assert run(session, rule, placed(low)) == []
    # two losses only before the second raise
    _losses_then(session, d.id, T0 - timedelta(hours=6), 20.0)
    bet(session, customer=d.id, at=T0 - timedelta(hours=2), stake=10.0, status="lost")
    bet(session, customer=d.id, at=T0 - timedelta(hours=1, minutes=45), stake=10.0,
        status="lost")  # fmt: skip
    raise_ = bet(session, customer=d.id, at=T0 - timedelta(hours=1, minutes=30), stake=40.0)
    assert run(session, rule, placed(raise_)) == []


# ---------------------------------------------------------------- rule 12: multi-shop
def test_multi_shop_customer_in_three_shops_a_day(session: Session) -> None:
    rule = shipped("multi_shop")
    shops = [make_shop(session) for _ in range(3)]
    c, d = make_customer(session), make_customer(session)
    b = [bet(session, customer=c.id, shop=s.id, at=T0 - timedelta(hours=h), stake=5.0)
         for s, h in zip(shops, (23, 10, 0), strict=True)]  # fmt: skip
    [f] = run(session, rule, placed(b[-1]))
    assert f.figures["shops_day"] == 3 and f.figures["shops_week"] == 3
    assert f.figures["crossed"] == "shops in a day"
    assert f.evidence["shops"] == sorted(s.id for s in shops)
    assert f.evidence["bets"] == [x.id for x in b]
    # near miss: the first shop visit exactly 24 hours before
    n = [bet(session, customer=d.id, shop=s.id, at=T0 - timedelta(hours=h), stake=5.0)
         for s, h in zip(shops, (24, 10, 0), strict=True)]  # fmt: skip
    assert run(session, rule, placed(n[-1])) == []
    _multi_shop_anonymous_writer_across_five_shops_in_a_week(
        session
    )  # more customers, same database


def _multi_shop_anonymous_writer_across_five_shops_in_a_week(session: Session) -> None:
    rule = shipped("multi_shop")
    shops = [make_shop(session) for _ in range(5)]
    anon = [bet(session, shop=s.id, at=T0 - timedelta(days=d), stake=50.0)
            for s, d in zip(shops, (6, 5, 3, 2, 0), strict=True)]  # fmt: skip
    cid = cluster_of(session, anon[:4], confidence=[0.95, 0.93, 0.9, 0.96])
    # four shops while the fifth slip is not clustered yet: quiet (and the fifth has no pivot)
    assert run(session, rule, placed(anon[3])) == []
    assert run(session, rule, placed(anon[4])) == []
    cluster_of_existing(session, anon[4], cid, 0.92)
    [f] = run(session, rule, Trigger(kind="slip_clustered", at=T0, bet_id=anon[4].id,
                                      cluster_id=cid))  # fmt: skip
    assert (f.pivot_kind, f.pivot_id) == ("cluster", cid)
    assert f.figures["shops_week"] == 5 and f.figures["crossed"] == "shops in a week"
    assert f.link_confidence == 0.9
    assert f.evidence["clusters"] == [cid] and len(f.evidence["slips"]) == 5


def cluster_of_existing(session: Session, b: Bet, cluster_id: int, confidence: float) -> None:
    from store.clustering import ClusterMember
    from store.models import Slip

    slip = Slip(bet_id=b.id, sha256=f"{b.id:064x}", width=10, height=10, original_type="png")
    session.add(slip)
    session.flush()
    session.add(ClusterMember(slip_id=slip.id, model_version="v1", cluster_id=cluster_id,
                              confidence=confidence))  # fmt: skip
    session.flush()


# ---------------------------------------------------------------- rule 7: low-risk washing
def _match_leg(selection: str, odds: float) -> list[dict[str, Any]]:
    return [{"sport": "Football", "event": "Arsenal v Chelsea", "market": "Match Result",
             "selection": selection, "odds": odds}]  # fmt: skip


def test_low_risk_washing_both_sides_of_a_market(session: Session) -> None:
    rule = shipped("low_risk_washing")
    c = make_customer(session)
    home = bet(session, customer=c.id, at=T0 - timedelta(hours=2), stake=1_000.0,
               legs=_match_leg("Arsenal", 2.0), status="won", returns=2_000.0)  # fmt: skip
    away = bet(session, customer=c.id, at=T0 - timedelta(hours=1), stake=1_000.0,
               legs=_match_leg("Chelsea", 2.0), status="lost")  # fmt: skip
    [f] = run(session, rule, settled(away))
    assert f.value == 2_000.0 and severity(rule, f.value) == "medium"
    assert f.figures["crossed"] == "both sides of a market covered"
    assert f.figures["covered_share"] == 1.0 and f.figures["loss_rate"] == 0.0
    assert f.figures["median_odds"] == 2.0
    assert f.evidence["bets"] == [home.id, away.id]
    assert "100% of stakes on both sides" in reason(rule, f)
    [s] = run(session, rule, schedule(T0))
    assert (s.pivot_kind, s.pivot_id) == ("customer", c.id)
    _low_risk_washing_short_prices_at_the_loss_boundary(session)  # more customers, same database
    _low_risk_washing_quiet_below_the_stake_threshold(session)  # more customers, same database


def _low_risk_washing_short_prices_at_the_loss_boundary(session: Session) -> None:
    rule = shipped("low_risk_washing")
    at3, under = make_customer(session), make_customer(session)
    last: dict[int, Bet] = {}
    for c, placed_returns in ((at3, 140.0), (under, 141.0)):
        for i in range(3):
            bet(session, customer=c.id, at=T0 - timedelta(days=i + 1), stake=500.0, odds=1.2,
                status="won")  # fmt: skip
        # an each-way place return: total returns 1,940 (exactly 3% lost) or 1,941
        last[c.id] = bet(session, customer=c.id, at=T0, stake=500.0, odds=1.25,
                         status="placed", returns=placed_returns)  # fmt: skip
    assert run(session, rule, settled(last[at3.id])) == []
    [f] = run(session, rule, settled(last[under.id]))
    assert f.figures["crossed"] == "short prices"
    assert f.figures["median_odds"] == 1.2
    assert f.figures["loss_rate"] == pytest.approx(0.0295)
    assert f.figures["net_loss_gbp"] == 59.0


def _low_risk_washing_quiet_below_the_stake_threshold(session: Session) -> None:
    rule = shipped("low_risk_washing")
    c = make_customer(session)
    bet(session, customer=c.id, at=T0 - timedelta(hours=2), stake=1_000.0,
        legs=_match_leg("Arsenal", 2.0), status="won", returns=2_000.0)  # fmt: skip
    away = bet(session, customer=c.id, at=T0 - timedelta(hours=1), stake=999.99,
               legs=_match_leg("Chelsea", 2.0), status="lost")  # fmt: skip
    assert run(session, rule, settled(away)) == []


# ---------------------------------------------------------------- rule 13: run on a selection
def _kempton(selection: str = "Lucky Star", odds: float = 6.0) -> list[dict[str, Any]]:
    return [{"sport": "Horse Racing", "event": "2.30 Kempton", "selection": selection,
             "odds": odds}]  # fmt: skip


def test_selection_run_burst_of_punters_counts_clusters(session: Session) -> None:
    rule = shipped("selection_run")
    shop = make_shop(session)
    customers = [make_customer(session) for _ in range(3)]
    bets = [
        bet(
            session,
            customer=c.id,
            shop=shop.id,
            at=T0 - timedelta(minutes=m),
            stake=20.0,
            legs=_kempton(),
        )  # fmt: skip
        for c, m in zip(customers, (25, 15, 5), strict=True)
    ]
    # the same horse in another race is another selection
    bet(session, customer=make_customer(session).id, shop=shop.id, at=T0, stake=20.0,
        legs=[{"sport": "Horse Racing", "event": "4.10 Kempton", "selection": "LUCKY  star",
               "odds": 3.0}])  # fmt: skip
    anon = bet(session, shop=shop.id, at=T0, stake=20.0, legs=_kempton("lucky star"))
    # three customers and an anonymous slip not yet clustered: not four punters
    assert run(session, rule, placed(anon)) == []
    other = bet(session, shop=shop.id, at=T0 - timedelta(days=1), stake=5.0)
    cid = cluster_of(session, [anon, other], confidence=[0.9, 0.9])
    [f] = run(session, rule, Trigger(kind="bet_placed", at=T0, bet_id=anon.id))
    assert (f.pivot_kind, f.pivot_id) == ("selection", min_leg_id(session, bets[0]))
    assert f.figures["burst_pivots"] == 4 and f.figures["crossed"] == "punters in minutes"
    assert f.figures["burst_shops"] == 1 and f.figures["shop_share_bets"] == 4
    assert f.value == 1.0 and severity(rule, f.value) == "medium"
    assert f.evidence["bets"] == [*(b.id for b in bets), anon.id]
    assert f.evidence["clusters"] == [cid]
    # the evidence built from the kind's own read is what evidence_of reads for the same bets
    from rules.kinds._pattern_common import evidence_of

    assert f.evidence == evidence_of(session, f.evidence["bets"])[0]
    assert "Run on lucky star (2.30 Kempton): punters in minutes" in reason(rule, f)
    _selection_run_near_miss_outside_the_burst_window(session)
    _selection_run_share_of_the_shops_last_bets(session)


def _selection_run_near_miss_outside_the_burst_window(session: Session) -> None:
    rule = shipped("selection_run")
    shop = make_shop(session)
    bets = [
        bet(
            session,
            customer=make_customer(session).id,
            shop=shop.id,
            at=T0 - timedelta(minutes=m),
            stake=20.0,
            legs=_kempton("Near Miss"),
        )  # fmt: skip
        for m in (31, 15, 5, 0)
    ]
    assert run(session, rule, placed(bets[-1])) == []


def _selection_run_share_of_the_shops_last_bets(session: Session) -> None:
    rule = shipped("selection_run")
    shop, elsewhere = make_shop(session), make_shop(session)
    c = make_customer(session)
    t = T0 - timedelta(hours=3)
    for i in range(14):  # other selections in the same shop
        bet(session, shop=shop.id, at=t + timedelta(minutes=i), stake=2.0,
            legs=_kempton(f"Horse {i}"))  # fmt: skip
    bet(session, shop=elsewhere.id, at=T0, stake=2.0, legs=_kempton("Share Horse"))  # another shop
    on = [
        bet(
            session,
            customer=c.id,
            shop=shop.id,
            at=t + timedelta(minutes=20 + 30 * i),
            stake=10.0,
            legs=_kempton("Share Horse"),
        )  # fmt: skip
        for i in range(5)
    ]
    assert run(session, rule, placed(on[-1])) == []  # 5 of the last 19: near miss
    sixth = bet(
        session, customer=c.id, shop=shop.id, at=T0, stake=10.0, legs=_kempton("Share Horse")
    )
    [f] = run(session, rule, placed(sixth))
    assert f.figures["shop_share_bets"] == 6 and f.figures["crossed"] == "shop share"
    assert f.figures["all_share_bets"] == 7 and f.figures["burst_pivots"] == 1
    assert sorted(f.evidence["bets"]) == sorted(b.id for b in [*on, sixth])


def min_leg_id(session: Session, b: Bet) -> int:
    from store.models import Leg

    return min(x.id for x in session.exec(select(Leg).where(Leg.bet_id == b.id)).all())


# ---------------------------------------------------------------- rule 14: linked multiples
def _treble(
    prices: tuple[float | None, ...] = (6.0, 8.0, 5.0),
    names: tuple[str, str, str] = ("Long Shot", "Dark Horse", "Outsider"),
) -> list[dict[str, Any]]:
    return [{"sport": "Horse Racing", "event": f"{h}.00 Newbury", "selection": n, "odds": o}
            for h, n, o in zip((1, 2, 3), names, prices, strict=True)]  # fmt: skip


OTHER = ("Far Away", "No Hope", "Last Chance")


def test_linked_outsider_multiples_two_tickets_one_day(session: Session) -> None:
    rule = shipped("linked_outsider_multiples")
    s1, s2 = make_shop(session), make_shop(session)
    c1, c2 = make_customer(session), make_customer(session)
    first = bet(session, customer=c1.id, shop=s1.id, at=T0 - timedelta(hours=20), stake=10.0,
                legs=_treble(), bet_type="treble")  # fmt: skip
    assert run(session, rule, placed(first)) == []  # one ticket so far
    # same selections, legs in another order, at slightly different prices, as a trixie
    legs = list(reversed(_treble((6.5, 8.0, 5.5))))
    second = bet(session, customer=c2.id, shop=s2.id, at=T0, stake=5.0, legs=legs,
                 bet_type="trixie")  # fmt: skip
    [f] = run(session, rule, placed(second))
    assert (f.pivot_kind, f.pivot_id) == ("bet", first.id)
    assert f.value == 2.0 and severity(rule, f.value) == "medium"
    assert f.figures["selections"] == 3 and f.figures["shortest_odds"] == 5.5
    assert f.figures["total_stake_gbp"] == 30.0  # 10 + a 4-line trixie at 5
    assert f.evidence["bets"] == [first.id, second.id]
    assert f.evidence["customers"] == [c1.id, c2.id] and f.evidence["shops"] == [s1.id, s2.id]
    assert "Dark Horse, Long Shot, Outsider" in reason(rule, f)
    _linked_outsider_multiples_near_misses(session)


def _linked_outsider_multiples_near_misses(session: Session) -> None:
    rule = shipped("linked_outsider_multiples")
    bet(
        session,
        at=T0 - timedelta(hours=1),
        stake=10.0,
        legs=_treble(names=OTHER),
        bet_type="treble",
    )
    short = bet(
        session, at=T0, stake=10.0, legs=_treble((6.0, 8.0, 4.99), OTHER), bet_type="treble"
    )
    assert run(session, rule, placed(short)) == []  # one leg under 5.0
    sp = bet(session, at=T0, stake=10.0, legs=_treble((6.0, 8.0, None), OTHER), bet_type="treble")
    assert run(session, rule, placed(sp)) == []  # a leg at SP
    later = T0 + timedelta(hours=23, minutes=1)
    old = bet(session, at=later, stake=10.0, legs=_treble(names=OTHER), bet_type="treble")
    # 24h01 after the first ticket; the two near misses do not count as tickets
    assert run(session, rule, placed(old)) == []


# ---------------------------------------------------------------- rule 15: liability / max win
def test_liability_limit_on_a_selection(session: Session) -> None:
    rule = shipped("liability_limit")
    a = bet(session, at=T0 - timedelta(hours=1), stake=2_500.0, odds=11.0,
            legs=_kempton("Big Fav", 11.0))  # fmt: skip
    bet(session, at=T0 - timedelta(hours=2), stake=9_000.0, odds=11.0, status="lost",
        legs=_kempton("Big Fav", 11.0))  # settled: no longer a liability  # fmt: skip
    near = bet(session, at=T0, stake=2_499.99, legs=_kempton("Big Fav", 11.0), odds=11.0)
    assert run(session, rule, placed(near)) == []  # 25,000 + 24,999.90 - stakes = 49,999.90
    b = bet(session, at=T0 + timedelta(minutes=1), stake=0.01, legs=_kempton("Big Fav", 11.0),
            odds=11.0)  # fmt: skip
    [f] = run(session, rule, placed(b))
    assert f.pivot_kind == "selection" and f.pivot_id == min_leg_id(session, a)
    assert f.figures["liability_gbp"] == 50_000.0 and f.figures["open_bets"] == 3
    assert f.value == 1.0 and severity(rule, f.value) == "high"
    assert f.evidence["bets"][0] == b.id and set(f.evidence["bets"]) == {a.id, near.id, b.id}
    assert "open liability GBP 50,000.00 against a limit of GBP 50,000" in reason(rule, f)
    _liability_limit_maximum_win(session)


def _liability_limit_maximum_win(session: Session) -> None:
    rule = shipped("liability_limit", max_liability_gbp=1_000_000.0)
    c = make_customer(session)
    near = bet(session, customer=c.id, at=T0, stake=24_999.99, odds=10.0,
               legs=_kempton("Rank Outsider", 10.0))  # fmt: skip
    assert run(session, rule, placed(near)) == []
    big = bet(session, customer=c.id, at=T0, stake=25_000.0, odds=10.0,
              legs=_kempton("Other Runner", 10.0))  # fmt: skip
    [f] = run(session, rule, placed(big))
    assert (f.pivot_kind, f.pivot_id) == ("customer", c.id)
    assert f.figures["potential_return_gbp"] == 250_000.0 and f.figures["check"] == (
        "potential payout"
    )
    assert severity(rule, f.value) == "high" and f.evidence["bets"] == [big.id]


# ---------------------------------------------------------------- rule 16: price beating
def _singles_vs_sp(session: Session, c: int, n: int, beating: int) -> tuple[Bet, dict[str, float]]:
    """``n`` settled singles: ``beating`` taken at 2.10 against SP 2.00, the rest at SP."""
    from store.models import Leg

    sps: dict[str, float] = {}
    last = None
    for i in range(n):
        price = 2.1 if i < beating else 2.0
        last = bet(session, customer=c, at=T0 - timedelta(days=n - i), stake=10.0, odds=price,
                   legs=_kempton(f"Runner {i}", price), status="lost")  # fmt: skip
        leg = session.exec(select(Leg).where(Leg.bet_id == last.id)).one()
        sps[str(leg.id)] = 2.0
    assert last is not None
    return last, sps


def test_price_beating_fires_over_thirty_bets(session: Session) -> None:
    c = make_customer(session)
    last, sps = _singles_vs_sp(session, c.id, 30, 18)
    rule = shipped("price_beating", starting_prices=sps)
    [f] = run(session, rule, settled(last))
    assert f.figures["bets_compared"] == 30 and f.figures["beat_share"] == 0.6
    assert f.value == pytest.approx(0.03) and severity(rule, f.value) == "medium"
    assert len(f.evidence["bets"]) == 18
    assert "average 3.0% above SP" in reason(rule, f)
    [s] = run(session, rule, schedule(T0))
    assert (s.pivot_kind, s.pivot_id) == ("customer", c.id)
    # without starting prices the rule has nothing to compare and stays quiet
    assert run(session, shipped("price_beating"), settled(last)) == []
    _price_beating_near_misses(session)  # more customers, same database
    _price_beating_reads_starting_prices_from_results(session)


def _price_beating_reads_starting_prices_from_results(session: Session) -> None:
    from store.trading import Event, SelectionResult

    c = make_customer(session)
    last, _ = _singles_vs_sp(session, c.id, 30, 24)
    race = Event(sport="Horse Racing", name="2.30 KEMPTON", start_time=T0)
    session.add(race)
    session.flush()
    for i in range(30):
        session.add(SelectionResult(event_id=race.id, selection=f"Runner {i}",
                                    selection_key=f"runner {i}", result="lost",
                                    starting_price=2.0))  # fmt: skip
    session.flush()
    [f] = run(session, shipped("price_beating"), settled(last))
    assert f.figures["bets_compared"] == 30 and f.figures["beat_share"] == 0.8
    assert f.figures["mean_starting_price"] == 2.0
    assert f.value == pytest.approx(0.04)
    assert run(session, shipped("price_beating", sp_from_results=False), settled(last)) == []
    leg_id = min_leg_id(session, last)
    assert starting_price(session=session, leg_id=leg_id, params={"sp_from_results": True}) == 2.0
    assert starting_price(session=session, leg_id=leg_id, params={"sp_from_results": False}) is None


def _price_beating_near_misses(session: Session) -> None:
    c, d = make_customer(session), make_customer(session)
    last_c, sps_c = _singles_vs_sp(session, c.id, 30, 17)  # 56.7% beat SP
    last_d, sps_d = _singles_vs_sp(session, d.id, 29, 29)  # 29 bets only
    rule = shipped("price_beating", starting_prices=sps_c | sps_d)
    assert run(session, rule, settled(last_c)) == []
    assert run(session, rule, settled(last_d)) == []
