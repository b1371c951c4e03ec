"""The model registry: every embedding model version with its parameters, the data it was
fitted on, its evaluation figures, its calibrated threshold and its file, plus the rollouts
that make a version the active one.

Serving follows ``store.clustering.active_model_version`` (the latest ``model_activations``
row).  Activating a version starts a *rollout*: the stored slips are re-embedded under it
and re-clustered in the background while the old version keeps serving; the switch (a new
``model_activations`` row) happens only when the new version is complete.  Embeddings,
memberships and clusters are all keyed by model version, so two versions' vectors are never
compared.  Helpers add/flush; the caller commits.
"""

from __future__ import annotations

import enum
import hashlib
import io
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import JSON, Column, LargeBinary, UniqueConstraint, func
from sqlmodel import Field, Session, SQLModel, col, select

from store import audit
from store.clustering import (
    Embedding,
    ModelActivation,
    activate_model,
    active_model,
    insert_or_ignore,
)
from store.errors import Conflict, Invalid, NotFound
from store.models import Slip, SlipStatus, _enum, utcnow


class RolloutState(enum.StrEnum):
    running = "running"  # re-embedding the stored slips under the new version
    finishing = "finishing"  # re-clustering under the new version, then the switch
    complete = "complete"  # the version serves
    cancelled = "cancelled"  # another activation replaced it before it finished
    failed = "failed"


class ModelVersion(SQLModel, table=True):
    __tablename__ = "model_versions"
    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(max_length=64, unique=True, index=True)
    dim: int = 0
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # what it was fitted on: folders, image and writer counts, reviewed pairs
    fit_data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # evaluation figures by evaluation name ("sample_slips", "reviews", ...)
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # the assignment threshold chosen for a target pairwise precision (calibration)
    threshold: float | None = None
    target_precision: float | None = None
    expected_recall: float | None = None
    # the calibration's "different writers" bound (cv.cluster.distinct_writers_bound), read
    # by the linked-accounts rule; None: the model file has none
    distinct_writers: float | None = None
    # drift watch: the score distribution of the fitting data (see workers.rollout)
    reference: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    source: str = Field(default="", max_length=1000)
    file_sha256: str = Field(default="", max_length=64)
    trained_by: str = Field(default="", max_length=100)
    note: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, nullable=False)


class ModelFile(SQLModel, table=True):
    """The saved model (``.npz``) in the database, so every worker on every machine can load
    any registered version; apart from ``model_versions`` so listings never load it."""

    __tablename__ = "model_files"
    version: str = Field(max_length=64, primary_key=True)
    npz: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class ModelRollout(SQLModel, table=True):
    __tablename__ = "model_rollouts"
    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(max_length=64, index=True)
    previous_version: str | None = Field(default=None, max_length=64)
    state: RolloutState = Field(
        default=RolloutState.running, index=True, sa_type=_enum(RolloutState)
    )
    actor: str = Field(max_length=100)
    total: int = 0
    done: int = 0
    # highest slip id sent for re-embedding, and when (lost batches are re-sent after a lease)
    cursor: int = 0
    dispatched_at: datetime | None = None
    started_at: datetime = Field(default_factory=utcnow, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, nullable=False)
    finished_at: datetime | None = None
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    error: str | None = Field(default=None, max_length=1000)


class ModelReport(SQLModel, table=True):
    """One file of an evaluation report (``index.html`` and its PNGs) shown on the model page."""

    __tablename__ = "model_reports"
    __table_args__ = (UniqueConstraint("version", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(max_length=64, index=True)
    name: str = Field(max_length=200)
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, nullable=False)


class DriftCheck(SQLModel, table=True):
    __tablename__ = "model_drift_checks"
    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(max_length=64, index=True)
    at: datetime = Field(default_factory=utcnow, nullable=False)
    n: int = 0
    statistic: float = 0.0
    drifted: bool = False
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


# ---------------------------------------------------------------- model files
def model_bytes(model: Any) -> bytes:
    """The model as written by its own ``save`` (atomic, hashed), as bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.npz"
        model.save(path)
        return path.read_bytes()


def load_model_bytes(data: bytes, *, cache_dir: Path, version: str) -> Any:
    """Load a stored model through a cached file (``cache_dir/<sha256>.npz``)."""
    from cv.embed import EmbeddingModel

    digest = hashlib.sha256(data).hexdigest()
    path = cache_dir / f"{digest}.npz"
    if not path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    model = EmbeddingModel.load(path)
    if model.version != version:
        raise ValueError(f"stored file of model {version} holds {model.version}")
    return model


def calibration_digest(calibration: Any, threshold: float | None) -> str:
    """A short digest of a model's operating points: its calibration (``cv.cluster.
    Calibration`` or its JSON, or None) and pair threshold.  Not part of the model version,
    which names the vectors (parameters and arrays) and so the stored embeddings; a model
    re-calibrated under the same version keeps its embeddings and changes only this."""
    from cv.cluster import Calibration

    if calibration is not None and not isinstance(calibration, Calibration):
        calibration = Calibration.from_json(calibration)
    payload = {
        "calibration": None if calibration is None else calibration.to_json(),
        "threshold": None if threshold is None else float(threshold),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def distinct_writers_of(model: Any) -> float | None:
    """The "different writers" bound in a model's calibration (object or JSON), if any."""
    calibration = getattr(model, "calibration_", None)
    if isinstance(calibration, dict):
        value = calibration.get("distinct_writers")
    else:
        value = getattr(calibration, "distinct_writers", None)
    return None if value is None else float(value)


def _file_calibration_digest(blob: bytes) -> str:
    from cv.npzfile import HEADER_KEY

    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        header = json.loads(data[HEADER_KEY].tobytes().decode())
    return calibration_digest(header.get("calibration"), header.get("threshold"))


# ---------------------------------------------------------------- registry
def register_model(
    *,
    session: Session,
    model: Any,
    data: bytes | None = None,
    source: str = "",
    actor: str = "system",
    fit_data: dict[str, Any] | None = None,
    reference: dict[str, Any] | None = None,
    note: str | None = None,
) -> tuple[ModelVersion, bool]:
    """Add ``model`` (and its file) to the registry; returns (row, created).  Registering a
    version again keeps the row and fills in only what it lacked (audited when created),
    except a new calibration: a file of the version with other operating points replaces the
    stored file and the row's threshold (audited), and every process picks it up from there
    (``workers.model.model_for``); the embeddings stay, the vectors are the same."""
    version = str(model.version)

    def existing() -> ModelVersion | None:
        return session.exec(select(ModelVersion).where(ModelVersion.version == version)).first()

    row = existing()
    created = False
    if row is None:
        threshold = getattr(model, "threshold_", None)
        usable = threshold is not None and -1.0 <= float(threshold) < 1.0
        blob = data if data is not None else model_bytes(model)
        # two processes may register the same version at once: the unique constraint decides
        row, created = insert_or_ignore(
            session,
            ModelVersion(
                version=version,
                dim=int(getattr(model, "dim", 0)),
                params=model.get_params() if hasattr(model, "get_params") else {},
                threshold=float(threshold) if usable and threshold is not None else None,
                # cv.embed calibrates at pairwise precision 0.98 on held-out training writers
                target_precision=0.98 if usable else None,
                distinct_writers=distinct_writers_of(model),
                source=source[:1000],
                file_sha256=hashlib.sha256(blob).hexdigest(),
                trained_by=actor[:100],
                note=note,
            ),
            existing=existing,
        )
        insert_or_ignore(
            session,
            ModelFile(version=version, npz=blob),
            existing=lambda: session.get(ModelFile, version),
        )
    else:
        _recalibrate(session, row, model, data, actor=actor)
    changed = False
    if fit_data and not row.fit_data:
        row.fit_data, changed = fit_data, True
    if reference and not row.reference:
        row.reference, changed = reference, True
    if row.distinct_writers is None and distinct_writers_of(model) is not None:
        # a row registered before the registry kept the bound (same file, same calibration)
        row.distinct_writers, changed = distinct_writers_of(model), True
    if changed:
        session.add(row)
        session.flush()
    if created:
        audit.record(
            session,
            actor=actor,
            action="model.register",
            entity="model",
            entity_id=version,
            after={"version": version, "source": source, "dim": row.dim},
        )
    return row, created


def _recalibrate(
    session: Session, row: ModelVersion, model: Any, data: bytes | None, *, actor: str
) -> bool:
    """Replace the stored file of ``row`` when ``model`` carries other operating points."""
    stored = session.get(ModelFile, row.version)
    new = calibration_digest(
        getattr(model, "calibration_", None), getattr(model, "threshold_", None)
    )
    if stored is None or _file_calibration_digest(stored.npz) == new:
        return False
    blob = data if data is not None else model_bytes(model)
    threshold = getattr(model, "threshold_", None)
    usable = threshold is not None and -1.0 <= float(threshold) < 1.0
    before = {
        "threshold": row.threshold,
        "distinct_writers": row.distinct_writers,
        "file_sha256": row.file_sha256,
    }
    stored.npz = blob
    row.file_sha256 = hashlib.sha256(blob).hexdigest()
    row.threshold = float(threshold) if usable and threshold is not None else None
    row.target_precision = 0.98 if usable else None
    row.distinct_writers = distinct_writers_of(model)
    session.add(stored)
    session.add(row)
    audit.record(
        session,
        actor=actor,
        action="model.recalibrate",
        entity="model",
        entity_id=row.version,
        before=before,
        after={
            "threshold": row.threshold,
            "distinct_writers": row.distinct_writers,
            "file_sha256": row.file_sha256,
        },
    )
    session.flush()
    return True


def get_version(*, session: Session, version: str) -> ModelVersion:
    row = session.exec(select(ModelVersion).where(ModelVersion.version == version)).first()
    if row is None:
        raise NotFound(f"model version {version} not found")
    return row


def resolve(*, session: Session, ref: str) -> ModelVersion:
    """A version by its full name, a unique prefix, a unique hash suffix (after ``+``) or
    ``active``."""
    ref = ref.strip()
    if not ref:
        raise Invalid("version: must not be empty")
    if ref == "active":
        ref = serving_version(session=session)
        if not ref:
            raise NotFound("no model is active yet")
    exact = session.exec(select(ModelVersion).where(ModelVersion.version == ref)).first()
    if exact is not None:
        return exact
    candidates = [
        v
        for v in session.exec(select(ModelVersion.version)).all()
        if v.startswith(ref) or v.split("+")[-1].startswith(ref)
    ]
    if len(candidates) == 1:
        return get_version(session=session, version=candidates[0])
    if candidates:
        raise Invalid(f"version: {ref!r} matches {len(candidates)} models; give more of it")
    raise NotFound(f"model version {ref} not found")


def model_file(*, session: Session, version: str) -> bytes | None:
    row = session.get(ModelFile, version)
    return row.npz if row is not None else None


def serving_version(*, session: Session) -> str:
    row = active_model(session=session)
    return row.version if row is not None else ""


def activations(*, session: Session) -> list[ModelActivation]:
    return list(session.exec(select(ModelActivation).order_by(col(ModelActivation.id))).all())


def previous_version(*, session: Session) -> str | None:
    """The version that served before the current one (the rollback target)."""
    history = activations(session=session)
    if not history:
        return None
    current = history[-1].version
    for row in reversed(history):
        if row.version != current:
            return row.version
    return None


def list_versions(*, session: Session) -> list[dict[str, Any]]:
    """Every registered version, newest first, with whether it serves and its rollout."""
    serving = serving_version(session=session)
    history = activations(session=session)
    last_active: dict[str, ModelActivation] = {a.version: a for a in history}
    rollouts: dict[str, ModelRollout] = {
        r.version: r for r in session.exec(select(ModelRollout).order_by(col(ModelRollout.id)))
    }
    embedded = dict(
        session.exec(
            select(Embedding.model_version, func.count()).group_by(col(Embedding.model_version))
        ).all()
    )
    out = []
    for row in session.exec(select(ModelVersion).order_by(col(ModelVersion.id).desc())).all():
        act = last_active.get(row.version)
        ro = rollouts.get(row.version)
        out.append(
            summary(row)
            | {
                "active": row.version == serving,
                "activated_at": act.activated_at if act else None,
                "activated_by": act.actor if act else None,
                "embeddings": int(embedded.get(row.version, 0)),
                "rollout": rollout_public(ro) if ro is not None else None,
            }
        )
    return out


def summary(row: ModelVersion) -> dict[str, Any]:
    return {
        "version": row.version,
        "dim": row.dim,
        "threshold": row.threshold,
        "target_precision": row.target_precision,
        "expected_recall": row.expected_recall,
        "distinct_writers": row.distinct_writers,
        "trained_by": row.trained_by,
        "source": row.source,
        "created_at": row.created_at,
        "evaluations": sorted(row.metrics or {}),
    }


def detail(*, session: Session, version: str) -> dict[str, Any]:
    row = get_version(session=session, version=version)
    listed = next(v for v in list_versions(session=session) if v["version"] == version)
    reports = session.exec(
        select(ModelReport.name).where(ModelReport.version == version).order_by(ModelReport.name)
    ).all()
    drift = session.exec(
        select(DriftCheck).where(DriftCheck.version == version).order_by(col(DriftCheck.id).desc())
    ).first()
    return listed | {
        "params": row.params,
        "fit_data": row.fit_data,
        "metrics": row.metrics,
        "file_sha256": row.file_sha256,
        "note": row.note,
        "has_reference": bool(row.reference),
        "reports": list(reports),
        "activations": [
            {"activated_at": a.activated_at, "actor": a.actor}
            for a in activations(session=session)
            if a.version == version
        ],
        "last_drift_check": (
            {
                "at": drift.at,
                "n": drift.n,
                "statistic": drift.statistic,
                "drifted": drift.drifted,
                "detail": drift.detail,
            }
            if drift is not None
            else None
        ),
    }


def record_evaluation(
    *, session: Session, version: str, name: str, figures: dict[str, Any], actor: str
) -> ModelVersion:
    """Keep the evaluation figures of ``version`` under ``name`` (the latest run wins)."""
    row = get_version(session=session, version=version)
    row.metrics = {**(row.metrics or {}), name: {**figures, "at": utcnow().isoformat()}}
    session.add(row)
    audit.record(
        session,
        actor=actor,
        action="model.evaluate",
        entity="model",
        entity_id=version,
        after={"name": name, **figures},
    )
    session.flush()
    return row


def calibrate(
    *,
    session: Session,
    version: str,
    threshold: float,
    target_precision: float,
    expected_recall: float,
    actor: str,
    evaluation: str,
) -> ModelVersion:
    """Store the assignment threshold chosen for ``target_precision`` (audited); the
    workers use it from their next assignment on."""
    if not -1.0 <= threshold <= 1.0:
        raise Invalid(f"threshold: no operating point reaches precision {target_precision}")
    row = get_version(session=session, version=version)
    before = {"threshold": row.threshold, "target_precision": row.target_precision}
    row.threshold, row.target_precision = float(threshold), float(target_precision)
    row.expected_recall = float(expected_recall)
    session.add(row)
    audit.record(
        session,
        actor=actor,
        action="model.calibrate",
        entity="model",
        entity_id=version,
        before=before,
        after={
            "threshold": threshold,
            "target_precision": target_precision,
            "expected_recall": expected_recall,
            "on": evaluation,
        },
    )
    session.flush()
    return row


def set_reference(*, session: Session, version: str, reference: dict[str, Any]) -> None:
    row = get_version(session=session, version=version)
    row.reference = reference
    session.add(row)
    session.flush()


def store_report(*, session: Session, version: str, files: dict[str, bytes]) -> None:
    """Replace the report of ``version`` with ``files`` (name -> content)."""
    get_version(session=session, version=version)
    for old in session.exec(select(ModelReport).where(ModelReport.version == version)).all():
        session.delete(old)
    session.flush()
    for name, content in sorted(files.items()):
        session.add(ModelReport(version=version, name=name, content=content))
    session.flush()


def report_file(*, session: Session, version: str, name: str) -> bytes:
    row = session.exec(
        select(ModelReport).where(ModelReport.version == version, ModelReport.name == name)
    ).first()
    if row is None:
        raise NotFound(f"model {version} has no report file {name}")
    return row.content


# ---------------------------------------------------------------- rollouts
def running_rollout(*, session: Session) -> ModelRollout | None:
    return session.exec(
        select(ModelRollout)
        .where(col(ModelRollout.state).in_([RolloutState.running, RolloutState.finishing]))
        .order_by(col(ModelRollout.id).desc())
    ).first()


def latest_rollout(*, session: Session) -> ModelRollout | None:
    return session.exec(select(ModelRollout).order_by(col(ModelRollout.id).desc())).first()


def start_rollout(*, session: Session, version: str, actor: str) -> tuple[ModelRollout, bool]:
    """Begin making ``version`` the active model; returns (rollout, started).  The rollout
    already running for it is returned as is (resumed); one for another version is
    cancelled.  Conflict when ``version`` already serves."""
    row = get_version(session=session, version=version)
    if session.get(ModelFile, row.version) is None:
        raise Conflict(f"model {version} has no stored file; register it again")
    current = running_rollout(session=session)
    if current is not None and current.version == version:
        return current, False
    serving = serving_version(session=session)
    if serving == version:
        raise Conflict(f"model {version} is already active")
    if current is not None:
        current.state, current.finished_at = RolloutState.cancelled, utcnow()
        current.detail = {**(current.detail or {}), "cancelled_by": f"activation of {version}"}
        session.add(current)
    rollout = ModelRollout(
        version=version, previous_version=serving or None, actor=actor, total=_population(session)
    )
    session.add(rollout)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="model.rollout",
        entity="model",
        entity_id=version,
        before={"version": serving or None},
        after={"version": version, "rollout": rollout.id},
    )
    return rollout, True


def cancel_rollout(*, session: Session, actor: str) -> ModelRollout:
    rollout = running_rollout(session=session)
    if rollout is None:
        raise NotFound("no rollout is running")
    rollout.state, rollout.finished_at = RolloutState.cancelled, utcnow()
    rollout.detail = {**(rollout.detail or {}), "cancelled_by": actor}
    session.add(rollout)
    audit.record(
        session,
        actor=actor,
        action="model.rollout_cancel",
        entity="model",
        entity_id=rollout.version,
        after={"rollout": rollout.id},
    )
    session.flush()
    return rollout


def _population(session: Session) -> int:
    """Slips a complete version must have embedded: every ready slip."""
    return int(
        session.exec(
            select(func.count()).select_from(Slip).where(Slip.status == SlipStatus.ready)
        ).one()
    )


def missing_slips(
    *, session: Session, version: str, after: int = 0, limit: int = 1000
) -> list[int]:
    """Ready slips without an embedding under ``version`` (ids above ``after``, ascending)."""
    embedded = select(Embedding.slip_id).where(Embedding.model_version == version)
    return [
        int(i)  # type: ignore[arg-type]
        for i in session.exec(
            select(Slip.id)
            .where(
                Slip.status == SlipStatus.ready,
                col(Slip.id) > after,
                col(Slip.id).not_in(embedded),
            )
            .order_by(col(Slip.id))
            .limit(limit)
        ).all()
    ]


def progress(*, session: Session, rollout: ModelRollout) -> ModelRollout:
    """Refresh ``total`` / ``done`` of a rollout from the tables."""
    total = _population(session)
    done = session.exec(
        select(func.count())
        .select_from(Embedding)
        .join(Slip, col(Slip.id) == col(Embedding.slip_id))
        .where(Embedding.model_version == rollout.version, Slip.status == SlipStatus.ready)
    ).one()
    rollout.total, rollout.done, rollout.updated_at = total, int(done), utcnow()
    session.add(rollout)
    session.flush()
    return rollout


def complete_rollout(*, session: Session, rollout: ModelRollout) -> ModelActivation:
    """The switch: ``rollout.version`` serves from this commit on."""
    row = activate_model(session=session, version=rollout.version, path=None, actor=rollout.actor)
    rollout.state, rollout.finished_at, rollout.updated_at = (
        RolloutState.complete,
        utcnow(),
        utcnow(),
    )
    session.add(rollout)
    session.flush()
    return row


def rollout_public(r: ModelRollout) -> dict[str, Any]:
    return {
        "id": r.id,
        "version": r.version,
        "previous_version": r.previous_version,
        "state": r.state.value if isinstance(r.state, enum.Enum) else r.state,
        "actor": r.actor,
        "total": r.total,
        "done": r.done,
        "percent": round(100.0 * r.done / r.total, 1) if r.total else 100.0,
        "started_at": r.started_at,
        "updated_at": r.updated_at,
        "finished_at": r.finished_at,
        "detail": r.detail,
        "error": r.error,
    }


def record_drift(
    *, session: Session, version: str, n: int, statistic: float, drifted: bool, detail: dict
) -> DriftCheck:
    row = DriftCheck(version=version, n=n, statistic=statistic, drifted=drifted, detail=detail)
    session.add(row)
    session.flush()
    return row
