"""``slips.attempts`` counts consecutive claims of one piece of work that never finished (a
worker lost with its lease), not extractions that succeeded: a slip re-embedded under many
model versions stays ready, a slip that kills its worker every time is failed."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlmodel import Session

from store.access import SYSTEM
from store.models import Slip, SlipStatus, utcnow
from store.slips import store_slip
from tests.factories import make_bet, scan_bytes
from workers import model as models
from workers import pipeline
from workers.config import PipelineConfig

MAX = PipelineConfig().max_attempts


@pytest.fixture
def fast_model(monkeypatch):  # type: ignore[no-untyped-def]
    """The CV model replaced by a constant vector: only the claim bookkeeping is under test."""
    monkeypatch.delenv("SLIPLINK_MAX_ATTEMPTS", raising=False)
    monkeypatch.setattr(models, "model_for", lambda version, **_: object())
    features = models.Features(np.ones(4, np.float32) / 2, True, {"flags": []})
    monkeypatch.setattr(models, "extract", lambda model, image: features)


def _slip(session: Session) -> int:
    slip, _ = store_slip(
        session=session, bet_id=make_bet(session).id, data=scan_bytes(seed=7), actor=SYSTEM,
        max_bytes=10**7, max_pixels=10**7,
    )  # fmt: skip
    session.commit()
    return int(slip.id)  # type: ignore[arg-type]


def _row(session: Session, slip_id: int) -> Slip:
    session.expire_all()
    row = session.get(Slip, slip_id)
    assert row is not None
    return row


def _claim_and_lose(session: Session, slip_id: int, version: str, settings) -> str:  # type: ignore[no-untyped-def]
    """A worker claims the slip and dies: its lease runs out."""
    outcome = pipeline._run_stage((("claim", pipeline.claim),), slip_id, version, settings)
    row = _row(session, slip_id)
    row.updated_at = utcnow() - timedelta(hours=1)
    session.add(row)
    session.commit()
    return outcome.reason


def test_successful_re_extractions_never_fail_a_slip(session, settings, fast_model):  # type: ignore[no-untyped-def]
    slip_id = _slip(session)
    for n in range(MAX + 3):  # one extraction per model rollout / re-embedding
        outcome = pipeline.extract_stage(slip_id, f"model-v{n}", settings)
        assert outcome.status == "done", (n, outcome)
        row = _row(session, slip_id)
        assert (row.status, row.attempts, row.error) == (SlipStatus.ready, 0, None)


def test_attempts_count_consecutive_lost_leases_after_a_success(session, settings, fast_model):  # type: ignore[no-untyped-def]
    slip_id = _slip(session)
    assert pipeline.extract_stage(slip_id, "model-v1", settings).status == "done"
    # the re-embedding under v2 loses its worker each time: MAX claims are allowed
    for n in range(1, MAX + 1):
        assert _claim_and_lose(session, slip_id, "model-v2", settings) == "", n
        assert _row(session, slip_id).attempts == n
    assert _claim_and_lose(session, slip_id, "model-v2", settings) == "gave up"
    row = _row(session, slip_id)
    assert row.status == SlipStatus.failed and "gave up" in (row.error or "")


def test_a_success_after_lost_leases_starts_the_count_again(session, settings, fast_model):  # type: ignore[no-untyped-def]
    slip_id = _slip(session)
    for _ in range(MAX - 1):
        _claim_and_lose(session, slip_id, "model-v1", settings)
    assert pipeline.extract_stage(slip_id, "model-v1", settings).status == "done"
    assert _row(session, slip_id).attempts == 0
    for _ in range(MAX - 1):  # as many lost leases again: still within the limit
        assert _claim_and_lose(session, slip_id, "model-v2", settings) == ""
    assert pipeline.extract_stage(slip_id, "model-v2", settings).status == "done"
    row = _row(session, slip_id)
    assert (row.status, row.attempts) == (SlipStatus.ready, 0)
