"""Processes cache loaded models, and a model's calibration (pair / merge thresholds and
confidence logistic in its file header) is not part of its version: a re-calibrated file of
the same version must reach a process that loaded the version before, and two files of one
version with different operating points must never answer for each other."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sqlmodel import select

from store import models_registry as registry
from store.models import AuditEntry
from tests.workers.conftest import model_path
from workers import model as models
from workers.pipeline import model_calibration


def _shipped():  # type: ignore[no-untyped-def]
    from cv.embed import DEFAULT_MODEL_PATH, EmbeddingModel

    return EmbeddingModel.load(model_path() or DEFAULT_MODEL_PATH)


def _save(  # type: ignore[no-untyped-def]
    path: Path, *, merge: float, pair: float, seed: int | None = None, distinct: float = 0.2
):
    """The shipped model with these operating points (under a version of its own when
    ``seed`` is given), written to ``path``."""
    from cv.cluster import calibration_of

    model = _shipped()
    if seed is not None:
        model.random_state = seed
        model.version_ = model._compute_version()
    model.calibration_ = replace(
        calibration_of(model), merge_threshold=merge, pair_threshold=pair, distinct_writers=distinct
    )
    model.threshold_ = pair
    model.save(path)
    return model


def _operating_points(model) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    c = model_calibration(model)
    return round(c.merge_threshold, 6), round(c.pair_threshold, 6)


def test_a_file_recalibrated_in_place_is_picked_up(session, settings, tmp_path):  # type: ignore[no-untyped-def]
    path = tmp_path / "model.npz"
    version = _save(path, merge=0.61, pair=0.62, seed=9101).version
    configured = settings.model_copy(update={"model_path": path})
    model = models.model_for(version, session=session, settings=configured)
    assert _operating_points(model) == (0.61, 0.62)
    # bench/calibrate_model.py rewrites the file: same parameters and arrays, same version
    assert _save(path, merge=0.51, pair=0.53, seed=9101).version == version
    model = models.model_for(version, session=session, settings=configured)
    assert model.version == version and _operating_points(model) == (0.51, 0.53)


def test_two_files_of_one_version_never_answer_for_each_other(session, settings, tmp_path):  # type: ignore[no-untyped-def]
    strict, loose = tmp_path / "strict.npz", tmp_path / "loose.npz"
    version = _save(strict, merge=0.8, pair=0.81, seed=9102).version
    assert _save(loose, merge=0.4, pair=0.45, seed=9102).version == version
    first = settings.model_copy(update={"model_path": strict})
    second = settings.model_copy(update={"model_path": loose})
    assert _operating_points(models.configured_model(first)) == (0.8, 0.81)
    model = models.model_for(version, session=session, settings=second)
    assert _operating_points(model) == (0.4, 0.45)
    assert _operating_points(models.configured_model(first)) == (0.8, 0.81)


def test_registering_a_recalibrated_file_reaches_every_process(  # type: ignore[no-untyped-def]
    session, settings, tmp_path, monkeypatch
):
    """A process that loads the version from the registry (its own configured model is
    another one) follows when the version is registered again with new operating points."""
    monkeypatch.setattr(models, "_REGISTRY_TTL_S", 0.0)
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    model = _save(first, merge=0.66, pair=0.67, seed=9103)
    registry.register_model(session=session, model=model, data=first.read_bytes())
    session.commit()
    loaded = models.model_for(model.version, session=session, settings=settings)
    assert _operating_points(loaded) == (0.66, 0.67)

    assert registry.get_version(session=session, version=model.version).distinct_writers == 0.2

    recalibrated = _save(second, merge=0.56, pair=0.57, seed=9103, distinct=0.25)
    row, created = registry.register_model(
        session=session, model=recalibrated, data=second.read_bytes(), actor="ml-eng"
    )
    session.commit()
    assert not created and row.threshold == pytest.approx(0.57)
    # the linked-accounts rule reads the registry's copy of the bound
    assert row.distinct_writers == 0.25
    loaded = models.model_for(model.version, session=session, settings=settings)
    assert _operating_points(loaded) == (0.56, 0.57)
    audit = session.exec(select(AuditEntry).where(AuditEntry.action == "model.recalibrate")).all()
    assert [a.entity_id for a in audit] == [model.version] and audit[0].actor == "ml-eng"
    # the same file again changes nothing
    registry.register_model(session=session, model=recalibrated, data=second.read_bytes())
    session.commit()
    assert len(session.exec(select(AuditEntry).where(
        AuditEntry.action == "model.recalibrate")).all()) == 1  # fmt: skip


def test_live_decisions_use_the_live_points_unless_an_operator_calibrated(  # type: ignore[no-untyped-def]
    session, tmp_path, monkeypatch
):
    """Arriving slips and counter checks are decided on the model's normalised live points;
    a pair threshold calibrated in the registry on reviewed pairs (raw cosine) keeps the raw
    points it was chosen for."""
    from workers.pipeline import live_calibration

    monkeypatch.setattr(models, "_REGISTRY_TTL_S", 0.0)
    monkeypatch.setattr(models, "_registry", {})  # this process's view of the registry
    model = _save(tmp_path / "m.npz", merge=0.62, pair=0.69, seed=9104)
    assert model.calibration_.live is not None
    live = live_calibration(model)
    assert live == model.calibration_.live and live.offset_ranks is not None
    registry.register_model(session=session, model=model)
    session.commit()
    registry.calibrate(
        session=session,
        version=model.version,
        threshold=0.75,
        target_precision=0.99,
        expected_recall=0.1,
        actor="ml-eng",
        evaluation="reviews",
    )
    session.commit()
    models._refresh_registry(model.version, session)  # as model_for does before each use
    raw = live_calibration(model)
    assert raw.offset_ranks is None and raw.pair_threshold == pytest.approx(0.75)
