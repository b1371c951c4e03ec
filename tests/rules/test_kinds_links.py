"""Handwriting-link kinds (rules 1-5) and the staff observation (17): each shipped rule fires
on a crafted positive and stays quiet on a near miss, through `run_event_rules` /
`run_screening`, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlmodel import Session

from rules.engine import apply_observation, run_event_rules, run_screening
from rules.types import Trigger
from store.access import SYSTEM
from store.alerts import Alert, ObservationCreate, create_observation
from tests.factories import make_customer, make_shop
from tests.rules.scenario import T0, activate, bet, cluster, days, excluded_since, hours, join


def alerts_of(alerts: list[Alert], rule_id: str) -> list[Alert]:
    return [a for a in alerts if a.rule_id == rule_id]


def clustered(session: Session, b, cluster_id: int, at=None) -> list[Alert]:  # type: ignore[no-untyped-def]
    from tests.rules.scenario import _slip_of

    s = _slip_of(session, b)
    at = at or b.placed_at
    trigger = Trigger(
        kind="slip_clustered", at=at, bet_id=b.id, slip_id=s.id, cluster_id=cluster_id
    )
    out = run_event_rules(session=session, trigger=trigger, now=at)
    session.commit()
    return out


# ---------------------------------------------------------------- 1. self-excluded
def _excluded_scenario(session: Session, conf: float):  # type: ignore[no-untyped-def]
    activate(session)
    shop = make_shop(session)
    c = make_customer(session)
    own = bet(session, at=T0 - days(40), stake=10, customer=c.id, shop=shop.id)
    k = cluster(session, [(own, 0.97)])
    excluded_since(session, c, T0 - days(20))
    anon = bet(session, at=T0, stake=25, shop=shop.id)
    join(session, k, anon, conf)
    return c, k, anon


def test_self_excluded_linked_slip_is_critical(session):
    c, k, anon = _excluded_scenario(session, 0.95)
    [alert] = alerts_of(clustered(session, anon, k), "self_excluded_betting")
    assert (alert.severity, alert.inbox) == (4, "compliance")
    assert (alert.pivot_kind, alert.pivot_id) == ("customer", c.id)
    assert alert.link_confidence == 0.95
    assert alert.figures["linked_bets"] == 1 and alert.figures["own_account_bets"] == 0
    assert alert.evidence["bets"] == [anon.id] and alert.evidence["clusters"] == [k]
    assert c.external_ref in alert.reason and alert.rule_version >= 1


def test_self_excluded_possible_match_goes_to_link_verification(session):
    c, k, anon = _excluded_scenario(session, 0.8)
    [alert] = alerts_of(clustered(session, anon, k), "self_excluded_betting")
    assert (alert.severity, alert.base_severity, alert.inbox) == (3, 4, "link_verification")
    assert "0.80 is below 0.90" in alert.reason


def test_self_excluded_near_miss_is_quiet(session):
    c, k, anon = _excluded_scenario(session, 0.65)  # below min_confidence 0.7
    assert alerts_of(clustered(session, anon, k), "self_excluded_betting") == []
    # a bet placed before the exclusion took effect (uploaded late) is no breach
    old = bet(session, at=T0 - days(25), stake=5, shop=None)
    join(session, k, old, 0.99)
    assert alerts_of(clustered(session, old, k, at=T0), "self_excluded_betting") == []
    # nor is anything once the register's exclusion has ended
    from sqlmodel import select

    from store.trading import SelfExclusion

    entry = session.exec(select(SelfExclusion)).one()
    entry.ends_on = T0 - days(1)
    session.add(entry)
    session.commit()
    late = bet(session, at=T0, stake=5)
    join(session, k, late, 0.99)
    assert alerts_of(clustered(session, late, k), "self_excluded_betting") == []


def test_self_excluded_own_account_bet_and_screening(session):
    activate(session)
    c = make_customer(session)
    excluded_since(session, c, T0 - days(1))
    b = bet(session, at=T0, stake=5, customer=c.id)
    trigger = Trigger(kind="bet_placed", at=T0, bet_id=b.id, customer_id=c.id)
    [alert] = alerts_of(
        run_event_rules(session=session, trigger=trigger, now=T0), "self_excluded_betting"
    )
    assert alert.severity == 4 and alert.link_confidence is None
    session.commit()
    again = alerts_of(run_screening(session=session, now=T0 + hours(1)), "self_excluded_betting")
    assert [a.id for a in again] == [alert.id]  # the daily run adds to the open alert


# ---------------------------------------------------------------- 2. linked accounts
def test_linked_accounts_one_cluster_two_accounts(session):
    activate(session)
    a, b_ = make_customer(session), make_customer(session)
    x = bet(session, at=T0 - days(2), stake=10, customer=a.id)
    k = cluster(session, [(x, 0.96)])
    y = bet(session, at=T0, stake=10, customer=b_.id)
    join(session, k, y, 0.93)
    [alert] = alerts_of(clustered(session, y, k), "linked_accounts")
    assert (alert.pivot_kind, alert.pivot_id, alert.value) == ("cluster", k, 2.0)
    assert alert.severity == 2 and alert.inbox == "compliance"
    assert alert.evidence["customers"] == sorted([a.id, b_.id])
    assert alert.link_confidence == 0.93


def test_linked_accounts_near_miss_one_account(session):
    activate(session)
    a = make_customer(session)
    x = bet(session, at=T0 - days(2), stake=10, customer=a.id)
    k = cluster(session, [(x, 0.96)])
    y = bet(session, at=T0, stake=10)  # anonymous: still one account
    join(session, k, y, 0.95)
    assert alerts_of(clustered(session, y, k), "linked_accounts") == []
    assert alerts_of(run_screening(session=session, now=T0), "linked_accounts") == []


def test_linked_accounts_one_account_two_clusters_by_screening(session):
    activate(session)
    a = make_customer(session)
    k1 = cluster(session, [(bet(session, at=T0 - days(3), stake=5, customer=a.id), 0.95)])
    k2 = cluster(session, [(bet(session, at=T0 - days(1), stake=5, customer=a.id), 0.92)])
    [alert] = alerts_of(run_screening(session=session, now=T0), "linked_accounts")
    assert (alert.pivot_kind, alert.pivot_id) == ("customer", a.id)
    assert alert.evidence["clusters"] == sorted([k1, k2]) and alert.value == 2.0


def _two_clusters_with_vectors(session: Session, second: list[float]):  # type: ignore[no-untyped-def]
    """One account's slips in two clusters; the first cluster's slips point along e0, the
    second's along ``second`` (unit vectors: their cosine is second[0])."""
    import numpy as np

    from store.clustering import store_embedding
    from tests.rules.scenario import MODEL, _slip_of

    activate(session)
    a = make_customer(session)
    first = [bet(session, at=T0 - days(d), stake=5, customer=a.id) for d in (4, 3)]
    other = [bet(session, at=T0 - days(d), stake=5, customer=a.id) for d in (2, 1)]
    k1 = cluster(session, [(b, 0.95) for b in first])
    k2 = cluster(session, [(b, 0.92) for b in other])
    for bets, v in ((first, [1.0, 0.0, 0.0]), (other, second)):
        for b in bets:
            store_embedding(
                session=session,
                slip_id=int(_slip_of(session, b).id),  # type: ignore[arg-type]
                model_version=MODEL,
                vector=np.asarray(v, np.float32),
                usable=True,
                quality={},
            )
    session.commit()
    return a, k1, k2


def test_linked_accounts_one_writer_split_over_two_clusters_is_quiet(session):
    """The clusterer links only part of each writer's slips, so one account's slips often sit
    in two clusters of the same hand: alike (mean cosine 0.45 >= 0.2), they are no finding."""
    _two_clusters_with_vectors(session, [0.45, 0.893, 0.0])
    assert alerts_of(run_screening(session=session, now=T0), "linked_accounts") == []


def test_linked_accounts_two_writers_on_one_account_by_their_vectors(session):
    a, k1, k2 = _two_clusters_with_vectors(session, [0.1, 0.995, 0.0])
    [alert] = alerts_of(run_screening(session=session, now=T0), "linked_accounts")
    assert (alert.pivot_kind, alert.pivot_id, alert.value) == ("customer", a.id, 2.0)
    assert alert.figures["clusters"] == 2 and alert.figures["writers"] == 2
    assert "different writers" in alert.reason
    # the test model is not in the registry: the rule's fallback bound
    assert alert.figures["max_cluster_similarity"] == 0.2


def test_linked_accounts_reads_the_active_models_calibrated_bound(session):
    """A model whose calibration puts "different writers" below 0.5 makes the 0.45 pair two
    writers: the bound follows the model, since each model's cosines have their own scale."""
    from store.models_registry import ModelVersion
    from tests.rules.scenario import MODEL

    a, _, _ = _two_clusters_with_vectors(session, [0.45, 0.893, 0.0])
    session.add(ModelVersion(version=MODEL, distinct_writers=0.5))
    session.commit()
    [alert] = alerts_of(run_screening(session=session, now=T0), "linked_accounts")
    assert (alert.pivot_kind, alert.pivot_id, alert.value) == ("customer", a.id, 2.0)
    assert alert.figures["max_cluster_similarity"] == 0.5


# ---------------------------------------------------------------- 2b. matching accounts
def _accounts_with_hands(session: Session, hands: list[tuple[int, int]]):  # type: ignore[no-untyped-def]
    """One account per (writer axis, slips): each slip's vector is its writer's direction
    plus per-slip noise (slips of one writer ~0.5 apart in cosine, as real slips are)."""
    import numpy as np

    from store.clustering import store_embedding
    from tests.rules.scenario import MODEL, _slip_of

    activate(session)
    rng = np.random.default_rng(7)
    accounts = []
    for axis, n in hands:
        c = make_customer(session)
        accounts.append(c)
        for i in range(n):
            b = bet(session, at=T0 - days(1 + i), stake=5, customer=c.id)
            v = np.zeros(32)
            v[axis] = 1.0
            v += 0.9 * rng.standard_normal(32) / np.sqrt(32)
            store_embedding(
                session=session,
                slip_id=int(_slip_of(session, b).id),  # type: ignore[arg-type]
                model_version=MODEL,
                vector=(v / np.linalg.norm(v)).astype(np.float32),
                usable=True,
                quality={},
            )
    session.commit()
    return accounts


def test_matching_accounts_one_hand_behind_two_accounts_by_screening(session):
    """No cluster holds both accounts' slips (linked_accounts stays quiet): compared as wholes,
    the two accounts of writer 0 match and the third account, another hand, does not."""
    a, b_, c = _accounts_with_hands(session, [(0, 8), (0, 9), (1, 10)])
    alerts = run_screening(session=session, now=T0)
    assert alerts_of(alerts, "linked_accounts") == []
    [alert] = alerts_of(alerts, "matching_accounts")
    assert (alert.pivot_kind, alert.pivot_id, alert.value) == ("customer", a.id, 2.0)
    assert alert.inbox == "link_verification" and alert.severity == 2
    assert alert.evidence["customers"] == [a.id, b_.id] and len(alert.evidence["bets"]) == 17
    assert alert.figures["slips"] == 17 and alert.figures["accounts_compared"] == 3
    assert alert.figures["ratio"] > 0.95 and alert.link_confidence > 0.99
    assert "one hand" in alert.reason


def test_matching_accounts_three_accounts_of_one_hand_make_one_high_alert(session):
    a, b_, c, _ = _accounts_with_hands(session, [(0, 8), (0, 8), (0, 8), (1, 8)])
    [alert] = alerts_of(run_screening(session=session, now=T0), "matching_accounts")
    assert (alert.pivot_id, alert.value, alert.severity) == (a.id, 3.0, 3)
    assert alert.evidence["customers"] == [a.id, b_.id, c.id]


def test_matching_accounts_near_misses_are_quiet(session):
    # one hand, but 7 slips on each account (min_slips 8); two hands with plenty of slips
    _accounts_with_hands(session, [(0, 7), (0, 7), (1, 12), (2, 12)])
    assert alerts_of(run_screening(session=session, now=T0), "matching_accounts") == []


# ---------------------------------------------------------------- 3. stake factor evasion
def _factored(session: Session, stake: float, conf: float = 0.95):  # type: ignore[no-untyped-def]
    activate(session)
    c = make_customer(session, stake_factor=0.1)  # limit 0.1 x 500 = 50 GBP
    own = bet(session, at=T0 - days(5), stake=5, customer=c.id)
    k = cluster(session, [(own, 0.97)])
    anon = bet(session, at=T0, stake=stake)
    join(session, k, anon, conf)
    return c, k, anon


def test_stake_factor_evasion_fires_over_the_limit(session):
    c, k, anon = _factored(session, stake=200.0)
    [alert] = alerts_of(clustered(session, anon, k), "stake_factor_evasion")
    assert alert.value == 4.0 and alert.severity == 3 and alert.inbox == "trading"
    assert alert.figures["limit_gbp"] == 50.0 and alert.figures["max_stake_gbp"] == 200.0
    assert (alert.pivot_kind, alert.pivot_id) == ("customer", c.id)


def test_stake_factor_evasion_near_miss_at_the_limit(session):
    c, k, anon = _factored(session, stake=50.0)
    assert alerts_of(clustered(session, anon, k), "stake_factor_evasion") == []


# ---------------------------------------------------------------- 4. unidentified over threshold
def test_unidentified_over_threshold_summed_across_shops(session):
    activate(session)
    s1, s2 = make_shop(session), make_shop(session)
    first = bet(session, at=T0 - hours(20), stake=900, shop=s1.id)
    k = cluster(session, [(first, 0.95)])
    second = bet(session, at=T0, stake=850, shop=s2.id)
    join(session, k, second, 0.92)
    [alert] = alerts_of(clustered(session, second, k), "unidentified_over_threshold")
    assert alert.figures["stakes_gbp"] == 1750.0 and alert.figures["shops"] == 2
    assert alert.value == round(1750 / 1700, 4) and alert.severity == 3
    assert alert.link_confidence == 0.92 and alert.evidence["shops"] == sorted([s1.id, s2.id])


def test_unidentified_over_threshold_near_miss(session):
    activate(session)
    first = bet(session, at=T0 - hours(25), stake=900)  # outside the 24 h window
    k = cluster(session, [(first, 0.95)])
    second = bet(session, at=T0, stake=850)
    join(session, k, second, 0.95)
    assert alerts_of(clustered(session, second, k), "unidentified_over_threshold") == []
    assert alerts_of(run_screening(session=session, now=T0), "unidentified_over_threshold") == []


def test_unidentified_winnings_by_screening(session):
    from store.models import BetStatus

    activate(session)
    b = bet(session, at=T0 - hours(30), stake=100)
    b.status, b.returns, b.settled_at = BetStatus.won, 2000.0, T0 - hours(2)
    session.add(b)
    session.commit()
    k = cluster(session, [(b, 0.9)])
    [alert] = alerts_of(run_screening(session=session, now=T0), "unidentified_over_threshold")
    assert alert.figures["winnings_gbp"] == 2000.0 and alert.pivot_id == k
    assert alert.link_confidence is None  # one slip rests on no link


# ---------------------------------------------------------------- 5. structuring
def test_structuring_three_near_threshold_bets(session):
    activate(session)
    c = make_customer(session)
    bets = [bet(session, at=T0 - hours(h), stake=1200, customer=c.id) for h in (60, 30, 0)]
    trigger = Trigger(kind="bet_placed", at=T0, bet_id=bets[-1].id, customer_id=c.id)
    [alert] = alerts_of(run_event_rules(session=session, trigger=trigger, now=T0), "structuring")
    assert alert.figures["near_threshold_bets"] == 3 and alert.value == 1.0
    assert alert.evidence["bets"] == sorted(b.id for b in bets)


def test_structuring_split_across_shops(session):
    activate(session)
    s1, s2 = make_shop(session), make_shop(session)
    c = make_customer(session)
    bet(session, at=T0 - hours(5), stake=900, customer=c.id, shop=s1.id)
    last = bet(session, at=T0, stake=900, customer=c.id, shop=s2.id)
    trigger = Trigger(kind="bet_placed", at=T0, bet_id=last.id, customer_id=c.id)
    [alert] = alerts_of(run_event_rules(session=session, trigger=trigger, now=T0), "structuring")
    assert alert.figures["day_shops"] == 2 and alert.figures["day_total_gbp"] == 1800.0


def test_structuring_near_miss(session):
    activate(session)
    c = make_customer(session)
    shop = make_shop(session)
    # two near-threshold bets only, and a day's total over the threshold in one shop
    bet(session, at=T0 - hours(70), stake=1200, customer=c.id, shop=shop.id)
    last = bet(session, at=T0, stake=1000, customer=c.id, shop=shop.id)
    bet(session, at=T0 - hours(80), stake=1200, customer=c.id, shop=shop.id)  # outside 72 h
    trigger = Trigger(kind="bet_placed", at=T0, bet_id=last.id, customer_id=c.id)
    assert alerts_of(run_event_rules(session=session, trigger=trigger, now=T0), "structuring") == []
    assert alerts_of(run_screening(session=session, now=T0), "structuring") == []


# ---------------------------------------------------------------- 17. staff observation
def test_staff_observation_raises_new_and_open_alerts(session):
    activate(session)
    c = make_customer(session)
    shop = make_shop(session)
    create_observation(
        session=session,
        actor=SYSTEM,
        obs_in=ObservationCreate(
            kind="distress", customer_id=c.id, shop_id=shop.id, at=T0 - days(3)
        ),
    )
    session.commit()
    bets = [bet(session, at=T0 - hours(h), stake=1200, customer=c.id) for h in (50, 20, 0)]
    trigger = Trigger(kind="bet_placed", at=T0, bet_id=bets[-1].id, customer_id=c.id)
    [alert] = alerts_of(run_event_rules(session=session, trigger=trigger, now=T0), "structuring")
    assert (alert.base_severity, alert.severity) == (3, 4)
    assert "staff observed distress" in alert.figures["staff_observation"]
    session.commit()
    # a second concern later does not raise the same alert again
    obs = create_observation(
        session=session,
        actor=SYSTEM,
        obs_in=ObservationCreate(kind="borrowing", customer_id=c.id, at=T0 + hours(1)),
    )
    assert apply_observation(session=session, observation=obs, now=T0 + hours(1)) == []
    # a selection's finding is never boosted: the kind does not look (no read), whatever the id
    from rules.engine import active_rules
    from rules.kinds import REGISTRY

    [rule] = [r for r in active_rules(session=session) if r.kind == "staff_observation"]
    kind = REGISTRY["staff_observation"]
    assert kind.boost(session=session, rule=rule, pivot_kind="customer", pivot_id=c.id, at=T0)
    assert (
        kind.boost(session=session, rule=rule, pivot_kind="selection", pivot_id=c.id, at=T0) is None
    )


def test_staff_observation_after_the_alert_and_near_misses(session):
    activate(session)
    s1, s2 = make_shop(session), make_shop(session)
    c = make_customer(session)
    other = make_customer(session)
    bet(session, at=T0 - hours(5), stake=900, customer=c.id, shop=s1.id)
    last = bet(session, at=T0, stake=900, customer=c.id, shop=s2.id)
    trigger = Trigger(kind="bet_placed", at=T0, bet_id=last.id, customer_id=c.id)
    [alert] = alerts_of(run_event_rules(session=session, trigger=trigger, now=T0), "structuring")
    assert alert.severity == 3
    session.commit()
    # near misses: a kind the rule does not count, and a concern about someone else
    for kind, who in (("other", c.id), ("distress", other.id)):
        obs = create_observation(
            session=session,
            actor=SYSTEM,
            obs_in=ObservationCreate(kind=kind, customer_id=who, at=T0 + hours(1)),
        )
        assert apply_observation(session=session, observation=obs, now=T0 + hours(1)) == []
    obs = create_observation(
        session=session,
        actor=SYSTEM,
        obs_in=ObservationCreate(kind="agitation", bet_id=last.id, at=T0 + hours(2)),
    )
    [raised] = apply_observation(session=session, observation=obs, now=T0 + hours(2))
    assert raised.id == alert.id and raised.severity == 4
