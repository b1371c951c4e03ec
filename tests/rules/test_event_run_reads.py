"""What an event run reads once and keeps: the opening read (`rules.context.start`) and the
engine's cache of rule versions, which must follow the ``rule_versions`` table."""

from __future__ import annotations

from sqlalchemy import event
from sqlmodel import col, select

from rules import context
from rules.engine import active_rules, run_event_rules
from rules.kinds._links import customers_of_cluster
from rules.kinds._pattern_common import bet_legs
from rules.types import Trigger
from store.alerts import RuleVersion
from tests.factories import make_bet, make_customer
from tests.rules.scenario import T0, activate, cluster


def _versions(session, rule_id: str) -> list[int]:  # type: ignore[no-untyped-def]
    rows = session.exec(
        select(RuleVersion.version)
        .where(RuleVersion.rule_id == rule_id)
        .order_by(col(RuleVersion.version))
    ).all()
    return list(rows)


def test_a_version_numbered_elsewhere_is_seen_by_the_next_run(session):
    customer = make_customer(session)
    b = make_bet(session, stake=5, customer_id=customer.id, placed_at=T0)
    trigger = Trigger(kind="bet_placed", at=T0, bet_id=b.id, customer_id=customer.id)
    active_rules(session=session)  # the rules numbered, then read by the run (and kept)
    session.commit()
    run_event_rules(session=session, trigger=trigger, now=T0)
    session.commit()
    assert _versions(session, "stake_spike") == [1]
    # another process (other rule files) numbers another content of the rule
    session.add(RuleVersion(rule_id="stake_spike", version=2, content_hash="0" * 64))
    session.commit()
    run_event_rules(session=session, trigger=trigger, now=T0)
    session.commit()
    # this process's content is not the latest any more: it is numbered again
    assert _versions(session, "stake_spike") == [1, 2, 3]
    run_event_rules(session=session, trigger=trigger, now=T0)
    session.commit()
    assert _versions(session, "stake_spike") == [1, 2, 3]


def test_the_opening_read_holds_the_bet_its_legs_and_its_clusters_customers(session):
    activate(session)
    owner, other = make_customer(session), make_customer(session)
    legs = [
        {"sport": "Horse Racing", "event": "2.30 York", "selection": s, "odds": 4.0}
        for s in ("Alpha", "Bravo", "Charlie")
    ]
    own = make_bet(session, stake=5, customer_id=owner.id, placed_at=T0, legs=legs)
    theirs = make_bet(session, stake=5, customer_id=other.id, placed_at=T0)
    anonymous = make_bet(session, stake=5, placed_at=T0)
    k = cluster(session, [(own, 0.95), (theirs, 0.92), (anonymous, 0.9)])
    session.expunge_all()
    context.start(session, own.id)
    queries: list[str] = []
    engine = session.get_bind()
    listener = lambda *args: queries.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert context.bet(session=session, bet_id=own.id).id == own.id  # type: ignore[union-attr]
        assert [leg.selection for leg in bet_legs(session, own.id)] == ["Alpha", "Bravo", "Charlie"]  # type: ignore[arg-type]
        known = customers_of_cluster(session=session, cluster_id=k)
        assert sorted(c.id for c in known) == sorted([owner.id, other.id])
        assert context.membership(
            session=session, slip_id=context.slip_of_bet(session=session, bet_id=own.id)
        ) == (k, 0.95)  # type: ignore[arg-type]
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert queries == []  # all of it came with the opening read
