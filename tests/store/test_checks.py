"""The counter check's statements: the one-query look-up of the accounts whose limits apply
agrees with the factoring module's handwriting links; the liability figure per event."""

from __future__ import annotations

from store import factoring
from store.checks import CheckLimits, check_bet, writer_customers
from store.clustering import ClusterMember, ClusterStatus, WriterCluster
from store.models import BetCreate
from tests.factories import make_bet, make_customer
from tests.rules import scenario


def _ids(session, customer_id, linked_ids):  # type: ignore[no-untyped-def]
    return [c.id for c in writer_customers(session, customer_id=customer_id, linked_ids=linked_ids)]


def test_writer_customers_are_the_customer_then_its_linked_accounts(session):
    scenario.activate(session)
    me, a, b, gone, old, slip_match = (make_customer(session) for _ in range(6))
    at = scenario.T0

    def bet(c):  # type: ignore[no-untyped-def]
        return scenario.bet(session, at=at, stake=5, customer=c.id)

    linked = scenario.cluster(session, [(bet(me), 0.9), (bet(b), 0.9), (bet(a), 0.9)])
    scenario.cluster(session, [(bet(me), 0.9), (bet(a), 0.9)])
    # a dissolved cluster and one of another model version link nobody
    dissolved = scenario.cluster(session, [(bet(me), 0.9), (bet(gone), 0.9)])
    row = session.get(WriterCluster, dissolved)
    row.status = ClusterStatus.dissolved
    session.add(row)
    stale = WriterCluster(model_version="older-model")
    session.add(stale)
    session.flush()
    for c in (me, old):
        slip = scenario.slip(session, bet(c))
        session.add(
            ClusterMember(slip_id=slip.id, model_version="older-model", cluster_id=stale.id)
        )
    session.commit()

    assert factoring.linked_customer_ids(session=session, customer_id=me.id) == [a.id, b.id]
    assert _ids(session, me.id, []) == [me.id, a.id, b.id]
    # the slip's matches come in whatever the inheritance, the customer stays first
    assert _ids(session, me.id, [slip_match.id, a.id]) == [me.id, a.id, b.id, slip_match.id]
    assert _ids(session, None, [slip_match.id, a.id]) == [a.id, slip_match.id]
    assert _ids(session, None, []) == []
    # the cluster a slip would join brings its accounts, an anonymous bet's too
    got = writer_customers(session, customer_id=None, linked_ids=[], cluster_id=linked)
    assert [c.id for c in got] == [me.id, a.id, b.id]
    assert _ids(session, 10**9, []) == []  # an unknown customer

    me.inherit_linked_factor = False  # an analyst's override
    session.add(me)
    session.commit()
    assert _ids(session, me.id, []) == [me.id]
    assert _ids(session, me.id, [slip_match.id]) == [me.id, slip_match.id]


def test_selection_liability_by_feed_id_by_event_name_or_everywhere(session):
    """The check's liability figure for each way a leg names its event (one statement per
    shape, reused with other values)."""
    leg = {"sport": "Greyhounds", "selection": "Trap 1", "odds": 3.0}
    # potential return 30 - stake 10 = 20 liability each
    make_bet(session, stake=10, legs=[leg | {"event": "7.02 Romford", "event_ref": "dog-1"}])
    make_bet(session, stake=10, legs=[leg | {"event": "7.02 Romford", "event_ref": "dog-2"}])
    make_bet(session, stake=10, legs=[leg | {"event": "7.19 Romford"}])
    limits = CheckLimits(max_selection_liability=25.0)

    def reasons(**named: str) -> list[str]:
        bet = BetCreate(stake=1, legs=[leg | named])  # adds 3 - 1 = 2
        return check_bet(session=session, bet_in=bet, limits=limits).reasons

    over = "liability on Trap 1 would reach {:.2f}, over 25.00"
    assert reasons(event_ref="dog-1") == []  # 20 + 2
    assert reasons(event_ref="dog-3") == []
    assert reasons(event="7.19 ROMFORD") == []  # by name, any case
    assert reasons(event="7.02 Romford") == []  # those bets carry feed ids
    assert reasons() == [over.format(62)]  # every event
    limits = CheckLimits(max_selection_liability=21.0)
    assert reasons(event_ref="dog-2") == [over.format(22).replace("25.00", "21.00")]
