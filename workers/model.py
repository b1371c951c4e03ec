"""Adapters to the CV core: the embedding model (loaded once per process) and clustering.

The pipeline calls the CV code only through these functions, so the steps stay readable and
the CV interfaces are named in one place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlmodel import Session, col, select

from store import clustering
from store.settings import Settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
# Loaded models by (version, calibration digest).  The version names the vectors a model makes
# (its parameters and arrays); the calibration in its file header (pair / merge thresholds,
# confidence logistic) is not part of it, and a file can be re-calibrated under the same
# version (bench/calibrate_model.py): two files of one version with different operating
# points are two entries, never one answering for the other.
_models: dict[tuple[str, str], Any] = {}
# where each model came from: "path:<file>" or "stored:<version>" -> (stamp, key of _models);
# a new stamp (the file rewritten, the registry's file replaced) loads the source again
_sources: dict[str, tuple[object, tuple[str, str]]] = {}


@dataclass(frozen=True)
class Features:
    vector: NDArray[np.float32]
    usable: bool
    quality: dict[str, Any] = field(default_factory=dict)


def _load(path: Path | None) -> Any:
    from cv.embed import EmbeddingModel, load_default_model

    return EmbeddingModel.load(path) if path is not None else load_default_model()


def _cached(source: str, stamp: object, load: Callable[[], Any]) -> Any:
    """The model loaded from ``source`` as it is now (``stamp``), loading it on a change."""
    with _lock:
        hit = _sources.get(source)
        if hit is not None and hit[0] == stamp:
            return _models[hit[1]]
    model = load()  # outside the lock: a load takes a while, two racing loads are harmless
    key = (str(model.version), calibration_digest(model))
    with _lock:
        model = _models.setdefault(key, model)  # one object per version and calibration
        _sources[source] = (stamp, key)
        for gone in set(_models) - {k for _, k in _sources.values()}:
            del _models[gone]  # replaced by a re-calibrated file: no source serves it now
    return model


def _file_stamp(path: Path) -> object:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def configured_model(settings: Settings) -> Any:
    """The model named by the settings (``model_path``) or the shipped default; loaded again
    when the file changes (a re-calibration rewrites it under the same version)."""
    path = _configured_file(settings)
    try:
        stamp = _file_stamp(path)
    except OSError:
        stamp = None  # gone meanwhile: keep serving what was loaded, else the load says why
    return _cached(f"path:{path}", stamp, lambda: _load(settings.model_path))


def _configured_file(settings: Settings) -> Path:
    from cv.embed import DEFAULT_MODEL_PATH

    return Path(settings.model_path) if settings.model_path else Path(DEFAULT_MODEL_PATH)


def register_configured(*, session: Session, settings: Settings) -> str:
    """Put the configured model in the registry (if it is not there) and return its version.
    Called on activation and by the registry listings, never per slip."""
    from store import models_registry

    model = configured_model(settings)
    known = session.exec(
        select(models_registry.ModelVersion.id).where(
            models_registry.ModelVersion.version == model.version
        )
    ).first()
    if known is None:
        path = _configured_file(settings)
        models_registry.register_model(
            session=session,
            model=model,
            data=path.read_bytes(),
            source=str(settings.model_path) if settings.model_path else "shipped",
        )
    return str(model.version)


def ensure_active_model(*, session: Session, settings: Settings) -> str:
    """The active model version.

    The configured model (``model_path`` or the shipped default) is activated when nothing
    is active yet, or when it differs from an active model that was itself activated
    automatically from the configuration (a new shipped model after an upgrade, or a new
    ``SLIPLINK_MODEL_PATH``).  A version a person activated (``sliplink models activate``,
    whose rollout switches serving only once the version is complete) stays until the next
    activation.  The configured model is always in the registry, so it can be activated
    again (rollback) from any machine.
    """
    row = clustering.active_model(session=session)
    model = configured_model(settings)
    path = str(settings.model_path) if settings.model_path else None
    automatic = row is not None and row.actor == "system"
    if row is None or (
        automatic and row.version != model.version and (row.path is None or path is not None)
    ):
        register_configured(session=session, settings=settings)
        clustering.activate_model(session=session, version=model.version, path=path)
        return str(model.version)
    return row.version


def model_for(version: str, *, session: Session, settings: Settings) -> Any:
    """The loaded model of ``version``: the configured one or a registered one (loaded from
    the registry's stored file, again whenever that file is replaced: a version registered
    again with a new calibration).  Also refreshes the version's calibrated threshold from
    the registry, so a new calibration applies without a restart (within ``_REGISTRY_TTL_S``)."""
    stored_sha = _refresh_registry(version, session)
    model = configured_model(settings)
    if model.version == version:
        return model
    from store import models_registry

    if stored_sha:

        def from_registry() -> Any:
            data = models_registry.model_file(session=session, version=version)
            if data is None:
                raise LookupError(f"model version {version} has no stored file")
            return models_registry.load_model_bytes(
                data, cache_dir=settings.data_dir / "models", version=version
            )

        return _cached(f"stored:{version}", stored_sha, from_registry)
    # an activation from a file path (before the registry kept files)
    paths = session.exec(
        select(clustering.ModelActivation.path).where(
            clustering.ModelActivation.version == version,
            col(clustering.ModelActivation.path).is_not(None),
        )
    ).all()
    if not paths:
        raise LookupError(f"model version {version} is not loadable in this process")
    path = Path(str(paths[-1]))
    return _cached(f"path:{path}", _file_stamp(path), lambda: _load(path))


def calibration_digest(model: Any) -> str:
    """The model's operating points as a short digest (``store.models_registry``)."""
    from store.models_registry import calibration_digest as digest

    return digest(getattr(model, "calibration_", None), getattr(model, "threshold_", None))


_REGISTRY_TTL_S = 10.0
# version -> (registry threshold, stored file's sha256, read at)
_registry: dict[str, tuple[float | None, str | None, float]] = {}


def _refresh_registry(version: str, session: Session) -> str | None:
    """The registry row's threshold and stored file digest of ``version``, read at most
    every ``_REGISTRY_TTL_S``; returns the file digest (None: not registered)."""
    now = time.monotonic()
    with _lock:
        cached = _registry.get(version)
        if cached is not None and now - cached[2] < _REGISTRY_TTL_S:
            return cached[1]
    from store.models_registry import ModelVersion

    row = session.exec(
        select(ModelVersion.threshold, ModelVersion.file_sha256).where(
            ModelVersion.version == version
        )
    ).first()
    threshold = float(row[0]) if row is not None and row[0] is not None else None
    sha = str(row[1]) if row is not None and row[1] else None
    with _lock:
        _registry[version] = (threshold, sha, now)
    return sha


def extract(model: Any, image: NDArray[np.uint8]) -> Features:
    """Preprocess + embed one greyscale slip (``cv.embed``), keeping the quality flags."""
    raw = model.extract(image, design=False)  # the service never ranks by printed design
    vector = model.transform_raw([raw])[0]
    return Features(
        vector=np.asarray(vector, dtype=np.float32),
        usable=bool(raw.ok),
        quality={"flags": list(raw.flags)},
    )


def threshold(model: Any) -> float:
    """The version's threshold calibrated in the registry, else the one the model file
    carries, else the clusterer's default."""
    from cv.cluster import DEFAULT_THRESHOLD

    with _lock:
        calibrated = _registry.get(str(getattr(model, "version", "")), (None, None, 0.0))[0]
    if calibrated is not None:
        return float(calibrated)
    value = getattr(model, "threshold_", None)
    return float(value) if value is not None else float(DEFAULT_THRESHOLD)
