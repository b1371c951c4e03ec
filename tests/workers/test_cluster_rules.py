"""The slip_clustered rules of the assign stage's triggers: a slip left on its own sends none,
a slip that grew its customer's own cluster runs no cluster rule, a slip joining a cluster
with another customer's slips raises linked accounts once.  Hand-made unit vectors stand in
for embeddings (as in tests/store/test_clustering.py); assignment and rules are the
pipeline's own."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlmodel import Session, select

import rules.engine
from store import clustering
from store.access import SYSTEM
from store.alerts import Alert
from store.models import SlipStatus
from store.slips import store_slip
from tests.factories import make_bet, make_customer, make_shop, scan_bytes
from workers.config import PipelineConfig
from workers.pipeline import ASSIGN_STEPS, Outcome, SlipJob, rules_stage, run_steps

VERSION = "test-model-v1"
DIM = 8
THRESHOLD = 0.8
CLUSTER_KINDS = {"linked_accounts", "stake_factor_evasion", "unidentified_over_threshold",
                 "self_excluded", "structuring", "high_spend", "spend_velocity",
                 "multi_shop"}  # fmt: skip


def _vec(axis: int, *, tilt: float = 0.0) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[axis], v[7] = 1.0, tilt
    return v / np.linalg.norm(v)


def _assigned(session: Session, settings, vector: np.ndarray, customer_id: int | None) -> Outcome:  # type: ignore[no-untyped-def]
    bet = make_bet(session, customer_id=customer_id)
    slip, _ = store_slip(session=session, bet_id=bet.id, data=scan_bytes(seed=int(bet.id)),  # type: ignore[arg-type]
                         actor=SYSTEM, max_bytes=10**7, max_pixels=10**7)  # fmt: skip
    slip.status = SlipStatus.ready
    session.add(slip)
    session.commit()
    clustering.store_embedding(session=session, slip_id=slip.id, model_version=VERSION,  # type: ignore[arg-type]
                               vector=vector, usable=True, quality={"flags": []})  # fmt: skip
    session.commit()
    job = SlipJob(session=session, settings=settings, config=PipelineConfig(),
                  slip_id=int(slip.id), model_version=VERSION, threshold=THRESHOLD)  # type: ignore[arg-type]  # fmt: skip
    outcome = run_steps(ASSIGN_STEPS, job)
    assert outcome.status == "done", outcome
    return outcome


@pytest.fixture
def world(session, settings, monkeypatch):  # type: ignore[no-untyped-def]
    clustering.activate_model(session=session, version=VERSION, path=None)
    session.commit()
    make_shop(session)
    evaluated: list[str] = []
    evaluate = rules.engine._evaluate

    def spy(s: Session, rule: Any, trigger: Any) -> Any:
        evaluated.append(rule.kind)
        return evaluate(s, rule, trigger)

    monkeypatch.setattr(rules.engine, "_evaluate", spy)
    return session, settings, evaluated


def test_a_slip_whose_assignment_changed_nothing_runs_no_cluster_rules(world) -> None:  # type: ignore[no-untyped-def]
    session, settings, evaluated = world
    me = make_customer(session)
    alone = _assigned(session, settings, _vec(1), me.id)
    assert alone.triggers == ()  # on its own: no slip_clustered rules at all
    _assigned(session, settings, _vec(0), me.id)
    started = _assigned(session, settings, _vec(0, tilt=0.1), me.id)
    [trigger] = started.triggers
    assert trigger["grown"] is False  # a new cluster: every cluster rule runs
    rules_stage(trigger, settings)
    assert CLUSTER_KINDS <= set(evaluated)
    evaluated.clear()
    grown = _assigned(session, settings, _vec(0, tilt=0.2), me.id)
    [trigger] = grown.triggers
    assert trigger["grown"] is True and trigger["cluster_id"] == started.triggers[0]["cluster_id"]
    assert rules_stage(trigger, settings) == 0
    # the customer's own cluster grew by the customer's slip: nothing a cluster rule reads
    # changed (the bet's bet_placed rules saw the same bets), so none of them ran
    assert evaluated == []


def test_joining_another_customers_cluster_raises_linked_accounts_once(world) -> None:  # type: ignore[no-untyped-def]
    session, settings, evaluated = world
    owner, other = make_customer(session), make_customer(session)
    _assigned(session, settings, _vec(0), owner.id)
    _assigned(session, settings, _vec(0, tilt=0.1), owner.id)
    [trigger] = _assigned(session, settings, _vec(0, tilt=0.2), other.id).triggers
    assert trigger["grown"] is True
    rules_stage(trigger, settings)
    rules_stage(trigger, settings)  # delivered twice: the open alert collects, no second one
    assert "linked_accounts" in evaluated and "unidentified_over_threshold" not in evaluated
    session.expire_all()
    [alert] = session.exec(select(Alert).where(Alert.rule_id == "linked_accounts")).all()
    assert (alert.pivot_kind, alert.pivot_id) == ("cluster", trigger["cluster_id"])
    assert alert.evidence["customers"] == sorted([owner.id, other.id])
    # an anonymous slip joining it changes no account: linked accounts is left out
    evaluated.clear()
    [trigger] = _assigned(session, settings, _vec(0, tilt=0.3), None).triggers
    rules_stage(trigger, settings)
    assert "linked_accounts" not in evaluated and "unidentified_over_threshold" in evaluated
    session.expire_all()
    assert len(session.exec(select(Alert).where(Alert.rule_id == "linked_accounts")).all()) == 1
