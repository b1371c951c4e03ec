"""Adapters to the CV core: the embedding model (loaded once per process) and clustering.

The pipeline calls the CV code only through these functions, so the steps stay readable and
the CV interfaces are named in one place.
"""

from __future__ import annotations

import logging
import threading
import time
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
_models: dict[str, Any] = {}  # version -> EmbeddingModel, loaded once per process


@dataclass(frozen=True)
class Features:
    vector: NDArray[np.float32]
    usable: bool
    quality: dict[str, Any] = field(default_factory=dict)


def _load(path: Path | None) -> Any:
    from cv.embed import EmbeddingModel, load_default_model

    return EmbeddingModel.load(path) if path is not None else load_default_model()


def configured_model(settings: Settings) -> Any:
    """The model named by the settings (``model_path``) or the shipped default."""
    key = f"path:{settings.model_path}"
    with _lock:
        if key not in _models:
            model = _load(settings.model_path)
            _models[key] = _models.setdefault(model.version, model)
        return _models[key]


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
    """The loaded model of ``version``: the configured one or a registered one (loaded once
    per process from the registry's stored file).  Also refreshes the version's calibrated
    threshold from the registry, so a new calibration applies without a restart."""
    _refresh_threshold(version, session)
    with _lock:
        if version in _models:
            return _models[version]
    model = configured_model(settings)
    if model.version == version:
        return model
    from store import models_registry

    data = models_registry.model_file(session=session, version=version)
    if data is not None:
        loaded = models_registry.load_model_bytes(
            data, cache_dir=settings.data_dir / "models", version=version
        )
    else:
        # an activation from a file path (before the registry kept files)
        paths = session.exec(
            select(clustering.ModelActivation.path).where(
                clustering.ModelActivation.version == version,
                col(clustering.ModelActivation.path).is_not(None),
            )
        ).all()
        if not paths:
            raise LookupError(f"model version {version} is not loadable in this process")
        loaded = _load(Path(str(paths[-1])))
    with _lock:
        return _models.setdefault(loaded.version, loaded)


_THRESHOLD_TTL_S = 10.0
_thresholds: dict[str, tuple[float | None, float]] = {}  # version -> (threshold, read at)


def _refresh_threshold(version: str, session: Session) -> None:
    now = time.monotonic()
    with _lock:
        cached = _thresholds.get(version)
        if cached is not None and now - cached[1] < _THRESHOLD_TTL_S:
            return
    from store.models_registry import ModelVersion

    value = session.exec(
        select(ModelVersion.threshold).where(ModelVersion.version == version)
    ).first()
    with _lock:
        _thresholds[version] = (float(value) if value is not None else None, now)


def extract(model: Any, image: NDArray[np.uint8]) -> Features:
    """Preprocess + embed one greyscale slip (``cv.embed``), keeping the quality flags."""
    raw = model.extract(image)
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
        calibrated = _thresholds.get(str(getattr(model, "version", "")), (None, 0.0))[0]
    if calibrated is not None:
        return float(calibrated)
    value = getattr(model, "threshold_", None)
    return float(value) if value is not None else float(DEFAULT_THRESHOLD)
