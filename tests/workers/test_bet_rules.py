"""The rules of a new bet run once: a bet waits for them (``bets.rules_pending_since``) until
the rules task ran them, and the sweeper re-sends the rules of a bet whose message was lost.
Real databases (SQLite and PostgreSQL); the broker end to end is in ``test_pipeline.py``."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, col, func, select

from store.alerts import Alert, AlertEvent
from store.models import Bet, as_utc, utcnow
from tests.factories import make_bet, make_customer
from workers.config import PipelineConfig
from workers.pipeline import InProcessPipeline, bets_awaiting_rules, rules_stage, sweep

RULE = "self_excluded_betting"


def placed(bet: Bet) -> dict[str, object]:
    """The bet_placed trigger the API sends for ``bet``."""
    return {"kind": "bet_placed", "at": utcnow().isoformat(), "bet_id": bet.id,
            "customer_id": bet.customer_id}  # fmt: skip


def alerts_of(session: Session, customer_id: int) -> list[tuple[int, int, int]]:
    """(alert id, hits, events) of the self-exclusion alerts on the customer."""
    session.expire_all()
    rows = session.exec(
        select(Alert.id, Alert.hits, func.count(col(AlertEvent.id)))
        .join(AlertEvent, col(AlertEvent.alert_id) == col(Alert.id))
        .where(Alert.rule_id == RULE, Alert.pivot_id == customer_id)
        .group_by(col(Alert.id), col(Alert.hits))
    ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def waiting(session: Session, bet_id: int) -> bool:
    session.expire_all()
    bet = session.get(Bet, bet_id)
    assert bet is not None
    return bet.rules_pending_since is not None


def test_the_rules_of_a_bet_run_once_and_mark_it(session, settings):  # type: ignore[no-untyped-def]
    customer = make_customer(session, status="self_excluded")
    bet = make_bet(session, customer_id=customer.id)
    assert waiting(session, bet.id)  # stored waiting for its rules
    assert rules_stage(placed(bet), settings) == 1
    [alert] = alerts_of(session, customer.id)
    assert alert[1] == 1
    assert not waiting(session, bet.id)  # marked with its alert, in one transaction
    # the same message again (the API's and the sweeper's both delivered, a redelivery):
    # the bet's rules already ran, nothing is evaluated
    assert rules_stage(placed(bet), settings) == 0
    assert alerts_of(session, customer.id) == [alert]
    # evaluated twice all the same (marked waiting again by hand): the open alert of the
    # rule, pivot and window takes the finding, no second alert, no new evidence
    row = session.get(Bet, bet.id)
    row.rules_pending_since = utcnow()
    session.add(row)
    session.commit()
    assert rules_stage(placed(bet), settings) == 1
    assert alerts_of(session, customer.id) == [alert]
    assert not waiting(session, bet.id)


def test_sweeper_resends_the_rules_of_bets_left_waiting(session, settings):  # type: ignore[no-untyped-def]
    config = PipelineConfig(pending_grace_s=60, backlog_grace_s=600)
    old = utcnow() - timedelta(minutes=5)
    customer = make_customer(session)
    lost, done, fresh = (make_bet(session, customer_id=customer.id) for _ in range(3))
    # lost: stored 5 minutes ago, its message lost; done: its rules ran; fresh: inside grace
    for bet, since in ((lost, old), (done, None)):
        bet.created_at, bet.rules_pending_since = old, since
        session.add(bet)
    session.commit()
    resent = {"kind": "bet_placed", "at": as_utc(old).isoformat(), "bet_id": lost.id,
              "customer_id": customer.id}  # fmt: skip
    assert sweep(settings=settings, config=config, queue_depths={}, leases_only=True).rules == []
    assert sweep(settings=settings, config=config, queue_depths={}).rules == [resent]
    # re-sent once per grace period
    assert waiting(session, lost.id)
    assert sweep(settings=settings, config=config, queue_depths={}).rules == []
    # with a backlog in the rules queue its message is most likely still queued: it waits
    # the backlog's grace
    lost.rules_pending_since = old
    session.add(lost)
    session.commit()
    assert sweep(settings=settings, config=config, queue_depths={"rules": 5}).rules == []
    assert sweep(settings=settings, config=config, queue_depths={"rules": 0}).rules == [resent]
    assert waiting(session, fresh.id) and not waiting(session, done.id)


def test_sweeper_takes_the_longest_waiting_bets_first_in_bounded_batches(session, settings):  # type: ignore[no-untyped-def]
    now = utcnow()
    bets = [make_bet(session) for _ in range(4)]
    for minutes, bet in zip((3, 9, 5, 7), bets, strict=True):
        bet.rules_pending_since = now - timedelta(minutes=minutes)
        session.add(bet)
    session.commit()
    first = bets_awaiting_rules(session, now - timedelta(minutes=1), now, limit=2)
    session.commit()
    assert [t["bet_id"] for t in first] == sorted([bets[1].id, bets[3].id])  # 9 and 7 minutes
    second = bets_awaiting_rules(session, now - timedelta(minutes=1), now, limit=2)
    session.commit()
    assert [t["bet_id"] for t in second] == sorted([bets[0].id, bets[2].id])
    assert bets_awaiting_rules(session, now - timedelta(minutes=1), now, limit=2) == []


def test_embedded_sweep_runs_the_lost_rules_once(session, settings):  # type: ignore[no-untyped-def]
    """In process: the sweep runs the rules of a bet whose trigger was lost (the API process
    killed after the commit), the alert is raised once, and further sweeps leave it be."""
    customer = make_customer(session, status="self_excluded")
    bet = make_bet(session, customer_id=customer.id)
    bet.rules_pending_since = utcnow() - timedelta(minutes=2)
    session.add(bet)
    session.commit()
    pipeline = InProcessPipeline(
        settings, config=PipelineConfig(inprocess_isolation=False), scheduler=False
    )
    try:
        assert [t["bet_id"] for t in pipeline.sweep_now().rules] == [bet.id]
        assert pipeline.wait_idle(60)
        [alert] = alerts_of(session, customer.id)
        assert not waiting(session, bet.id)
        assert pipeline.sweep_now().rules == []
        assert pipeline.wait_idle(60)
        assert alerts_of(session, customer.id) == [alert]
    finally:
        pipeline.shutdown()


def test_a_second_run_of_the_same_bet_waits_for_the_first_and_skips(session, settings, engine):  # type: ignore[no-untyped-def]
    """Two rules workers with the same bet at once (the API's message and the sweeper's):
    the first run's update holds the bet's row until it commits, the second waits for it
    and then finds the bet evaluated: no second evaluation, no duplicate alert."""
    import threading

    from sqlalchemy import text

    customer = make_customer(session, status="self_excluded")
    bet = make_bet(session, customer_id=customer.id)
    with engine.connect() as first:  # a first run, between its claim and its commit
        first.execute(
            text("UPDATE bets SET rules_pending_since = NULL WHERE id = :b"), {"b": bet.id}
        )
        result: list[int] = []
        second = threading.Thread(target=lambda: result.append(rules_stage(placed(bet), settings)))
        second.start()
        second.join(1.0)
        assert second.is_alive() and result == []  # held by the first run's row lock
        first.commit()
        second.join(30)
    assert result == [0]
    assert alerts_of(session, customer.id) == []  # (the first run "raised" nothing here)


def test_metrics_count_the_bets_awaiting_rules(session, settings, client):  # type: ignore[no-untyped-def]
    customer = make_customer(session, status="self_excluded")
    bets = [make_bet(session, customer_id=customer.id) for _ in range(3)]
    assert "\nsliplink_bets_awaiting_rules 3.0\n" in client.get("/metrics").text
    rules_stage(placed(bets[0]), settings)
    assert "\nsliplink_bets_awaiting_rules 2.0\n" in client.get("/metrics").text
