"""Drift watch: recent slips' pair-score distribution against the active model's reference
(exact figures on hand-made vectors; real tables, both databases)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from sqlmodel import select

from store import clustering
from store import models_registry as registry
from store.access import SYSTEM
from store.models import AuditEntry, Slip, SlipStatus, utcnow
from store.slips import store_slip
from tests.factories import make_bet, scan_bytes
from workers.rollout import check_drift, ks_to_reference, score_reference

VERSION = "test-model+0001"


def _vectors(rng: np.random.Generator, n: int, *, offset: float = 0.0) -> np.ndarray:
    """n slips of n // 4 writers in 32 dimensions; ``offset`` adds a direction shared by
    every slip (what a new scanner or slip design does to an embedding)."""
    centres = rng.normal(size=(n // 4, 32))
    x = np.repeat(centres, 4, axis=0) + rng.normal(size=(n, 32))
    x[:, 0] += offset
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _store(session, vectors: np.ndarray, *, seed: int, days_ago: float = 0.0) -> None:  # type: ignore[no-untyped-def]
    for k, v in enumerate(vectors):
        slip, _ = store_slip(
            session=session, bet_id=make_bet(session).id, data=scan_bytes(seed=seed + k),
            actor=SYSTEM, max_bytes=10**7, max_pixels=10**7,
        )  # fmt: skip
        slip.status = SlipStatus.ready
        slip.uploaded_at = utcnow() - timedelta(days=days_ago)
        session.add(slip)
        session.flush()
        clustering.store_embedding(
            session=session, slip_id=slip.id, model_version=VERSION, vector=v, usable=True,
            quality={},
        )  # fmt: skip
    session.commit()


def test_ks_distance_is_exact_on_tiny_inputs():
    reference = {"quantiles": list(np.linspace(0.0, 1.0, 101))}  # uniform on [0, 1]
    assert ks_to_reference(np.array([0.5]), reference) == 0.5
    assert ks_to_reference(np.array([2.0, 3.0]), reference) == 1.0
    assert abs(ks_to_reference(np.linspace(0.005, 0.995, 100), reference) - 0.005) < 1e-9


def test_drift_alert_when_new_slips_move(session, settings):  # type: ignore[no-untyped-def]
    from store.alerts import Alert
    from store.models_registry import ModelVersion

    rng = np.random.default_rng(7)
    session.add(ModelVersion(version=VERSION, dim=32, reference=score_reference(
        _vectors(rng, 200), source="evaluation on a held-out folder")))  # fmt: skip
    clustering.activate_model(session=session, version=VERSION, path=None)
    session.commit()

    _store(session, _vectors(rng, 60), seed=0)  # this week: like the reference
    quiet = check_drift(settings=settings)
    assert quiet["checked"] and not quiet["drifted"] and quiet["ks"] < 0.1, quiet
    # the same slips a fortnight ago and a week of shifted ones: an operations alert
    for slip in session.exec(select(Slip)).all():
        slip.uploaded_at = utcnow() - timedelta(days=14)
        session.add(slip)
    session.commit()
    _store(session, _vectors(rng, 60, offset=6.0), seed=100)
    moved = check_drift(settings=settings)
    assert moved["drifted"] and moved["ks"] > 0.5 and moved["slips"] == 60, moved
    session.expire_all()
    alert = session.exec(select(Alert).where(Alert.rule_id == "system.model_drift")).one()
    assert VERSION in alert.reason and alert.inbox == "operations"
    assert session.exec(select(AuditEntry).where(AuditEntry.action == "model.drift")).one()
    checks = session.exec(select(registry.DriftCheck).order_by(registry.DriftCheck.id)).all()
    assert [c.drifted for c in checks] == [False, True]
    detail = registry.detail(session=session, version=VERSION)
    assert detail["last_drift_check"]["drifted"] is True


def test_first_check_without_reference_takes_the_slips_as_reference(session, settings):  # type: ignore[no-untyped-def]
    from store.models_registry import ModelVersion

    rng = np.random.default_rng(3)
    session.add(ModelVersion(version=VERSION, dim=32))
    clustering.activate_model(session=session, version=VERSION, path=None)
    session.commit()
    _store(session, _vectors(rng, 8), seed=0)
    assert check_drift(settings=settings)["reason"].startswith("fewer than")
    _store(session, _vectors(rng, 40), seed=50)
    first = check_drift(settings=settings)
    assert not first["checked"] and first["reason"] == "reference set from these slips"
    session.expire_all()
    row = registry.get_version(session=session, version=VERSION)
    assert row.reference["n"] == 48 and row.reference["source"].startswith("first slips")
    assert check_drift(settings=settings)["drifted"] is False
